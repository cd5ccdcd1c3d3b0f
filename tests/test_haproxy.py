"""A real HAProxy (tcp mode) in front of two trioecho instances: PROXY v1 to one, v2 to the other.

HAProxy is started by the test on loopback with a generated configuration.  It
listens on a socket the test bound and passes in (``bind fd@N``), so there is no
wait for it to be ready: connections queue in the kernel until it accepts.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from trioecho import open_echo_connection
from trioecho.testing import TestPKI

from .conftest import CLI, cli_env

HAPROXY = shutil.which("haproxy") or (Path("/usr/sbin/haproxy") if Path("/usr/sbin/haproxy").exists() else None)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (apt-get install haproxy; "
                                               "scripts/setup.sh installs it)"),
]


def _config(fd: int, backends: list[tuple[str, int, str]]) -> str:
    servers = "\n".join(f"    server {name} 127.0.0.1:{port} {option}" for name, port, option in backends)
    return f"""global
    maxconn 256

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend echo_tls
    bind fd@{fd}
    default_backend trioecho

backend trioecho
    balance roundrobin
{servers}
"""


async def test_pings_through_haproxy_reach_both_instances_with_the_client_address(
        start_server: Callable[..., Any], pki: TestPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = await start_server()
    b = await start_server()
    a.server.proxy_protocol = "v1"
    b.server.proxy_protocol = "v2"
    caplog.set_level(logging.INFO, logger="trioecho")

    lsock = socket.create_server(("127.0.0.1", 0))
    front = lsock.getsockname()[1]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(_config(lsock.fileno(), [("a", a.port, "send-proxy"), ("b", b.port, "send-proxy-v2")]))
    assert HAPROXY is not None
    proc = await trio.lowlevel.open_process([str(HAPROXY), "-db", "-f", str(cfg)], pass_fds=[lsock.fileno()],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lsock.close()  # HAProxy holds its own copy
    try:
        ctx = pki.client_policy().client_context()
        clients: list[str] = []
        with trio.fail_after(20):
            for _ in range(4):
                conn = await open_echo_connection("127.0.0.1", front, policy=pki.client_policy(),
                                                  servername="localhost", ssl_context=ctx, timeout=10)
                assert isinstance(conn.stream, trio.SSLStream)
                local = conn.stream.transport_stream.socket.getsockname()  # type: ignore[attr-defined]
                clients.append(f"{local[0]}:{local[1]}")
                await conn.echo(b"through haproxy")
                await conn.aclose()
            ended_a = await a.wait_ended(2)
            ended_b = await b.wait_ended(2)
        # Round robin: two each; each server logged the client's own address, not HAProxy's.
        peers = sorted(info.peer for info in ended_a + ended_b)
        assert peers == sorted(clients)
        assert all(info.outcome == "clean" and info.frames == 1 for info in ended_a + ended_b)
        messages = "\n".join(r.getMessage() for r in caplog.records)
        for c in clients:
            assert f"peer={c} outcome=clean" in messages

        # The command-line ping works through it too.
        with trio.fail_after(30):
            ping = await trio.run_process(
                [*CLI, "ping", f"127.0.0.1:{front}", "--servername", "localhost", "--cafile", str(pki.ca_pem),
                 "-c", "2", "-i", "0"], capture_stdout=True, capture_stderr=True, env=cli_env(), check=False)
        assert ping.returncode == 0, ping.stdout.decode() + ping.stderr.decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            await proc.wait()


async def test_direct_client_to_a_proxy_protocol_server_is_refused_and_logged(
        start_server: Callable[..., Any], pki: TestPKI) -> None:
    """The misconfiguration HAProxy users hit most: the balancer is bypassed (or sends nothing)."""
    srv = await start_server()
    srv.server.proxy_protocol = "any"
    with trio.fail_after(20):
        proc = await trio.run_process(
            [*CLI, "ping", f"127.0.0.1:{srv.port}", "--servername", "localhost", "--cafile", str(pki.ca_pem),
             "-c", "1"], capture_stdout=True, capture_stderr=True, env=cli_env(), check=False)
        ended = await srv.wait_ended(1)
    assert proc.returncode == 1
    assert ended[0].outcome == "proxy_protocol"
