"""Operator logs: one line per connection end, --log-format json, --log-level."""

from __future__ import annotations

import json
import signal
from typing import Any

import trio

from trioecho import open_echo_connection
from trioecho.policy import CertSpec
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env
from .peers import run
from .server_helpers import read_until_closed

CONN_FIELDS = {"peer", "outcome", "close", "tls", "cipher", "alpn", "resumed", "sni", "client", "frames", "bytes",
               "ms", "detail"}


async def _session(pki: TestPKI, *flags: str) -> tuple[int, str]:
    argv = [*CLI, *flags, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(pki.server_pem),
            "--client-auth", "optional", "--client-ca", str(pki.ca_pem)]
    async with run(argv, env=cli_env(), merge_stderr=False) as serve:
        port = int((await serve.read_until(rb"listening on 127\.0\.0\.1:(\d+)\n")).group(1))
        policy = pki.client_policy(client_cert=CertSpec(pki.client_pem))
        conn = await open_echo_connection("localhost", port, policy=policy)
        async with conn:
            await conn.echo(b"x" * 10)
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(b"SSH-2.0-scanner\r\n")
        await read_until_closed(s)
        await s.aclose()
        serve.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await serve.proc.wait()
        assert serve.proc.stderr is not None
        err = b""
        while chunk := await serve.proc.stderr.receive_some():
            err += chunk
    return code, err.decode()


async def test_json_logs_one_object_per_line_with_every_field(pki: TestPKI) -> None:
    code, err = await _session(pki, "--log-format", "json")
    assert code == 0
    docs: list[dict[str, Any]] = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    ends = [d for d in docs if d["msg"].startswith("connection end")]
    assert len(ends) == 2
    good, bad = sorted(ends, key=lambda d: d["frames"], reverse=True)
    assert CONN_FIELDS <= set(good)
    assert good["outcome"] == "clean" and good["close"] == "close_notify" and good["tls"] == "TLSv1.3"
    assert good["alpn"] == "echo/1" and good["sni"] == "localhost" and good["resumed"] is False
    assert good["frames"] == 1 and good["bytes"] == 14 and good["cipher"].startswith("TLS_")
    assert "organizationalUnitName=Testing cert" in good["client"]  # trustme's subject (no CN: pitfall 28)
    assert bad["outcome"] == "not_tls" and bad["close"] == "handshake_failed" and "WRONG_VERSION_NUMBER" in bad["detail"]
    (stopped,) = [d for d in docs if d["msg"].startswith("stopped:")]
    assert stopped["stats"]["connections"] == 2 and stopped["stats"]["handshakes_failed"] == {"not_tls": 1}
    assert all("traceback" not in d for d in docs)


async def test_text_logs_and_log_level(pki: TestPKI) -> None:
    code, err = await _session(pki)
    assert code == 0
    lines = [ln for ln in err.splitlines() if "connection end" in ln]
    assert len(lines) == 2 and any("outcome=clean close=close_notify" in ln for ln in lines)
    assert "Traceback" not in err

    code, err = await _session(pki, "--log-level", "warning")
    assert code == 0
    assert "connection end" not in err and "stopped:" not in err
