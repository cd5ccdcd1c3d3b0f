"""Read a PROXY protocol header off an accepted socket without taking a byte of what follows.

The I/O shell around the sans-IO :mod:`trioecho.proxyproto`: reads exactly the
sizes :func:`~trioecho.proxyproto.scan` allows (a v1 line is found by peeking
for its CRLF, so it costs two reads, not one per byte), under one deadline.
"""

from __future__ import annotations

import logging
import socket

import trio

from .proxyproto import V1_MAX, ProxyProtocolError, parse, scan

__all__ = ["proxy_peer"]

log = logging.getLogger("trioecho.proxy")


async def proxy_peer(stream: trio.SocketStream, peer: str, accept: str, timeout: float) -> str:
    """Read the header; return the client's address to log instead of ``peer`` (the balancer's).

    A LOCAL (v2 health check) or UNKNOWN header keeps ``peer``.

    Raises:
        ProxyProtocolError: no valid header within ``timeout``, or the connection failed first.
    """
    sock = stream.socket
    buf = bytearray()
    with trio.move_on_after(timeout):
        try:
            while need := scan(buf, accept):
                if need == 1 and buf.startswith(b"PROXY "):
                    peek = await sock.recv(V1_MAX - len(buf), socket.MSG_PEEK)
                    end = peek.find(b"\r\n")
                    if end >= 0:
                        need = end + 2
                data = await sock.recv(need)
                if not data:
                    raise ProxyProtocolError(
                        f"connection closed after {len(buf)} bytes, before the PROXY header ended")
                buf += data
        except OSError as exc:
            raise ProxyProtocolError(f"connection failed before the PROXY header ended: {exc}") from exc
        header = parse(buf, accept)
        client = header.client
        log.debug("PROXY v%d %s %s from %s: client %s", header.version, header.command, header.family,
                  peer, client or "(not given)")
        return client or peer
    raise ProxyProtocolError(f"no complete PROXY header within {timeout:g}s ({len(buf)} bytes came): "
                             "is the load balancer configured to send it (send-proxy / send-proxy-v2)?")
