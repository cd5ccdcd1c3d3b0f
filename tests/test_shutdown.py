"""Graceful shutdown: every echo sent before the signal arrives, then a clean EOF; a second signal exits at once."""

from __future__ import annotations

import signal
from typing import Any

import pytest
import trio

from trioecho import FrameDecoder, ServerLimits, encode_frame, open_echo_connection
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .peers import run
from .server_helpers import read_until_closed

FRAMES = [bytes([i]) * (1000 * i + 17) for i in range(1, 6)]  # different sizes, so a mix-up shows
LAST = b"L" * 300_000  # the frame the signal cuts in half


async def _stream_through_signal(port: int, pki: TestPKI, signal_server: Any) -> None:
    """Pipeline several frames, start one more, signal, finish it; every echo must come back, then EOF."""
    conn = await open_echo_connection("localhost", port, policy=pki.client_policy())
    s = conn.stream
    echoes: list[bytes] = []

    async def read_all() -> None:  # reads concurrently: a client that does not read gets dropped
        dec = FrameDecoder()
        while data := await s.receive_some():  # raises on a ragged EOF: must not happen
            dec.feed(data)
            while (f := dec.next_frame()) is not None:
                echoes.append(f)
        assert not dec.mid_frame

    with trio.fail_after(20):
        async with trio.open_nursery() as n:
            n.start_soon(read_all)
            for f in FRAMES:  # sent without waiting for echoes: some are in flight at the signal
                await s.send_all(encode_frame(f))
            last = encode_frame(LAST)
            await s.send_all(last[: len(last) // 2])
            await signal_server()
            await s.send_all(last[len(last) // 2:])
    # read_all returned on a clean close_notify (b""), after every echo
    assert echoes == [*FRAMES, LAST]
    await conn.aclose()


async def test_shutdown_delivers_every_echo_then_close_notify(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()

    async def signal_server() -> None:
        srv.server.shutdown()

    await _stream_through_signal(srv.port, pki, signal_server)
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "shutdown" and info.close == "server" and info.frames == len(FRAMES) + 1


async def test_shutdown_closes_idle_clients_and_refuses_new_ones(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(limits=ServerLimits(grace=30))
    conns = [await open_echo_connection("localhost", srv.port, policy=pki.client_policy()) for _ in range(3)]
    for c in conns:
        await c.echo(b"hello")
    with trio.fail_after(5):  # idle ones do not wait for the grace time
        srv.server.shutdown()
        for c in conns:
            assert await c.stream.receive_some() == b""
            await c.aclose()
        await srv.wait_ended(3)
    assert {i.outcome for i in srv.ended} == {"shutdown"}
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", srv.port)


async def test_grace_bounds_a_frame_that_never_finishes(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(limits=ServerLimits(grace=0.5))
    conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    await conn.stream.send_all(encode_frame(b"x" * 1000)[:100])  # and never the rest
    with trio.fail_after(10):
        srv.server.shutdown()
        (info,) = await srv.wait_ended(1)
    assert info.outcome == "shutdown" and "grace" in info.detail
    assert len(await read_until_closed(conn.stream)) == 100  # what arrived was echoed (header too); then closed
    await trio.aclose_forcefully(conn.stream)


async def _start_cli(pki: TestPKI, *extra: str) -> Any:
    return run([*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(pki.server_pem), *extra],
               env=cli_env())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_real_signal_drains_and_exits_0(pki: TestPKI, sig: signal.Signals) -> None:
    async with await _start_cli(pki) as serve:
        port = int((await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1))

        async def signal_server() -> None:
            serve.proc.send_signal(sig)
            await serve.read_until(rb"draining")

        await _stream_through_signal(port, pki, signal_server)
        with trio.fail_after(15):
            code = await serve.proc.wait()
        await serve.read_until(rb"stopped: connections=1 ")
        out = serve.buf.decode(errors="replace")
    assert code == 0, out
    assert "Traceback" not in out
    assert "outcome=shutdown close=server" in out and f"frames={len(FRAMES) + 1}" in out


async def test_second_signal_exits_at_once(pki: TestPKI) -> None:
    async with await _start_cli(pki, "--grace", "60") as serve:
        port = int((await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1))
        conn = await open_echo_connection("localhost", port, policy=pki.client_policy())
        await conn.stream.send_all(encode_frame(b"x" * 1000)[:100])  # mid-frame: would hold the drain for 60 s
        serve.proc.send_signal(signal.SIGTERM)
        await serve.read_until(rb"draining")
        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):  # not 60
            code = await serve.proc.wait()
        await serve.read_until(rb"exiting now, dropping 1 connections")
        await trio.aclose_forcefully(conn.stream)
    assert code == 0
    assert b"Traceback" not in serve.buf
