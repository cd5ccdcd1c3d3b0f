"""Prometheus metrics for a running :class:`~trioecho.server.EchoServer`.

Optional: needs ``prometheus-client`` (``pip install 'trioecho[metrics]'``).

Theory of operation
-------------------
The server already keeps its counters in :class:`~trioecho.server.ServerStats`;
a custom collector reads them at scrape time, so the echo path does no extra
bookkeeping and the numbers in the log summary and in Prometheus are the same
numbers.  The HTTP endpoint runs inside the server's own trio loop (not
prometheus-client's thread server) so a scrape reads the counters between two
trio steps and never sees a half-updated state.  It is bounded like the echo
server: request size, request deadline, concurrent scrapes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import trio

from .errors import ConfigError

if TYPE_CHECKING:
    from .server import EchoServer

__all__ = ["MetricsUnavailable", "make_registry", "render", "serve_metrics"]

log = logging.getLogger("trioecho.metrics")

#: A scrape request larger than this is refused (a GET is a few hundred bytes).
MAX_REQUEST = 8192
#: A scraper must send its request within this time.
REQUEST_TIMEOUT = 5.0
#: Scrapes served at once; more wait in the accept backlog.
MAX_SCRAPES = 8


class MetricsUnavailable(ConfigError):
    """prometheus-client is not installed."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MetricsUnavailable(
            "--metrics needs prometheus-client: pip install 'trioecho[metrics]' (or pip install prometheus-client)"
        ) from exc
    return prometheus_client


class _StatsCollector:
    """Reads ServerStats at scrape time."""

    def __init__(self, server: EchoServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self._server.stats

        def counter(name: str, doc: str, value: float) -> Any:
            return CounterMetricFamily(f"trioecho_{name}", doc, value=value)

        def labelled(name: str, doc: str, label: str, values: dict[str, int]) -> Any:
            fam = CounterMetricFamily(f"trioecho_{name}", doc, labels=[label])
            for key, n in sorted(values.items()):
                fam.add_metric([key], n)
            return fam

        yield counter("connections", "Connections accepted", st.connections)
        yield GaugeMetricFamily("trioecho_connections_active", "Connections open now", value=st.active)
        yield GaugeMetricFamily("trioecho_connections_peak", "Most connections open at once", value=st.peak_active)
        hs = CounterMetricFamily("trioecho_handshakes", "TLS handshakes by result and failure kind",
                                 labels=["result", "kind"])
        hs.add_metric(["ok", ""], st.handshakes_ok)
        for kind, n in sorted(st.handshakes_failed.items()):
            hs.add_metric(["failed", kind], n)
        yield hs
        yield counter("handshakes_resumed", "Completed handshakes that resumed a session", st.resumed)
        rate = st.resumption_rate
        yield GaugeMetricFamily("trioecho_resumption_ratio", "Resumed / completed handshakes (NaN before the first)",
                                value=float("nan") if rate is None else rate)
        yield labelled("tls_versions", "Negotiated TLS versions", "version", dict(st.versions))
        yield labelled("alpn", "Negotiated ALPN protocols ('-': none)", "protocol", dict(st.alpn))
        yield labelled("connection_outcomes", "Ended connections by outcome (clean, client_gone, error kinds)",
                       "outcome", dict(st.outcomes))
        yield labelled("connection_closes", "Ended connections by how the transport closed", "close",
                       dict(st.closes))
        yield counter("frames_echoed", "Frames echoed", st.frames)
        yield counter("bytes_echoed", "Bytes echoed", st.bytes)
        yield counter("bytes_received", "Bytes received", st.bytes_in)
        rl = CounterMetricFamily("trioecho_reloads", "Certificate/policy reloads (SIGHUP) by result", labels=["result"])
        rl.add_metric(["ok"], st.reloads)
        rl.add_metric(["refused"], st.reload_failures)
        yield rl


def make_registry(server: EchoServer, *, process: bool = True) -> Any:
    """A prometheus-client registry exposing ``server``'s counters.

    Args:
        server: the server whose :class:`~trioecho.server.ServerStats` to expose.
        process: also expose ``process_*`` metrics (resident memory, CPU, fds).

    Raises:
        MetricsUnavailable: prometheus-client is not installed.
    """
    pc = _prometheus()
    registry = pc.CollectorRegistry(auto_describe=False)
    registry.register(_StatsCollector(server))
    if process:
        pc.ProcessCollector(registry=registry)
    return registry


def render(registry: Any) -> bytes:
    """The registry in Prometheus text exposition format."""
    return bytes(_prometheus().generate_latest(registry))


async def serve_metrics(
    server: EchoServer,
    *,
    host: str,
    port: int,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` over plain HTTP until cancelled.

    Args:
        server: whose counters to expose.
        host: address to bind (loopback unless scrapers are remote).
        port: TCP port; 0 picks a free one.
        task_status: receives the bound ``(host, port)`` list once listening.

    Raises:
        MetricsUnavailable: prometheus-client is not installed.
        OSError: the address cannot be bound.
    """
    registry = make_registry(server)
    ctype = str(_prometheus().CONTENT_TYPE_LATEST)
    listeners = await trio.open_tcp_listeners(port, host=host)
    addrs = [tuple(lst.socket.getsockname()[:2]) for lst in listeners]
    limiter = trio.CapacityLimiter(MAX_SCRAPES)

    async def handle(stream: trio.SocketStream) -> None:
        async with limiter:
            try:
                await _answer(stream, registry, ctype)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("metrics scrape failed: %s", exc)
            finally:
                await trio.aclose_forcefully(stream)

    task_status.started(addrs)
    await trio.serve_listeners(handle, listeners)


async def _answer(stream: trio.SocketStream, registry: Any, ctype: str) -> None:
    buf = bytearray()
    with trio.move_on_after(REQUEST_TIMEOUT):
        while b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) <= MAX_REQUEST:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            buf += chunk
    line = bytes(buf).split(b"\n", 1)[0].decode("latin-1").strip()
    parts = line.split()
    if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
        status, body, typ = "400 Bad Request", b"expected: GET /metrics\n", "text/plain"
    elif parts[1].split("?", 1)[0] not in ("/metrics", "/"):
        status, body, typ = "404 Not Found", b"metrics are at /metrics\n", "text/plain"
    else:
        status, body, typ = "200 OK", render(registry), ctype
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {typ}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    await stream.send_all(head + (body if parts[:1] != ["HEAD"] else b""))
