"""The hostile-client corpus: everything a public TLS port sees, against a live server on loopback.

Each case must end in bounded time with exactly one classified "connection end"
log line (no traceback), and a well-behaved client must still get its echo
afterwards.  ``test_whole_corpus_on_one_server`` runs every case plus 1,000 idle
connections against a single server, prints how many bad inputs were tried and
checks that file descriptors and trio tasks are back to their baseline.
"""

from __future__ import annotations

import random
import resource
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from trioecho import ServerLimits, encode_frame
from trioecho.errors import ERROR_KINDS
from trioecho.testing import TestPKI

from .peers import need
from .server_helpers import LogWatch, live_tasks, open_fds, ping_ok, raw_tls, read_until_closed, reset

#: Short deadlines so the timeout cases end in about a second of real time (the
#: exact-deadline behaviour is proven with autojump_clock in test_memory/test_limits).
HOSTILE_LIMITS = ServerLimits(handshake_timeout=1.0, idle_timeout=1.0, frame_timeout=1.0, send_timeout=1.0,
                              close_timeout=0.5)
#: Outcomes that are not errors.
_NORMAL = {"clean", "client_gone", "shutdown"}


@dataclass
class Ctx:
    pki: TestPKI
    port: int
    wait_end: Callable[[], Awaitable[Any]]


