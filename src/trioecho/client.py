"""The client: connect, verify, echo framed payloads, measure each phase, explain failures.

Theory of operation
-------------------
:func:`open_echo_connection` dials TCP, wraps it in ``trio.SSLStream`` with a
context from the :class:`~trioecho.policy.Policy`, and runs the handshake, all
under one deadline; it times TCP connect and TLS handshake apart and returns an
:class:`EchoConnection` to ``aclose()``.  :meth:`EchoConnection.echo` sends one
frame (header and body in one write, so one TLS record for small frames) and
reads until the whole echo arrived (``receive_some`` hands out at most one TLS
record, 16 KiB, per call), checking it byte for byte.

TLS 1.3 resumption: the server's NewSessionTicket arrives only after the
handshake, and trio holds it back until the server's first write, so the
session is worth keeping only after an echo was read
(``session.has_ticket``).  :class:`SessionCache` keeps it per client context
(a session only resumes on the context that made it).

On TLS 1.3 a server that rejects our certificate does so *after* our handshake
"succeeded": success means a correct echo, not a finished handshake.

Every failure is raised as :class:`~trioecho.errors.ConnectionFailed` with a
stable ``kind`` and a hint (see :mod:`trioecho._classify`).

Timing uses ``trio.current_time()`` (``perf_counter`` under trio's default
clock), so tests can run a 50 ms-latency path under ``autojump_clock`` in no
real time.  "Handshake cost in round trips" is the handshake time divided by
the TCP connect time, which is one round trip (SYN, SYN-ACK) when nothing
terminates TCP between us and the server.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import math
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from . import _trace
from ._classify import classify, is_ragged_eof
from ._compat import flush_alert
from .errors import ERROR_KINDS, ConnectionFailed, FrameTooLargeError
from .framing import MAX_FRAME, FrameDecoder, encode_frame
from .policy import Policy

__all__ = [
    "EXPECT_KEYS",
    "EchoConnection",
    "ExpectResult",
    "Expectation",
    "OpenStream",
    "PeerCert",
    "PingOptions",
    "PingReport",
    "Pinger",
    "Probe",
    "SessionCache",
    "TLSInfo",
    "open_echo_connection",
    "parse_target",
    "stats",
]

log = logging.getLogger("trioecho.client")

#: ``await open_stream(host, port)`` -> a connected byte stream (default ``trio.open_tcp_stream``).
OpenStream = Callable[[str, int], Awaitable[trio.abc.Stream]]

#: The chapter's default port, as for the server.
DEFAULT_PORT = 9443


def parse_target(target: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``HOST[:PORT]``; IPv6 literals work bracketed (``[::1]:9443``) or bare (``::1``).

    Raises:
        ConfigError: an empty host or a bad port.
    """
    from .errors import ConfigError

    t = target.strip()
    if "://" in t or "/" in t:
        raise ConfigError(
            f"target {target!r} looks like a URL: write HOST[:PORT] without a scheme or path, e.g. localhost:9443"
        )
    host, port = t, default_port
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ConfigError(f"target {target!r}: missing ']' after the IPv6 address")
        host = t[1:end]
        rest = t[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"target {target!r}: expected ':PORT' after ']'")
            port = _port(rest[1:], target)
    elif t.count(":") == 1:
        host, p = t.split(":")
        port = _port(p, target)
    elif t.count(":") > 1:
        host = t  # a bare IPv6 literal: no port
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ConfigError(
                f"target {target!r} is not HOST:PORT nor an IPv6 address: write IPv6 with a port as [ADDR]:PORT"
            ) from None
    if not host:
        raise ConfigError(f"target {target!r} has no host: write HOST[:PORT], e.g. localhost:9443")
    return host, port


def _port(text: str, target: str) -> int:
    from .errors import ConfigError

    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"target {target!r}: port must be a number from 1 to 65535")
    return port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


#: Why the key-exchange group is not shown (Python gains ``SSLSocket.group()`` in 3.15,
#: https://github.com/python/cpython/issues/136306).
GROUP_UNKNOWN_REASON = (
    "unknown: Python's ssl can report the key-exchange group only from 3.15 on "
    "(python/cpython#136306); this is Python {}.{}"
)
#: Where the group came from when the ssl API could not say (see :mod:`trioecho._trace`).
GROUP_FROM_TRACE = (
    "read from the server's handshake messages (this Python's ssl API reports no group before 3.15, "
    "python/cpython#136306)"
)


def _group_of(obj: Any) -> str | None:
    """The negotiated key-exchange group, where the running Python can tell it."""
    getter = getattr(obj, "group", None)
    if getter is None:
        return None
    try:
        g = getter()
    except (AttributeError, ValueError, ssl.SSLError):
        return None
    return str(g) if g else None


#: Signature algorithm OIDs -> the names OpenSSL prints (cryptography names them only privately).
_SIG_ALGS = {
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.3.101.112": "ED25519",
    "1.3.101.113": "ED448",
}


def _name_str(name: Any) -> str | None:
    try:
        text = str(name.rfc4514_string())
    except ValueError:
        return None
    return text or None


