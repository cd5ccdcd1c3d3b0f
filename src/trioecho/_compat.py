"""Workarounds for upstream behaviour, each linked to its issue."""

from __future__ import annotations

import ssl
from typing import Any

import trio

__all__ = ["flush_alert", "send_tickets_now"]

#: How long to try delivering an alert to a peer we are about to drop.
ALERT_FLUSH_TIMEOUT = 0.5


async def flush_alert(s: trio.SSLStream[Any]) -> None:
    """Send the TLS alert OpenSSL queued when our side of the handshake failed.

    trio marks the stream broken without sending it, so the peer sees a bare
    EOF instead of e.g. "unknown CA" or "bad certificate"
    (https://github.com/python-trio/trio/pull/3413).  Best effort: the bytes
    are read from the SSLStream's outgoing BIO, which trio has kept under that
    name since 0.2; if it ever changes, this does nothing.
    """
    outgoing = getattr(s, "_outgoing", None)
    if not isinstance(outgoing, ssl.MemoryBIO):
        return
    pending = outgoing.read()
    if not pending:
        return
    with trio.move_on_after(ALERT_FLUSH_TIMEOUT):
        try:
            await s.transport_stream.send_all(pending)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
            pass


async def send_tickets_now(s: trio.SSLStream[Any]) -> None:
    """Send the TLS 1.3 session tickets trio held back at the end of the server handshake.

    trio delays them until the server's first write
    (https://github.com/python-trio/trio/issues/819, guarding against
    https://github.com/openssl/openssl/issues/7948), so a client that closes
    right after the handshake (``gnutls-cli --resume``, ``openssl s_client
    -reconnect``, ``ping --handshake-only``) never gets one and can never
    resume.  Over TCP the kernel buffers the ~250 bytes, so sending them at once
    cannot deadlock; only call this on socket transports (an unbuffered
    in-memory transport would block until the client reads).  Best effort: if
    the client already left, the next receive reports it.
    """
    delayed = getattr(s, "_delayed_outgoing", None)
    if not isinstance(delayed, (bytes, bytearray)) or not delayed:
        return
    s._delayed_outgoing = None
    try:
        await s.transport_stream.send_all(delayed)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        return
