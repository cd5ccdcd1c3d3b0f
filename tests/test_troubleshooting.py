"""docs/troubleshooting.md covers every error kind, and is what the generator makes from ERROR_KINDS."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from trioecho import _classify
from trioecho.errors import ERROR_KINDS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "troubleshooting.md"
GEN = ROOT / "scripts" / "gen_troubleshooting.py"
REGENERATE = "regenerate it with: python scripts/gen_troubleshooting.py"


def _generator():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_troubleshooting", GEN)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_kind_has_a_row() -> None:
    text = DOC.read_text()
    missing = [k for k in ERROR_KINDS if f"| `{k}` |" not in text]
    assert not missing, f"docs/troubleshooting.md does not document {missing}: {REGENERATE}"


def test_every_row_is_a_kind() -> None:
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|", DOC.read_text(), re.M)
    stale = sorted(set(rows) - set(ERROR_KINDS))
    assert not stale, f"docs/troubleshooting.md documents kinds the code no longer has: {stale}: {REGENERATE}"


def test_doc_is_up_to_date() -> None:
    assert DOC.read_text() == _generator().render(), f"docs/troubleshooting.md is stale: {REGENERATE}"


def test_check_mode_is_one_command() -> None:
    res = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_check_mode_fails_on_a_stale_doc(tmp_path: Path) -> None:
    stale = tmp_path / "t.md"
    stale.write_text(DOC.read_text().replace("| `dns` |", "| `dns_gone` |"))
    res = subprocess.run([sys.executable, str(GEN), "--check", "--out", str(stale)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "stale" in res.stderr


def test_every_kind_has_all_fields() -> None:
    for name, kind in ERROR_KINDS.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
        assert kind.name == name
        assert kind.side in ("client", "server", "both"), name
        assert kind.symptom and kind.cause and kind.fix, name


SOURCES = sorted((ROOT / "src" / "trioecho").glob("*.py"))
KIND_LITERALS = [
    re.compile(r'ConnectionFailed\(\s*"([a-z_]+)"'),
    re.compile(r'Classified\(\s*"([a-z_]+)"'),
    re.compile(r'\boutcome(?:, info\.detail)?\s*=\s*"([a-z_]+)"'),
    re.compile(r'\berror_kind\s*=\s*"([a-z_]+)"'),
]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_kinds_used_in_the_code_are_in_the_table(source: Path) -> None:
    """A kind written as a literal anywhere in the package must be a row of ERROR_KINDS."""
    gen = _generator()
    allowed = set(ERROR_KINDS) | set(gen.NON_ERROR_OUTCOMES) | {"open"}
    text = source.read_text()
    used = {m for rx in KIND_LITERALS for m in rx.findall(text)}
    unknown = sorted(used - allowed)
    assert not unknown, f"{source.name} reports kinds missing from errors.ERROR_KINDS: {unknown}"


def test_classifier_tables_only_name_kinds() -> None:
    assert set(_classify._REASONS.values()) <= set(ERROR_KINDS)
