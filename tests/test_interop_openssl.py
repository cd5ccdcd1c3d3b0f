"""Interop with OpenSSL's own tools: s_client against trioecho serve, trioecho ping against s_server."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from trioecho import Pinger, PingOptions
from trioecho.testing import TestPKI

from .interop_matrix import CLI_CELLS, Cell, Peer, params, run_cell
from .peers import need, run

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_s_client_echoes_through_trioecho(pki: TestPKI, start_server, version: str) -> None:  # type: ignore[no-untyped-def]
    openssl = need("openssl")
    srv = await start_server()
    argv = [openssl, "s_client", "-connect", f"127.0.0.1:{srv.port}", "-servername", "localhost",
            "-CAfile", str(pki.ca_pem), "-verify_return_error", "-alpn", "echo/1", version, "-quiet"]
    async with run(argv, merge_stderr=False) as sc:
        body = b"hello from s_client"
        await sc.send(struct.pack(">I", len(body)) + body)
        echoed = await sc.read_exactly(4 + len(body))
        assert echoed == struct.pack(">I", len(body)) + body
    (info,) = await srv.wait_ended(1)
    assert info.version == ("TLSv1.2" if version == "-tls1_2" else "TLSv1.3")
    assert info.alpn == "echo/1" and info.frames == 1


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
async def test_ping_handshake_only_against_s_server(pki: TestPKI, tmp_path, version: str) -> None:  # type: ignore[no-untyped-def]
    openssl = need("openssl")
    key = tmp_path / "server.key"
    key.write_bytes(pki.server.private_key_pem.bytes())
    crt = tmp_path / "server.crt"
    crt.write_bytes(b"".join(b.bytes() for b in pki.server.cert_chain_pems))
    argv = [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(crt), "-key", str(key), version, "-naccept", "3"]
    async with run(argv) as ss:
        port = int((await ss.read_until(rb"ACCEPT 127\.0\.0\.1:(\d+)")).group(1))
        opts = PingOptions(host="localhost", port=port, count=3, interval=0, handshake_only=True, timeout=5)
        report = await Pinger(opts, pki.client_policy()).run()
    assert [p.ok for p in report.probes] == [True] * 3, [p.error for p in report.probes]
    assert report.tls is not None
    assert report.tls.version == ("TLSv1.2" if version == "-tls1_2" else "TLSv1.3")
    assert [p.resumed for p in report.probes] == [False, True, True]


# -- the interop matrix rows for OpenSSL (see tests/interop_matrix.py for what each cell checks) --


@pytest.mark.parametrize(("peer", "cell"), params("openssl"))
async def test_matrix_cell(peer: Peer, cell: Cell, pki: TestPKI, rsa_pki: TestPKI, tmp_path: Path) -> None:
    outcome = await run_cell(peer, cell, {"ecdsa": pki, "rsa": rsa_pki}, tmp_path)
    assert outcome.status == "pass", outcome.detail
    assert outcome.cipher and (outcome.cipher.startswith("TLS_") == (cell.version == "1.3"))


@pytest.mark.parametrize(("peer", "cell"), params("openssl", CLI_CELLS))
async def test_matrix_cell_through_the_cli(peer: Peer, cell: Cell, pki: TestPKI, rsa_pki: TestPKI,
                                           tmp_path: Path) -> None:
    """The same cell with trioecho as the real `serve` / `ping` process (default profile)."""
    outcome = await run_cell(peer, cell, {"ecdsa": pki, "rsa": rsa_pki}, tmp_path, cli=True)
    assert outcome.status == "pass", outcome.detail
