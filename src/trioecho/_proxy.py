"""A latency-injecting TCP proxy: makes loopback look like a long-distance link.

Theory of operation
-------------------
:class:`LatencyProxy` accepts TCP connections, dials the upstream server, and
pipes bytes both ways.  Each chunk read in one direction is stamped with its
arrival time and written out ``delay`` seconds later by a second task, so the
one-way delay is ``delay`` while bytes keep streaming (a pipe, not a
stop-and-wait relay: bandwidth is not cut by the delay).  An EOF is delayed
like data and forwarded as a half-close; an error on either side closes both.
Every buffer is bounded (``MAX_IN_FLIGHT`` chunks of at most ``CHUNK`` bytes
per direction).

A userspace proxy cannot delay the TCP handshake: the kernel completes it
before ``accept()`` returns.  So a client that wants its *connect* to cost the
round trip too dials through :meth:`LatencyProxy.open_stream`, which waits
one round trip (``2 * delay``) before connecting, as SYN and SYN-ACK would
over the delayed path.  ``trioecho ping`` takes it as ``open_stream=``, and
then reports the handshake in round trips exactly as over a real link.

Timing uses trio's clock, so under ``trio.testing.MockClock(autojump_threshold=...)``
a 50 ms link costs no real time.
"""

from __future__ import annotations

import logging
import math

import trio

__all__ = ["LatencyProxy"]

log = logging.getLogger("trioecho.proxy")

#: Bytes read per chunk (one TLS record and a bit).
CHUNK = 65536
#: Chunks in flight per direction before reading stops (bounds memory: 256 x 64 KiB = 16 MiB worst case).
MAX_IN_FLIGHT = 256


class LatencyProxy:
    """Forward TCP to ``upstream`` with ``delay`` seconds added in each direction.

    Args:
        upstream_host, upstream_port: where to forward.
        delay: one-way delay in seconds (the round trip grows by twice this).

    Attributes:
        port: the port it listens on, once :meth:`serve` has started.
        connections: connections accepted so far.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, delay: float) -> None:
        if not 0 <= delay < math.inf:
            raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay}")
        self.upstream = (upstream_host, upstream_port)
        self.delay = delay
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0

    async def serve(self, *, host: str = "127.0.0.1", port: int = 0,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and proxy until cancelled; ``nursery.start`` returns ``(host, port)``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.host, self.port = listeners[0].socket.getsockname()[:2]
        task_status.started((self.host, self.port))
        await trio.serve_listeners(self._handle, listeners)

    async def open_stream(self, host: str, port: int) -> trio.SocketStream:
        """Connect to ``host:port`` (normally this proxy) after one emulated round trip (SYN, SYN-ACK)."""
        await trio.sleep(2 * self.delay)
        return await trio.open_tcp_stream(host, port)

    async def _handle(self, client: trio.SocketStream) -> None:
        self.connections += 1
        try:
            upstream = await trio.open_tcp_stream(*self.upstream)
        except OSError as exc:
            log.info("proxy: cannot reach upstream %s:%d: %s", *self.upstream, exc)
            await trio.aclose_forcefully(client)
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pipe, client, upstream, nursery.cancel_scope)
                nursery.start_soon(self._pipe, upstream, client, nursery.cancel_scope)
        finally:
            await trio.aclose_forcefully(client)
            await trio.aclose_forcefully(upstream)

    async def _pipe(self, src: trio.SocketStream, dst: trio.SocketStream, scope: trio.CancelScope) -> None:
        """One direction: read, hold each chunk ``delay`` seconds, write; EOF becomes a half-close."""
        send, recv = trio.open_memory_channel[tuple[float, bytes]](MAX_IN_FLIGHT)

        async def writer() -> None:
            async for due, data in recv:
                await trio.sleep_until(due)
                if not data:
                    await dst.send_eof()
                    return
                await dst.send_all(data)

        try:
            async with trio.open_nursery() as inner:
                inner.start_soon(writer)
                async with send:
                    while True:
                        data = await src.receive_some(CHUNK)
                        await send.send((trio.current_time() + self.delay, data))
                        if not data:
                            break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("proxy: connection broken: %r", exc)
            scope.cancel()  # one side broke: tear the whole connection down
        except BaseExceptionGroup as group:
            rest = group.split((trio.BrokenResourceError, trio.ClosedResourceError, OSError))[1]
            if rest is not None:
                raise rest from None
            scope.cancel()

    def __repr__(self) -> str:
        return f"LatencyProxy({self.host}:{self.port} -> {self.upstream[0]}:{self.upstream[1]}, delay={self.delay})"

