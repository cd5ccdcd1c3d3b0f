"""Helpers for the server-hardening tests (hostile clients, limits, shutdown, reload, metrics)."""

from __future__ import annotations

import logging
import os
import socket
import struct
from typing import Any

import trio

from trioecho import open_echo_connection
from trioecho.testing import TestPKI


async def ping_ok(pki: TestPKI, port: int, payload: bytes = b"still alive") -> None:
    """A well-behaved client gets its echo: the server survived whatever came before."""
    conn = await open_echo_connection("localhost", port, policy=pki.client_policy(), timeout=10)
    async with conn:
        await conn.echo(payload)


async def raw_tls(pki: TestPKI, port: int, **policy: Any) -> tuple[trio.SocketStream, trio.SSLStream[Any]]:
    """A handshaken TLS connection that keeps its TCP socket reachable (for resets and ragged EOFs)."""
    sock = await trio.open_tcp_stream("127.0.0.1", port)
    ctx = pki.client_policy(**policy).client_context()
    tls = trio.SSLStream(sock, ctx, server_hostname="localhost")
    with trio.fail_after(10):
        await tls.do_handshake()
    return sock, tls


def reset(sock: trio.SocketStream) -> None:
    """Close with SO_LINGER 0: the kernel sends a TCP RST instead of a FIN."""
    sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.socket.close()


async def read_until_closed(stream: trio.abc.ReceiveStream, timeout: float = 10) -> bytes:
    """Read until the server closes (EOF or reset); return what came."""
    got = bytearray()
    with trio.fail_after(timeout):
        while True:
            try:
                chunk = await stream.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not chunk:
                break
            got += chunk
    return bytes(got)


def open_fds() -> int:
    """File descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> int:
    """Trio tasks alive now (walks the task tree from the root)."""
    n = 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        t = todo.pop()
        if t is None:
            continue
        n += 1
        for nursery in t.child_nurseries:
            todo.extend(nursery.child_tasks)
    return n


class LogWatch(logging.Handler):
    """Collects trioecho.server records: the one-line-per-connection log and any traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def __enter__(self) -> LogWatch:
        lg = logging.getLogger("trioecho")
        self._old_level = lg.level
        lg.setLevel(logging.DEBUG)
        lg.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        lg = logging.getLogger("trioecho")
        lg.removeHandler(self)
        lg.setLevel(self._old_level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def connection_ends(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "trioecho.server" and r.getMessage().startswith("connection end")]

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]
