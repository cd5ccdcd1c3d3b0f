"""In-memory TLS: stream conformance, and the echo handler over TLS 1.2 and 1.3 without sockets."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
import trio.testing

from trioecho import EchoServer, FrameDecoder, ServerLimits, encode_frame
from trioecho.testing import TestPKI, lockstep_tls_stream_pair, tls_stream_pair

VERSIONS = ["1.2", "1.3"]


@pytest.mark.parametrize("version", VERSIONS)
async def test_check_two_way_stream(pki: TestPKI, version: str) -> None:
    await trio.testing.check_two_way_stream(
        functools.partial(tls_stream_pair, pki=pki, version=version),
        functools.partial(lockstep_tls_stream_pair, pki=pki, version=version),
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_pair_negotiates_version_and_alpn(pki: TestPKI, version: str) -> None:
    client, server = await tls_stream_pair(pki=pki, version=version)
    assert client.version() == server.version() == f"TLSv{version}"
    assert client.selected_alpn_protocol() == "echo/1"


async def test_pair_with_no_arguments() -> None:
    client, server = await tls_stream_pair()
    await client.send_all(b"hi")
    assert await server.receive_some() == b"hi"


@pytest.mark.parametrize("version", VERSIONS)
async def test_lockstep_close_both_sides_does_not_deadlock(pki: TestPKI, version: str) -> None:
    """Pitfall 7: both ends closing at once on an unbuffered transport must not hang."""
    from trioecho.client import EchoConnection

    client, server = await lockstep_tls_stream_pair(pki=pki, version=version)
    c = EchoConnection(client, tls=None, tcp_time=0, tls_time=None, max_frame=10, timeout=1, sessions=None)
    s = EchoConnection(server, tls=None, tcp_time=0, tls_time=None, max_frame=10, timeout=1, sessions=None)
    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(c.aclose)
            n.start_soon(s.aclose)


async def _client_side(pki: TestPKI, raw: trio.abc.Stream, version: str) -> trio.SSLStream[Any]:
    ctx = pki.client_policy(min_version=version, max_version=version).client_context()
    return trio.SSLStream(raw, ctx, server_hostname="localhost")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("pair", ["memory", "lockstep"])
async def test_echo_handler_over_memory(pki: TestPKI, version: str, pair: str) -> None:
    maker = trio.testing.memory_stream_pair if pair == "memory" else trio.testing.lockstep_stream_pair
    client_raw, server_raw = maker()
    server = EchoServer(policy=pki.server_policy())
    client = await _client_side(pki, client_raw, version)
    payloads = [b"", b"x", b"y" * 16385]
    infos = []

    async def run_server() -> None:
        infos.append(await server.handle_stream(server_raw, peer="memory"))

    with trio.fail_after(10):
        async with trio.open_nursery() as n:
            n.start_soon(run_server)
            dec = FrameDecoder()
            for p in payloads:
                await client.send_all(encode_frame(p))
                while (f := dec.next_frame()) is None:
                    dec.feed(await client.receive_some())
                assert f == p
            await client.aclose()
    (info,) = infos
    assert info.outcome == "clean"
    assert info.frames == len(payloads)
    assert info.version == f"TLSv{version}"
    assert info.alpn == "echo/1"
    assert info.sni == "localhost"


async def test_silent_client_hits_handshake_deadline(pki: TestPKI, autojump_clock: Any) -> None:
    """Pitfall 3: a client that sends nothing is dropped at exactly the handshake deadline."""
    _client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(handshake_timeout=7))
    t0 = trio.current_time()
    info = await server.handle_stream(server_raw)
    assert info.outcome == "handshake_timeout"
    assert trio.current_time() - t0 == pytest.approx(7)
    assert server.stats.handshakes_failed["handshake_timeout"] == 1


async def test_dribbling_client_cannot_extend_the_handshake(pki: TestPKI, autojump_clock: Any) -> None:
    """One overall deadline, not per read: one byte every 2 s still ends at 7 s."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(handshake_timeout=7))
    hello = b"\x16\x03\x01\x02\x00" + b"\x01" * 100

    async def dribble() -> None:
        for b in hello:
            await client_raw.send_all(bytes([b]))
            await trio.sleep(2)

    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        n.start_soon(dribble)
        info = await server.handle_stream(server_raw)
        n.cancel_scope.cancel()
    assert info.outcome == "handshake_timeout"
    assert trio.current_time() - t0 == pytest.approx(7)


