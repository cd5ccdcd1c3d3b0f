"""The command line as a user runs it: serve + ping in subprocesses, exit codes, no tracebacks."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .peers import run


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


async def start_serve(pki: TestPKI, *extra: str):  # type: ignore[no-untyped-def]
    return run([*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(pki.server_pem), *extra],
               env=cli_env())


async def test_serve_and_ping_cli(pki: TestPKI) -> None:
    async with await start_serve(pki) as serve:
        m = await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")
        port = m.group(1).decode()
        res = await trio.to_thread.run_sync(lambda: run_cli(
            "ping", f"localhost:{port}", "--cafile", str(pki.ca_pem), "--count", "3", "--interval", "0"))
        assert res.returncode == 0, res.stdout + res.stderr
        out = res.stdout
        assert "TLSv1.3" in out and "ALPN     echo/1" in out and "DNS:localhost" in out
        assert out.count("seq=") == 3 and "resumed" in out
        assert "3 probes sent, 3 echoed, 0 failed" in out
        for phase in ("tcp connect", "tls full", "first echo"):
            assert phase in out
        # SIGTERM: drain and exit 0
        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await serve.proc.wait()
        assert code == 0, serve.buf.decode(errors="replace")
        assert b"Traceback" not in serve.buf


async def test_ping_json(pki: TestPKI) -> None:
    async with await start_serve(pki) as serve:
        port = (await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1).decode()
        res = await trio.to_thread.run_sync(lambda: run_cli(
            "ping", f"127.0.0.1:{port}", "--servername", "localhost", "--cafile", str(pki.ca_pem),
            "-c", "2", "-i", "0", "--json"))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema"] == "trioecho.ping/1"
    assert doc["tls"]["version"] == "TLSv1.3" and doc["tls"]["alpn"] == "echo/1"
    assert [p["resumed"] for p in doc["probes"]] == [False, True]
    assert doc["summary"]["received"] == 2
    assert doc["summary"]["tls_resumed_ms"]["n"] == 1
    assert doc["exit_code"] == 0


async def test_ping_failure_exit_1_with_reason(pki: TestPKI) -> None:
    async with await start_serve(pki) as serve:
        port = (await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1).decode()
        res = await trio.to_thread.run_sync(lambda: run_cli(
            "ping", f"127.0.0.1:{port}", "--servername", "wrong.example", "--cafile", str(pki.ca_pem), "-c", "1"))
        assert res.returncode == 1
        assert "hostname_mismatch" in res.stdout and "--servername localhost" in res.stdout
        assert "Traceback" not in res.stdout + res.stderr
        res = await trio.to_thread.run_sync(lambda: run_cli(
            "ping", f"localhost:{port}", "-c", "1", "--json"))  # system trust: unknown CA
        assert res.returncode == 1
        assert json.loads(res.stdout)["probes"][0]["error_kind"] == "unknown_ca"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["serve", "--port", "0", "--cert", "/nonexistent/server.pem"], "no such file"),
        (["serve", "--port", "0"], "--cert"),
        (["serve", "--port", "0", "--cert", "{ca}"], "no private key"),
        (["ping", "localhost:1", "--cafile", "/nonexistent/ca.pem"], "no such file"),
        (["ping", "localhost:99999"], "port"),
        (["ping", "localhost", "--min-version", "1.1"], "use 1.2 or 1.3"),
        (["ping", "localhost", "--size", "12q"], "bad size"),
    ],
)
def test_config_errors_exit_2_one_line(pki: TestPKI, args: list[str], needle: str) -> None:
    args = [a.replace("{ca}", str(pki.ca_pem)) for a in args]
    res = run_cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_port_in_use_is_a_clear_error(pki: TestPKI) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        res = run_cli("serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(pki.server_pem))
    finally:
        s.close()
    assert res.returncode == 2 and "cannot listen" in res.stderr and "Traceback" not in res.stderr


def test_help_teaches() -> None:
    res = run_cli("--help")
    assert res.returncode == 0 and "Quick start" in res.stdout and "Exit codes" in res.stdout
    res = run_cli("ping", "--help")
    assert "--cafile" in res.stdout and "--servername" in res.stdout


def test_gen_certs(tmp_path: Path) -> None:
    import stat
    import sys

    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, str(root / "scripts" / "gen_certs.py"), "--out", str(tmp_path / "c")],
                         capture_output=True, text=True, env=cli_env())
    assert res.returncode == 0, res.stderr
    for name in ("ca.pem", "server.pem", "server.crt", "server.key", "client.pem"):
        assert (tmp_path / "c" / name).is_file()
    for name in ("server.pem", "server.key", "client.pem"):
        assert stat.S_IMODE((tmp_path / "c" / name).stat().st_mode) == 0o600
    again = subprocess.run([sys.executable, str(root / "scripts" / "gen_certs.py"), "--out", str(tmp_path / "c")],
                           capture_output=True, text=True, env=cli_env())
    assert again.returncode == 2 and "--force" in again.stderr  # never replaces a CA silently
    forced = subprocess.run([sys.executable, str(root / "scripts" / "gen_certs.py"), "--out", str(tmp_path / "c"),
                             "--force"], capture_output=True, text=True, env=cli_env())
    assert forced.returncode == 0, forced.stderr
    bad = subprocess.run([sys.executable, str(root / "scripts" / "gen_certs.py"), "--out", str(tmp_path / "d"),
                          "--days", "400"], capture_output=True, text=True)
    assert bad.returncode == 2 and "366" in bad.stderr
