"""What the server's handshake messages say that Python's ssl API does not: group, CertificateRequest.

Theory of operation
-------------------
Python's ssl reports the key-exchange group only from 3.15 on (``SSLObject.group()``,
https://github.com/python/cpython/issues/136306), and never says whether the server asked for a
client certificate.  Both are in the handshake messages the server sends us: the key_share
extension of the ServerHello (TLS 1.3), the named curve of the ServerKeyExchange (TLS 1.2), the
CertificateRequest message.  CPython has a debugging hook that hands every handshake message to a
Python callable: ``SSLContext._msg_callback`` (private but present since Python 3.8; it is what
``test_ssl`` uses).  :func:`install` sets it on a context ping owns (never one a caller passed),
and :func:`trace_of` returns what the callback saw for one connection.

If the hook is missing (another Python), nothing is installed and callers fall back to saying
they cannot tell.  The callback must never raise: an exception in it is re-raised by CPython
from the handshake itself, so the parsers stop at the first malformed byte and keep what they have.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HandshakeTrace", "install", "trace_of"]

log = logging.getLogger("trioecho.trace")

_HANDSHAKE = 22
_SERVER_HELLO = 2
_SERVER_KEY_EXCHANGE = 12
_CERTIFICATE_REQUEST = 13
_CERTIFICATE_VERIFY = 15
_NEW_SESSION_TICKET = 4
_EXT_KEY_SHARE = 0x0033

#: IANA TLS Supported Groups registry -> the names trioecho's --groups uses.
GROUP_NAMES = {
    0x0017: "P-256", 0x0018: "P-384", 0x0019: "P-521", 0x001D: "X25519", 0x001E: "X448",
    0x0100: "ffdhe2048", 0x0101: "ffdhe3072", 0x0102: "ffdhe4096", 0x0103: "ffdhe6144", 0x0104: "ffdhe8192",
    0x11EB: "SecP256r1MLKEM768", 0x11EC: "X25519MLKEM768", 0x11ED: "SecP384r1MLKEM1024",
}
#: IANA TLS SignatureScheme registry (RFC 8446 names).
SIGNATURE_SCHEMES = {
    0x0401: "rsa_pkcs1_sha256", 0x0501: "rsa_pkcs1_sha384", 0x0601: "rsa_pkcs1_sha512",
    0x0403: "ecdsa_secp256r1_sha256", 0x0503: "ecdsa_secp384r1_sha384", 0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256", 0x0805: "rsa_pss_rsae_sha384", 0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519", 0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256", 0x080A: "rsa_pss_pss_sha384", 0x080B: "rsa_pss_pss_sha512",
    0x0201: "rsa_pkcs1_sha1", 0x0203: "ecdsa_sha1",
}


@dataclass
class HandshakeTrace:
    """What the server's handshake messages said (None: not seen)."""

    group: str | None = None
    signature_scheme: str | None = None
    cert_requested: bool = False
    #: The server answered our ClientHello (a ServerHello or HelloRetryRequest arrived).
    server_hello: bool = False
    #: NewSessionTicket messages read so far.
    tickets: int = 0
    #: Called (synchronously, from inside the read) when a NewSessionTicket arrives.
    on_ticket: Callable[[], None] | None = None


_TRACES: weakref.WeakKeyDictionary[Any, HandshakeTrace] = weakref.WeakKeyDictionary()


def install(ctx: ssl.SSLContext) -> bool:
    """Trace the handshakes of connections made from ``ctx`` (a context we own).  False if impossible."""
    if not hasattr(ctx, "_msg_callback"):
        return False
    ctx._msg_callback = _callback
    return True


def trace_of(ssl_object: Any) -> HandshakeTrace | None:
    """The trace of one connection (``SSLStream``'s SSLObject), or None if it was not traced."""
    try:
        return _TRACES.get(ssl_object)
    except TypeError:  # not weak-referenceable: not one of ours
        return None


def _u16(b: bytes, i: int) -> int:
    if i + 2 > len(b):
        raise IndexError(i)
    return (b[i] << 8) | b[i + 1]


def _callback(conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes) -> None:
    try:
        trace = _TRACES.setdefault(conn, HandshakeTrace())  # from our ClientHello on: "traced"
        if direction != "read" or int(content_type) != _HANDSHAKE:
            return
        mt = int(msg_type)
        if mt == _SERVER_HELLO:
            trace.server_hello = True
            _server_hello(trace, data)
        elif mt == _SERVER_KEY_EXCHANGE:
            _server_key_exchange(trace, data)
        elif mt == _CERTIFICATE_REQUEST:
            trace.cert_requested = True
        elif mt == _NEW_SESSION_TICKET:
            trace.tickets += 1
            if trace.on_ticket is not None:
                trace.on_ticket()
        elif mt == _CERTIFICATE_VERIFY:
            trace.signature_scheme = _scheme(_u16(data, 4))
    except (IndexError, ValueError, TypeError) as exc:
        # A message we cannot parse (or a connection object without weakref support):
        # keep what we have, and never disturb the handshake.
        log.debug("handshake trace: cannot parse message type %s: %r", msg_type, exc)


def _scheme(code: int) -> str:
    return SIGNATURE_SCHEMES.get(code, f"0x{code:04x}")


def _group(code: int) -> str:
    return GROUP_NAMES.get(code, f"0x{code:04x}")


def _server_hello(trace: HandshakeTrace, msg: bytes) -> None:
    # header(4) legacy_version(2) random(32) session_id<1> cipher(2) compression(1) extensions<2>
    i = 4 + 2 + 32
    i += 1 + msg[i]
    i += 2 + 1
    end = i + 2 + _u16(msg, i)
    i += 2
    while i + 4 <= end:
        ext, length = _u16(msg, i), _u16(msg, i + 2)
        if ext == _EXT_KEY_SHARE:  # ServerHello: group(2) + key; HelloRetryRequest: group(2)
            trace.group = _group(_u16(msg, i + 4))
        i += 4 + length


def _server_key_exchange(trace: HandshakeTrace, msg: bytes) -> None:
    # ECDHE: header(4) curve_type(1)=named_curve(3) named_curve(2) point<1> signature_scheme(2) signature<2>
    i = 4
    if msg[i] != 3:
        return
    trace.group = _group(_u16(msg, i + 1))
    i += 3
    i += 1 + msg[i]
    trace.signature_scheme = _scheme(_u16(msg, i))
