"""Edge cases a new user hit: each was a traceback, a wrong answer or a silent no-op."""

from __future__ import annotations

import json
import signal
import socket
import subprocess

import pytest
import trio

from trioecho import EchoServer, ServerLimits
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .peers import run


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_port_zero_gives_one_port_for_every_family() -> None:
    from trioecho.server import _open_listeners

    listeners = await _open_listeners(0, None)
    try:
        ports = {lst.socket.getsockname()[1] for lst in listeners}
        assert len(ports) == 1, [lst.socket.getsockname() for lst in listeners]
    finally:
        for lst in listeners:
            await lst.aclose()


async def test_ctrl_c_during_ping_still_prints_the_json(pki: TestPKI, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = await start_server()
    argv = [*CLI, "ping", f"localhost:{srv.port}", "--cafile", str(pki.ca_pem), "-c", "1000", "-i", "0.05", "--json"]
    async with run(argv, env=cli_env(), merge_stderr=False) as p:
        await srv.wait_ended(2)  # two probes done
        p.proc.send_signal(signal.SIGINT)
        with trio.fail_after(20):
            code = await p.proc.wait()
        assert p.proc.stdout is not None
        while chunk := await p.proc.stdout.receive_some():
            p.buf += chunk
    doc = json.loads(p.buf)
    assert doc["interrupted"] is True
    assert 2 <= doc["summary"]["transmitted"] < 1000
    assert code == (0 if doc["summary"]["failed"] == 0 else 1)


@pytest.mark.parametrize(("args", "needle"), [
    (["ping", "https://localhost:9443"], "without a scheme"),
    (["ping", "localhost", "-i", "inf"], "-i/--interval"),
    (["policy", "show", "--keylog", "/nonexistent/dir/keys"], "cannot write it"),
    (["serve", "--port", "0", "--cert", "{pem}", "--client-ca", "{ca}"], "--client-auth"),
    (["serve", "--host", "no-such-host.invalid", "--port", "0", "--cert", "{pem}"], "does not resolve"),
])
def test_more_usage_errors_exit_2(pki: TestPKI, args: list[str], needle: str) -> None:
    args = [a.replace("{pem}", str(pki.server_pem)).replace("{ca}", str(pki.ca_pem)) for a in args]
    res = run_cli(*args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_output_into_a_closed_pipe_is_quiet(pki: TestPKI) -> None:
    p = subprocess.Popen([*CLI, "policy", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert p.stdout is not None
    p.stdout.read(10)
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert b"Traceback" not in err


async def test_serve_host_accepts_brackets(pki: TestPKI) -> None:
    if not _has_ipv6():
        pytest.skip("this machine has no IPv6 loopback")
    argv = [*CLI, "serve", "--host", "[::1]", "--port", "0", "--cert", str(pki.server_pem)]
    async with run(argv, env=cli_env()) as serve:
        await serve.read_until(rb"listening on \[::1\]:\d+")


async def test_tls_client_on_a_plaintext_server_is_named(pki: TestPKI, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = await start_server(plaintext=True)
    res = await trio.to_thread.run_sync(lambda: run_cli(
        "ping", f"localhost:{srv.port}", "--cafile", str(pki.ca_pem), "-c", "1", "--json"))
    assert res.returncode == 1
    assert json.loads(res.stdout)["probes"][0]["error_kind"] == "plaintext_peer"
    ended = await srv.wait_ended(1)
    assert ended[0].outcome == "plaintext_peer" and "ClientHello" in ended[0].detail


async def test_expired_server_certificate_warns_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime

    from trioecho.testing import make_pki

    old = make_pki(tmp_path / "old", not_before=datetime.datetime(2020, 1, 1),
                   not_after=datetime.datetime(2020, 2, 1))
    argv = [*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(old.server_pem)]
    async with run(argv, env=cli_env()) as serve:
        await serve.read_until(rb"EXPIRED on 2020-02-01")


async def test_plaintext_server_counts_tls_hello_without_echoing_it() -> None:
    client, server_raw = trio.testing.memory_stream_pair()
    server = EchoServer(plaintext=True, limits=ServerLimits())
    async with trio.open_nursery() as n:
        n.start_soon(client.send_all, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        info = await server.handle_stream(server_raw)
    assert info.outcome == "plaintext_peer" and info.bytes == 0  # none of the hello was echoed
