"""The server's TLS transport (trioecho._transport): same bytes, same errors, fd closed once."""

from __future__ import annotations

import gc
import os
import socket
import struct
from typing import Any

import pytest
import trio
import trio.testing

from trioecho._transport import TransportStream, for_tls
from trioecho.testing import TestPKI


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        client_box: list[trio.SocketStream] = []

        async def dial() -> None:
            client_box.append(await trio.open_tcp_stream("127.0.0.1", port))

        nursery.start_soon(dial)
        server = await listener.accept()
    await listener.aclose()
    return client_box[0], server


async def test_for_tls_wraps_tcp_only() -> None:
    client, server = await _tcp_pair()
    t = for_tls(server)
    assert isinstance(t, TransportStream)
    a, _ = trio.testing.memory_stream_pair()
    assert for_tls(a) is a
    await t.aclose()
    await client.aclose()


async def test_bulk_both_ways_under_tls_with_a_slow_reader(pki: TestPKI) -> None:
    """4 MiB each way through SSLStream over TransportStream; the client reads late (EAGAIN paths)."""
    client_tcp, server_tcp = await _tcp_pair()
    sctx = pki.server_policy().server_context()
    cctx = pki.client_policy().client_context()
    server = trio.SSLStream(for_tls(server_tcp), sctx, server_side=True)
    client = trio.SSLStream(client_tcp, cctx, server_hostname="localhost")
    payload = os.urandom(4 << 20)
    got_server = bytearray()
    got_client = bytearray()

    async def server_side() -> None:
        # Echo everything back; the client does not read until it has sent it all.
        while len(got_server) < len(payload):
            data = await server.receive_some(16384)
            assert data
            got_server.extend(data)
            await server.send_all(data)

    half_sent = trio.Event()

    async def client_sender() -> None:
        for i in range(0, len(payload), 65536):
            await client.send_all(payload[i:i + 65536])
            if i >= 256 * 1024:
                half_sent.set()

    async def client_reader() -> None:
        await half_sent.wait()  # start late, so the server meets a full buffer (EAGAIN) on some sends
        while len(got_client) < len(payload):
            got_client.extend(await client.receive_some())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            nursery.start_soon(client_sender)
            nursery.start_soon(client_reader)
    assert bytes(got_server) == payload
    assert bytes(got_client) == payload
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()
    assert server_tcp.socket.fileno() == -1


async def test_descriptor_closed_once_even_if_never_closed_explicitly() -> None:
    client, server = await _tcp_pair()
    fd = server.socket.fileno()
    t = TransportStream(server)
    del t
    gc.collect()
    # The SocketStream still owns a working descriptor.
    assert server.socket.fileno() == fd
    await client.send_all(b"x")
    assert await server.receive_some(1) == b"x"
    await server.aclose()
    await client.aclose()


async def test_reset_is_broken_resource_with_the_os_error_as_cause() -> None:
    client, server = await _tcp_pair()
    t = TransportStream(server)
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await client.aclose()  # RST
    with trio.fail_after(5):
        with pytest.raises(trio.BrokenResourceError) as info:
            while True:
                await t.send_all(b"y" * 65536)
    assert isinstance(info.value.__cause__, OSError)
    await t.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await t.receive_some()


async def test_receive_returns_eof_and_waits_without_data() -> None:
    client, server = await _tcp_pair()
    t = TransportStream(server)
    got: list[Any] = []

    async def reader() -> None:
        got.append(bytes(await t.receive_some()))
        got.append(bytes(await t.receive_some()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await client.send_all(b"hello")
        await client.aclose()
    assert got == [b"hello", b""]
    await t.aclose()


async def test_client_that_never_reads_gets_send_timeout_and_the_server_keeps_serving(
        start_server: Any, pki: TestPKI) -> None:
    """The send timeout now lives in the transport's slow path: same outcome as before."""
    from trioecho import ServerLimits, open_echo_connection

    srv = await start_server(limits=ServerLimits(send_timeout=0.5))
    ctx = pki.client_policy().client_context()
    tcp = await trio.open_tcp_stream("127.0.0.1", srv.port)
    client = trio.SSLStream(tcp, ctx, server_hostname="localhost")
    frame = struct.pack(">I", 1 << 20) + os.urandom(1 << 20)

    async def flood() -> None:
        try:
            while True:
                await client.send_all(frame)  # never reads the echoes
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            (info,) = await srv.wait_ended(1)
            nursery.cancel_scope.cancel()
        assert info.outcome == "send_timeout"
        assert info.detail == "client read nothing for 0.5s"
        await trio.aclose_forcefully(client)
        conn = await open_echo_connection("127.0.0.1", srv.port, policy=pki.client_policy(),
                                          servername="localhost")
        await conn.echo(b"next")
        await conn.aclose()
