"""trioecho bench: closed and open loop, new connections and resumption, errors by kind, the CLI."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import trio

from trioecho.bench import BenchOptions, BenchReport, run_bench
from trioecho.errors import ConfigError
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env


def _opts(pki: TestPKI, port: int, **kw: Any) -> BenchOptions:
    base: dict[str, Any] = dict(host="127.0.0.1", port=port, servername="localhost", policy=pki.client_policy(),
                                duration=0.3, warmup=0.0, timeout=5.0)
    base.update(kw)
    return BenchOptions(**base)


async def test_closed_loop_counts_echoes_and_orders_percentiles(start_server: Callable[..., Any],
                                                                pki: TestPKI) -> None:
    srv = await start_server()
    with trio.fail_after(30):
        rep = await run_bench(_opts(pki, srv.port, connections=3, size=1000))
    assert rep.echoes > 0 and not rep.errors
    assert rep.bytes == rep.echoes * 1000
    p = rep.percentiles()
    assert p["p50"] is not None and p["max"] is not None
    assert p["p50"] <= p["p90"] <= p["p99"] <= p["p99.9"] <= p["max"]  # type: ignore[operator]
    d = rep.as_dict()
    assert d["schema"] == "trioecho.bench/1" and d["options"]["mode"] == "closed-loop"
    json.dumps(d)


async def test_open_loop_offers_no_more_than_the_rate(start_server: Callable[..., Any], pki: TestPKI) -> None:
    srv = await start_server()
    with trio.fail_after(30):
        rep = await run_bench(_opts(pki, srv.port, connections=2, rate=50.0, duration=0.4))
    # 50/s for 0.4 s: at most 20 requests are due in the window, each counted from its due time.
    assert 0 < rep.echoes <= 20
    assert not rep.errors
    assert rep.as_dict()["options"]["mode"] == "open-loop"


async def test_new_connections_resume_after_the_first(start_server: Callable[..., Any], pki: TestPKI) -> None:
    srv = await start_server()
    with trio.fail_after(30):
        rep = await run_bench(_opts(pki, srv.port, connections=2, new_connection=True, resume=True))
    assert rep.handshakes_full >= 1  # the first connection of each slot
    assert rep.handshakes_resumed >= 1
    assert rep.handshakes_full + rep.handshakes_resumed == rep.echoes
    # The server saw the same resumptions.
    assert srv.server.stats.resumed >= rep.handshakes_resumed


async def test_refused_is_counted_by_kind_and_the_run_still_ends(pki: TestPKI) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with trio.fail_after(30):
            rep = await run_bench(_opts(pki, port, connections=2))
    assert rep.echoes == 0
    assert rep.errors["refused"] > 0


async def test_wrong_ca_is_unknown_ca_and_the_server_keeps_serving(start_server: Callable[..., Any], pki: TestPKI,
                                                                   rsa_pki: TestPKI) -> None:
    srv = await start_server()
    with trio.fail_after(30):
        bad = await run_bench(_opts(rsa_pki, srv.port, connections=1))
        good = await run_bench(_opts(pki, srv.port, connections=1))
    assert bad.echoes == 0 and set(bad.errors) == {"unknown_ca"}
    assert good.echoes > 0 and not good.errors


def test_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="--resume needs --new-connection"):
        BenchOptions(host="h", port=1, resume=True)
    with pytest.raises(ConfigError, match="--processes"):
        BenchOptions(host="h", port=1, connections=1, processes=2)
    with pytest.raises(ConfigError, match="--rate"):
        BenchOptions(host="h", port=1, rate=0)


def test_merge_adds_counts_and_latencies() -> None:
    a = BenchReport(options={}, elapsed=1.0, echoes=2, bytes=20, latencies=[0.1, 0.2])
    b = BenchReport(options={}, elapsed=1.0, echoes=1, bytes=10, latencies=[0.3])
    b.errors["reset"] += 1
    a.merge(b)
    assert (a.echoes, a.bytes, a.errors["reset"]) == (3, 30, 1)
    assert a.percentiles()["max"] == 0.3


async def test_cli_json_with_two_processes(start_server: Callable[..., Any], pki: TestPKI) -> None:
    srv = await start_server()
    with trio.fail_after(60):
        proc = await trio.run_process(
            [*CLI, "bench", f"127.0.0.1:{srv.port}", "--cafile", str(pki.ca_pem), "--servername", "localhost",
             "-c", "2", "--processes", "2", "-d", "0.5", "--warmup", "0.2", "--json"],
            capture_stdout=True, capture_stderr=True, env=cli_env(), check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["echoes"] > 0 and doc["errors"] == {}
    assert doc["options"]["processes"] == 2
    assert proc.stderr == b""  # no progress line when not on a terminal


async def test_cli_usage_errors_exit_2() -> None:
    with trio.fail_after(60):
        proc = await trio.run_process([*CLI, "bench", "127.0.0.1:9", "--resume"], capture_stdout=True,
                                      capture_stderr=True, env=cli_env(), check=False)
    assert proc.returncode == 2
    assert b"--resume needs --new-connection" in proc.stderr
    assert b"Traceback" not in proc.stderr


async def test_cli_text_report_and_exit_1_on_errors(pki: TestPKI) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with trio.fail_after(60):
            proc = await trio.run_process(
                [*CLI, "bench", f"127.0.0.1:{port}", "--cafile", str(pki.ca_pem), "-c", "1", "-d", "0.3",
                 "--warmup", "0"], capture_stdout=True, capture_stderr=True, env=cli_env(), check=False)
    assert proc.returncode == 1
    out = proc.stdout.decode()
    assert "errors      refused=" in out and "latency" in out
