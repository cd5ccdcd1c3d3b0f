"""SIGHUP / EchoServer.reload: new certificates and policy for new connections, open ones untouched."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import trio

from trioecho import ConnectionFailed, open_echo_connection
from trioecho.errors import ConfigError
from trioecho.testing import TestPKI, make_pki

from .conftest import CLI, cli_env
from .peers import run
from .server_helpers import ping_ok


async def test_reload_switches_new_connections_only(pki: TestPKI, start_server: Any, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "b")
    srv = await start_server()
    old_conn = await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    await old_conn.echo(b"before")

    srv.server.reload(other.server_policy())
    await ping_ok(other, srv.port)  # new connections get the new certificate...
    with pytest.raises(ConnectionFailed) as ei:
        await open_echo_connection("localhost", srv.port, policy=pki.client_policy())
    assert ei.value.kind == "unknown_ca"  # ...and only it
    await old_conn.echo(b"after")  # the open connection kept its own
    await old_conn.aclose()
    assert srv.server.stats.reloads == 1


@pytest.mark.parametrize("breakage", ["missing", "garbage", "key of another certificate"])
async def test_broken_new_certificate_keeps_the_old(pki: TestPKI, start_server: Any, tmp_path: Path,
                                                    breakage: str) -> None:
    srv = await start_server()
    bad = tmp_path / "bad.pem"
    if breakage == "garbage":
        bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    elif breakage == "key of another certificate":
        other = make_pki(tmp_path / "b")
        bad.write_bytes(other.server.cert_chain_pems[0].bytes() + pki.server.private_key_pem.bytes())
    with pytest.raises(ConfigError) as ei:
        srv.server.reload(pki.server_policy().replace(certs=(type(pki.server_policy().certs[0])(bad),)))
    assert str(bad) in str(ei.value)
    assert srv.server.stats.reload_failures == 1 and srv.server.stats.reloads == 0
    await ping_ok(pki, srv.port)  # the old certificate is still served


async def test_sighup_reloads_certificates_from_disk(pki: TestPKI, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "b")
    cert = tmp_path / "live.pem"
    shutil.copy(pki.server_pem, cert)
    cert.chmod(0o600)
    async with run([*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(cert)], env=cli_env()) as serve:
        port = int((await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1))
        old_conn = await open_echo_connection("localhost", port, policy=pki.client_policy())
        await old_conn.echo(b"before")

        shutil.copy(other.server_pem, cert)  # renewed certificate, same path
        serve.proc.send_signal(signal.SIGHUP)
        await serve.read_until(rb"reloaded: new connections use the new certificates")
        await ping_ok(other, port)
        await old_conn.echo(b"still here")

        cert.write_text("truncated by a bad deploy\n")
        serve.proc.send_signal(signal.SIGHUP)
        await serve.read_until(rb"reload refused, still using the previous certificates and policy: [^\n]*live\.pem")
        await ping_ok(other, port)  # the last good certificate stays in use
        await old_conn.echo(b"and still here")
        await old_conn.aclose()

        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await serve.proc.wait()
    assert code == 0
    assert b"Traceback" not in serve.buf


async def test_sighup_on_a_plaintext_server_is_harmless() -> None:
    async with run([*CLI, "serve", "--plaintext", "--host", "127.0.0.1", "--port", "0"], env=cli_env()) as serve:
        await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")
        serve.proc.send_signal(signal.SIGHUP)
        await serve.read_until(rb"nothing to reload")
        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            assert await serve.proc.wait() == 0
