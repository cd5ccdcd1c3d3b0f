"""trioecho: a TLS echo toolkit on Trio.

A reference TLS echo endpoint (:class:`EchoServer`), a client that measures and
explains TLS connections (:func:`open_echo_connection`, :class:`Pinger`), one
policy object that builds every SSLContext (:class:`Policy`), and sans-IO
framing (:class:`FrameDecoder`, :class:`FrameScanner`, :func:`encode_frame`).
"""

from __future__ import annotations

from .client import (
    EchoConnection,
    PeerCert,
    Pinger,
    PingOptions,
    PingReport,
    Probe,
    SessionCache,
    TLSInfo,
    open_echo_connection,
    parse_target,
)
from .errors import (
    ERROR_KINDS,
    ConfigError,
    ConnectionFailed,
    FrameTooLargeError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    TrioechoError,
)
from .framing import MAX_FRAME, FrameDecoder, FrameScanner, encode_frame
from .policy import PROFILES, CertSpec, Policy
from .server import ConnectionInfo, EchoServer, ServerLimits, ServerStats

__version__ = "0.1.0"

__all__ = [
    "ERROR_KINDS",
    "MAX_FRAME",
    "PROFILES",
    "CertSpec",
    "ConfigError",
    "ConnectionFailed",
    "ConnectionInfo",
    "EchoConnection",
    "EchoServer",
    "FrameDecoder",
    "FrameScanner",
    "FrameTooLargeError",
    "LocalProtocolError",
    "PeerCert",
    "PingOptions",
    "PingReport",
    "Pinger",
    "Policy",
    "Probe",
    "ProtocolError",
    "RemoteProtocolError",
    "ServerLimits",
    "ServerStats",
    "SessionCache",
    "TLSInfo",
    "TrioechoError",
    "__version__",
    "encode_frame",
    "open_echo_connection",
    "parse_target",
]
