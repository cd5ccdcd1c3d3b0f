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
"""

from __future__ import annotations

import ipaddress
import math
import os
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._classify import classify, is_ragged_eof
from ._compat import flush_alert
from .errors import ERROR_KINDS, ConnectionFailed, FrameTooLargeError
from .framing import MAX_FRAME, FrameDecoder, encode_frame
from .policy import Policy

__all__ = [
    "EchoConnection",
    "PeerCert",
    "Probe",
    "SessionCache",
    "TLSInfo",
    "open_echo_connection",
    "parse_target",
]

#: The chapter's default port, as for the server.
DEFAULT_PORT = 9443


def parse_target(target: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``HOST[:PORT]``; IPv6 literals work bracketed (``[::1]:9443``) or bare (``::1``).

    Raises:
        ConfigError: an empty host or a bad port.
    """
    from .errors import ConfigError

    t = target.strip()
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


@dataclass
class PeerCert:
    """The parts of a peer certificate a human checks first."""

    subject: str | None
    issuer: str | None
    san: list[str]
    not_after: str | None
    days_left: int | None

    @classmethod
    def from_dict(cls, cert: dict[str, Any]) -> PeerCert:
        def name(rdns: Any) -> str | None:
            parts = [f"{k}={v}" for rdn in rdns or () for k, v in rdn]
            return ",".join(parts) or None

        na = cert.get("notAfter")
        days = None
        if na:
            days = math.floor((ssl.cert_time_to_seconds(na) - time.time()) / 86400)
        return cls(
            subject=name(cert.get("subject")),
            issuer=name(cert.get("issuer")),
            san=[f"{t}:{v}" for t, v in cert.get("subjectAltName", ())],
            not_after=na,
            days_left=days,
        )


@dataclass
class TLSInfo:
    """What a TLS connection negotiated (None where not known)."""

    version: str | None = None
    cipher: str | None = None
    cipher_bits: int | None = None
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
    """One measurement: a connection (or one echo of a kept-alive connection).

    Times are seconds; a phase that did not run is ``None``, never 0.
    """

    seq: int
    size: int
    tcp: float | None = None
    tls: float | None = None
    echo: float | None = None
    resumed: bool | None = None
    ok: bool = False
    error_kind: str | None = None
    error: str | None = None
    hint: str | None = None
    warmup: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SessionCache:
    """Keeps the last resumable TLS session for one client context."""

    def __init__(self) -> None:
        self.session: ssl.SSLSession | None = None

    def offer(self, stream: trio.SSLStream[Any]) -> None:
        sess = stream.session
        if sess is not None and sess.has_ticket:
            self.session = sess


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
        frame = encode_frame(payload, max_frame=self._max_frame)
        t0 = time.perf_counter()
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
        rtt = time.perf_counter() - t0
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
    if phase == "echo" and is_ragged_eof(exc):
        kind = "truncated"
        detail = "server closed TCP without close_notify before the echo arrived"
        hint = ("the server most likely rejected this connection after the handshake "
                "(client certificate, ALPN) or crashed; check its log")
    if kind == "handshake_eof":
        hint = ("the server most likely rejected us without sending an alert: check that it "
                "trusts our client certificate (mTLS), accepts our TLS versions and ALPN; see its log")
    if kind == "reset" and phase == "echo":
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

    Returns:
        An open :class:`EchoConnection`.

    Raises:
        ConnectionFailed: refused, timeout, DNS, any TLS or verification failure.
        ConfigError: the policy cannot build a client context.
    """
    policy = policy or Policy()
    ctx: ssl.SSLContext | None = None
    if not plaintext:
        ctx = ssl_context or policy.client_context()
    name = servername or host
    tcp_time = 0.0
    stream: trio.abc.Stream | None = None
    phase = "connect"
    with trio.move_on_after(timeout) as cs:
        try:
            t0 = time.perf_counter()
            sock = await trio.open_tcp_stream(host, port)
            tcp_time = time.perf_counter() - t0
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
            t1 = time.perf_counter()
            try:
                await ssl_stream.do_handshake()
            except trio.BrokenResourceError:
                await flush_alert(ssl_stream)  # tell the server why we hang up
                raise
            tls_time = time.perf_counter() - t1
        except OSError as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise _failure(exc, phase) from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            failure = _failure(exc, phase)
            if failure.kind == "hostname_mismatch":
                names = await _peer_names(host, port, policy, name, timeout)
                failure = _explain(failure, name, names)
            if failure.kind == "handshake_failure" and policy.client_cert is None:
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
    cert = s.getpeercert()
    return TLSInfo(
        version=s.version(),
        cipher=cipher[0] if cipher else None,
        cipher_bits=cipher[2] if cipher else None,
        alpn=s.selected_alpn_protocol(),
        alpn_offered=list(policy.client_alpn()),
        sni=None if _is_ip(name) else name,
        resumed=bool(s.session_reused),
        verified=verified,
        peer=PeerCert.from_dict(cert) if cert else None,
    )


def _explain(f: ConnectionFailed, name: str, names: list[str]) -> ConnectionFailed:
    """Say which names the certificate holds when it does not hold ours."""
    if f.kind != "hostname_mismatch":
        return f
    held = f" (it holds {', '.join(names)})" if names else ""
    first = next((n.split(":", 1)[1] for n in names if n.startswith(("DNS:", "IP Address:"))), None)
    fix = (f"pass --servername {first} or reissue the certificate with {name!r}" if first
           else f"pass --servername with a name the certificate holds, or reissue it with {name!r}")
    return ConnectionFailed("hostname_mismatch", f"server certificate is not for {name!r}{held}", fix)


async def _peer_names(host: str, port: int, policy: Policy, name: str, timeout: float) -> list[str]:
    """Diagnose a hostname mismatch: reconnect verifying the chain but not the name, read the SANs."""
    ctx = policy.client_context()
    ctx.check_hostname = False
    with trio.move_on_after(timeout):
        try:
            sock = await trio.open_tcp_stream(host, port)
            s = trio.SSLStream(sock, ctx, server_hostname=name)
            try:
                await s.do_handshake()
                cert = s.getpeercert() or {}
                return [f"{t}:{v}" for t, v in cert.get("subjectAltName", ())]
            finally:
                await trio.aclose_forcefully(s)
        except (OSError, trio.BrokenResourceError):
            return []
    return []


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
#: (servers send them right after the handshake; we must read to receive them).
TICKET_WAIT = 0.1


@dataclass(frozen=True)
class PingOptions:
    """What ``trioecho ping`` does; see the CLI's --help for each field."""

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


