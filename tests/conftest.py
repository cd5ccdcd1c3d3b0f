"""Shared fixtures: one session-scoped trustme PKI, servers on port 0 via nursery.start."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from trioecho import ConnectionInfo, EchoServer, Policy, ServerLimits
from trioecho.testing import TestPKI, make_pki

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    import trustme

    return make_pki(tmp_path_factory.mktemp("pki-rsa"), key_type=trustme.KeyType.RSA)


class RunningServer:
    """A live EchoServer on loopback, with every ended connection recorded."""

    def __init__(self, server: EchoServer, host: str, port: int) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.ended: list[ConnectionInfo] = []
        self._changed = trio.Event()
        server.on_connection_end.append(self._record)

    def _record(self, info: ConnectionInfo) -> None:
        self.ended.append(info)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_ended(self, n: int = 1, timeout: float = 10) -> list[ConnectionInfo]:
        """Wait until at least ``n`` connections have ended; return them."""
        with trio.fail_after(timeout):
            while len(self.ended) < n:
                await self._changed.wait()
        return self.ended


@pytest.fixture
def start_server(nursery: trio.Nursery, pki: TestPKI) -> Callable[..., Any]:
    """``await start_server(policy=..., limits=..., plaintext=...)`` -> RunningServer on 127.0.0.1:0."""

    async def start(*, policy: Policy | None = None, limits: ServerLimits | None = None,
                    plaintext: bool = False, host: str = "127.0.0.1") -> RunningServer:
        if policy is None and not plaintext:
            policy = pki.server_policy()
        server = EchoServer(policy=policy, limits=limits, plaintext=plaintext)
        addrs = await nursery.start(functools.partial(server.serve, host=host, port=0))
        return RunningServer(server, addrs[0][0], addrs[0][1])

    return start


def cli_env() -> dict[str, str]:
    """Environment for running ``python -m trioecho`` from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("OPENSSL_CONF", None)
    env.pop("TRIOECHO_OPENSSL_CONF_FOR", None)
    return env


CLI = [sys.executable, "-m", "trioecho"]