@dataclass
class PeerCert:
    """The parts of a peer certificate a human checks first (parsed from its DER with ``cryptography``).

    Times are ISO 8601 UTC strings; ``days_left`` is whole days until ``not_after``
    (negative once expired).  Works with ``--insecure`` too (verification off).
    """

    subject: str | None
    issuer: str | None
    san: list[str]
    not_before: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    key_type: str | None = None
    key_bits: int | None = None
    signature_algorithm: str | None = None
    serial: str | None = None
    sha256: str | None = None
    self_signed: bool | None = None

    @classmethod
    def from_der(cls, der: bytes, *, now: datetime.datetime | None = None) -> PeerCert:
        """Parse a DER certificate (``SSLObject.getpeercert(binary_form=True)``)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

        cert = x509.load_der_x509_certificate(der)
        san: list[str] = []
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            san += [f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
            san += [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)]
            san += [f"email:{e}" for e in ext.get_values_for_type(x509.RFC822Name)]
            san += [f"URI:{u}" for u in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        except x509.ExtensionNotFound:
            pass
        key = cert.public_key()
        key_type: str | None
        bits: int | None
        if isinstance(key, rsa.RSAPublicKey):
            key_type, bits = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name, key.curve.name)
            key_type, bits = f"EC {curve}", key.key_size
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key_type, bits = "Ed25519", 256
        elif isinstance(key, ed448.Ed448PublicKey):
            key_type, bits = "Ed448", 456
        elif isinstance(key, dsa.DSAPublicKey):
            key_type, bits = "DSA", key.key_size
        else:
            key_type, bits = type(key).__name__, None
        oid = cert.signature_algorithm_oid.dotted_string
        sig = _SIG_ALGS.get(oid, oid)
        not_after = cert.not_valid_after_utc
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return cls(
            subject=_name_str(cert.subject),
            issuer=_name_str(cert.issuer),
            san=san,
            not_before=cert.not_valid_before_utc.isoformat(),
            not_after=not_after.isoformat(),
            days_left=math.floor((not_after - now).total_seconds() / 86400),
            key_type=key_type,
            key_bits=bits,
            signature_algorithm=sig,
            serial=format(cert.serial_number, "x"),
            sha256=cert.fingerprint(hashes.SHA256()).hex(),
            self_signed=cert.subject == cert.issuer,
        )


@dataclass
class TLSInfo:
    """What a TLS connection negotiated (None where not known).

    ``group`` is None where the running Python cannot tell it; ``group_note`` then says why.
    ``chain`` is the peer's chain as far as the running Python exposes it: the leaf only
    before Python 3.13 (``get_verified_chain``).
    """

    version: str | None = None
    cipher: str | None = None
    cipher_bits: int | None = None
    group: str | None = None
    group_note: str | None = None
    #: The signature scheme of the server's handshake signature (from the handshake trace).
    signature_scheme: str | None = None
    #: Whether the server asked us for a certificate (None: not traced).
    client_cert_requested: bool | None = None
    client_cert_sent: bool = False
    alpn: str | None = None
    alpn_offered: list[str] = field(default_factory=list)
    sni: str | None = None
    resumed: bool | None = None
    verified: bool = True
    peer: PeerCert | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["peer"] = None if self.peer is None else dict(self.peer.__dict__)
        return d


@dataclass
class Probe:
    """One measurement: a new connection with its echoes, or (keepalive) more echoes on the kept one.

    Times are seconds; a phase that did not run is ``None``, never 0.

    Attributes:
        fresh: this probe opened the connection (so ``tcp``/``tls`` were measured).
        echo: the first echo of this probe.  On a fresh connection it is the *first echo*
            (it pays for TLS 1.3 ticket processing and a cold path); on a kept connection
            it is a steady echo.
        steady: round trips of the probe's further echoes (``--echoes K``: K-1 of them).
    """

    seq: int
    size: int
    tcp: float | None = None
    tls: float | None = None
    echo: float | None = None
    steady: list[float] = field(default_factory=list)
    resumed: bool | None = None
    fresh: bool = True
    ok: bool = False
    error_kind: str | None = None
    error: str | None = None
    hint: str | None = None
    warmup: bool = False

    @property
    def handshake_rtts(self) -> float | None:
        """TLS handshake time in round trips, TCP connect time taken as one round trip."""
        if self.tls is None or not self.tcp:
            return None
        return self.tls / self.tcp

    @property
    def first_echo(self) -> float | None:
        """The first echo over a new connection (``None`` on a kept connection)."""
        return self.echo if self.fresh else None

    def steady_samples(self) -> list[float]:
        """Every echo of this probe that ran on an already-warm connection."""
        return ([] if self.fresh or self.echo is None else [self.echo]) + list(self.steady)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["handshake_rtts"] = self.handshake_rtts
        return d


class SessionCache:
    """Keeps the last resumable TLS session for one client context."""

    def __init__(self) -> None:
        self.session: ssl.SSLSession | None = None

    def offer(self, stream: trio.SSLStream[Any]) -> None:
        sess = stream.session
        if sess is not None and sess.has_ticket:
            self.session = sess


#: First byte of a TLS record (alert, handshake, application data): a plaintext client reading one
#: talks to a TLS server.
_TLS_RECORD_TYPES = (0x15, 0x16, 0x17)


class EchoConnection:
    """An open connection to an echo server.  Use as an async context manager or ``aclose()``.

    Attributes:
        stream: the trio stream (SSLStream or SocketStream).
        tls: what was negotiated (``None`` for plaintext).
        tcp_time, tls_time: seconds spent in TCP connect and the TLS handshake.
    """

    def __init__(self, stream: trio.abc.Stream, *, tls: TLSInfo | None, tcp_time: float,
                 tls_time: float | None, max_frame: int, timeout: float,
                 sessions: SessionCache | None) -> None:
        self.stream = stream
        self.tls = tls
        self.tcp_time = tcp_time
        self.tls_time = tls_time
        self._decoder = FrameDecoder(max_frame=max_frame)
        self._timeout = timeout
        self._sessions = sessions
        self._max_frame = max_frame
        self._echoed = False

    async def echo(self, payload: bytes) -> float:
        """Send one frame, wait for its echo, check it.  Returns the round-trip time.

        Raises:
            ConnectionFailed: timeout, connection lost, server rejected us, or the echo differs.
        """
        try:
            return await self._echo(payload)
        except ConnectionFailed as exc:
            raise self._explain_early_close(exc) from exc

    def _explain_early_close(self, exc: ConnectionFailed) -> ConnectionFailed:
        """A server that drops us before echoing, with no ALPN agreed: most likely strict ALPN."""
        tls = self.tls
        if (exc.kind == "closed_early" and tls is not None
                and tls.alpn is None and tls.alpn_offered):
            return ConnectionFailed(
                "alpn_mismatch",
                f"{exc.detail}; no ALPN protocol was agreed (we offered {', '.join(tls.alpn_offered)}), "
                "so the server most likely refuses clients without a protocol it speaks",
                ERROR_KINDS["alpn_mismatch"].fix,
            )
        return exc

    async def _echo(self, payload: bytes) -> float:
        frame = encode_frame(payload, max_frame=self._max_frame)
        t0 = trio.current_time()
        with trio.move_on_after(self._timeout) as cs:
            try:
                # Send and receive at once: the server echoes while the frame is
                # still arriving, so a sender that does not read would deadlock
                # both sides as soon as the TCP buffers fill (large frames).
                got = b""
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.stream.send_all, frame)
                    got = await self._receive_frame()
            except BaseExceptionGroup as group:
                raise self._no_alpn(_unwrap_group(group)) from None
            except ConnectionFailed as exc:
                mapped = self._no_alpn(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise self._no_alpn(_failure(exc, "echo")) from exc
        if cs.cancelled_caught:
            raise ConnectionFailed("timeout", f"no echo within {self._timeout:g}s", ERROR_KINDS["timeout"].fix)
        rtt = trio.current_time() - t0
        if got != payload:
            raise ConnectionFailed(
                "echo_mismatch",
                f"echo differs: sent {len(payload)} bytes, got {len(got)}"
                + ("" if len(got) != len(payload) else f", first difference at byte {_first_diff(payload, got)}"),
                ERROR_KINDS["echo_mismatch"].fix,
            )
        self._echoed = True
        if self._sessions is not None and isinstance(self.stream, trio.SSLStream):
            self._sessions.offer(self.stream)
        return rtt

    def _no_alpn(self, exc: BaseException) -> BaseException:
        """A close or reset before the first echo, after a handshake that agreed on no ALPN
        protocol, is a strict-ALPN server refusing us (a reset when our frame was still
        unread in its socket buffer)."""
        if (isinstance(exc, ConnectionFailed) and exc.kind in ("closed_early", "reset", "truncated")
                and self.tls is not None and self.tls.alpn is None and not self._echoed):
            offered = ",".join(self.tls.alpn_offered) or "nothing"
            return ConnectionFailed(
                "alpn_mismatch",
                f"server dropped the connection before echoing, after a handshake that agreed on no "
                f"ALPN protocol (we offered {offered}): most likely it requires one (strict ALPN)",
                ERROR_KINDS["alpn_mismatch"].fix)
        return exc

    async def _receive_frame(self) -> bytes:
        dec = self._decoder
        while True:
            try:
                frame = dec.next_frame()
            except FrameTooLargeError as exc:
                header = exc.declared.to_bytes(4, "big")
                if not isinstance(self.stream, trio.SSLStream) and header[0] in _TLS_RECORD_TYPES and header[1] == 3:
                    raise ConnectionFailed(
                        "plaintext_peer", f"the server answered with a TLS record (bytes {header.hex()}), not an echo",
                        "the server speaks TLS: drop --plaintext (and pass --cafile if it uses a private CA)",
                    ) from exc
                raise ConnectionFailed("frame_too_large", f"server sent {exc}", ERROR_KINDS["frame_too_large"].fix) from exc
            if frame is not None:
                return frame
            data = await self.stream.receive_some()
            if not data:
                detail = "server closed the connection (with close_notify) before echoing"
                if not isinstance(self.stream, trio.SSLStream):
                    detail = "server closed the connection before echoing (a TLS server? then drop --plaintext)"
                if dec.mid_frame:
                    detail = "server closed the connection in the middle of the echo"
                raise ConnectionFailed("closed_early", detail, ERROR_KINDS["closed_early"].fix)
            dec.feed(data)

    async def aclose(self) -> None:
        """Send close_notify and close (bounded; never waits for the server's reply)."""
        with trio.move_on_after(min(self._timeout, 2.0)):
            try:
                await self.stream.aclose()
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await trio.aclose_forcefully(self.stream)

    async def __aenter__(self) -> EchoConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _unwrap_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Turn a send/receive nursery failure into one ConnectionFailed (the most telling one)."""
    excs = list(group.exceptions)
    for e in excs:
        if isinstance(e, ConnectionFailed):
            return e
    failures = [_failure(e, "echo") for e in excs
                if isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError, OSError))]
    # The send side often sees only "reset" while the receive side read the TLS alert
    # that says why (e.g. our client certificate was rejected): prefer the specific one.
    for f in failures:
        if f.kind not in ("reset", "truncated"):
            return f
    return failures[0] if failures else excs[0]


def _first_diff(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _failure(exc: BaseException, phase: str) -> ConnectionFailed:
    c = classify(exc, phase=phase, side="client")
    kind, detail, hint = c.kind, c.detail, c.hint
    if phase in ("echo", "post-handshake") and is_ragged_eof(exc):
        kind = "truncated"
        detail = ("server closed TCP without close_notify before the echo arrived" if phase == "echo"
                  else "server closed TCP without close_notify right after the handshake")
        hint = ("the server most likely rejected this connection after the handshake "
                "(client certificate, ALPN) or crashed; check its log")
    if kind == "handshake_eof":
        hint = ("the server most likely rejected us without sending an alert: check that it "
                "trusts our client certificate (mTLS), accepts our TLS versions and ALPN; see its log")
    if kind == "handshake_failure" and phase == "handshake":
        hint = ("the server aborted the handshake with a generic alert: most often it requires a client "
                "certificate (mTLS: pass --cert) or no cipher/group/signature algorithm overlaps "
                "(compare `trioecho policy show` with the server's settings)")
    if kind == "reset" and phase in ("echo", "post-handshake"):
        hint = "the server dropped the connection: check its log (a rejected client certificate looks like this on TLS 1.3)"
    return ConnectionFailed(kind, detail, hint)


async def open_echo_connection(
    host: str,
    port: int,
    *,
    policy: Policy | None = None,
    servername: str | None = None,
    timeout: float = 10.0,
    plaintext: bool = False,
    sessions: SessionCache | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_frame: int = MAX_FRAME,
    open_stream: OpenStream | None = None,
    diagnose_plaintext: bool = True,
    diagnoses: dict[tuple[str, int, str], list[str]] | None = None,
) -> EchoConnection:
    """Connect, handshake and verify, under one deadline.

    Args:
        host: name or IP (IPv6 without brackets).
        port: TCP port.
        policy: TLS policy for the client context (default: ``Policy()``).
        servername: the name to verify and send as SNI (default: ``host``).
        timeout: one deadline for TCP connect + TLS handshake, and for each echo.
        plaintext: no TLS at all.
        sessions: resume the session kept here, and keep the new one.
        ssl_context: use this context instead of building one (never modified);
            pass the same one every time for resumption to work.
        max_frame: refuse echoes longer than this.
        open_stream: ``await open_stream(host, port)`` opens the transport instead of
            ``trio.open_tcp_stream`` (e.g. through a tunnel, or a latency-injecting
            connector in tests); its duration is reported as the TCP connect time.
        diagnose_plaintext: when the server drops the handshake without a word, try one
            plaintext echo on a new connection to tell a plaintext echo server apart.
        diagnoses: a dict kept across calls (e.g. one per ping run) so a repeated hostname
            mismatch is explained without a new diagnostic connection each time.

    Returns:
        An open :class:`EchoConnection`.

    Raises:
        ConnectionFailed: refused, timeout, DNS, any TLS or verification failure.
        ConfigError: the policy cannot build a client context.
    """
    policy = policy or Policy()
    ctx: ssl.SSLContext | None = None
    if not plaintext:
        if ssl_context is None:
            ctx = policy.client_context()
            _trace.install(ctx)  # our own context: see what the server's handshake says
        else:
            ctx = ssl_context
    name = servername or host
    tcp_time = 0.0
    stream: trio.abc.Stream | None = None
    phase = "connect"
    with trio.move_on_after(timeout) as cs:
        try:
            t0 = trio.current_time()
            sock = await (open_stream or trio.open_tcp_stream)(host, port)
            tcp_time = trio.current_time() - t0
            stream = sock
            if ctx is None:
                return EchoConnection(sock, tls=None, tcp_time=tcp_time, tls_time=None,
                                      max_frame=max_frame, timeout=timeout, sessions=None)
            phase = "handshake"
            ssl_stream = trio.SSLStream(sock, ctx, server_hostname=name)
            stream = ssl_stream
            if sessions is not None and sessions.session is not None:
                try:
                    ssl_stream.session = sessions.session
                except ValueError:
                    sessions.session = None  # from another context: start afresh
            t1 = trio.current_time()
            try:
                await ssl_stream.do_handshake()
            except trio.BrokenResourceError:
                await flush_alert(ssl_stream)  # tell the server why we hang up
                raise
            tls_time = trio.current_time() - t1
        except OSError as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise _failure(exc, phase) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            failure = _failure(exc, phase)
            trace = _trace.trace_of(getattr(stream, "_ssl_object", None))
            if (failure.kind in ("handshake_failure", "handshake_eof") and trace is not None
                    and trace.cert_requested and policy.client_cert is None):
                failure = ConnectionFailed(
                    "client_cert_required",
                    f"the server asked for a client certificate (CertificateRequest), we had none, and it "
                    f"aborted the handshake ({failure.detail})",
                    ERROR_KINDS["client_cert_required"].fix,
                )
            elif (failure.kind == "handshake_failure" and trace is not None and not trace.server_hello
                    and "ALERT_HANDSHAKE_FAILURE" in failure.detail):
                # Refused before any ServerHello: the server found nothing in our ClientHello to agree on.
                failure = ConnectionFailed(
                    "no_shared_cipher",
                    "the server refused our ClientHello with a handshake_failure alert before answering it: "
                    "most likely no cipher suite, group or signature algorithm in common",
                    ERROR_KINDS["no_shared_cipher"].fix,
                )
            if failure.kind == "hostname_mismatch":
                names = await _peer_names(host, port, policy, name, timeout, open_stream, diagnoses)
                failure = _explain(failure, name, names)
            elif failure.kind == "handshake_eof" and diagnose_plaintext:
                if await _answers_plaintext_echo(host, port, min(timeout, PLAINTEXT_PROBE_TIMEOUT), open_stream):
                    failure = ConnectionFailed(
                        "plaintext_peer",
                        "the server dropped our TLS handshake but echoes plaintext frames: it is a plaintext "
                        "echo server (serve --plaintext)",
                        "use --plaintext against it, or start it with --cert to speak TLS",
                    )
            elif failure.kind == "handshake_failure" and policy.client_cert is None:
                # A TLS 1.2 server that requires a client certificate says only
                # "handshake_failure" (RFC 5246); TLS 1.3 says certificate_required.
                failure = ConnectionFailed(failure.kind, failure.detail,
                                           f"{failure.hint}; if the server requires a client certificate "
                                           "(mTLS), pass --cert client.pem")
            raise failure from exc
    if cs.cancelled_caught:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        where = "TCP connect" if phase == "connect" else "TLS handshake"
        raise ConnectionFailed(
            "timeout", f"{where} to {host}:{port} took longer than {timeout:g}s",
            "the server may not speak TLS on that port (try --plaintext), or it is overloaded; raise --timeout"
            if phase == "handshake" else ERROR_KINDS["timeout"].fix,
        )
    assert ctx is not None
    info = _tls_info(ssl_stream, policy, name, verified=ctx.verify_mode != ssl.CERT_NONE)
    return EchoConnection(ssl_stream, tls=info, tcp_time=tcp_time, tls_time=tls_time,
                          max_frame=max_frame, timeout=timeout, sessions=sessions)


def _tls_info(s: trio.SSLStream[Any], policy: Policy, name: str, *, verified: bool) -> TLSInfo:
    cipher = s.cipher()
    der = s.getpeercert(binary_form=True)
    peer: PeerCert | None = None
    if der:
        try:
            peer = PeerCert.from_der(der)
        except ValueError as exc:  # a certificate cryptography cannot parse: show what we can
            log.debug("cannot parse the peer certificate: %s", exc)
            peer = PeerCert(subject=None, issuer=None, san=[])
    # trio forwards a fixed list of SSLObject attributes, and group() (3.15+) is newer than it.
    obj = getattr(s, "_ssl_object", s)
    trace = _trace.trace_of(obj)
    group = _group_of(obj)
    note = None
    if group is None and trace is not None and trace.group is not None:
        group, note = trace.group, GROUP_FROM_TRACE
    elif group is None:
        note = GROUP_UNKNOWN_REASON.format(*sys.version_info[:2])
    return TLSInfo(
        signature_scheme=None if trace is None else trace.signature_scheme,
        client_cert_requested=None if trace is None else trace.cert_requested,
        client_cert_sent=bool(trace and trace.cert_requested and policy.client_cert is not None),
        version=s.version(),
        cipher=cipher[0] if cipher else None,
        cipher_bits=cipher[2] if cipher else None,
        group=group,
        group_note=note,
        alpn=s.selected_alpn_protocol(),
        alpn_offered=list(policy.client_alpn()),
        sni=None if _is_ip(name) else name,
        resumed=bool(s.session_reused),
        verified=verified,
        peer=peer,
    )


def _explain(f: ConnectionFailed, name: str, names: list[str]) -> ConnectionFailed:
    """Say which names the certificate holds when it does not hold ours."""
    if f.kind != "hostname_mismatch":
        return f
    held = f" (it holds {', '.join(names)})" if names else ""
    first = next((n.split(":", 1)[1] for n in names if n.startswith(("DNS:", "IP:"))), None)
    fix = (f"pass --servername {first} or reissue the certificate with {name!r}" if first
           else f"pass --servername with a name the certificate holds, or reissue it with {name!r}")
    return ConnectionFailed("hostname_mismatch", f"server certificate is not for {name!r}{held}", fix)


async def _peer_names(host: str, port: int, policy: Policy, name: str, timeout: float,
                      open_stream: OpenStream | None = None,
                      cache: dict[tuple[str, int, str], list[str]] | None = None) -> list[str]:
    """Diagnose a hostname mismatch: reconnect verifying the chain but not the name, read the SANs.

    ``cache`` (one per ping run) keeps the answer, so ``ping -c 100`` against a
    misnamed server makes one diagnostic connection, not 100.
    """
    key = (host, port, name)
    if cache is not None and key in cache:
        return cache[key]
    names = await _read_peer_names(host, port, policy, name, timeout, open_stream)
    if cache is not None and names:
        cache[key] = names
    return names


async def _read_peer_names(host: str, port: int, policy: Policy, name: str, timeout: float,
                           open_stream: OpenStream | None) -> list[str]:
    ctx = policy.client_context()
    ctx.check_hostname = False
    with trio.move_on_after(timeout):
        try:
            sock = await (open_stream or trio.open_tcp_stream)(host, port)
            s = trio.SSLStream(sock, ctx, server_hostname=name)
            try:
                await s.do_handshake()
                der = s.getpeercert(binary_form=True)
                return PeerCert.from_der(der).san if der else []
            finally:
                # close_notify, so the server logs a clean close rather than a vanished client
                with trio.move_on_after(1.0):
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        await s.aclose()
                await trio.aclose_forcefully(s)
        except (OSError, trio.BrokenResourceError, ValueError):
            return []
    return []


#: How long the plaintext-echo diagnosis may take.
PLAINTEXT_PROBE_TIMEOUT = 2.0


async def _answers_plaintext_echo(host: str, port: int, timeout: float, open_stream: OpenStream | None) -> bool:
    """Does the server echo a plaintext frame?  (Diagnosis after a handshake it dropped.)"""
    probe = encode_frame(b"trioecho plaintext probe")
    with trio.move_on_after(timeout):
        try:
            stream = await (open_stream or trio.open_tcp_stream)(host, port)
        except OSError:
            return False
        try:
            await stream.send_all(probe)
            got = b""
            while len(got) < len(probe):
                chunk = await stream.receive_some(len(probe) - len(got))
                if not chunk:
                    break
                got += chunk
            return got == probe
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        finally:
            await trio.aclose_forcefully(stream)
    return False


async def _speaks_tls(host: str, port: int, timeout: float, open_stream: OpenStream | None) -> bool:
    """Does the server complete a TLS handshake?  (Diagnosis for a --plaintext ping it dropped.)

    Verification is off on purpose: this only asks "is it TLS?", and nothing is sent.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with trio.move_on_after(timeout):
        try:
            stream = trio.SSLStream(await (open_stream or trio.open_tcp_stream)(host, port), ctx,
                                    server_hostname=None if _is_ip(host) else host)
        except OSError:
            return False
        try:
            await stream.do_handshake()
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        finally:
            await trio.aclose_forcefully(stream)
    return False


async def resolve_once(host: str, port: int) -> list[str]:
    """The addresses a name resolves to (for display)."""
    infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    out: list[str] = []
    for *_, sa in infos:
        addr = str(sa[0])
        if addr not in out:
            out.append(addr)
    return out


def random_payload(size: int) -> bytes:
    """Random bytes (so compression or caching anywhere cannot fake an echo)."""
    return os.urandom(size)


def stats(values: Sequence[float]) -> dict[str, float | None]:
    """min/avg/median/max/mdev (population) like iputils ping; p95/p99 by nearest rank from n >= 20/100."""
    if not values:
        return {"n": 0, "min": None, "avg": None, "median": None, "max": None, "mdev": None, "p95": None, "p99": None}
    v = sorted(values)
    n = len(v)
    avg = sum(v) / n
    mdev = math.sqrt(max(sum(x * x for x in v) / n - avg * avg, 0.0))
    med = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

    def rank(p: float) -> float:
        return v[max(0, math.ceil(p * n) - 1)]

    return {
        "n": n, "min": v[0], "avg": avg, "median": med, "max": v[-1], "mdev": mdev,
        "p95": rank(0.95) if n >= 20 else None,
        "p99": rank(0.99) if n >= 100 else None,
    }


#: After a handshake-only probe, how long to wait for TLS 1.3 session tickets


#: After a TLS 1.3 handshake-only probe, how long to wait at least for a session ticket (or a
#: server's rejection of our certificate), unless the ticket comes sooner.
TICKET_WAIT = 0.1
#: ...and at least this many TCP-connect round trips, for links slower than loopback.
TICKET_WAIT_RTTS = 3
#: How often to look whether a ticket has arrived while reading (it ends the wait early).
TICKET_POLL = 0.0005


@dataclass(frozen=True)
class PingOptions:
    """What ``trioecho ping`` does; see the CLI's --help for each field.

    Raises:
        ConfigError: contradictory settings (e.g. ``keepalive`` with ``handshake_only``).
    """

    host: str
    port: int = DEFAULT_PORT
    servername: str | None = None
    count: int = 4
    interval: float = 1.0
    sizes: tuple[int, ...] = (64,)
    timeout: float = 10.0
    plaintext: bool = False
    handshake_only: bool = False
    resume: bool = True
    warmup: int = 0
    max_frame: int = MAX_FRAME
    #: Echoes per probe over its connection: the first is timed as "first echo", the rest as "steady".
    echoes: int = 1
    #: One connection for the whole run: every probe after the first is steady echoes only.
    keepalive: bool = False

    def __post_init__(self) -> None:
        from .errors import ConfigError

        if self.echoes < 1:
            raise ConfigError(f"--echoes must be at least 1, not {self.echoes}")
        if self.count < 1:
            raise ConfigError(f"--count must be at least 1, not {self.count}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be 0 or more, not {self.warmup}")
        if self.handshake_only and self.keepalive:
            raise ConfigError("--keepalive measures echoes over one connection; --handshake-only sends none: "
                              "drop one of them")
        if self.handshake_only and self.echoes > 1:
            raise ConfigError("--echoes counts echoes per connection; --handshake-only sends none: drop one of them")
        if not self.sizes:
            raise ConfigError("--size needs at least one size")


def _stats_of(values: Iterable[float | None]) -> dict[str, float | None]:
    return stats([v for v in values if v is not None])


@dataclass
class PingReport:
    """Everything one ping run saw: the first connection's TLS details, every probe."""

    options: PingOptions
    tls: TLSInfo | None = None
    probes: list[Probe] = field(default_factory=list)

    @property
    def measured(self) -> list[Probe]:
        """The probes that count (warmup probes left out)."""
        return [p for p in self.probes if not p.warmup]

    def summary(self) -> dict[str, Any]:
        """Counts and statistics per phase, in seconds (``stats()`` dictionaries).

        ``handshake_rtts_*`` are the per-probe ratios handshake time / TCP connect time.
        ``first_echo`` is the first echo on each new connection; ``steady_echo`` every
        other echo.  ``sizes`` repeats the echo statistics per payload size.
        """
        probes = self.measured
        ok = [p for p in probes if p.ok]
        fresh_ok = [p for p in ok if p.fresh]
        full = [p for p in fresh_ok if p.tls is not None and not p.resumed]
        resumed = [p for p in fresh_ok if p.tls is not None and p.resumed]
        repeat = [p for p in fresh_ok if p.seq > 0]
        errors: dict[str, int] = {}
        for p in probes:
            if p.error_kind:
                errors[p.error_kind] = errors.get(p.error_kind, 0) + 1
        sizes: dict[int, dict[str, Any]] = {}
        for size in dict.fromkeys(p.size for p in probes):
            at = [p for p in probes if p.size == size]
            at_ok = [p for p in at if p.ok]
            sizes[size] = {
                "probes": len(at),
                "received": len(at_ok),
                "first_echo": _stats_of(p.first_echo for p in at_ok),
                "steady_echo": _stats_of(x for p in at_ok for x in p.steady_samples()),
            }
        return {
            "transmitted": len(probes),
            "received": len(ok),
            "failed": len(probes) - len(ok),
            "loss": (len(probes) - len(ok)) / len(probes) if probes else None,
            "connections": sum(1 for p in probes if p.fresh),
            "tcp": _stats_of(p.tcp for p in fresh_ok),
            "tls": _stats_of(p.tls for p in fresh_ok),
            "tls_full": _stats_of(p.tls for p in full),
            "tls_resumed": _stats_of(p.tls for p in resumed),
            "handshake_rtts_full": _stats_of(p.handshake_rtts for p in full),
            "handshake_rtts_resumed": _stats_of(p.handshake_rtts for p in resumed),
            "first_echo": _stats_of(p.first_echo for p in ok),
            "steady_echo": _stats_of(x for p in ok for x in p.steady_samples()),
            "resumed": len(resumed),
            "resumption_rate": (sum(1 for p in repeat if p.resumed) / len(repeat)) if repeat else None,
            "errors": errors,
            "sizes": sizes,
        }


class Pinger:
    """Runs probes, timing every phase.

    Default: a new connection per probe (resuming the TLS session from the second on),
    ``echoes`` frames over each.  ``keepalive``: one connection for the whole run
    (reopened, and timed again, only if it breaks).

    Args:
        options: what to do.
        policy: the client TLS policy.
        open_stream: passed to :func:`open_echo_connection` (default ``trio.open_tcp_stream``).
    """

    def __init__(self, options: PingOptions, policy: Policy | None = None, *,
                 open_stream: OpenStream | None = None) -> None:
        self.options = options
        self.policy = policy or Policy()
        self._ctx = None if options.plaintext else self.policy.client_context()
        if self._ctx is not None:
            _trace.install(self._ctx)
        self._sessions = SessionCache() if options.resume else None
        self._diagnoses: dict[tuple[str, int, str], list[str]] = {}  # hostname-mismatch names, per run
        self._open_stream = open_stream
        self._conn: EchoConnection | None = None
        self._last_tls: TLSInfo | None = None

    async def run(self, on_probe: Callable[[PingReport, Probe], None] | None = None,
                  report: PingReport | None = None) -> PingReport:
        """Run all probes (warmup first); call ``on_probe(report, probe)`` after each.

        Args:
            on_probe: called after every probe.
            report: fill this report (so a caller that cancels the run keeps what was measured).
        """
        o = self.options
        report = report if report is not None else PingReport(options=o)
        total = o.warmup + o.count
        try:
            for i in range(total):
                size = o.sizes[i % len(o.sizes)]
                probe = await self.probe(i, size)
                probe.warmup = i < o.warmup
                if report.tls is None and probe.ok and probe.fresh and self._last_tls is not None:
                    report.tls = self._last_tls
                report.probes.append(probe)
                if on_probe is not None:
                    on_probe(report, probe)
                if i + 1 < total and o.interval > 0:
                    await trio.sleep(o.interval)
        finally:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.aclose()
        return report

    async def probe(self, seq: int, size: int) -> Probe:
        """One probe: connect and handshake (unless kept alive), echo ``size`` random bytes, close."""
        o = self.options
        p = Probe(seq=seq, size=size)
        conn = self._conn
        if conn is None:
            try:
                conn = await open_echo_connection(
                    o.host, o.port, policy=self.policy, servername=o.servername, timeout=o.timeout,
                    plaintext=o.plaintext, sessions=self._sessions, ssl_context=self._ctx,
                    max_frame=o.max_frame, open_stream=self._open_stream,
                    diagnose_plaintext=not o.handshake_only, diagnoses=self._diagnoses,
                )
            except ConnectionFailed as exc:
                p.error_kind, p.error, p.hint = exc.kind, exc.detail, exc.hint
                return p
            p.tcp, p.tls = conn.tcp_time, conn.tls_time
            if conn.tls is not None:
                p.resumed = conn.tls.resumed
                self._last_tls = conn.tls
        else:
            p.fresh = False
            self._conn = None
        keep = False
        try:
            if o.handshake_only:
                if isinstance(conn.stream, trio.SSLStream):
                    wait = min(max(TICKET_WAIT, TICKET_WAIT_RTTS * conn.tcp_time), o.timeout)
                    await _after_handshake(conn.stream, self._sessions, wait)
            else:
                payload = random_payload(size)
                p.echo = await conn.echo(payload)
                for _ in range(o.echoes - 1):
                    p.steady.append(await conn.echo(payload))
            p.ok = True
            keep = o.keepalive
        except ConnectionFailed as exc:
            p.error_kind, p.error, p.hint = exc.kind, exc.detail, exc.hint
            if o.plaintext and exc.kind == "closed_early" and p.fresh:
                if await _speaks_tls(o.host, o.port, min(o.timeout, PLAINTEXT_PROBE_TIMEOUT), self._open_stream):
                    p.error_kind = "plaintext_peer"
                    p.error = "the server closed on our plaintext frame, and completes a TLS handshake: it speaks TLS"
                    p.hint = "drop --plaintext (and pass --cafile if it uses a private CA)"
        finally:
            if keep:
                self._conn = conn
            else:
                await conn.aclose()
        return p


async def _after_handshake(s: trio.SSLStream[Any], sessions: SessionCache | None, wait: float) -> None:
    """After a handshake-only probe's handshake, read until the server has accepted us.

    TLS 1.3 only: session tickets arrive after the handshake, and so does a server's rejection
    of our client certificate (its alert answers our Finished, where the tickets would come).
    So read until a ticket arrived (the server accepted our Finished) or ``wait`` passed; an
    alert or a drop in that window is a failure, although our handshake "succeeded".  Data the
    server volunteers (a banner) is read and ignored; a clean close is fine.  TLS 1.2 finishes
    with the server's Finished: nothing comes after it.

    Raises:
        ConnectionFailed: the server sent an alert or dropped the connection.
    """
    if s.version() == "TLSv1.3":
        failure: ConnectionFailed | None = None
        trace = _trace.trace_of(getattr(s, "_ssl_object", None))
        ticket = trio.Event()
        if trace is not None:
            trace.on_ticket = ticket.set
        with trio.move_on_after(wait):
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    nonlocal failure
                    try:
                        while await s.receive_some():
                            pass
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        failure = _failure(exc, "post-handshake")
                    nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                # The ticket is processed inside receive_some, which does not return for it: the
                # handshake trace tells us when it arrives; without the trace, poll.
                if trace is not None:
                    await ticket.wait()
                else:
                    while not _has_ticket(s):
                        await trio.sleep(TICKET_POLL)
                nursery.cancel_scope.cancel()
        if trace is not None:
            trace.on_ticket = None
        if failure is not None:
            raise failure
    if sessions is not None:
        sessions.offer(s)


def _has_ticket(s: trio.SSLStream[Any]) -> bool:
    sess = s.session
    return sess is not None and bool(sess.has_ticket)


# -- expectations (--expect KEY=VALUE) ----------------------------------------------------------

#: What --expect can check, and what each value means.
EXPECT_KEYS: dict[str, str] = {
    "version": "negotiated TLS version: 1.2, 1.3, TLSv1.3 ...",
    "cipher": "negotiated cipher suite, e.g. TLS_AES_256_GCM_SHA384",
    "alpn": "negotiated ALPN protocol, or none",
    "resumed": "yes: every new connection after the first resumed; no: none did",
    "verify": "ok: the certificate and name were verified; off: --insecure",
    "sni": "the SNI name sent, or none (IP address targets send none)",
    "key": "the server key type: RSA, EC, EC P-256, Ed25519 ...",
    "min_days_left": "the server certificate is valid for at least N more days",
    "group": "negotiated key-exchange group, e.g. X25519 (from the handshake when ssl cannot say)",
}


@dataclass(frozen=True)
class Expectation:
    """One ``--expect KEY=VALUE`` check, evaluated against a finished :class:`PingReport`."""

    key: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Expectation:
        """Parse ``KEY=VALUE``.

        Raises:
            ConfigError: no ``=``, an unknown key, a bad value, or a key this Python cannot check.
        """
        from .errors import ConfigError

        key, sep, value = text.partition("=")
        key, value = key.strip().lower().replace("-", "_"), value.strip()
        if not sep or not key:
            raise ConfigError(f"--expect {text!r}: write KEY=VALUE, e.g. --expect version=TLSv1.3")
        if key not in EXPECT_KEYS:
            raise ConfigError(f"--expect {text!r}: unknown key {key!r}; known keys: {', '.join(EXPECT_KEYS)}")
        if key == "resumed" and value.lower() not in ("yes", "no", "true", "false"):
            raise ConfigError(f"--expect {text!r}: resumed takes yes or no")
        if key == "verify" and value.lower() not in ("ok", "off"):
            raise ConfigError(f"--expect {text!r}: verify takes ok or off")
        if key == "version":
            try:
                from .policy import parse_version

                value = "TLSv" + parse_version(value)
            except ConfigError:
                raise ConfigError(f"--expect {text!r}: version takes 1.2 or 1.3 (or TLSv1.2, TLSv1.3)") from None
        if key == "min_days_left":
            try:
                int(value)
            except ValueError:
                raise ConfigError(f"--expect {text!r}: min_days_left takes a whole number of days") from None
        if key == "group" and not (hasattr(ssl.SSLObject, "group") or hasattr(ssl.SSLContext, "_msg_callback")):
            raise ConfigError(
                f"--expect {text!r}: this Python ({sys.version_info[0]}.{sys.version_info[1]}) cannot tell the "
                "negotiated group (SSLObject.group() arrives in Python 3.15, python/cpython#136306); "
                "check it with `openssl s_client -brief` or restrict it with --groups instead"
            )
        return cls(key, value)

    def check(self, report: PingReport) -> ExpectResult:
        """Compare with what the run saw (the first connection's TLS details, every probe)."""
        actual = self._actual(report)
        want = self.value
        if self.key == "resumed":
            ok = actual.startswith("yes") if want.lower() in ("yes", "true") else actual.startswith("no")
        elif self.key == "min_days_left":
            ok = actual.lstrip("-").isdigit() and int(actual) >= int(want)
        elif self.key == "key":
            ok = actual.lower() == want.lower() or actual.lower().startswith(want.lower() + " ")
        else:
            ok = actual.lower() == want.lower()
        return ExpectResult(self.key, want, actual, ok)

    def _actual(self, report: PingReport) -> str:
        tls = report.tls
        if self.key == "resumed":
            repeat = [p for p in report.measured if p.ok and p.fresh and p.seq > 0]
            n = sum(1 for p in repeat if p.resumed)
            if not repeat:
                return "unknown (no repeat connection completed: use --count 2 or more)"
            if n == len(repeat):
                return f"yes ({n}/{len(repeat)} repeat connections resumed)"
            if n == 0:
                return f"no (0/{len(repeat)} repeat connections resumed)"
            return f"partly ({n}/{len(repeat)} repeat connections resumed)"
        if tls is None:
            return "unknown (no TLS connection completed)"
        if self.key == "version":
            return tls.version or "unknown"
        if self.key == "cipher":
            return tls.cipher or "unknown"
        if self.key == "alpn":
            return tls.alpn or "none"
        if self.key == "verify":
            return "ok" if tls.verified else "off"
        if self.key == "sni":
            return tls.sni or "none"
        if self.key == "group":
            return tls.group or "unknown"
        peer = tls.peer
        if peer is None:
            return "unknown (no server certificate)"
        if self.key == "key":
            return peer.key_type or "unknown"
        return "unknown" if peer.days_left is None else str(peer.days_left)


@dataclass(frozen=True)
class ExpectResult:
    """The outcome of one :class:`Expectation`."""

    key: str
    expected: str
    actual: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
