"""The echo server: TCP listeners in a nursery, one task per connection, TLS under the framing.

Theory of operation
-------------------
``EchoServer.serve`` opens trio TCP listeners and runs one accept loop per
listener in an *accept* nursery; each accepted connection gets a task in a
separate *connection* nursery, so accepting can stop (shutdown) while
connections finish.

A connection task (``handle_stream``) owns every failure of its connection:

1. TLS handshake under one overall deadline (a client dribbling one byte at a
   time cannot extend it).  On failure the pending TLS alert is flushed so the
   client learns why (trio does not send it, python-trio/trio#3413).
2. The echo loop: receive, let the sans-IO :class:`~trioecho.framing.FrameScanner`
   validate the bytes, send the validated bytes straight back.  The echo of a
   length-prefixed stream is the identity on bytes, so no frame is ever
   buffered whole: memory per connection is one TLS record.  Between frames the
   receive runs under the idle timeout; inside a frame under the frame deadline;
   sends under the send timeout (a client that never reads is dropped, not
   buffered for).
3. Close: ``aclose()`` sends close_notify and does not wait for the peer's
   (never ``unwrap()``), bounded by ``close_timeout``; a cancelled close falls
   back to a forceful one.

Every end of connection is classified (:mod:`trioecho._classify`) and logged in
one line; expected network faults never produce a traceback; the server keeps
serving.  Cancellation is never swallowed.

Shutdown (``shutdown()``): stop accepting, wake connections idle between frames,
echo whatever they had already sent (bytes sitting in socket buffers are read
until the connection has been quiet for ``SHUTDOWN_QUIET`` seconds at a frame
boundary), close them with close_notify, let connections inside a frame finish it
within ``grace`` seconds, then cancel the rest (still trying close_notify).

Each connection end records two things: ``outcome`` (a kind from
``errors.ERROR_KINDS``, or ``clean``/``shutdown``) and ``close``, how the
transport ended (one of :data:`CLOSE_KINDS`), which the counters aggregate.
"""

from __future__ import annotations

import contextvars
import errno
import logging
import math
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ._classify import classify, is_ragged_eof
from ._compat import flush_alert, send_tickets_now
from ._proxyio import proxy_peer
from ._transport import SendTimedOut, TransportStream, for_tls
from .errors import ConfigError, FrameTooLargeError
from .framing import MAX_FRAME, FrameScanner
from .policy import Policy
from .proxyproto import ProxyProtocolError

__all__ = ["CLOSE_KINDS", "DEFAULT_PORT", "ConnectionInfo", "EchoServer", "ServerLimits", "ServerStats"]

log = logging.getLogger("trioecho.server")

#: The chapter's example port.
DEFAULT_PORT = 9443

#: accept() errors that mean "out of resources right now", not "listener broken"
#: (the same list trio's serve_listeners uses).
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
#: How long to back off when accept() hits a resource limit.
_ACCEPT_BACKOFF = 0.1
#: Log a resource-limit accept error at most this often (it repeats every backoff).
_ACCEPT_ERROR_LOG_EVERY = 10.0
#: On shutdown, a connection at a frame boundary is closed once it has sent
#: nothing for this long.  Frames the client sent before the signal are already
#: in socket buffers and arrive well within it, so they are still echoed; a
#: client that keeps sending is cut at ``grace``.
SHUTDOWN_QUIET = 0.25

