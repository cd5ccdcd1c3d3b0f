"""Limits and timeouts: backpressure, frame deadline, connection cap, bounded close, --help defaults."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import trio
import trio.testing

from trioecho import ConnectionFailed, EchoServer, ServerLimits, encode_frame, open_echo_connection
from trioecho.errors import ConfigError
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .server_helpers import ping_ok, raw_tls


async def test_client_that_never_reads_is_throttled_then_dropped(pki: TestPKI, start_server: Any) -> None:
    """Backpressure: the server stops reading while its echo cannot go out, holds at most one
    TLS record, and drops the client after send_timeout."""
    srv = await start_server(limits=ServerLimits(send_timeout=1.0, close_timeout=0.5))
    sock, tls = await raw_tls(pki, srv.port)
    frame = encode_frame(b"b" * 65536)
    sent = 0
    with trio.fail_after(30):
        try:
            while True:  # never reads a byte of its echoes
                await tls.send_all(frame)
                sent += len(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server gave up on us
        (info,) = await srv.wait_ended(1)
    await trio.aclose_forcefully(tls)
    st = srv.server.stats
    assert info.outcome == "send_timeout" and info.close == "timeout", info
    assert "read nothing for 1s" in info.detail
    # The client could push only what socket buffers hold before it was throttled, not 64 MiB...
    assert sent < 64 << 20, sent
    # ...and every byte the server took in was echoed except the one record stuck in the send.
    assert 0 <= st.bytes_in - info.bytes <= 16384 + 4, (st.bytes_in, info.bytes)
    await ping_ok(pki, srv.port)


async def test_frame_deadline_runs_from_the_first_byte(pki: TestPKI, autojump_clock: Any) -> None:
    """A body dribbled one byte a second cannot extend the frame deadline."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(frame_timeout=5, idle_timeout=100))
    ctx = pki.client_policy().client_context()
    client = trio.SSLStream(client_raw, ctx, server_hostname="localhost")
    frame = encode_frame(b"d" * 100)

    async def dribble() -> None:
        await client.do_handshake()
        await client.send_all(frame[:5])
        global_t0.append(trio.current_time())
        for i in range(5, len(frame)):
            await trio.sleep(1)
            await client.send_all(frame[i:i + 1])

    global_t0: list[float] = []
    async with trio.open_nursery() as n:
        n.start_soon(dribble)
        info = await server.handle_stream(server_raw)
        n.cancel_scope.cancel()
    assert info.outcome == "frame_timeout" and info.close == "timeout"
    assert trio.current_time() - global_t0[0] == pytest.approx(5)


async def test_idle_timeout_restarts_after_each_frame(pki: TestPKI, autojump_clock: Any) -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(policy=pki.server_policy(), limits=ServerLimits(idle_timeout=10))
    ctx = pki.client_policy().client_context()
    client = trio.SSLStream(client_raw, ctx, server_hostname="localhost")
    last: list[float] = []

    async def talk() -> None:
        await client.do_handshake()
        for _ in range(3):  # 3 frames 9 s apart: each within the idle timeout
            await trio.sleep(9)
            await client.send_all(encode_frame(b"i"))
            last.append(trio.current_time())

    async with trio.open_nursery() as n:
        n.start_soon(talk)
        info = await server.handle_stream(server_raw)
    assert info.frames == 3 and info.outcome == "idle_timeout"
    assert trio.current_time() - last[-1] == pytest.approx(10)


