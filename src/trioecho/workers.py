"""``trioecho serve --workers N``: N processes sharing one listening socket, supervised.

Theory of operation
-------------------
Python runs one thread of Python code per process, so one trioecho process
uses one core.  :func:`serve_workers` runs in the parent ("supervisor"):

1. The :class:`~trioecho.server.EchoServer` (and so its ``SSLContext``) is built
   *before* anything forks.  OpenSSL generates the session-ticket keys when the
   context is created, so every worker inherits the same keys and a ticket
   issued by one worker resumes on any other (Python has no API to set ticket
   keys; a context built in each worker would not resume across them).
2. The supervisor binds the listening sockets once; workers inherit them and
   all accept from the same kernel queue (no SO_REUSEPORT needed, and port 0
   works: every worker serves the one port that was picked).
3. A worker that exits while the supervisor is not shutting down is restarted
   (forked again from the supervisor, so it gets the same context and ticket
   keys).  More than :data:`MAX_RESTARTS` restarts within
   :data:`RESTART_WINDOW` seconds means something is systematically wrong:
   the supervisor stops everything and reports it instead of looping.
4. SIGTERM or SIGINT to the supervisor is passed to every worker, which
   drains as a single server does (stop accepting, finish frames in flight
   within ``grace``, close_notify); the supervisor exits when all have exited.
   A second signal is passed on too, and makes the workers exit at once.

The supervisor itself never imports trio's run loop; each worker calls
``trio.run`` after the fork (a trio run cannot survive a fork).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import trio

from .errors import ConfigError
from .server import EchoServer

__all__ = ["MAX_RESTARTS", "RESTART_WINDOW", "bind_sockets", "serve_workers"]

log = logging.getLogger("trioecho.workers")

#: More restarts than this within RESTART_WINDOW seconds: give up (a crash loop, not bad luck).
MAX_RESTARTS = 10
RESTART_WINDOW = 30.0
#: The accept backlog of the shared listening sockets (trio's default is the system maximum too).
BACKLOG = 4096
#: The largest --workers accepted: more processes than this on one machine is a typo.
MAX_WORKERS = 256


def bind_sockets(host: str | None, port: int, *, backlog: int = BACKLOG) -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to, like ``trio.open_tcp_listeners``.

    Raises:
        OSError: an address cannot be bound (in use, not local...).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[Any] = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            s = socket.socket(family, type_, proto)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(backlog)
            if port == 0:
                port = s.getsockname()[1]  # the other families must use the port the first one got
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def serve_workers(
    server: EchoServer,
    *,
    workers: int,
    host: str | None,
    port: int,
    on_listening: Callable[[list[tuple[str, int]]], None] | None = None,
    stats_interval: float | None = None,
) -> int:
    """Serve with ``workers`` processes until SIGTERM/SIGINT; return the exit code.

    Args:
        server: built before the fork (its SSLContext, and so its ticket keys, are shared).
        workers: number of worker processes (at least 1).
        host, port: where to listen (port 0 picks one free port for all workers).
        on_listening: called once in the supervisor with the bound addresses.
        stats_interval: each worker logs its counters this often.

    Returns:
        0 after a clean shutdown; 1 if workers kept dying (crash loop).

    Raises:
        ConfigError: ``workers`` out of range.
        OSError: the address cannot be bound.
    """
    if not 1 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS}, not {workers}")
    socks = bind_sockets(host, port)
    addrs = [tuple(s.getsockname()[:2]) for s in socks]
    if on_listening is not None:
        on_listening(addrs)
    sup = _Supervisor(server, socks, workers, stats_interval)
    try:
        return sup.run()
    finally:
        for s in socks:
            s.close()


class _Supervisor:
    def __init__(self, server: EchoServer, socks: list[socket.socket], n: int, stats_interval: float | None) -> None:
        self.server = server
        self.socks = socks
        self.n = n
        self.stats_interval = stats_interval
        self.children: dict[int, int] = {}  # pid -> worker index
        self.signals = 0
        self.restarts: list[float] = []

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("got %s: draining %d workers (a second signal stops them at once)",
                     signal.Signals(signum).name, len(self.children))
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass  # already gone; waitpid will report it

    def run(self) -> int:
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.n):
                self._spawn(i)
            code = 0
            while self.children:
                try:
                    pid, status = os.waitpid(-1, 0)
                except ChildProcessError:
                    break
                index = self.children.pop(pid, None)
                if index is None:
                    continue
                if self.signals:
                    continue  # shutting down: let them go
                log.error("worker %d (pid %d) %s; restarting it", index, pid, _describe(status))
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    log.error("workers died %d times within %gs: stopping (look at the errors above)",
                              len(self.restarts), RESTART_WINDOW)
                    code = 1
                    self._on_signal(signal.SIGTERM, None)
                    continue
                self._spawn(index)
            log.info("all workers stopped")
            return code
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                code = _worker_main(self.server, self.socks, index, self.stats_interval)
            except BaseException:
                log.exception("worker %d crashed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = index
        log.info("worker %d started (pid %d)", index, pid)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _worker_main(server: EchoServer, socks: list[socket.socket], index: int, stats_interval: float | None) -> int:
    # Ctrl-C reaches every process of the terminal's group: only the supervisor
    # acts on SIGINT (it passes SIGTERM on), so one Ctrl-C is one drain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def main() -> None:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in socks]
        async with trio.open_nursery() as nursery:

            async def serve(task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED) -> None:
                await server.serve(listeners=listeners, task_status=task_status)
                nursery.cancel_scope.cancel()  # serve() returned: the drain is over

            await nursery.start(serve)
            nursery.start_soon(_signals, server, nursery.cancel_scope)
            if stats_interval:
                nursery.start_soon(_stats, server, stats_interval, index)

    trio.run(main)
    log.info("worker %d stopped: %s", index, server.stats.summary())
    return 0


async def _signals(server: EchoServer, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        first = True
        async for _ in signals:
            if first:
                first = False
                server.shutdown()
            else:
                scope.cancel()
                return


async def _stats(server: EchoServer, interval: float, index: int) -> None:
    while True:
        await trio.sleep(interval)
        log.info("worker %d stats %s", index, server.stats.summary())
