"""serve --workers: tickets resume across workers, a dead worker is restarted, SIGTERM drains all.

Which worker serves a connection is the kernel's choice; to make it ours, the
tests SIGSTOP the other worker (a stopped process accepts nothing, so the one
left takes the connection from the shared accept queue), then SIGCONT it.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trioecho import SessionCache, open_echo_connection
from trioecho.testing import TestPKI
from trioecho.workers import bind_sockets, serve_workers

from .conftest import CLI, cli_env


class Supervised:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0
        self.workers: dict[int, int] = {}  # index -> pid
        self._changed = trio.Event()

    async def pump(self, stream: trio.abc.ReceiveStream) -> None:
        buf = b""
        async for chunk in stream:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.lines.append(text)
                if m := re.search(r"listening on 127\.0\.0\.1:(\d+)", text):
                    self.port = int(m.group(1))
                if m := re.search(r"worker (\d+) started \(pid (\d+)\)", text):
                    self.workers[int(m.group(1))] = int(m.group(2))
                self._changed.set()
                self._changed = trio.Event()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        with trio.fail_after(20):
            while True:
                for line in self.lines:
                    if m := re.search(pattern, line):
                        return m
                await self._changed.wait()


@asynccontextmanager
async def supervised(pki: TestPKI, *extra: str) -> AsyncIterator[Supervised]:
    argv = [*CLI, "--log-level", "info", "serve", "--workers", "2", "--host", "127.0.0.1", "--port", "0",
            "--cert", str(pki.server_pem), *extra]
    async with trio.open_nursery() as nursery:
        proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
        sup = Supervised(proc)
        assert proc.stdout is not None and proc.stderr is not None
        nursery.start_soon(sup.pump, proc.stdout)
        nursery.start_soon(sup.pump, proc.stderr)
        try:
            await sup.wait_for(r"listening on")
            await sup.wait_for(r"worker 1 started")
            yield sup
        finally:
            for pid in sup.workers.values():
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                await proc.wait()
            nursery.cancel_scope.cancel()


_client_contexts: dict[str, ssl.SSLContext] = {}


async def _echo(port: int, pki: TestPKI, sessions: SessionCache | None = None) -> bool | None:
    # One client context for all: a TLS session only resumes on the context that made it.
    ctx = _client_contexts.setdefault(str(pki.dir), pki.client_policy().client_context())
    conn = await open_echo_connection("127.0.0.1", port, policy=pki.client_policy(), servername="localhost",
                                      sessions=sessions, timeout=10, ssl_context=ctx)
    try:
        await conn.echo(b"ping")
    finally:
        await conn.aclose()
    return conn.tls.resumed if conn.tls else None


async def test_ticket_from_one_worker_resumes_on_the_other(pki: TestPKI) -> None:
    async with supervised(pki) as sup:
        w0, w1 = sup.workers[0], sup.workers[1]
        sessions = SessionCache()
        os.kill(w1, signal.SIGSTOP)
        assert await _echo(sup.port, pki, sessions) is False  # full handshake on worker 0
        assert sessions.session is not None
        os.kill(w1, signal.SIGCONT)
        os.kill(w0, signal.SIGSTOP)
        assert await _echo(sup.port, pki, sessions) is True  # worker 1 accepted worker 0's ticket
        os.kill(w0, signal.SIGCONT)


async def test_dead_worker_is_restarted_with_the_same_ticket_keys(pki: TestPKI) -> None:
    async with supervised(pki) as sup:
        w0, w1 = sup.workers[0], sup.workers[1]
        sessions = SessionCache()
        assert await _echo(sup.port, pki, sessions) is False
        os.kill(w0, signal.SIGKILL)
        await sup.wait_for(rf"worker 0 \(pid {w0}\) was killed by SIGKILL; restarting it")
        m = await sup.wait_for(r"worker 0 started \(pid (?!%d\))(\d+)\)" % w0)
        new_w0 = int(m.group(1))
        assert new_w0 != w0
        os.kill(w1, signal.SIGSTOP)
        assert await _echo(sup.port, pki, sessions) is True  # served by the new worker 0
        os.kill(w1, signal.SIGCONT)


async def test_sigterm_drains_every_worker_and_exits_0(pki: TestPKI) -> None:
    async with supervised(pki) as sup:
        conns = []
        for pid in (sup.workers[1], sup.workers[0]):
            os.kill(pid, signal.SIGSTOP)  # one idle connection on each worker
            conn = await open_echo_connection("127.0.0.1", sup.port, policy=pki.client_policy(),
                                              servername="localhost", timeout=10)
            await conn.echo(b"x")
            conns.append(conn)
            os.kill(pid, signal.SIGCONT)
        sup.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):
            for conn in conns:
                # Drained: each idle connection gets close_notify (a clean EOF), not a reset.
                assert await conn.stream.receive_some() == b""
                await conn.aclose()
            assert await sup.proc.wait() == 0
        for pid in sup.workers.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        await sup.wait_for(r"all workers stopped")


def test_workers_out_of_range_is_a_config_error() -> None:
    from trioecho import EchoServer
    from trioecho.errors import ConfigError

    with pytest.raises(ConfigError, match="--workers must be between 1 and 256"):
        serve_workers(EchoServer(plaintext=True), workers=0, host="127.0.0.1", port=0)


def test_bind_sockets_port_in_use_raises_oserror() -> None:
    socks = bind_sockets("127.0.0.1", 0)
    try:
        port = socks[0].getsockname()[1]
        with pytest.raises(OSError):
            bind_sockets("127.0.0.1", port)
    finally:
        for s in socks:
            s.close()


async def test_cli_port_in_use_exits_2_without_traceback(pki: TestPKI) -> None:
    socks = bind_sockets("127.0.0.1", 0)
    try:
        port = socks[0].getsockname()[1]
        with trio.fail_after(30):
            proc = await trio.run_process(
                [*CLI, "serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
                 "--cert", str(pki.server_pem)], capture_stdout=True, capture_stderr=True, env=cli_env(), check=False)
    finally:
        for s in socks:
            s.close()
    assert proc.returncode == 2
    assert b"cannot listen on 127.0.0.1" in proc.stderr and b"Traceback" not in proc.stderr
