"""The few errors trioecho raises, and the table of failure kinds it reports.

Every failure a user can see (from ``ping``, from the server's log, from the
library) carries a stable ``kind``: a short snake_case name that scripts can
match on and that ``docs/troubleshooting.md`` documents.  The table below is the
single source of truth for those names: the classifier in ``_classify`` only
returns kinds listed here, and a test checks that the docs cover every one.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ERROR_KINDS",
    "ConfigError",
    "ConnectionFailed",
    "ErrorKind",
    "FrameTooLargeError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "TrioechoError",
]


class TrioechoError(Exception):
    """Base class of every error trioecho raises on purpose."""


class ConfigError(TrioechoError):
    """A setting is wrong or a file is unusable.

    The message names the setting or file, what was wrong, and the fix.
    """


class ProtocolError(TrioechoError):
    """The echo protocol (framing) was broken."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (e.g. send a frame over the limit)."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol (e.g. declared a frame over the limit)."""


class FrameTooLargeError(RemoteProtocolError):
    """A frame header declared a body longer than the configured limit.

    Raised as soon as the 4-byte header is seen, before any body byte is buffered.
    """

    def __init__(self, declared: int, limit: int) -> None:
        super().__init__(
            f"frame header declares {declared} bytes, over the {limit}-byte limit"
        )
        self.declared = declared
        self.limit = limit
        #: Set by FrameScanner: the bytes before the bad header, safe to echo.
        self.echo_ok: bytes | bytearray = b""


class ConnectionFailed(TrioechoError):
    """A connection, handshake or echo failed, with a classified ``kind``.

    Attributes:
        kind: a key of :data:`ERROR_KINDS` (stable; safe to match on).
        detail: what happened, in words (includes the low-level reason).
        hint: what to do about it (may be empty).
    """

    def __init__(self, kind: str, detail: str, hint: str = "") -> None:
        assert kind in ERROR_KINDS, kind
        super().__init__(f"{detail}: {hint}" if hint else detail)
        self.kind = kind
        self.detail = detail
        self.hint = hint


@dataclass(frozen=True)
class ErrorKind:
    """One row of the troubleshooting table."""

    name: str
    side: str  # "client", "server" or "both": who reports it
    symptom: str
    cause: str
    fix: str


def _k(name: str, side: str, symptom: str, cause: str, fix: str) -> tuple[str, ErrorKind]:
    return name, ErrorKind(name, side, symptom, cause, fix)


ERROR_KINDS: dict[str, ErrorKind] = dict(
    [
        # --- reaching the peer -------------------------------------------------
        _k("dns", "client", "the host name does not resolve",
           "typo in the host, or no DNS entry / /etc/hosts line for it",
           "check the spelling, or connect to the IP address and pass --servername NAME"),
        _k("refused", "client", "connection refused",
           "nothing listens on that address and port",
           "start the server, or check --host/--port on both sides"),
        _k("unreachable", "client", "network or host unreachable",
           "no route to the address (wrong address family, interface down)",
           "check the address; for IPv6 make sure the server listens on ::1"),
        _k("timeout", "both", "no answer within the deadline",
           "the peer is slow, overloaded, silent, or a firewall drops packets",
           "raise --timeout, or check that the peer speaks TLS on that port"),
        _k("reset", "both", "connection reset by peer",
           "the peer aborted the TCP connection (crash, RST from a middlebox, or a rejection)",
           "look at the peer's log for why it dropped the connection"),
        # --- the handshake ----------------------------------------------------
        _k("tls_version", "both", "no TLS version in common",
           "one side allows only versions the other refuses (e.g. a TLS 1.0/1.1 client)",
           "allow TLS 1.2 or 1.3 on both sides (--min-version/--max-version)"),
        _k("no_shared_cipher", "both", "no cipher suite or group in common",
           "cipher/suite lists do not overlap, or the certificate key type fits no allowed suite",
           "compare `trioecho policy show` on both sides; use an ECDSA certificate with ECDHE-ECDSA suites"),
        _k("unknown_ca", "both", "certificate signed by a CA the verifier does not trust",
           "the verifier's trust store lacks the issuing CA",
           "pass the CA with --cafile (client) or --client-ca (server)"),
        _k("self_signed", "client", "the server certificate is self-signed and not trusted",
           "a self-signed certificate was presented instead of a CA-issued one",
           "trust it explicitly with --cafile, or issue it from a CA (scripts/gen_certs.py)"),
        _k("hostname_mismatch", "client", "the certificate does not name the host that was dialled",
           "the certificate's subjectAltName does not list the name or IP used",
           "pass --servername with a name the certificate holds, or reissue it with that name"),
        _k("cert_expired", "both", "the peer certificate has expired",
           "its notAfter date is in the past (or the clock is wrong)",
           "renew the certificate (scripts/gen_certs.py --days N) and check the clock"),
        _k("cert_not_yet_valid", "both", "the peer certificate is not valid yet",
           "its notBefore date is in the future (or the clock is wrong)",
           "check both machines' clocks, or reissue the certificate"),
        _k("cert_invalid", "both", "the certificate failed verification for another reason",
           "bad signature, wrong key usage, broken chain, or unsupported algorithm",
           "inspect the chain with `openssl verify -CAfile ca.pem cert.pem`"),
        _k("cert_rejected_by_peer", "both", "the peer rejected our certificate (TLS alert)",
           "the peer does not trust our CA, or our certificate is expired or unsuitable",
           "give the peer our CA (client: --cafile ca.pem) or use a certificate it trusts"),
        _k("client_cert_required", "both", "the server requires a client certificate and none was sent",
           "mTLS is on (--client-auth required) and the client has no certificate",
           "pass --cert client.pem to ping (or turn client auth off on the server)"),
        _k("client_cert_rejected", "both", "the server rejected the client certificate",
           "the client certificate is not issued by the server's --client-ca, or has expired",
           "use a client certificate issued by the CA given to the server with --client-ca"),
        _k("alpn_mismatch", "both", "no application protocol (ALPN) in common",
           "the client offered no protocol the server accepts, and the server is strict",
           "offer echo/1 (--alpn echo/1) or turn off strict ALPN on the server"),
        _k("plaintext_peer", "both", "the peer is not speaking TLS (plaintext HTTP or another protocol)",
           "a plaintext client on the TLS port, or a TLS client against a plaintext server",
           "use TLS on both sides, or --plaintext on both sides"),
        _k("not_tls", "both", "the peer sent bytes that are not a TLS record",
           "garbage, a scanner, an SSH client, or a broken TLS stack",
           "make sure the right program listens on that port"),
        _k("handshake_failure", "both", "the TLS handshake failed",
           "the peer aborted the handshake (its log says why): often a policy or certificate mismatch",
           "run `trioecho ping -v` and compare `trioecho policy show` on both sides"),
        _k("handshake_eof", "both", "the peer closed the connection during the handshake",
           "the peer rejected us without a TLS alert (trio sends none after a verification failure), or went away",
           "check the peer's log: most often it rejected our certificate or our protocol versions"),
        _k("handshake_timeout", "server", "the client did not finish the handshake in time",
           "a silent or very slow client, a port scanner, or a slowloris attack",
           "nothing to do for scanners; raise --handshake-timeout for very slow links"),
        _k("tls_error", "both", "a TLS error that fits no other kind",
           "see the detail text: it carries OpenSSL's reason code",
           "run with -v / --log-level debug and look up the OpenSSL reason"),
        # --- after the handshake ------------------------------------------------
        _k("truncated", "both", "the peer closed TCP without a TLS close_notify",
           "the peer crashed or was killed, or its TLS stack does not send close_notify (possible truncation attack)",
           "nothing was lost if every frame was echoed; otherwise check the peer"),
        _k("closed_early", "client", "the server closed the connection before echoing",
           "the frame was over the server's --max-frame, the server rejected the connection after the handshake "
           "(mTLS on TLS 1.3, strict ALPN), or it is not an echo server",
           "check the server's log (frame_too_large means: lower --size or raise the server's --max-frame); "
           "use --handshake-only against servers that do not echo"),
        _k("echo_mismatch", "client", "the echo differs from what was sent",
           "the server is not a trioecho-compatible echo, or data was corrupted",
           "check that the server speaks the 4-byte length-prefixed echo"),
        _k("frame_too_large", "both", "a frame was longer than the limit",
           "the length prefix exceeds --max-frame (or the bytes are not our framing at all)",
           "send smaller frames or raise --max-frame on the server"),
        _k("idle_timeout", "server", "the client sent nothing between frames for too long",
           "an idle client",
           "raise --idle-timeout, or have the client close when done"),
        _k("frame_timeout", "server", "a frame's body did not arrive in time",
           "the client stalled mid-frame (slow link or slowloris)",
           "raise --frame-timeout for slow links"),
        _k("send_timeout", "server", "the client stopped reading its echoes",
           "the client does not read; the server will not buffer without bound",
           "make the client read its echoes; raise --idle-timeout if it is just slow"),
        _k("client_gone", "server", "the client went away before its echo could be delivered",
           "the client sent and closed at once, or was killed",
           "normal for fire-and-forget clients; nothing to fix"),
        # --- issue 6 ---
        _k("proxy_protocol", "server", "no valid PROXY protocol header before TLS (serve --proxy-protocol)",
           "a client connected directly instead of through the load balancer, or the balancer does not send "
           "the header (or sends the other version)",
           "send-proxy / send-proxy-v2 on the balancer (docs/deployment.md), or drop --proxy-protocol"),
    ]
)
