"""`trioecho ping` as a user runs it: the header, probe lines, summary, --expect, and refusals (exit 2)."""

from __future__ import annotations

import re
import subprocess

import pytest
import trio

from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .test_cli import run_cli, start_serve


async def ping_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(
        lambda: subprocess.run([*CLI, "ping", *args], capture_output=True, text=True, env=cli_env(), timeout=60))


async def test_text_output_header_probes_summary(pki: TestPKI) -> None:
    async with await start_serve(pki) as serve:
        port = (await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1).decode()
        res = await ping_cli(f"localhost:{port}", "--cafile", str(pki.ca_pem), "-c", "4", "-i", "0", "--warmup", "1",
                             "--echoes", "3", "--size", "64,16k", "-v",
                             "--expect", "version=1.3", "--expect", "resumed=yes", "--expect", "key=EC",
                             "--expect", "min_days_left=30", "--expect", "alpn=echo/1", "--expect", "verify=ok",
                             "--expect", "group=X25519")
        out = res.stdout
        assert res.returncode == 0, out + res.stderr
        # the header: version, suite, group (or why not), ALPN offered and chosen, SNI, verification, the peer
        assert re.search(r"^TLSv1\.3 TLS_\w+ \(\d+-bit\), full handshake$", out, re.M), out
        assert re.search(r"^  group    X25519 \(read from the server's handshake messages.*\)$", out, re.M), out
        assert "sigalg   ecdsa_secp256r1_sha256" in out
        assert "mTLS     the server did not ask for a client certificate" in out
        assert "ALPN     echo/1 (offered echo/1, h2, http/1.1)" in out
        assert "SNI      localhost" in out and "verify   ok" in out
        assert "SAN DNS:localhost, IP:127.0.0.1" in out
        assert re.search(r"expires \S+ \(\d+ days left\)", out)
        assert "key EC P-256, signed with ecdsa-with-SHA256" in out
        assert "sha256 " in out and "TLS 1.3 suites" in out  # -v
        # probe lines: warmup labelled, handshake in RTTs, first vs steady echo, full then resumed
        lines = [line for line in out.splitlines() if line.startswith("seq=")]
        assert len(lines) == 5 and lines[0].endswith("(warmup)")
        assert re.search(r"tls=[\d.]+ms \([\d.]+ RTT\) first=[\d.]+ms steady=[\d.]+ms \(median of 2\) full", lines[0])
        assert all(line.endswith("resumed") for line in lines[1:])
        # summary: 4 counted, per phase, per size, the loopback note, expectations
        assert "4 probes sent, 4 echoed, 0 failed, 0% loss; 4 connections, 4 resumed" in out
        for label in ("tcp connect", "tls resumed", "first echo", "steady echo", "size 64 first", "size 16k steady"):
            assert re.search(rf"^{label} +min/avg/median/max/mdev = ", out, re.M), label
        assert "RTT (median of tls/tcp)" in out
        assert out.count(": ok (got ") == 7
        # a failed expectation: exit 1, reported with what was seen
        res = await ping_cli(f"localhost:{port}", "--cafile", str(pki.ca_pem), "-c", "2", "-i", "0",
                             "--keepalive", "--expect", "version=1.2", "--expect", "cipher=TLS_NOPE")
        assert res.returncode == 1
        assert "expect version=TLSv1.2: FAILED (got TLSv1.3)" in res.stdout
        assert "expect cipher=TLS_NOPE: FAILED" in res.stdout
        assert "(kept connection)" in res.stdout and "; 1 connection\n" in res.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--session-file", "s.bin"], "cannot save or load a TLS session"),
        (["--expect", "colour=blue"], "unknown key 'colour'"),
        (["--expect", "version"], "KEY=VALUE"),
        (["--expect", "resumed=maybe"], "yes or no"),
        (["--keepalive", "--handshake-only"], "drop one of them"),
        (["--echoes", "3", "--handshake-only"], "drop one of them"),
        (["--echoes", "0"], "at least 1"),
        (["--json", "--jsonl"], "not allowed with"),
    ],
)
def test_refusals_exit_2_one_line(args: list[str], needle: str) -> None:
    res = run_cli("ping", "localhost:1", "--profile", "baseline", *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1 or "usage:" in res.stderr


def test_session_file_says_what_works_instead() -> None:
    res = run_cli("ping", "localhost:1", "--session-file", "s.bin")
    assert res.returncode == 2
    assert "resumption within one run" in res.stderr and "--count 2" in res.stderr