async def test_idle_client_dropped_after_idle_timeout(pki: TestPKI, autojump_clock: Any) -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(idle_timeout=30))
    client = await _client_side(pki, client_raw, "1.3")
    async with trio.open_nursery() as n:
        n.start_soon(client.do_handshake)
        info = await server.handle_stream(server_raw)
    assert info.outcome == "idle_timeout"
    # the server closed with close_notify: the client sees a clean EOF
    assert await client.receive_some() == b""


async def test_client_sends_and_closes_at_once(pki: TestPKI) -> None:
    """Pitfall 8: 'client went away' is a normal end, not a crash."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy())
    client = await _client_side(pki, client_raw, "1.3")

    async def fire_and_forget() -> None:
        await client.send_all(encode_frame(b"ping"))
        await trio.aclose_forcefully(client)

    with trio.fail_after(5):
        async with trio.open_nursery() as n:
            n.start_soon(fire_and_forget)
            info = await server.handle_stream(server_raw)
    assert info.outcome in ("client_gone", "truncated", "clean", "reset"), info
    assert info.outcome != "internal_error"


async def test_frame_over_limit_is_refused(pki: TestPKI) -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(max_frame=10))
    client = await _client_side(pki, client_raw, "1.3")
    async with trio.open_nursery() as n:
        n.start_soon(client.send_all, b"\x00\x00\x00\x0b" + b"z" * 11)
        info = await server.handle_stream(server_raw)
    assert info.outcome == "frame_too_large"
    assert "11 bytes" in info.detail


async def test_plaintext_server_over_memory() -> None:
    client, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(plaintext=True)
    async with trio.open_nursery() as n:
        n.start_soon(server.handle_stream, server_raw)
        await client.send_all(encode_frame(b"abc"))
        dec = FrameDecoder()
        while (f := dec.next_frame()) is None:
            dec.feed(await client.receive_some())
        assert f == b"abc"
        await client.aclose()


async def test_handshake_attributes_need_a_handshake(pki: TestPKI) -> None:
    """Pitfall 25: before the handshake, trio raises NeedHandshakeError."""
    client, _server = await tls_stream_pair(pki=pki, handshake=False)
    with pytest.raises(trio.NeedHandshakeError):
        client.session_reused  # noqa: B018


async def test_no_unwrap_in_package() -> None:
    """Pitfall 15: trioecho never uses unwrap() (it waits for the peer's close_notify)."""
    import pathlib

    import trioecho

    src = pathlib.Path(trioecho.__file__).parent
    offenders = [p.name for p in src.glob("*.py") if ".unwrap(" in p.read_text()]
    assert offenders == []


async def test_resumption_in_memory(pki: TestPKI) -> None:
    """Pitfall 17: the ticket arrives only after data was read; then the next handshake resumes."""
    cctx = pki.client_policy().client_context()
    sctx = pki.server_policy().server_context()
    client, server = await tls_stream_pair(client_context=cctx, server_context=sctx)
    assert not client.session.has_ticket
    await server.send_all(b"x")
    await client.receive_some()
    assert client.session.has_ticket
    c2_raw, s2_raw = trio.testing.memory_stream_pair()
    c2 = trio.SSLStream(c2_raw, cctx, server_hostname="localhost")
    c2.session = client.session
    s2 = trio.SSLStream(s2_raw, sctx, server_side=True)
    async with trio.open_nursery() as n:
        n.start_soon(c2.do_handshake)
        n.start_soon(s2.do_handshake)
    assert c2.session_reused and s2.session_reused