def _seeded(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _client_hello(pki: TestPKI) -> bytes:
    """A real TLS 1.3 ClientHello, as our client would send it."""
    ctx = pki.client_policy().client_context()
    obj = ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO(), server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _sslv2_hello() -> bytes:
    """An SSLv2-format ClientHello (2-byte header with the high bit set), as ancient clients and scanners send."""
    body = bytes([0x01, 0x03, 0x01, 0, 3, 0, 0, 0, 16]) + bytes([0x00, 0x00, 0x2F]) + bytes(range(16))
    return bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body


async def _send_then_read(ctx: Ctx, payload: bytes) -> bytes:
    s = await trio.open_tcp_stream("127.0.0.1", ctx.port)
    got = b""
    async with trio.open_nursery() as n:
        async def send() -> None:
            try:
                await s.send_all(payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server hung up while a big payload was still going out: expected

        n.start_soon(send)
        got = await read_until_closed(s)
        n.cancel_scope.cancel()
    await s.aclose()
    return got


def _sends(payload: bytes, alert: bool) -> Callable[[Ctx], Awaitable[None]]:
    async def case(ctx: Ctx) -> None:
        got = await _send_then_read(ctx, payload)
        if alert:  # the client learns why: a TLS alert record (content type 21)
            assert got[:1] == b"\x15", got
    return case


def _sends_and_waits(payload: bytes) -> Callable[[Ctx], Awaitable[None]]:
    """Send, then stay connected without sending more: only the server's deadline ends it."""
    async def case(ctx: Ctx) -> None:
        s = await trio.open_tcp_stream("127.0.0.1", ctx.port)
        if payload:
            await s.send_all(payload)
        await read_until_closed(s)
        await s.aclose()
    return case


async def _truncated_client_hello_then_eof(ctx: Ctx) -> None:
    hello = _client_hello(ctx.pki)
    s = await trio.open_tcp_stream("127.0.0.1", ctx.port)
    await s.send_all(hello[: len(hello) // 2])
    await s.send_eof()
    await read_until_closed(s)
    await s.aclose()


async def _dribble(ctx: Ctx) -> None:
    """A real ClientHello at one byte per 0.25 s: the handshake deadline is overall, not per read."""
    hello = _client_hello(ctx.pki)
    s = await trio.open_tcp_stream("127.0.0.1", ctx.port)
    sent = 0
    async with trio.open_nursery() as n:
        async def drip() -> None:
            nonlocal sent
            try:
                for b in hello:
                    await s.send_all(bytes([b]))
                    sent += 1
                    await trio.sleep(0.25)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        n.start_soon(drip)
        await read_until_closed(s)
        n.cancel_scope.cancel()
    await s.aclose()
    assert 0 < sent < len(hello)  # cut off long before the hello was complete


def _openssl(*flags: str, expect: str) -> Callable[[Ctx], Awaitable[None]]:
    async def case(ctx: Ctx) -> None:
        openssl = need("openssl")
        with trio.fail_after(15):
            res = await trio.run_process(
                [openssl, "s_client", "-connect", f"127.0.0.1:{ctx.port}", "-servername", "localhost", *flags],
                stdin=subprocess.DEVNULL, capture_stdout=True, capture_stderr=True, check=False)
        out = (res.stdout + res.stderr).decode(errors="replace")
        assert res.returncode != 0 and expect in out, out[-1500:]
    return case


async def _handshake_then_silent(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    assert await read_until_closed(tls) == b""  # idle timeout: a clean close_notify
    await tls.aclose()


async def _length_ffffffff(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    await tls.send_all(b"\xff\xff\xff\xff")
    assert await read_until_closed(tls) == b""  # refused at the header, nothing echoed
    await tls.aclose()


async def _length_then_eof(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    await tls.send_all(b"\x00\x00\x01\x00")
    await tls.aclose()  # close_notify right after the header
    await ctx.wait_end()


async def _half_frame_then_reset(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    frame = encode_frame(b"r" * 1000)
    await tls.send_all(frame[:500])
    reset(sock)
    await ctx.wait_end()


async def _eof_mid_frame(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    frame = encode_frame(b"e" * 1000)
    await tls.send_all(frame[:500])
    await sock.aclose()  # TCP FIN, no close_notify
    await ctx.wait_end()


async def _frame_stall(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    await tls.send_all(encode_frame(b"s" * 1000)[:10])
    got = await read_until_closed(tls)
    assert got == b"\x00\x00\x03\xe8" + b"s" * 6  # what arrived was echoed, then the frame deadline hit
    await tls.aclose()


async def _send_and_close(ctx: Ctx) -> None:
    sock, tls = await raw_tls(ctx.pki, ctx.port)
    await tls.send_all(encode_frame(b"fire and forget"))
    await sock.aclose()  # gone before the echo can be read
    await ctx.wait_end()


#: name -> (attack, expected outcome(s), expected close kind(s)), alternatives "|"-separated
CASES: dict[str, tuple[Callable[[Ctx], Awaitable[None]], str, str]] = {
    "plaintext HTTP request": (_sends(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", alert=False),
                               "plaintext_peer", "handshake_failed"),
    "SSH banner": (_sends(b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n", alert=False), "not_tls", "handshake_failed"),
    "random 1 byte": (_sends_and_waits(_seeded(1, 1)), "handshake_timeout", "handshake_failed"),
    "random 1 KiB": (_sends(_seeded(1024, 2), alert=False), "not_tls", "handshake_failed"),
    "random 1 MiB": (_sends(_seeded(1 << 20, 3), alert=False), "not_tls", "handshake_failed"),
    "TLS record header claiming 64 KiB, then nothing": (_sends(b"\x16\x03\x01\xff\xff", alert=True),
                                                        "not_tls", "handshake_failed"),
    "TLS record header claiming 16 KiB, then nothing": (_sends_and_waits(b"\x16\x03\x01\x40\x00"),
                                                        "handshake_timeout", "handshake_failed"),
    "truncated ClientHello, then EOF": (_truncated_client_hello_then_eof, "handshake_eof", "handshake_failed"),
    "SSLv2-style hello": (_sends(_sslv2_hello(), alert=True), "tls_version", "handshake_failed"),
    "TLS 1.0-only client (openssl)": (_openssl("-tls1", "-cipher", "DEFAULT@SECLEVEL=0",
                                               expect="alert protocol version"), "tls_version", "handshake_failed"),
    "TLS 1.1-only client (openssl)": (_openssl("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                                               expect="alert protocol version"), "tls_version", "handshake_failed"),
    "non-AEAD-only client (openssl AES128-SHA)": (_openssl("-tls1_2", "-cipher", "AES128-SHA",
                                                           expect="alert handshake failure"),
                                                  "no_shared_cipher", "handshake_failed"),
    "silent client": (_sends_and_waits(b""), "handshake_timeout", "handshake_failed"),
    "one byte every 0.25 s": (_dribble, "handshake_timeout", "handshake_failed"),
    "handshake, then silent": (_handshake_then_silent, "idle_timeout", "timeout"),
    "length prefix 0xFFFFFFFF": (_length_ffffffff, "frame_too_large", "protocol_error"),
    # The server sends its TLS 1.3 tickets right after the handshake; a client that
    # closes without reading them makes its kernel answer with RST, so the server
    # sees either the EOF (truncated) or the reset first: both mean "left mid-frame".
    "length prefix, then close_notify": (_length_then_eof, "truncated|reset", "close_notify|reset"),
    "half a frame, then TCP reset": (_half_frame_then_reset, "reset", "reset"),
    "EOF without close_notify mid-frame": (_eof_mid_frame, "truncated|reset", "no_close_notify|reset"),
    "half a frame, then silent": (_frame_stall, "frame_timeout", "timeout"),
    # FIN or RST first is the kernel's choice; either way the client left between frames
    "send and close at once": (_send_and_close, "client_gone", "no_close_notify|reset"),
}


async def _run_case(name: str, srv: Any, pki: TestPKI, logs: LogWatch) -> None:
    attack, outcome, close = CASES[name]
    before, lines_before = len(srv.ended), len(logs.connection_ends())
    ctx = Ctx(pki, srv.port, lambda: srv.wait_ended(before + 1))
    with trio.fail_after(20):  # bounded: every case ends well within this
        await attack(ctx)
        await srv.wait_ended(before + 1)
    info = srv.ended[before]
    assert info.outcome in outcome.split("|") and info.close in close.split("|"), f"{name}: {info}"
    assert info.outcome in ERROR_KINDS or info.outcome in _NORMAL
    lines = logs.connection_ends()[lines_before:]
    assert len(lines) == 1, f"{name}: expected one log line, got {[r.getMessage() for r in lines]}"
    assert f"outcome={info.outcome}" in lines[0].getMessage() and lines[0].exc_info is None
    assert not logs.tracebacks(), [r.getMessage() for r in logs.tracebacks()]
    await ping_ok(pki, srv.port)  # the server still echoes for a well-behaved client
    await srv.wait_ended(before + 2)
    assert srv.ended[before + 1].outcome == "clean"


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_client(name: str, pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(limits=HOSTILE_LIMITS)
    with LogWatch() as logs:
        await _run_case(name, srv, pki, logs)


def _fd_headroom(need_fds: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need_fds:
        if hard != resource.RLIM_INFINITY and hard < need_fds:
            pytest.skip(f"needs {need_fds} file descriptors; this machine allows {hard} (raise ulimit -n)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need_fds, hard))


async def _idle_crowd(srv: Any, pki: TestPKI, n: int) -> None:
    """n connections opened at once and left silent; a good client is served meanwhile."""
    before = len(srv.ended)
    socks = []
    with trio.fail_after(60):
        for _ in range(n):
            socks.append(await trio.open_tcp_stream("127.0.0.1", srv.port))
        await ping_ok(pki, srv.port)  # served while the crowd holds its slots
        await srv.wait_ended(before + n + 1)
    for s in socks:
        await s.aclose()
    crowd = [i for i in srv.ended[before:] if i.outcome != "clean"]
    assert len(crowd) == n and {i.outcome for i in crowd} == {"handshake_timeout"}


async def test_whole_corpus_on_one_server(pki: TestPKI, start_server: Any, capsys: Any) -> None:
    """Every case, then 1,000 idle connections, on one server: nothing leaks."""
    idle = 1000
    _fd_headroom(2 * idle + 200)
    srv = await start_server(limits=HOSTILE_LIMITS)
    await ping_ok(pki, srv.port)  # warm up anything lazily created (thread pools, caches)
    await trio.testing.wait_all_tasks_blocked()
    fds0, tasks0 = open_fds(), live_tasks()
    with LogWatch() as logs:
        for name in CASES:
            await _run_case(name, srv, pki, logs)
        await _idle_crowd(srv, pki, idle)
        assert not logs.tracebacks()
    await trio.testing.wait_all_tasks_blocked()
    fds1, tasks1 = open_fds(), live_tasks()
    st = srv.server.stats
    with capsys.disabled():
        print(f"\nhostile corpus: {len(CASES)} kinds of bad input + {idle} idle connections = "
              f"{len(CASES) + idle} bad connections; {st.connections} served in all; "
              f"fds {fds0} -> {fds1}, tasks {tasks0} -> {tasks1}; outcomes {dict(st.outcomes)}")
    assert st.active == 0
    assert fds1 == fds0, "file descriptors leaked"
    assert tasks1 == tasks0, "tasks leaked"
    assert st.outcomes["clean"] == len(CASES) + 2