#: How a connection's transport ended (the ``close`` field and counter labels).
CLOSE_KINDS = {
    "close_notify": "the client sent a TLS close_notify (or, in plaintext, a TCP FIN) at a frame boundary",
    "no_close_notify": "the client closed TCP without a TLS close_notify",
    "reset": "the connection was reset (RST, broken pipe)",
    "timeout": "a handshake, idle, frame or send deadline expired and the server closed",
    "protocol_error": "the client broke the framing or the ALPN policy and the server closed",
    "handshake_failed": "the TLS handshake failed (its class is the outcome)",
    "server": "the server closed it (shutdown)",
    "internal_error": "a bug in trioecho; the connection was dropped and logged with a traceback",
}
#: One TLS record's plaintext at most: SSLObject.read(n) allocates n bytes before
#: shrinking, and SSL_read never returns more than one record (uvloop#726).
_TLS_RECEIVE = 16384


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on everything a client can make the server spend.

    Args:
        max_frame: largest frame body accepted (the chapter's 1 MiB).
        handshake_timeout: one overall deadline for the TLS handshake.
        idle_timeout: how long a client may stay silent between frames.
        frame_timeout: how long one frame's bytes may take to arrive, from its first byte.
        send_timeout: how long one echo send may block on a client that does not read.
        close_timeout: how long close_notify may take before the close turns forceful.
        max_connections: connections served at once; more wait in the kernel's
            accept backlog until a slot frees (memory stays bounded).
        grace: on shutdown, how long connections inside a frame may take to finish it.
    """

    max_frame: int = MAX_FRAME
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    frame_timeout: float = 30.0
    send_timeout: float = 30.0
    close_timeout: float = 2.0
    max_connections: int = 4096
    grace: float = 5.0

    def __post_init__(self) -> None:
        for name in ("handshake_timeout", "idle_timeout", "frame_timeout", "send_timeout", "close_timeout"):
            v = getattr(self, name)
            if not (v > 0 and not math.isnan(v)):
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive number of seconds, not {v}")
        if self.grace < 0:
            raise ConfigError(f"--grace must be zero or more seconds, not {self.grace}")
        if not 0 <= self.max_frame <= (1 << 32) - 1:
            raise ConfigError(f"--max-frame must be between 0 and 4294967295 bytes, not {self.max_frame}")
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections must be at least 1, not {self.max_connections}")


@dataclass
class ConnectionInfo:
    """What happened on one connection; logged once when it ends."""

    peer: str
    tls: bool = True
    version: str | None = None
    cipher: str | None = None
    alpn: str | None = None
    resumed: bool | None = None
    sni: str | None = None
    client_subject: str | None = None
    frames: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    #: "clean" (EOF or close_notify at a frame boundary), "shutdown", or an error kind.
    outcome: str = "open"
    #: How the transport ended: a key of :data:`CLOSE_KINDS` ("" while open).
    close: str = ""
    detail: str = ""

    def fields(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "outcome": self.outcome,
            "close": self.close,
            "tls": self.version if self.tls else "plaintext",
            "cipher": self.cipher,
            "alpn": self.alpn,
            "resumed": self.resumed,
            "sni": self.sni,
            "client": self.client_subject,
            "frames": self.frames,
            "bytes": self.bytes,
            "ms": round(self.duration * 1000, 1),
            "detail": self.detail,
        }


@dataclass
class ServerStats:
    """Counters since the server started (read by ``--stats-interval``, the
    shutdown summary and the Prometheus exporter in :mod:`trioecho.metrics`).

    Attributes:
        connections: connections accepted (including ones that failed the handshake).
        active: connections open now; ``peak_active`` the most at once.
        handshakes_ok: completed TLS handshakes; ``resumed`` of them were resumptions.
        handshakes_failed: failed handshakes by error kind (``handshake_timeout``, ``tls_version``...).
        outcomes: ended connections by outcome (``clean``, ``client_gone``, error kinds...).
        closes: ended connections by close kind (:data:`CLOSE_KINDS`).
        versions, alpn: negotiated TLS versions and ALPN protocols (``-`` for none).
        frames, bytes: frames and bytes echoed back.
        bytes_in: bytes received (counted as they arrive, so open connections count too).
    """

    connections: int = 0
    active: int = 0
    peak_active: int = 0
    handshakes_ok: int = 0
    handshakes_failed: Counter[str] = field(default_factory=Counter)
    resumed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    alpn: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    bytes: int = 0
    bytes_in: int = 0
    reloads: int = 0
    reload_failures: int = 0

    @property
    def resumption_rate(self) -> float | None:
        """Resumed handshakes / completed handshakes (``None`` before the first)."""
        return self.resumed / self.handshakes_ok if self.handshakes_ok else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy of every counter."""
        return {
            "connections": self.connections,
            "active": self.active,
            "peak_active": self.peak_active,
            "handshakes_ok": self.handshakes_ok,
            "handshakes_failed": dict(self.handshakes_failed),
            "resumed": self.resumed,
            "resumption_rate": self.resumption_rate,
            "outcomes": dict(self.outcomes),
            "closes": dict(self.closes),
            "versions": dict(self.versions),
            "alpn": dict(self.alpn),
            "frames": self.frames,
            "bytes": self.bytes,
            "bytes_in": self.bytes_in,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
        }

    def summary(self) -> str:
        """The counters on one line (for the log)."""
        rate = self.resumption_rate
        return (
            f"connections={self.connections} active={self.active} peak_active={self.peak_active} "
            f"handshakes_ok={self.handshakes_ok} "
            f"handshakes_failed={sum(self.handshakes_failed.values())} {_kv(self.handshakes_failed)} "
            f"resumed={self.resumed} resumption_rate={'-' if rate is None else f'{rate:.0%}'} "
            f"frames={self.frames} bytes={self.bytes} bytes_in={self.bytes_in} "
            f"outcomes={_kv(self.outcomes)} closes={_kv(self.closes)} "
            f"versions={_kv(self.versions)} alpn={_kv(self.alpn)}"
        )


def _kv(c: Counter[str]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in sorted(c.items())) + "}"


class _Conn:
    """Per-connection state the server needs to reach from outside the task."""

    __slots__ = ("info", "io_scope", "idle_scope", "mid_frame")

    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self.io_scope = trio.CancelScope()
        self.idle_scope: trio.CancelScope | None = None
        #: a frame has started and not finished (decides "went away" vs "truncated")
        self.mid_frame = False


#: The connection whose handshake is running in this task (for the SNI callback).
_current_conn: contextvars.ContextVar[_Conn | None] = contextvars.ContextVar("trioecho_conn", default=None)


class EchoServer:
    """A framed echo server over TLS (or plaintext TCP).

    Args:
        policy: the TLS policy; ``None`` (with ``plaintext=True``) serves bare TCP.
        limits: timeouts and bounds.
        plaintext: serve the same framing without TLS (to measure what TLS costs).
        ssl_context: use this server context instead of building one from the
            policy (it is never modified; SNI is then not recorded).

    Attributes:
        proxy_protocol: "off" (default), or "v1", "v2", "any": read a PROXY protocol
            header before TLS and log the client address it carries (behind a load balancer).

    Raises:
        ConfigError: the policy cannot build a server context.
    """

    proxy_protocol: str = "off"

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        limits: ServerLimits | None = None,
        plaintext: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limits = limits or ServerLimits()
        self.plaintext = plaintext
        self.policy = policy
        self.stats = ServerStats()
        self.on_connection_end: list[Callable[[ConnectionInfo], None]] = []
        self._context: ssl.SSLContext | None = None
        if not plaintext:
            if ssl_context is not None:
                self._context = ssl_context
            elif policy is not None:
                self._context = self._build_context(policy)
            else:
                raise ConfigError("a TLS server needs a policy with a certificate (or plaintext=True)")
        self._conns: set[_Conn] = set()
        self._limiter = trio.CapacityLimiter(self.limits.max_connections)
        self._draining = False
        self._accept_scope: trio.CancelScope | None = None
        self._last_accept_error_log = -math.inf
        self._all_idle = trio.Event()

    # -- configuration ------------------------------------------------------------------

    def _build_context(self, policy: Policy) -> ssl.SSLContext:
        ctx = policy.server_context()
        previous = ctx.sni_callback

        def record_sni(obj: Any, name: str | None, c: ssl.SSLContext) -> Any:
            conn = _current_conn.get()
            if conn is not None:
                conn.info.sni = name
            if previous is not None:
                return previous(obj, name, c)  # type: ignore[arg-type]
            return None

        ctx.sni_callback = record_sni
        return ctx

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The context new connections use (one for all: tickets resume across them)."""
        return self._context

    def reload(self, policy: Policy) -> None:
        """Use a new policy (e.g. renewed certificates) for new connections.

        Open connections keep the context they started with.

        Raises:
            ConfigError: the new policy is broken; the old context stays in use.
        """
        try:
            ctx = self._build_context(policy)
        except ConfigError:
            self.stats.reload_failures += 1
            raise
        self.policy = policy
        self._context = ctx
        self.stats.reloads += 1
        log.info("reloaded: new connections use the new certificates and policy; %d open connections "
                 "keep the old ones", len(self._conns))

    # -- serving ---------------------------------------------------------------------------

    async def serve(
        self,
        *,
        host: str | None = None,
        port: int = DEFAULT_PORT,
        listeners: list[trio.SocketListener] | None = None,
        task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until cancelled or until :meth:`shutdown` completes.

        Args:
            host: address to bind (``None``: all interfaces).
            port: TCP port; 0 picks a free one.
            listeners: serve these already-bound listeners instead (``host`` and
                ``port`` are then ignored); used by :mod:`trioecho.workers`.
            task_status: receives the bound ``(host, port)`` list once listening.

        Raises:
            OSError: the address cannot be bound (e.g. in use).
        """
        if listeners is None:
            listeners = await _open_listeners(port, host)
        addrs = [tuple(lst.socket.getsockname()[:2]) for lst in listeners]
        try:
            async with trio.open_nursery() as conn_nursery:
                with trio.CancelScope() as accept_scope:
                    self._accept_scope = accept_scope
                    if self._draining:
                        accept_scope.cancel()
                    async with trio.open_nursery() as accept_nursery:
                        for lst in listeners:
                            accept_nursery.start_soon(self._accept_loop, lst, conn_nursery)
                        task_status.started(addrs)
                # Accepting stopped (shutdown): give connections their grace time.
                for lst in listeners:
                    lst.socket.close()
                await self._drain()
        finally:
            for lst in listeners:
                lst.socket.close()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self._limiter.acquire_on_behalf_of(listener)
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._limiter.release_on_behalf_of(listener)
                if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                    now = trio.current_time()
                    if now - self._last_accept_error_log >= _ACCEPT_ERROR_LOG_EVERY:
                        self._last_accept_error_log = now
                        log.error("accept: %s (%d connections open); retrying every %.1fs until it clears "
                                  "(raise the file limit with `ulimit -n`, or lower --max-connections)",
                                  exc.strerror, len(self._conns), _ACCEPT_BACKOFF)
                    await trio.sleep(_ACCEPT_BACKOFF)
                    continue
                raise
            except BaseException:
                self._limiter.release_on_behalf_of(listener)
                raise
            token = object()
            self._limiter.release_on_behalf_of(listener)
            # Re-borrow under a per-connection token, released when the task ends.
            self._limiter.acquire_on_behalf_of_nowait(token)
            nursery.start_soon(self._run_accepted, stream, token)

    async def _run_accepted(self, stream: trio.SocketStream, token: object) -> None:
        try:
            try:
                peer = _format_addr(stream.socket.getpeername())
            except OSError:
                peer = "?"
            if self.proxy_protocol != "off":
                try:
                    peer = await proxy_peer(stream, peer, self.proxy_protocol, self.limits.handshake_timeout)
                except ProxyProtocolError as exc:
                    self._account(ConnectionInfo(peer=peer, outcome="proxy_protocol", detail=str(exc)))
                    await trio.aclose_forcefully(stream)
                    return
            await self.handle_stream(stream, peer=peer)
        finally:
            self._limiter.release_on_behalf_of(token)

    def shutdown(self) -> None:
        """Stop accepting; close idle connections; let frames in flight finish (``grace``)."""
        if self._draining:
            return
        self._draining = True
        log.info("shutting down: no new connections; %d open", len(self._conns))
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        for conn in list(self._conns):
            if conn.idle_scope is not None:
                conn.idle_scope.cancel()

    @property
    def draining(self) -> bool:
        return self._draining

    async def _drain(self) -> None:
        with trio.move_on_after(self.limits.grace):
            while self._conns:
                self._all_idle = trio.Event()
                await self._all_idle.wait()
        for conn in list(self._conns):
            conn.info.outcome = conn.info.outcome if conn.info.outcome != "open" else "shutdown"
            conn.io_scope.cancel()

    # -- one connection ---------------------------------------------------------------------

    async def handle_stream(self, stream: trio.abc.Stream, *, peer: str = "?") -> ConnectionInfo:
        """Serve one connection over any trio stream (TCP, in-memory...) until it ends.

        TLS is layered on here unless the server is plaintext.  Never raises for
        anything the peer does; returns what happened.
        """
        info = ConnectionInfo(peer=peer, tls=not self.plaintext)
        conn = _Conn(info)
        self._conns.add(conn)
        st = self.stats
        st.connections += 1
        st.active += 1
        st.peak_active = max(st.peak_active, st.active)
        token = _current_conn.set(conn)
        phase = "handshake"
        s: trio.abc.Stream = stream
        try:
            with conn.io_scope:
                try:
                    if not self.plaintext:
                        assert self._context is not None
                        s = trio.SSLStream(for_tls(stream, send_timeout=self.limits.send_timeout),
                                           self._context, server_side=True)
                        await self._handshake(s, conn)
                    phase = "echo"
                    await self._echo(s, conn)
                except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError,
                        OSError, FrameTooLargeError, trio.TooSlowError) as exc:
                    self._record_failure(conn, exc, phase)
                except Exception as exc:  # a bug of ours: contain it, log it loudly, keep serving
                    info.outcome = info.close = "internal_error"
                    info.detail = f"{type(exc).__name__}: {exc}"
                    log.exception("internal error on connection from %s", peer)
            if conn.io_scope.cancelled_caught and info.outcome in ("open", "shutdown"):
                info.outcome, info.close = "shutdown", "server"
                info.detail = info.detail or "server shutting down; grace time over"
            await self._close(s, conn)
        finally:
            _current_conn.reset(token)
            self._conns.discard(conn)
            st.active -= 1
            if not self._conns:
                self._all_idle.set()
            info.duration = time.monotonic() - info.started
            self._account(info)
        return info

    async def _handshake(self, s: trio.SSLStream[Any], conn: _Conn) -> None:
        info = conn.info
        with trio.move_on_after(self.limits.handshake_timeout) as cs:
            try:
                await s.do_handshake()
            except trio.BrokenResourceError:
                await flush_alert(s)
                raise
            if isinstance(s.transport_stream, (trio.SocketStream, TransportStream)):
                await send_tickets_now(s)  # so clients that hang up at once can resume
        if cs.cancelled_caught:
            raise trio.TooSlowError
        info.version = s.version()
        cipher = s.cipher()
        info.cipher = cipher[0] if cipher else None
        info.alpn = s.selected_alpn_protocol()
        info.resumed = bool(s.session_reused)
        info.client_subject = _subject(s.getpeercert())
        self.stats.handshakes_ok += 1
        if info.resumed:
            self.stats.resumed += 1
        if self.policy is not None and self.policy.alpn_strict and info.alpn is None:
            raise _AlpnRefused("client offered no ALPN protocol this server accepts "
                               f"({','.join(self.policy.server_alpn())}); strict ALPN closes it")

    async def _echo(self, s: trio.abc.Stream, conn: _Conn) -> None:
        info = conn.info
        lim = self.limits
        st = self.stats
        scanner = FrameScanner(max_frame=lim.max_frame)
        receive_size = None if self.plaintext else _TLS_RECEIVE
        frame_deadline = math.inf
        while True:
            mid = conn.mid_frame = scanner.mid_frame
            if mid:
                deadline, kind = frame_deadline, "frame_timeout"
                conn.idle_scope = None
            elif self._draining:
                # Shutting down: echo what the client already sent, close once it is quiet.
                deadline, kind = trio.current_time() + SHUTDOWN_QUIET, "shutdown"
                conn.idle_scope = None
            else:
                deadline, kind = trio.current_time() + lim.idle_timeout, "idle_timeout"
            with trio.CancelScope(deadline=deadline) as cs:
                if kind == "idle_timeout":
                    conn.idle_scope = cs
                try:
                    data = await s.receive_some(receive_size)
                except trio.BrokenResourceError as exc:
                    if not is_ragged_eof(exc):
                        raise
                    info.close = "no_close_notify"
                    if mid:
                        info.outcome = "truncated"
                        info.detail = "peer closed without close_notify in the middle of a frame"
                    else:
                        info.outcome = "client_gone"
                        info.detail = "peer closed without close_notify between frames (no frame cut)"
                    return
            conn.idle_scope = None
            if cs.cancelled_caught:
                if self._draining and not mid:
                    if kind == "idle_timeout":
                        continue  # woken by shutdown: look for frames already sent, then close
                    info.outcome, info.close = "shutdown", "server"
                    info.detail = "closed at a frame boundary by server shutdown"
                    return
                info.outcome, info.close = kind, "timeout"
                info.detail = (f"no frame for {lim.idle_timeout:g}s" if kind == "idle_timeout"
                               else f"frame incomplete after {lim.frame_timeout:g}s")
                return
            if not data:
                info.close = "close_notify"  # (in plaintext: a FIN, the same clean end)
                if mid:
                    info.outcome = "truncated"
                    info.detail = "peer closed in the middle of a frame"
                else:
                    info.outcome = "clean"
                return
            st.bytes_in += len(data)
            try:
                out = scanner.feed(data)
            except FrameTooLargeError as exc:
                if exc.echo_ok:
                    await self._send(s, exc.echo_ok)
                    info.bytes += len(exc.echo_ok)
                info.frames = scanner.frames
                if self.plaintext and scanner.frames == 0 and scanner.bytes_in == len(data) and data[:2] == b"\x16\x03":
                    # A TLS record header (handshake, version 3.x) read as a length prefix.
                    raise _TlsOnPlaintext(
                        "client sent a TLS ClientHello to this plaintext server: "
                        "use TLS on both sides (drop --plaintext here) or --plaintext on both") from exc
                raise
            conn.mid_frame = scanner.mid_frame
            if not mid and scanner.mid_frame:
                frame_deadline = trio.current_time() + lim.frame_timeout
            if out:
                await self._send(s, out)
            info.frames = scanner.frames
            info.bytes += len(out)

    async def _send(self, s: trio.abc.Stream, data: bytes | bytearray) -> None:
        if type(s) is trio.SSLStream and type(s.transport_stream) is TransportStream:
            # The transport times out a send that blocks (its slow path only): no scope per echo.
            try:
                await s.send_all(data)
            except SendTimedOut as exc:
                raise _SendTimeout(str(exc)) from exc
            except trio.BrokenResourceError as exc:
                raise _ClientGone("client went away before its echo was delivered") from exc
            return
        # send_all returns once the kernel took the bytes: a client that does not
        # read fills its socket buffers, then this blocks (we stop receiving, so
        # the client is throttled too) until send_timeout drops it.
        with trio.move_on_after(self.limits.send_timeout) as cs:
            try:
                await s.send_all(data)
            except trio.BrokenResourceError as exc:
                raise _ClientGone("client went away before its echo was delivered") from exc
        if cs.cancelled_caught:
            raise _SendTimeout(f"client read nothing for {self.limits.send_timeout:g}s")

    async def _close(self, s: trio.abc.Stream, conn: _Conn) -> None:
        with trio.move_on_after(self.limits.close_timeout):
            try:
                await s.aclose()
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
        await trio.aclose_forcefully(s)

    def _record_failure(self, conn: _Conn, exc: BaseException, phase: str) -> None:
        info = conn.info
        if isinstance(exc, _SendTimeout):
            info.outcome, info.close, info.detail = "send_timeout", "timeout", str(exc)
            return
        if isinstance(exc, _AlpnRefused):
            info.outcome, info.close, info.detail = "alpn_mismatch", "protocol_error", str(exc)
            return
        if isinstance(exc, _TlsOnPlaintext):
            info.outcome, info.close, info.detail = "plaintext_peer", "protocol_error", str(exc)
            return
        if isinstance(exc, _ClientGone):
            if conn.mid_frame:  # it left while sending a frame: that frame was cut
                info.outcome, info.close = "reset", "reset"
                info.detail = "connection reset in the middle of a frame"
            else:
                info.outcome, info.close, info.detail = "client_gone", "reset", str(exc)
            return
        c = classify(exc, phase=phase, side="server")
        kind = c.kind
        info.outcome, info.detail = kind, c.detail
        if phase == "handshake":
            self.stats.handshakes_failed[kind] += 1
            info.close = "handshake_failed"
        elif kind == "frame_too_large":
            info.close = "protocol_error"
        elif kind.endswith("timeout"):
            info.close = "timeout"
        elif kind == "truncated":
            info.close = "no_close_notify"
        else:
            info.close = "reset"
            if kind in ("reset", "client_gone") and not conn.mid_frame:
                # Gone between frames: nothing was cut; it left without waiting for
                # (or reading) its last echo.  Not an error (pitfall 8).
                info.outcome = "client_gone"
                info.detail = f"{c.detail} between frames (no frame cut)"

    def _account(self, info: ConnectionInfo) -> None:
        st = self.stats
        if not info.close:
            info.close = "server"
        st.outcomes[info.outcome] += 1
        st.closes[info.close] += 1
        st.frames += info.frames
        st.bytes += info.bytes
        if info.version:
            st.versions[info.version] += 1
        if info.version or not info.tls:
            st.alpn[info.alpn or "-"] += 1
        level = logging.INFO
        if info.outcome == "internal_error":
            level = logging.ERROR
        log.log(level, "connection end %s", " ".join(
            f"{k}={_fmt(v)}" for k, v in info.fields().items() if v is not None and v != ""
        ), extra={"conn": info.fields()})
        for cb in self.on_connection_end:
            cb(info)


