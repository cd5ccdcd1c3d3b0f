"""Workarounds for upstream behaviour, each linked to its issue."""

from __future__ import annotations

import ssl
from typing import Any

import trio

__all__ = ["flush_alert"]

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
