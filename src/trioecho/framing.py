"""Sans-IO framing for the echo protocol: a 4-byte big-endian length, then the body.

Theory of operation
-------------------
Nothing here does I/O or imports trio or ssl: the server and client move bytes
between a stream and these objects, so the same code runs over TCP, TLS or an
in-memory stream (the chapter's point: TLS is a layer *under* unchanged framing).

Two consumers, two shapes:

* :class:`FrameDecoder` (client side) assembles whole frames.  It buffers at most
  one frame (``max_frame + 4`` bytes) and hands frames out one at a time, or
  ``None`` for "need more data".
* :class:`FrameScanner` (server side) validates a stream of frames *without*
  buffering bodies.  An echo of a length-prefixed stream is the identity on
  the bytes, so the server can send back each chunk as soon as the scanner has
  checked it: no 1 MiB buffer per connection, one send per receive.  The
  scanner holds back only an incomplete header (at most 3 bytes), so a header
  that declares more than the limit is refused before any of it is echoed.

Both raise :class:`~trioecho.errors.FrameTooLargeError` as soon as a header
declares more than ``max_frame`` bytes, before any body byte is buffered.
"""

from __future__ import annotations

import struct

from .errors import FrameTooLargeError, LocalProtocolError

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME",
    "FrameDecoder",
    "FrameScanner",
    "encode_frame",
]

#: The chapter's limit: a frame body of at most 1 MiB keeps one frame's memory bounded.
MAX_FRAME = 1 << 20
#: The length prefix: unsigned 32-bit big-endian.
HEADER_SIZE = 4
#: The largest value the header can carry; a limit above it would be meaningless.
_MAX_REPRESENTABLE = (1 << 32) - 1

_HEADER = struct.Struct(">I")


def _check_limit(max_frame: int) -> int:
    if not 0 <= max_frame <= _MAX_REPRESENTABLE:
        raise ValueError(f"max_frame must be between 0 and {_MAX_REPRESENTABLE}, not {max_frame}")
    return max_frame


def encode_frame(body: bytes | bytearray | memoryview, *, max_frame: int = MAX_FRAME) -> bytes:
    """Return header and body as one buffer (so they go out in one TLS record).

    Args:
        body: the frame body; may be empty.
        max_frame: refuse bodies longer than this.

    Raises:
        LocalProtocolError: the body is longer than ``max_frame``.
    """
    n = len(body)
    if n > max_frame:
        raise LocalProtocolError(
            f"cannot send a {n}-byte frame: the limit is {max_frame} bytes"
        )
    return _HEADER.pack(n) + bytes(body)


class FrameDecoder:
    """Assemble whole frames from arbitrary chunks.

    Example::

        dec = FrameDecoder()
        dec.feed(chunk)
        while (frame := dec.next_frame()) is not None:
            handle(frame)

    Args:
        max_frame: the largest body accepted; a header declaring more raises
            :class:`FrameTooLargeError` from :meth:`next_frame`.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = _check_limit(max_frame)
        self._buf = bytearray()
        self._need: int | None = None  # body length of the frame in progress

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes.  Call :meth:`next_frame` until it returns ``None``."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as a frame."""
        return len(self._buf)

    @property
    def mid_frame(self) -> bool:
        """True when part of a frame (header or body) has arrived but not all of it."""
        return bool(self._buf)

    def next_frame(self) -> bytes | None:
        """Return the next whole frame body, or ``None`` if more data is needed.

        Raises:
            FrameTooLargeError: the next header declares more than ``max_frame``.
        """
        buf = self._buf
        if self._need is None:
            if len(buf) < HEADER_SIZE:
                return None
            (n,) = _HEADER.unpack_from(buf)
            if n > self.max_frame:
                raise FrameTooLargeError(n, self.max_frame)
            self._need = n
        end = HEADER_SIZE + self._need
        if len(buf) < end:
            return None
        body = bytes(buf[HEADER_SIZE:end])
        del buf[:end]
        self._need = None
        return body


class FrameScanner:
    """Validate a stream of frames and return the bytes that may be echoed.

    ``feed(chunk)`` returns the part of the stream that is safe to send back:
    everything except a trailing incomplete header, which is held back (at most
    3 bytes) until the rest of it arrives and it has been checked.

    Attributes:
        frames: whole frames seen so far.
        bytes_in: bytes fed so far.
    """

    def __init__(self, *, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = _check_limit(max_frame)
        self.frames = 0
        self.bytes_in = 0
        self._remaining = 0  # body bytes still due for the frame in progress
        self._head = b""  # an incomplete header, held back

    @property
    def mid_frame(self) -> bool:
        """True when a frame has started (any header byte) but not finished."""
        return bool(self._remaining or self._head)

    def feed(self, data: bytes | bytearray) -> bytes | bytearray:
        """Check ``data`` and return the bytes that may be echoed now.

        Raises:
            FrameTooLargeError: a header declares more than ``max_frame``.  Its
                ``echo_ok`` attribute holds the bytes before that header, which
                are whole frames (or the end of one) and may still be echoed.
        """
        self.bytes_in += len(data)
        if self._head:
            data = self._head + bytes(data)
            self._head = b""
        n = len(data)
        pos = 0
        remaining = self._remaining
        max_frame = self.max_frame
        unpack_from = _HEADER.unpack_from
        while True:
            if remaining:
                take = n - pos
                if take < remaining:
                    remaining -= take
                    pos = n
                    break
                pos += remaining
                remaining = 0
                self.frames += 1
            if pos == n:
                break
            if n - pos < HEADER_SIZE:
                self._head = bytes(data[pos:])
                self._remaining = 0
                return data[:pos]
            (length,) = unpack_from(data, pos)
            if length > max_frame:
                self._remaining = 0
                exc = FrameTooLargeError(length, max_frame)
                exc.echo_ok = data[:pos]
                raise exc
            pos += HEADER_SIZE
            if length == 0:
                self.frames += 1
            remaining = length
        self._remaining = remaining
        return data