#: How many times to retry binding every address family to one shared free port.
_SAME_PORT_ATTEMPTS = 10


async def _open_listeners(port: int, host: str | None) -> list[trio.SocketListener]:
    """trio.open_tcp_listeners, but port 0 gives the SAME free port on every address.

    trio binds IPv4 and IPv6 separately, so port 0 would give each family its
    own port and ``listening on`` would print two ports for one server.  Bind
    once, then rebind every family on the first listener's port (retrying if
    another process takes it in between).
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port != 0 or len({lst.socket.getsockname()[1] for lst in listeners}) <= 1:
        return listeners
    for _ in range(_SAME_PORT_ATTEMPTS):
        chosen = listeners[0].socket.getsockname()[1]
        for lst in listeners:
            lst.socket.close()
        try:
            return await trio.open_tcp_listeners(chosen, host=host)
        except OSError:
            listeners = await trio.open_tcp_listeners(0, host=host)
            if len({lst.socket.getsockname()[1] for lst in listeners}) <= 1:
                return listeners
    return listeners


class _SendTimeout(trio.TooSlowError):
    pass


class _AlpnRefused(trio.BrokenResourceError):
    pass


class _TlsOnPlaintext(trio.BrokenResourceError):
    pass


class _ClientGone(trio.BrokenResourceError):
    pass


def _subject(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    parts = []
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            parts.append(f"{k}={v}")
    return ",".join(parts) or None


def _format_addr(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _fmt(v: Any) -> str:
    s = str(v)
    return f'"{s}"' if (" " in s or not s) else s
