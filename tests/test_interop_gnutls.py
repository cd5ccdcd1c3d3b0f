"""Interop matrix rows for GnuTLS: gnutls-cli against trioecho serve, trioecho ping against gnutls-serv (see tests/interop_matrix.py for what each cell checks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trioecho.testing import TestPKI

from .interop_matrix import CLI_CELLS, Cell, Peer, params, run_cell

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(("peer", "cell"), params("gnutls"))
async def test_matrix_cell(peer: Peer, cell: Cell, pki: TestPKI, rsa_pki: TestPKI, tmp_path: Path) -> None:
    outcome = await run_cell(peer, cell, {"ecdsa": pki, "rsa": rsa_pki}, tmp_path)
    assert outcome.status == "pass", outcome.detail
    assert outcome.cipher and (outcome.cipher.startswith("TLS_") == (cell.version == "1.3"))


@pytest.mark.parametrize(("peer", "cell"), params("gnutls", CLI_CELLS))
async def test_matrix_cell_through_the_cli(peer: Peer, cell: Cell, pki: TestPKI, rsa_pki: TestPKI,
                                           tmp_path: Path) -> None:
    """The same cell with trioecho as the real `serve` / `ping` process (default profile)."""
    outcome = await run_cell(peer, cell, {"ecdsa": pki, "rsa": rsa_pki}, tmp_path, cli=True)
    assert outcome.status == "pass", outcome.detail
