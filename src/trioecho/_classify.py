"""The one place that maps low-level failures to trioecho's error kinds.

Classify by ``SSLError.reason`` / ``verify_code`` and by exception type, never
by message text: OpenSSL reworded several messages between 3.0 and 3.2
(https://github.com/urllib3/urllib3/pull/3271), and Python 3.10 with
OpenSSL 3 raised a plain SSLError for EOF (https://github.com/python/cpython/issues/90471).
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

import trio

from .errors import ERROR_KINDS, ConnectionFailed, FrameTooLargeError, ProtocolError

__all__ = ["Classified", "classify", "find_ssl_error", "is_ragged_eof"]

# X509_V_ERR_* codes we tell apart (openssl/x509_vfy.h).
_V_CERT_NOT_YET_VALID = 9
_V_CERT_HAS_EXPIRED = 10
_V_DEPTH_ZERO_SELF_SIGNED = 18
_V_SELF_SIGNED_IN_CHAIN = 19
_V_UNABLE_TO_GET_ISSUER_LOCALLY = 20
_V_UNABLE_TO_VERIFY_LEAF = 21
_V_HOSTNAME_MISMATCH = 62
_V_IP_MISMATCH = 64

#: OpenSSL reason codes (ours, or an alert the peer sent us) -> kind.
_REASONS: dict[str, str] = {
    "HTTP_REQUEST": "plaintext_peer",
    "HTTPS_PROXY_REQUEST": "plaintext_peer",
    "WRONG_VERSION_NUMBER": "not_tls",
    "UNKNOWN_PROTOCOL": "not_tls",
    "PACKET_LENGTH_TOO_LONG": "not_tls",
    "RECORD_LENGTH_MISMATCH": "not_tls",
    "UNEXPECTED_MESSAGE": "not_tls",
    "UNEXPECTED_RECORD": "not_tls",
    "RECORD_LAYER_FAILURE": "not_tls",
    "LENGTH_MISMATCH": "not_tls",
    "BAD_PACKET_LENGTH": "not_tls",
    "UNSUPPORTED_PROTOCOL": "tls_version",
    "TLSV1_ALERT_PROTOCOL_VERSION": "tls_version",
    "NO_PROTOCOLS_AVAILABLE": "tls_version",
    "VERSION_TOO_LOW": "tls_version",
    "VERSION_TOO_HIGH": "tls_version",
    "WRONG_SSL_VERSION": "tls_version",
    "UNSUPPORTED_SSL_VERSION": "tls_version",
    "NO_SHARED_CIPHER": "no_shared_cipher",
    "NO_CIPHERS_AVAILABLE": "no_shared_cipher",
    "NO_SUITABLE_KEY_SHARE": "no_shared_cipher",
    "NO_SHARED_GROUPS": "no_shared_cipher",
    "NO_SUITABLE_SIGNATURE_ALGORITHM": "no_shared_cipher",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake_failure",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY": "no_shared_cipher",
    "TLSV1_ALERT_UNKNOWN_CA": "unknown_ca",
    "SSLV3_ALERT_BAD_CERTIFICATE": "client_cert_rejected",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "cert_expired",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "client_cert_rejected",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "client_cert_rejected",
    "TLSV1_ALERT_DECRYPT_ERROR": "handshake_failure",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "client_cert_required",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "client_cert_required",
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "alpn_mismatch",
    "NO_APPLICATION_PROTOCOL": "alpn_mismatch",
    "UNEXPECTED_EOF_WHILE_READING": "truncated",
}


#: Alerts a server receives when the *client* rejected the server's certificate.
_ALERTS_ABOUT_OUR_CERT = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
}


@dataclass(frozen=True)
class Classified:
    """A failure, classified: ``kind`` is a key of ERROR_KINDS."""

    kind: str
    detail: str

    @property
    def hint(self) -> str:
        return ERROR_KINDS[self.kind].fix


def find_ssl_error(exc: BaseException | None) -> ssl.SSLError | None:
    """The first ssl.SSLError (or CertificateError) in an exception's cause chain."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLError):
            return exc
        if isinstance(exc, ssl.CertificateError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _find_os_error(exc: BaseException | None) -> OSError | None:
    """The most specific OSError in a cause chain.

    trio.open_tcp_stream raises a bare ``OSError("all attempts ... failed")``
    chained from an ExceptionGroup of the per-address errors: look inside it.
    """
    seen = 0
    found: OSError | None = None
    while exc is not None and seen < 10:
        if isinstance(exc, BaseExceptionGroup):
            inner = [e for e in exc.exceptions if isinstance(e, OSError)]
            if inner:
                return _find_os_error(inner[0]) or inner[0]
        elif isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
            if exc.errno is not None:
                return exc
            found = found or exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return found


def is_ragged_eof(exc: BaseException) -> bool:
    """True for "the peer closed TCP without close_notify" in all its spellings."""
    err = find_ssl_error(exc)
    if err is None:
        return False
    return isinstance(err, ssl.SSLEOFError) or getattr(err, "reason", None) == "UNEXPECTED_EOF_WHILE_READING"


def _ssl_reason(err: ssl.SSLError) -> str:
    reason = getattr(err, "reason", None)
    if reason:
        return str(reason)
    if isinstance(err, ssl.SSLEOFError):
        return "UNEXPECTED_EOF_WHILE_READING"
    return type(err).__name__


def _verify_kind(err: ssl.SSLCertVerificationError) -> str:
    code = getattr(err, "verify_code", None)
    if code in (_V_HOSTNAME_MISMATCH, _V_IP_MISMATCH):
        return "hostname_mismatch"
    if code == _V_CERT_HAS_EXPIRED:
        return "cert_expired"
    if code == _V_CERT_NOT_YET_VALID:
        return "cert_not_yet_valid"
    if code == _V_DEPTH_ZERO_SELF_SIGNED:
        return "self_signed"
    if code in (_V_SELF_SIGNED_IN_CHAIN, _V_UNABLE_TO_GET_ISSUER_LOCALLY, _V_UNABLE_TO_VERIFY_LEAF):
        return "unknown_ca"
    return "cert_invalid"


def classify(exc: BaseException, *, phase: str = "echo", side: str = "client") -> Classified:
    """Map an exception to a failure kind and a one-line detail.

    Args:
        exc: what was raised (often ``trio.BrokenResourceError`` with the real
            cause chained).
        phase: ``connect``, ``handshake``, ``echo`` or ``close``: an EOF means
            different things in each.
        side: ``client`` or ``server``: who is classifying.
    """
    if isinstance(exc, ConnectionFailed):
        return Classified(exc.kind, exc.detail)
    if isinstance(exc, FrameTooLargeError):
        return Classified("frame_too_large", str(exc))
    if isinstance(exc, ProtocolError):
        return Classified("frame_too_large" if "limit" in str(exc) else "tls_error", str(exc))
    if isinstance(exc, trio.TooSlowError):
        slow = "handshake_timeout" if (phase == "handshake" and side == "server") else "timeout"
        return Classified(slow, f"timed out during {phase}")
    if isinstance(exc, socket.gaierror):
        return Classified("dns", f"cannot resolve the host name ({exc.strerror})")

    err = find_ssl_error(exc)
    if isinstance(err, ssl.SSLCertVerificationError):
        vkind = _verify_kind(err)
        msg = getattr(err, "verify_message", None) or str(err)
        if side == "server" and vkind in ("unknown_ca", "self_signed", "cert_invalid"):
            vkind = "unknown_ca"  # the client's certificate failed our verification
        return Classified(vkind, f"certificate verify failed: {msg}")
    if isinstance(err, ssl.CertificateError) and not isinstance(err, ssl.SSLError):
        return Classified("hostname_mismatch", str(err))
    if err is not None:
        reason = _ssl_reason(err)
        kind: str | None = _REASONS.get(reason)
        if side == "server" and reason in _ALERTS_ABOUT_OUR_CERT:
            kind = "cert_rejected_by_peer"
        elif side == "client" and reason in _ALERTS_ABOUT_OUR_CERT:
            # A client receives these alerts only about the certificate it sent (its own
            # verification failures raise SSLCertVerificationError instead).
            kind = "client_cert_rejected"
        if reason == "CERTIFICATE_VERIFY_FAILED":
            kind = "unknown_ca" if side == "server" else "cert_invalid"
        if kind == "truncated" and phase == "handshake":
            kind = "handshake_eof"
        if kind is None:
            if isinstance(err, ssl.SSLEOFError):
                kind = "handshake_eof" if phase == "handshake" else "truncated"
            elif isinstance(err, ssl.SSLSyscallError):
                kind = "reset" if phase != "handshake" else "handshake_eof"
            elif reason.startswith(("SSLV3_ALERT", "TLSV1_ALERT", "TLSV13_ALERT")):
                kind = "handshake_failure"
            else:
                kind = "tls_error"
        return Classified(kind, f"{phase}: {reason} ({err.__class__.__name__})")

    os_err = _find_os_error(exc)
    if os_err is not None:
        code = os_err.errno
        if isinstance(os_err, ConnectionRefusedError) or code == errno.ECONNREFUSED:
            return Classified("refused", "connection refused")
        if isinstance(os_err, (ConnectionResetError, ConnectionAbortedError)) or code in (
            errno.ECONNRESET,
            errno.ECONNABORTED,
        ):
            return Classified("reset", f"connection reset during {phase}")
        if isinstance(os_err, BrokenPipeError) or code == errno.EPIPE:
            return Classified("client_gone" if side == "server" else "reset", f"peer went away during {phase}")
        if code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return Classified("unreachable", f"{os_err.strerror or os_err}")
        if code == errno.ETIMEDOUT:
            return Classified("timeout", f"timed out during {phase}")
        return Classified("reset", f"{phase}: {os_err.strerror or os_err}")
    if isinstance(exc, trio.BrokenResourceError):
        return Classified("reset", f"connection broken during {phase}")
    if isinstance(exc, trio.ClosedResourceError):
        return Classified("reset", f"connection closed during {phase}")
    return Classified("tls_error", f"{phase}: {type(exc).__name__}: {exc}")
