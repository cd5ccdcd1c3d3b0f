"""The --json and --jsonl output match the schema documented in docs/ping.md, both ways.

The tables in docs/ping.md are the specification: every field the output has must be documented
with its type, and every documented field must appear (in a run that exercises all of them).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import trio

from trioecho.testing import TestPKI

from .conftest import CLI, ROOT, cli_env
from .test_cli import start_serve

DOC = ROOT / "docs" / "ping.md"
STATS_KEYS = {"n", "min", "avg", "median", "max", "mdev", "p95", "p99"}
ROW = re.compile(r"^\| `([^`]+)` \| ([a-z\[\]?]+) \|")


def doc_tables() -> dict[str, dict[str, str]]:
    """{section heading: {field path: type}} for the schema tables of docs/ping.md."""
    tables: dict[str, dict[str, str]] = {}
    section = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            section = line
        m = ROW.match(line)
        if m and "schema" in section:
            tables.setdefault(section, {})[m.group(1)] = m.group(2)
    return tables


def spec(name: str) -> dict[str, str]:
    (table,) = [t for s, t in doc_tables().items() if f"`{name}`" in s]
    return table


def type_ok(value: Any, t: str) -> bool:
    if t.endswith("?"):
        if value is None:
            return True
        t = t[:-1]
    if t.startswith("array["):
        inner = t[6:-1]
        return isinstance(value, list) and all(type_ok(v, inner) for v in value)
    return {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "stats": lambda v: isinstance(v, dict) and set(v) == STATS_KEYS and isinstance(v["n"], int)
        and all(x is None or isinstance(x, (int, float)) for x in v.values()),
    }[t](value)


def walk(value: Any, path: str, table: dict[str, str], seen: set[str]) -> None:
    assert path in table, f"{path} is in the output but not documented in {DOC.name}"
    t = table[path]
    assert type_ok(value, t), f"{path}: {value!r} is not {t}"
    seen.add(path)
    if isinstance(value, dict) and t.rstrip("?") == "object":
        if any(k.startswith(path + ".") for k in table):  # a record, not a map
            for k, v in value.items():
                walk(v, f"{path}.{k}", table, seen)
    elif isinstance(value, list) and t == "array":
        for item in value:
            for k, v in item.items():
                walk(v, f"{path}[].{k}", table, seen)


def check_document(doc: dict[str, Any], table: dict[str, str]) -> set[str]:
    seen: set[str] = set()
    for k, v in doc.items():
        walk(v, k, table, seen)
    return seen


async def run_ping(port: str, pki: TestPKI, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, "ping", f"localhost:{port}", "--cafile", str(pki.ca_pem), "-c", "3", "-i", "0", "--warmup", "1",
            "--echoes", "2", "--size", "64,1k", "--expect", "version=1.3", "--expect", "alpn=echo/1", *extra]
    return await trio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=60))


async def test_json_and_jsonl_match_the_documented_schema(pki: TestPKI) -> None:
    table = spec("--json")
    lines_table = spec("--jsonl")
    async with await start_serve(pki) as serve:
        port = (await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1).decode()
        res = await run_ping(port, pki, "--json")
        res_l = await run_ping(port, pki, "--jsonl")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "trioecho.ping/1"
    seen = check_document(doc, table)
    assert set(table) - seen == set(), f"documented but missing from the output: {set(table) - seen}"
    assert len(doc["probes"]) == 4 and doc["probes"][0]["warmup"] is True
    assert [e["ok"] for e in doc["expectations"]] == [True, True]

    assert res_l.returncode == 0, res_l.stdout + res_l.stderr
    lines = [json.loads(line) for line in res_l.stdout.splitlines()]
    assert [d["type"] for d in lines] == ["probe"] * 4 + ["summary"]
    probe_table = {k[len("probes[]."):]: t for k, t in table.items() if k.startswith("probes[].")}
    summary_table = {k: t for k, t in table.items() if not k.startswith("probes") and k != "schema"}
    for line in lines:
        assert set(list(line)[:2]) == {"schema", "type"} and line["schema"] == "trioecho.ping.jsonl/1"
        rest = {k: v for k, v in line.items() if k not in ("schema", "type")}
        seen = check_document(rest, probe_table if line["type"] == "probe" else summary_table)
        expected = set(probe_table if line["type"] == "probe" else summary_table)
        assert expected - seen == set(), expected - seen
    assert set(lines_table) == {"schema", "type"}


async def test_failed_probe_json_has_nulls_not_zeros(pki: TestPKI) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    argv = [*CLI, "ping", f"127.0.0.1:{port}", "-c", "1", "--json", "--profile", "baseline"]
    res = await trio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=60))
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    check_document(doc, spec("--json"))
    (p,) = doc["probes"]
    assert p["error_kind"] == "refused" and p["tcp_ms"] is None and p["tls_ms"] is None
    assert p["first_echo_ms"] is None and doc["tls"] is None
    assert doc["summary"]["tcp_ms"]["n"] == 0 and doc["summary"]["tcp_ms"]["min"] is None


def test_doc_tables_parse() -> None:
    assert len(spec("--json")) > 60
    assert Path(DOC).is_file()
