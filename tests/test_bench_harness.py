"""The benchmark harness's bookkeeping (benchmarks/run.py): procfs readings, summaries, the ratio table.

The harness itself runs in CI as ``python benchmarks/run.py --smoke``; these tests
pin down the arithmetic a reader of its table relies on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_cpu_and_rss_of_a_process_tree(harness: ModuleType) -> None:
    t = harness.tree(os.getpid())
    assert os.getpid() in t
    assert harness.cpu_seconds(os.getpid()) > 0
    assert harness.rss_bytes(os.getpid()) > 1 << 20


def test_summary_is_median_min_max_and_skips_missing(harness: ModuleType) -> None:
    assert harness.summarize([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert harness.summarize([None]) is None


def test_table_ratios_and_wrong_side_marks(harness: ModuleType) -> None:
    sc = harness.Scenario("tput_64", "echo", 50, 64)
    results = {"tput_64": {
        "trioecho": [{"ops_per_s": 20000.0, "cpu_us_per_op": 30.0}, {"ops_per_s": 22000.0, "cpu_us_per_op": 32.0}],
        "asyncio": [{"ops_per_s": 25000.0, "cpu_us_per_op": 25.0}, {"ops_per_s": 25000.0, "cpu_us_per_op": 25.0}],
        "socat": [{"ops_per_s": 10000.0, "cpu_us_per_op": 60.0}, {"ops_per_s": 10000.0, "cpu_us_per_op": 60.0}],
    }}
    md = harness.table(results, [sc], ["trioecho", "asyncio", "socat"], 2)
    rows = {line.split("|")[2].strip(): line for line in md.splitlines()[2:]}
    # echo/s: 21000/25000 = 0.84 is worse (higher is better) -> marked; 21000/10000 = 2.10 is fine.
    assert "| 0.84 ✗ | 2.10 |" in rows["echo/s ↑"]
    # CPU per echo: 31/25 = 1.24 worse (lower is better) -> marked; 31/60 = 0.52 fine.
    assert "| 1.24 ✗ | 0.52 |" in rows["server CPU us/echo ↓"]
    assert "21,000 [20,000–22,000]" in rows["echo/s ↑"]


def test_smoke_scenarios_cover_every_kind(harness: ModuleType) -> None:
    kinds = {s.name.split("_")[0] for s in harness.scenarios(True)}
    assert kinds == {"conn", "lat", "tput", "idle"}
    assert any(s.resume for s in harness.scenarios(True))