@dataclass
class PingReport:
    """Everything one ping run saw: the first connection's TLS details, every probe."""

    options: PingOptions
    tls: TLSInfo | None = None
    probes: list[Probe] = field(default_factory=list)

    @property
    def measured(self) -> list[Probe]:
        return [p for p in self.probes if not p.warmup]

    def summary(self) -> dict[str, Any]:
        probes = self.measured
        ok = [p for p in probes if p.ok]
        full = [p.tls for p in ok if p.tls is not None and not p.resumed]
        resumed = [p.tls for p in ok if p.tls is not None and p.resumed]
        errors: dict[str, int] = {}
        for p in probes:
            if p.error_kind:
                errors[p.error_kind] = errors.get(p.error_kind, 0) + 1
        return {
            "transmitted": len(probes),
            "received": len(ok),
            "failed": len(probes) - len(ok),
            "loss": (len(probes) - len(ok)) / len(probes) if probes else None,
            "tcp": stats([p.tcp for p in ok if p.tcp is not None]),
            "tls": stats([p.tls for p in ok if p.tls is not None]),
            "tls_full": stats([t for t in full if t is not None]),
            "tls_resumed": stats([t for t in resumed if t is not None]),
            "echo": stats([p.echo for p in ok if p.echo is not None]),
            "resumed": sum(1 for p in ok if p.resumed),
            "resumption_rate": (sum(1 for p in ok[1:] if p.resumed) / (len(ok) - 1)) if len(ok) > 1 else None,
            "errors": errors,
        }


class Pinger:
    """Runs probes: one new connection each (resuming from the second on), timing every phase.

    Args:
        options: what to do.
        policy: the client TLS policy.
    """

    def __init__(self, options: PingOptions, policy: Policy | None = None) -> None:
        self.options = options
        self.policy = policy or Policy()
        self._ctx = None if options.plaintext else self.policy.client_context()
        self._sessions = SessionCache() if options.resume else None

    async def run(self, on_probe: Any = None) -> PingReport:
        """Run all probes; call ``on_probe(report, probe)`` after each.

        Raises:
            ConfigError: a setting is unusable (before any probe).
        """
        o = self.options
        report = PingReport(options=o)
        total = o.warmup + o.count
        seq = 0
        for i in range(total):
            size = o.sizes[i % len(o.sizes)] if o.sizes else 0
            probe = await self.probe(seq, size)
            probe.warmup = i < o.warmup
            if report.tls is None and probe.ok and probe.tls is not None:
                report.tls = self._last_tls
            report.probes.append(probe)
            if on_probe is not None:
                on_probe(report, probe)
            seq += 1
            if i + 1 < total and o.interval > 0:
                await trio.sleep(o.interval)
        return report

    _last_tls: TLSInfo | None = None

    async def probe(self, seq: int, size: int) -> Probe:
        """One probe: connect, handshake, echo ``size`` random bytes (unless handshake-only), close."""
        o = self.options
        p = Probe(seq=seq, size=size)
        try:
            conn = await open_echo_connection(
                o.host, o.port, policy=self.policy, servername=o.servername, timeout=o.timeout,
                plaintext=o.plaintext, sessions=self._sessions, ssl_context=self._ctx, max_frame=o.max_frame,
            )
        except ConnectionFailed as exc:
            p.error_kind, p.error, p.hint = exc.kind, exc.detail, exc.hint
            return p
        p.tcp, p.tls = conn.tcp_time, conn.tls_time
        if conn.tls is not None:
            p.resumed = conn.tls.resumed
            self._last_tls = conn.tls
        try:
            if o.handshake_only:
                if self._sessions is not None and isinstance(conn.stream, trio.SSLStream):
                    await _collect_tickets(conn.stream, self._sessions)
            else:
                p.echo = await conn.echo(random_payload(size))
            p.ok = True
        except ConnectionFailed as exc:
            p.error_kind, p.error, p.hint = exc.kind, exc.detail, exc.hint
        finally:
            await conn.aclose()
        return p


async def _collect_tickets(s: trio.SSLStream[Any], sessions: SessionCache) -> None:
    """Read briefly so TLS 1.3 session tickets sent after the handshake get processed."""
    if s.version() == "TLSv1.3":
        with trio.move_on_after(TICKET_WAIT):
            try:
                await s.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
    sessions.offer(s)
