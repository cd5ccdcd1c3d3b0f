"""Counters: the stats summary, --stats-interval, and Prometheus scrapes over loopback (--metrics)."""

from __future__ import annotations

import functools
import signal
import sys
import urllib.request
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from trioecho import SessionCache, open_echo_connection
from trioecho.metrics import MetricsUnavailable, make_registry, serve_metrics
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .peers import run
from .server_helpers import read_until_closed


async def _http(port: int, request: bytes) -> tuple[int, bytes]:
    s = await trio.open_tcp_stream("127.0.0.1", port)
    await s.send_all(request)
    raw = await read_until_closed(s)
    await s.aclose()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _traffic(pki: TestPKI, port: int) -> None:
    """Two clean connections (the second resumed), one plaintext client, one failed verification."""
    policy = pki.client_policy()
    ctx, sessions = policy.client_context(), SessionCache()
    for _ in range(2):
        conn = await open_echo_connection("localhost", port, policy=policy, ssl_context=ctx, sessions=sessions)
        async with conn:
            await conn.echo(b"m" * 100)
            await conn.echo(b"")
    s = await trio.open_tcp_stream("127.0.0.1", port)
    await s.send_all(b"GET / HTTP/1.0\r\n\r\n")
    await read_until_closed(s)
    await s.aclose()


async def test_scrape_returns_the_counters(pki: TestPKI, start_server: Any, nursery: trio.Nursery) -> None:
    srv = await start_server()
    (maddr,) = await nursery.start(functools.partial(serve_metrics, srv.server, host="127.0.0.1", port=0))
    await _traffic(pki, srv.port)
    await srv.wait_ended(3)
    code, body = await _http(maddr[1], b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 200
    m = _samples(body.decode())
    assert m[("trioecho_connections_total", ())] == 3
    assert m[("trioecho_connections_active", ())] == 0
    assert m[("trioecho_handshakes_total", (("kind", ""), ("result", "ok")))] == 2
    assert m[("trioecho_handshakes_total", (("kind", "plaintext_peer"), ("result", "failed")))] == 1
    assert m[("trioecho_handshakes_resumed_total", ())] == 1
    assert m[("trioecho_resumption_ratio", ())] == 0.5
    assert m[("trioecho_tls_versions_total", (("version", "TLSv1.3"),))] == 2
    assert m[("trioecho_alpn_total", (("protocol", "echo/1"),))] == 2
    assert m[("trioecho_connection_outcomes_total", (("outcome", "clean"),))] == 2
    assert m[("trioecho_connection_outcomes_total", (("outcome", "plaintext_peer"),))] == 1
    assert m[("trioecho_connection_closes_total", (("close", "close_notify"),))] == 2
    assert m[("trioecho_connection_closes_total", (("close", "handshake_failed"),))] == 1
    assert m[("trioecho_frames_echoed_total", ())] == 4
    assert m[("trioecho_bytes_echoed_total", ())] == 2 * (104 + 4)
    assert m[("trioecho_reloads_total", (("result", "ok"),))] == 0
    assert m[("process_resident_memory_bytes", ())] > 0
    # the same numbers as the log summary
    assert "connections=3 " in srv.server.stats.summary() and "resumption_rate=50%" in srv.server.stats.summary()


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /other HTTP/1.1\r\n\r\n", 404),
    (b"\x16\x03\x01\x00\x10garbage\r\n\r\n", 400),
    (b"", 400),
])
async def test_metrics_endpoint_refuses_other_requests(pki: TestPKI, start_server: Any, nursery: trio.Nursery,
                                                       request_bytes: bytes, status: int) -> None:
    srv = await start_server()
    (maddr,) = await nursery.start(functools.partial(serve_metrics, srv.server, host="127.0.0.1", port=0))
    s = await trio.open_tcp_stream("127.0.0.1", maddr[1])
    if request_bytes:
        await s.send_all(request_bytes)
    else:
        await s.send_eof()
    raw = await read_until_closed(s)
    await s.aclose()
    assert int(raw.split()[1]) == status
    code, _ = await _http(maddr[1], b"GET /metrics HTTP/1.0\r\n\r\n")  # and still serves scrapes
    assert code == 200


def test_without_prometheus_client_the_error_says_what_to_install(pki: TestPKI, monkeypatch: Any) -> None:
    from trioecho import EchoServer

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(MetricsUnavailable, match=r"pip install 'trioecho\[metrics\]'"):
        make_registry(EchoServer(policy=pki.server_policy()))


async def test_cli_metrics_and_stats_interval(pki: TestPKI) -> None:
    argv = [*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(pki.server_pem),
            "--metrics", "127.0.0.1:0", "--stats-interval", "0.2"]
    async with run(argv, env=cli_env()) as serve:
        port = int((await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1))
        mport = int((await serve.read_until(rb"metrics on http://127\.0\.0\.1:(\d+)/metrics\n")).group(1))
        await _traffic(pki, port)
        await serve.read_until(rb"stats connections=3 [^\n]*resumption_rate=50%")  # periodic summary

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as r:  # a real HTTP client
                assert r.headers["Content-Type"].startswith("text/plain; version=")
                return str(r.read().decode())

        m = _samples(await trio.to_thread.run_sync(scrape))
        assert m[("trioecho_connections_total", ())] == 3
        assert m[("trioecho_handshakes_total", (("kind", "plaintext_peer"), ("result", "failed")))] == 1
        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await serve.proc.wait() == 0
        await serve.read_until(rb"stopped: connections=3 [^\n]*outcomes=\{clean:2,plaintext_peer:1\}")
    assert b"Traceback" not in serve.buf
