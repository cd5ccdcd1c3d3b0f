"""In-memory TLS for tests: what trioecho's own tests use, as public API.

Example::

    from trioecho.testing import tls_stream_pair

    async def test_my_protocol():
        client, server = await tls_stream_pair()
        await client.send_all(b"hi")
        assert await server.receive_some() == b"hi"

Both ends are ``trio.SSLStream`` over trio's in-memory streams, with contexts
built from a :class:`~trioecho.policy.Policy` and a trustme CA, so the TLS is
real (versions, ciphers, verification, resumption), only the network is not.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing
import trustme

from .policy import CertSpec, Policy

__all__ = [
    "TestPKI",
    "lockstep_tls_stream_pair",
    "make_pki",
    "tls_stream_pair",
]

#: The names a test server certificate holds.
TEST_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass
class TestPKI:
    """A trustme CA with a server and a client certificate, also written to files.

    Attributes:
        ca: the trustme CA.
        dir: where ``ca.pem``, ``server.pem`` and ``client.pem`` were written.
    """

    __test__ = False  # not a pytest test class

    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    dir: Path

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_pem(self) -> Path:
        return self.dir / "server.pem"

    @property
    def client_pem(self) -> Path:
        return self.dir / "client.pem"

    def server_policy(self, base: Policy | None = None, **changes: Any) -> Policy:
        """A server policy using this PKI's server certificate."""
        return (base or Policy()).replace(certs=(CertSpec(self.server_pem),), **changes)

    def client_policy(self, base: Policy | None = None, **changes: Any) -> Policy:
        """A client policy trusting this PKI's CA."""
        return (base or Policy()).replace(cafile=self.ca_pem, **changes)


def make_pki(directory: Path | None = None, *, key_type: trustme.KeyType = trustme.KeyType.ECDSA,
             hosts: tuple[str, ...] = TEST_HOSTS, **cert_kwargs: Any) -> TestPKI:
    """Create a CA, a server certificate for ``hosts`` and a client certificate, as files.

    Args:
        directory: where to write the PEM files (default: a new temporary directory).
        key_type: ECDSA (default) or RSA.
        hosts: names the server certificate holds.
        cert_kwargs: passed to ``trustme.CA.issue_cert`` for the server certificate
            (e.g. ``not_after=`` to make an expired one).
    """
    d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="trioecho-pki-"))
    d.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=key_type)
    server = ca.issue_cert(*hosts, key_type=key_type, **cert_kwargs)
    client = ca.issue_cert("client@example.invalid", key_type=key_type)
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    return TestPKI(ca=ca, server=server, client=client, dir=d)


_default_pki: TestPKI | None = None


def _pki() -> TestPKI:
    global _default_pki
    if _default_pki is None:
        _default_pki = make_pki()
    return _default_pki


async def _pair(
    factory: Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]],
    *,
    pki: TestPKI | None,
    server_policy: Policy | None,
    client_policy: Policy | None,
    version: str | None,
    mtls: bool,
    handshake: bool,
    server_hostname: str,
    client_context: ssl.SSLContext | None,
    server_context: ssl.SSLContext | None,
) -> tuple[trio.SSLStream[Any], trio.SSLStream[Any]]:
    pki = pki or _pki()
    sp = server_policy or pki.server_policy()
    cp = client_policy or pki.client_policy()
    if version is not None:
        sp = sp.replace(min_version=version, max_version=version)
    if mtls:
        sp = sp.replace(client_auth="required", client_ca=pki.ca_pem)
        cp = cp.replace(client_cert=CertSpec(pki.client_pem))
    sctx = server_context or sp.server_context()
    cctx = client_context or cp.client_context()
    client_raw, server_raw = factory()
    client = trio.SSLStream(client_raw, cctx, server_hostname=server_hostname)
    server = trio.SSLStream(server_raw, sctx, server_side=True)
    if handshake:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
    return client, server


async def tls_stream_pair(
    *,
    pki: TestPKI | None = None,
    server_policy: Policy | None = None,
    client_policy: Policy | None = None,
    version: str | None = "1.3",
    mtls: bool = False,
    handshake: bool = True,
    server_hostname: str = "localhost",
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
) -> tuple[trio.SSLStream[Any], trio.SSLStream[Any]]:
    """A connected (client, server) pair of SSLStreams over ``memory_stream_pair``.

    Callable with no arguments: a shared test CA, TLS 1.3, handshake done.

    Args:
        pki: certificates to use (default: one shared per process).
        server_policy, client_policy: policies for the two contexts.
        version: pin both ends to "1.2" or "1.3"; ``None`` leaves the policies' range.
        mtls: require and send a client certificate.
        handshake: complete the handshake on both ends before returning.
        server_hostname: the name the client verifies and sends as SNI.
        client_context, server_context: use these contexts as they are.
    """
    return await _pair(trio.testing.memory_stream_pair, pki=pki, server_policy=server_policy,
                       client_policy=client_policy, version=version, mtls=mtls, handshake=handshake,
                       server_hostname=server_hostname, client_context=client_context,
                       server_context=server_context)


async def lockstep_tls_stream_pair(
    *,
    pki: TestPKI | None = None,
    server_policy: Policy | None = None,
    client_policy: Policy | None = None,
    version: str | None = "1.3",
    mtls: bool = False,
    handshake: bool = True,
    server_hostname: str = "localhost",
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
) -> tuple[trio.SSLStream[Any], trio.SSLStream[Any]]:
    """Like :func:`tls_stream_pair`, over ``lockstep_stream_pair`` (no buffering at all).

    Lockstep streams expose deadlocks that buffered streams hide (e.g. both
    ends closing at once while neither reads).
    """
    return await _pair(trio.testing.lockstep_stream_pair, pki=pki, server_policy=server_policy,
                       client_policy=client_policy, version=version, mtls=mtls, handshake=handshake,
                       server_hostname=server_hostname, client_context=client_context,
                       server_context=server_context)