async def test_max_connections_makes_new_clients_wait(pki: TestPKI, start_server: Any) -> None:
    """Over the cap, new connections wait in the kernel backlog (not refused); served once a slot frees."""
    srv = await start_server(limits=ServerLimits(max_connections=2))
    policy = pki.client_policy()
    a = await open_echo_connection("localhost", srv.port, policy=policy)
    b = await open_echo_connection("localhost", srv.port, policy=policy)
    await a.echo(b"a")
    await b.echo(b"b")
    with pytest.raises(ConnectionFailed) as ei:  # the third waits: its handshake is not served
        await open_echo_connection("localhost", srv.port, policy=policy, timeout=0.5)
    assert ei.value.kind == "timeout"
    assert srv.server.stats.active == 2
    async with trio.open_nursery() as n:
        async def third() -> None:
            c = await open_echo_connection("localhost", srv.port, policy=policy, timeout=10)
            async with c:
                await c.echo(b"c")

        n.start_soon(third)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()  # frees a slot: the waiting client is accepted
    await b.echo(b"b again")
    await b.aclose()
    assert srv.server.stats.peak_active <= 2


async def test_close_does_not_wait_for_the_peers_close_notify(pki: TestPKI, start_server: Any) -> None:
    """The server sends close_notify and closes; a client that never answers cannot hold it."""
    srv = await start_server(limits=ServerLimits(idle_timeout=0.5, close_timeout=0.5))
    sock, tls = await raw_tls(pki, srv.port)
    with trio.fail_after(10):
        (info,) = await srv.wait_ended(1)  # ended although we never sent our close_notify
    assert info.outcome == "idle_timeout"
    assert await tls.receive_some() == b""  # and what we got was a proper close_notify
    await trio.aclose_forcefully(tls)


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("handshake_timeout", 0, "--handshake-timeout must be a positive number"),
    ("idle_timeout", float("nan"), "--idle-timeout must be a positive number"),
    ("max_connections", 0, "--max-connections must be at least 1"),
    ("max_frame", 1 << 32, "--max-frame must be between 0 and 4294967295"),
    ("grace", -1, "--grace must be zero or more"),
])
def test_limits_are_validated(field: str, value: float, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ServerLimits(**{field: value})


def test_help_shows_every_limit_with_its_default() -> None:
    out = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, env=cli_env(), check=True).stdout
    flat = " ".join(out.split()).split("options:", 1)[1]
    for flag, default in [("--max-frame", "1M"), ("--handshake-timeout", "10.0"), ("--idle-timeout", "300.0"),
                          ("--frame-timeout", "30.0"), ("--send-timeout", "30.0"), ("--close-timeout", "2.0"),
                          ("--max-connections", "4096"),
                          ("--grace", "5.0")]:
        assert flag in flat, flag
        assert f"(default: {default})" in flat.split(flag, 1)[1][:300], (flag, default)
    for flag in ("--stats-interval", "--metrics"):
        assert flag in flat


async def test_a_bug_of_ours_is_contained_and_logged_loudly(pki: TestPKI, start_server: Any, monkeypatch: Any,
                                                            caplog: Any) -> None:
    """An unexpected exception in one connection: ERROR with a traceback, the server keeps serving."""
    from trioecho import framing

    srv = await start_server()
    real_feed = framing.FrameScanner.feed
    calls = 0

    def buggy_feed(self: Any, data: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("simulated bug")
        return real_feed(self, data)

    monkeypatch.setattr(framing.FrameScanner, "feed", buggy_feed)
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    with pytest.raises(ConnectionFailed):
        await conn.echo(b"trigger")
    await conn.aclose()
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "internal_error" and info.close == "internal_error"
    assert "ValueError: simulated bug" in info.detail
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)
    await ping_ok(pki, srv.port)


async def test_accept_out_of_file_descriptors_backs_off_and_recovers(pki: TestPKI, start_server: Any,
                                                                     monkeypatch: Any) -> None:
    """EMFILE on accept is "out of resources right now": log, back off, keep the listener."""
    import errno

    real_accept = trio.SocketListener.accept
    failures = 0

    async def flaky_accept(self: Any) -> Any:
        nonlocal failures
        if failures < 2:
            failures += 1
            await trio.sleep(0)
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(self)

    monkeypatch.setattr(trio.SocketListener, "accept", flaky_accept)
    srv = await start_server()
    await ping_ok(pki, srv.port)
    assert failures == 2
