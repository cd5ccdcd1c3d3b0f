"""Real sockets: server on 127.0.0.1:0, clients through the public API; negative cases on both sides."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trioecho import (
    ConnectionFailed,
    FrameDecoder,
    Pinger,
    PingOptions,
    ServerLimits,
    SessionCache,
    encode_frame,
    open_echo_connection,
)
from trioecho.testing import TestPKI

SIZES = [0, 1, 16383, 16384, 16385, 1 << 20]


async def ping_ok(pki: TestPKI, srv: Any, **kw: Any) -> None:
    """A well-behaved client still gets its echo: the server survived whatever came before."""
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy(), **kw)
    async with conn:
        await conn.echo(b"still alive")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_sizes_round_trip_exactly(pki: TestPKI, start_server: Any, version: str) -> None:
    srv = await start_server()
    policy = pki.client_policy(min_version=version, max_version=version)
    conn = await open_echo_connection("127.0.0.1", srv.port, policy=policy, servername="localhost")
    async with conn:
        assert conn.tls is not None and conn.tls.version == f"TLSv{version}"
        assert conn.tls.alpn == "echo/1"
        for size in SIZES:
            rtt = await conn.echo(bytes([size % 251]) * size)
            assert rtt > 0
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "clean" and info.frames == len(SIZES)


async def test_ipv6_loopback(pki: TestPKI, start_server: Any) -> None:
    try:
        srv = await start_server(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    conn = await open_echo_connection("::1", srv.port, policy=pki.client_policy())
    async with conn:
        await conn.echo(b"v6")
        assert conn.tls is not None and conn.tls.sni is None  # no SNI for IP literals


async def test_frame_over_limit_refused_and_next_client_served(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(limits=ServerLimits(max_frame=1000))
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    async with conn:
        with pytest.raises(ConnectionFailed) as ei:
            await conn.echo(b"x" * 1001)
        assert ei.value.kind == "closed_early"
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "frame_too_large"
    await ping_ok(pki, srv)


async def test_wrong_hostname(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    with pytest.raises(ConnectionFailed) as ei:
        await open_echo_connection("127.0.0.1", srv.port, policy=pki.client_policy(), servername="example.com")
    assert ei.value.kind == "hostname_mismatch"
    assert "DNS:localhost" in ei.value.detail and "--servername localhost" in ei.value.hint
    ended = await srv.wait_ended(1)
    assert ended[0].outcome == "cert_rejected_by_peer"  # we flushed our alert: the server knows why
    await ping_ok(pki, srv)


async def test_untrusted_ca(pki: TestPKI, start_server: Any, tmp_path: Any) -> None:
    from trioecho.testing import make_pki

    other = make_pki(tmp_path / "other")
    srv = await start_server()
    with pytest.raises(ConnectionFailed) as ei:
        await open_echo_connection("localhost", srv.port, policy=other.client_policy())
    assert ei.value.kind == "unknown_ca"
    assert (await srv.wait_ended(1))[0].outcome == "cert_rejected_by_peer"
    await ping_ok(pki, srv)


@pytest.mark.parametrize("payload", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n", b"\x00" * 1024])
async def test_plaintext_and_garbage_clients(pki: TestPKI, start_server: Any, payload: bytes) -> None:
    srv = await start_server()
    s = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await s.send_all(payload)
    with trio.fail_after(5):
        while await s.receive_some():
            pass
    await s.aclose()
    (info,) = await srv.wait_ended(1)
    assert info.outcome in ("plaintext_peer", "not_tls"), info
    await ping_ok(pki, srv)


async def test_plaintext_client_classified_as_http(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    s = await trio.open_tcp_stream("127.0.0.1", srv.port)
    await s.send_all(b"GET / HTTP/1.1\r\n\r\n")
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "plaintext_peer"
    await s.aclose()


async def test_silent_client_times_out_and_server_keeps_serving(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(limits=ServerLimits(handshake_timeout=0.3))
    silent = await trio.open_tcp_stream("127.0.0.1", srv.port)
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "handshake_timeout"
    await ping_ok(pki, srv)
    await silent.aclose()


async def test_client_closing_right_after_sending(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    await conn.stream.send_all(encode_frame(b"bye"))
    await trio.aclose_forcefully(conn.stream)
    (info,) = await srv.wait_ended(1)
    assert info.outcome in ("client_gone", "truncated", "reset"), info
    await ping_ok(pki, srv)


async def test_server_closes_with_close_notify(pki: TestPKI, start_server: Any, autojump_clock: Any = None) -> None:
    """Pitfall 4: when the server ends the conversation the client gets a clean EOF, not a truncation."""
    srv = await start_server(limits=ServerLimits(idle_timeout=0.2))
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    await conn.echo(b"one")
    with trio.fail_after(5):
        assert await conn.stream.receive_some() == b""  # idle timeout -> close_notify
    await conn.aclose()
    assert (await srv.wait_ended(1))[0].outcome == "idle_timeout"


async def test_resumption_across_connections(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    policy = pki.client_policy()
    ctx = policy.client_context()
    sessions = SessionCache()
    results = []
    for _ in range(3):
        conn = await open_echo_connection("localhost", srv.port, policy=policy, ssl_context=ctx, sessions=sessions)
        async with conn:
            await conn.echo(b"r")
            assert conn.tls is not None
            results.append(conn.tls.resumed)
    assert results == [False, True, True]
    ended = await srv.wait_ended(3)
    assert [i.resumed for i in ended] == [False, True, True]
    assert srv.server.stats.resumed == 2


async def test_pinger_reports_probes(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    report = await Pinger(PingOptions(host="localhost", port=srv.port, count=3, interval=0, sizes=(64, 1024)),
                          pki.client_policy()).run()
    s = report.summary()
    assert s["transmitted"] == 3 and s["received"] == 3 and s["failed"] == 0
    assert [p.size for p in report.probes] == [64, 1024, 64]
    assert [p.resumed for p in report.probes] == [False, True, True]
    assert all(p.tcp and p.tls and p.echo for p in report.probes)
    assert report.tls is not None and report.tls.peer is not None
    assert "DNS:localhost" in report.tls.peer.san


async def test_plaintext_server_and_client(start_server: Any) -> None:
    srv = await start_server(plaintext=True)
    conn = await open_echo_connection("127.0.0.1", srv.port, plaintext=True)
    async with conn:
        assert conn.tls is None
        await conn.echo(b"clear")


async def test_refused(pki: TestPKI) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with pytest.raises(ConnectionFailed) as ei:
        await open_echo_connection("127.0.0.1", port, policy=pki.client_policy())
    assert ei.value.kind == "refused"


async def test_graceful_shutdown_lets_frames_finish(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    await conn.echo(b"before")
    # start a frame, then ask the server to shut down mid-frame
    frame = encode_frame(b"z" * 100_000)
    await conn.stream.send_all(frame[:50_000])
    srv.server.shutdown()
    await conn.stream.send_all(frame[50_000:])
    dec = FrameDecoder()
    with trio.fail_after(5):
        while (f := dec.next_frame()) is None:
            dec.feed(await conn.stream.receive_some())
        assert f == b"z" * 100_000  # the in-flight frame was echoed whole
        assert await conn.stream.receive_some() == b""  # then a clean close_notify
    await conn.aclose()
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "shutdown" and info.frames == 2
