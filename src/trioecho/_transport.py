"""The TCP stream under the server's ``trio.SSLStream``: the same socket, fewer scheduler trips.

Theory of operation
-------------------
``trio.SSLStream`` stays the TLS engine; only what it reads from and writes to
changes.  Every byte it moves to or from the network goes through
``transport_stream.send_all`` / ``receive_some`` while it holds one of its
internal ``trio.Lock`` objects, and acquiring that lock is already a full
checkpoint (``checkpoint_if_cancelled`` + ``cancel_shielded_checkpoint``).
``trio.SocketStream`` then adds another schedule point per call
(``trio.socket``'s ``_nonblocking_helper`` yields after every successful
syscall), so a 64-byte echo went through the run loop five times.  Measured
with py-spy on ``benchmarks/run.py --scenarios tput_64``: the scheduler and
the socket wrapper were about half of the server's CPU per echo.

:class:`TransportStream` does the syscall first and waits only when the kernel
says ``EAGAIN``; it reads with ``recv_into`` into one buffer shared by the
whole process (trio is single-threaded, and SSLStream copies what we return
into its MemoryBIO before it awaits anything), so a receive allocates nothing
and one wake-up drains everything the kernel holds (up to
:data:`RECEIVE_BUFFER`), i.e. several TLS records at once.

It is *only* correct under SSLStream (which checkpoints for us): it is private,
and :func:`for_tls` returns the stream unchanged if it is not a plain
``trio.SocketStream``.

Ownership: the socket object here is a non-owning view of the SocketStream's
file descriptor (``socket.socket(fileno=...)``), detached before the
SocketStream closes the descriptor, so the descriptor is closed exactly once,
by trio.
"""

from __future__ import annotations

import errno
import math
import socket
from typing import Any

import trio

__all__ = ["RECEIVE_BUFFER", "SendTimedOut", "TransportStream", "for_tls"]

#: One receive takes up to this much from the kernel: four full TLS records plus
#: headers, so a 64 KiB frame arriving at once is drained in one wake-up.
RECEIVE_BUFFER = 1 << 18

_buffer = bytearray(RECEIVE_BUFFER)
_view = memoryview(_buffer)


def _broken(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    # The same translation as trio's SocketStream, so error classification does not change.
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("this socket was already closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


class SendTimedOut(trio.BrokenResourceError):
    """The peer read nothing for ``send_timeout`` seconds while we had bytes to send."""


class TransportStream(trio.abc.HalfCloseableStream):
    """A ``trio.SocketStream`` stand-in for use under ``trio.SSLStream`` only.

    Args:
        stream: the accepted socket stream; it keeps owning the socket.
        send_timeout: give up (:class:`SendTimedOut`) when the kernel's send buffer
            stays full this long.  The deadline exists only on that slow path, so the
            caller needs no cancel scope around every send (one scope per echo was
            about a tenth of the server's CPU; docs/performance.md).
    """

    def __init__(self, stream: trio.SocketStream, *, send_timeout: float = math.inf) -> None:
        self.stream = stream
        self.send_timeout = send_timeout
        self.socket = stream.socket
        self._raw: socket.socket | None = socket.socket(fileno=stream.socket.fileno())
        self._raw.setblocking(False)

    def _sock(self) -> socket.socket:
        if self._raw is None:
            raise trio.ClosedResourceError("the stream was closed")
        return self._raw

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray | memoryview:  # type: ignore[override]
        """Receive what the kernel holds, waiting only if it holds nothing.

        Returns a view of a shared buffer, valid until the next await: SSLStream
        copies it into its MemoryBIO at once.  ``b""`` at EOF.
        """
        raw = self._sock()
        size = RECEIVE_BUFFER if max_bytes is None else min(max_bytes, RECEIVE_BUFFER)
        while True:
            try:
                n = raw.recv_into(_view[:size])
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _broken(exc) from exc
            else:
                return _view[:n]
            await trio.lowlevel.wait_readable(raw)
            raw = self._sock()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send everything, waiting only while the kernel's send buffer is full."""
        raw = self._sock()
        total = len(data)
        try:
            sent = raw.send(data)  # the usual case: all of it, at once, no copy
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _broken(exc) from exc
        if sent == total:
            return
        with memoryview(data) as view:
            while True:
                if sent == total:
                    return
                await self._wait_writable(raw)
                raw = self._sock()
                try:
                    sent += raw.send(view[sent:])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise _broken(exc) from exc

    async def _wait_writable(self, raw: socket.socket) -> None:
        if self.send_timeout == math.inf:
            await trio.lowlevel.wait_writable(raw)
            return
        with trio.move_on_after(self.send_timeout) as cs:
            await trio.lowlevel.wait_writable(raw)
        if cs.cancelled_caught:
            raise SendTimedOut(f"client read nothing for {self.send_timeout:g}s")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock())

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    def _detach(self) -> None:
        if self._raw is not None:
            self._raw.detach()  # the descriptor belongs to the SocketStream
            self._raw = None

    async def aclose(self) -> None:
        self._detach()
        await self.stream.aclose()

    def __del__(self) -> None:
        # Never let the non-owning socket object close a descriptor trio owns.
        self._detach()

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        self.stream.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int, buffersize: int = 0) -> Any:
        return self.stream.getsockopt(level, option, buffersize)


def for_tls(stream: trio.abc.Stream, *, send_timeout: float = math.inf) -> trio.abc.Stream:
    """The transport to put under ``trio.SSLStream``: a fast one for TCP sockets, else ``stream``."""
    if type(stream) is trio.SocketStream and stream.socket.family in (socket.AF_INET, socket.AF_INET6):
        return TransportStream(stream, send_timeout=send_timeout)
    return stream
