"""pytest fixtures for testing your own Trio code against TLS (needs pytest-trio).

Opt-in.  Installing trioecho registers a ``pytest11`` entry point, but that
entry point (:mod:`trioecho._pytest_entry`) only adds a ``--trioecho`` flag and
a ``trioecho`` ini option; no fixture exists until you enable them in one of
these ways:

* ``pytest -p trioecho.pytest_plugin`` (or ``addopts = "-p trioecho.pytest_plugin"``);
* ``pytest_plugins = ["trioecho.pytest_plugin"]`` in your top-level ``conftest.py``;
* ``pytest --trioecho``, or ``trioecho = true`` in the ``[tool.pytest.ini_options]``
  / ``[pytest]`` section;
* ``from trioecho.pytest_plugin import *`` in a ``conftest.py``.

Why opt-in: a plugin that every project with trioecho installed gets
automatically would add fixture names, a session-wide CA and imports of trio to
test suites that never asked for them (pytest loads every ``pytest11`` entry
point of every installed package).

Fixtures (all names start with ``trioecho_`` so they cannot shadow yours):

``trioecho_key_type`` (session)
    "ecdsa" (default); override it in your conftest (``params=["ecdsa", "rsa"]`` works).
``trioecho_pki`` (session)
    a :class:`~trioecho.testing.TestPKI`: CA, server and client certificates as files.
``trioecho_server_policy`` / ``trioecho_client_policy``
    a server :class:`~trioecho.policy.Policy` using the PKI's certificate, and a
    client one trusting its CA.
``trioecho_tls_pair`` (async)
    a connected ``(client, server)`` pair of ``trio.SSLStream`` over memory, handshake done.
``trioecho_memory_echo_server`` (async)
    a running :class:`~trioecho.testing.MemoryEchoServer`.
``trioecho_echo_server`` (async)
    a running :class:`~trioecho.testing.LoopbackEchoServer` on 127.0.0.1, port 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from .policy import Policy
from .testing import (
    LoopbackEchoServer,
    MemoryEchoServer,
    TestPKI,
    make_pki,
    open_loopback_echo_server,
    open_memory_echo_server,
    tls_stream_pair,
)

__all__ = [
    "trioecho_client_policy",
    "trioecho_echo_server",
    "trioecho_key_type",
    "trioecho_memory_echo_server",
    "trioecho_pki",
    "trioecho_server_policy",
    "trioecho_tls_pair",
]


@pytest.fixture(scope="session")
def trioecho_key_type() -> str:
    """The key type of :func:`trioecho_pki`: "ecdsa" (override this fixture for "rsa")."""
    return "ecdsa"


@pytest.fixture(scope="session")
def trioecho_pki(tmp_path_factory: pytest.TempPathFactory, trioecho_key_type: str) -> TestPKI:
    """One CA with server and client certificates for the whole session, as PEM files."""
    return make_pki(tmp_path_factory.mktemp("trioecho-pki"), key_type=trioecho_key_type)


@pytest.fixture
def trioecho_server_policy(trioecho_pki: TestPKI) -> Policy:
    """A server policy serving the session PKI's certificate (TLS 1.2-1.3)."""
    return trioecho_pki.server_policy()


@pytest.fixture
def trioecho_client_policy(trioecho_pki: TestPKI) -> Policy:
    """A client policy trusting the session PKI's CA."""
    return trioecho_pki.client_policy()


@pytest.fixture
async def trioecho_tls_pair(
    trioecho_pki: TestPKI, trioecho_server_policy: Policy, trioecho_client_policy: Policy
) -> tuple[trio.SSLStream[Any], trio.SSLStream[Any]]:
    """``(client, server)`` SSLStreams over ``memory_stream_pair``, handshake done (TLS 1.3)."""
    return await tls_stream_pair(pki=trioecho_pki, server_policy=trioecho_server_policy,
                                 client_policy=trioecho_client_policy)


@pytest.fixture
async def trioecho_memory_echo_server(
    trioecho_pki: TestPKI, trioecho_server_policy: Policy, trioecho_client_policy: Policy
) -> AsyncIterator[MemoryEchoServer]:
    """A running in-process echo server over memory streams: ``await srv.connect()``."""
    async with open_memory_echo_server(pki=trioecho_pki, server_policy=trioecho_server_policy,
                                       client_policy=trioecho_client_policy) as srv:
        yield srv


@pytest.fixture
async def trioecho_echo_server(
    trioecho_pki: TestPKI, trioecho_server_policy: Policy, trioecho_client_policy: Policy
) -> AsyncIterator[LoopbackEchoServer]:
    """A running in-process echo server on 127.0.0.1 (port 0): ``srv.port``, ``await srv.connect()``."""
    async with open_loopback_echo_server(pki=trioecho_pki, server_policy=trioecho_server_policy,
                                         client_policy=trioecho_client_policy) as srv:
        yield srv
