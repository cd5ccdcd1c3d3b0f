"""TLS for other people's Trio tests: what trioecho's own tests use, as public API.

Example::

    from trioecho.testing import open_memory_echo_server, tls_stream_pair

    async def test_my_protocol():
        client, server = await tls_stream_pair()        # fresh CA, TLS 1.3, handshake done
        await client.send_all(b"hi")
        assert await server.receive_some() == b"hi"

    async def test_against_an_echo_server():
        async with open_memory_echo_server() as srv:   # EchoServer over memory streams
            async with await srv.connect() as conn:
                await conn.echo(b"ping")

What is here:

* :func:`make_pki` / :class:`TestPKI`: a trustme CA with a server and a client
  certificate, written to PEM files (so real peers such as ``openssl`` can use them).
* :func:`tls_stream_pair` / :func:`lockstep_tls_stream_pair`: a connected pair of
  ``trio.SSLStream`` over trio's in-memory streams; TLS 1.2 or 1.3, mTLS optional,
  handshake optional.  ``trio.testing.check_two_way_stream`` passes over both.
* :func:`open_memory_echo_server` / :func:`open_loopback_echo_server`: a running
  :class:`~trioecho.server.EchoServer` (in-process, over memory streams or on
  127.0.0.1 port 0) with a ``connect()`` that returns a verified
  :class:`~trioecho.client.EchoConnection`.
* :mod:`trioecho.pytest_plugin`: the same as pytest fixtures (opt-in).

The TLS is real (versions, ciphers, verification, resumption, client
certificates); only the network is not, for the memory variants.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
import trio.testing
import trustme

from .client import EchoConnection, SessionCache, _failure, _tls_info, open_echo_connection
from .errors import ConnectionFailed
from .framing import MAX_FRAME
from .policy import CertSpec, Policy
from .server import ConnectionInfo, EchoServer, ServerLimits

__all__ = [
    "LoopbackEchoServer",
    "MemoryEchoServer",
    "TestPKI",
    "lockstep_tls_stream_pair",
    "make_pki",
    "open_loopback_echo_server",
    "open_memory_echo_server",
    "tls_stream_pair",
]

#: The names a test server certificate holds.
TEST_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass
class TestPKI:
    """A trustme CA with a server and a client certificate, also written to files.

    Attributes:
        ca: the trustme CA.
        server, client: the two leaf certificates (the server's names: :data:`TEST_HOSTS`).
        dir: where the files were written: ``ca.pem``; ``server.pem`` and ``client.pem``
            (key + chain, what trioecho takes); and ``server.crt``/``server.key``,
            ``client.crt``/``client.key`` (chain and key apart, for tools that want them so).
        key_type: ECDSA (P-256) or RSA (2048).
    """

    __test__ = False  # not a pytest test class

    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    dir: Path
    key_type: trustme.KeyType = trustme.KeyType.ECDSA

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def server_pem(self) -> Path:
        return self.dir / "server.pem"

    @property
    def client_pem(self) -> Path:
        return self.dir / "client.pem"

    @property
    def server_crt(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    @property
    def client_crt(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    def server_policy(self, base: Policy | None = None, **changes: Any) -> Policy:
        """A server policy using this PKI's server certificate."""
        return (base or Policy()).replace(certs=(CertSpec(self.server_pem),), **changes)

    def client_policy(self, base: Policy | None = None, **changes: Any) -> Policy:
        """A client policy trusting this PKI's CA."""
        return (base or Policy()).replace(cafile=self.ca_pem, **changes)


def make_pki(directory: Path | None = None, *, key_type: trustme.KeyType | str = trustme.KeyType.ECDSA,
             hosts: tuple[str, ...] = TEST_HOSTS, **cert_kwargs: Any) -> TestPKI:
    """Create a CA, a server certificate for ``hosts`` and a client certificate, as files.

    Args:
        directory: where to write the PEM files (default: a new temporary directory).
        key_type: ``trustme.KeyType.ECDSA`` (default) or ``RSA``, or the strings "ecdsa"/"rsa".
        hosts: names the server certificate holds.
        cert_kwargs: passed to ``trustme.CA.issue_cert`` for the server certificate
            (e.g. ``not_after=`` to make an expired one).
    """
    d = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="trioecho-pki-"))
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(key_type, str):
        try:
            key_type = trustme.KeyType[key_type.upper()]
        except KeyError:
            raise ValueError(f"key_type {key_type!r}: use 'ecdsa' or 'rsa'") from None
    ca = trustme.CA(key_type=key_type)
    server = ca.issue_cert(*hosts, key_type=key_type, **cert_kwargs)
    client = ca.issue_cert("client@example.invalid", key_type=key_type)
    _write(d / "ca.pem", ca.cert_pem.bytes(), private=False)
    for name, leaf in (("server", server), ("client", client)):
        _write(d / f"{name}.pem", leaf.private_key_and_cert_chain_pem.bytes(), private=True)
        _write(d / f"{name}.key", leaf.private_key_pem.bytes(), private=True)
        _write(d / f"{name}.crt", b"".join(b.bytes() for b in leaf.cert_chain_pems), private=False)
    return TestPKI(ca=ca, server=server, client=client, dir=d, key_type=key_type)


def _write(path: Path, data: bytes, *, private: bool) -> None:
    # Keys 0600: the chapter asks for it, and `trioecho serve` warns otherwise.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600 if private else 0o644)


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
        await _handshake_both(client, server)
    return client, server


async def _handshake_both(client: trio.SSLStream[Any], server: trio.SSLStream[Any]) -> None:
    """Handshake both ends; a failure is raised as itself, not wrapped in an ExceptionGroup.

    The client's error wins (it says e.g. "certificate verify failed: hostname
    mismatch" in its ``__cause__``); the server's side then only saw the abort.
    """
    errors: dict[str, BaseException] = {}

    async def run(name: str, stream: trio.SSLStream[Any]) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            errors[name] = exc
            await trio.aclose_forcefully(stream)  # unblock the other end

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "client", client)
        nursery.start_soon(run, "server", server)
    if errors:
        raise errors.get("client") or errors["server"]


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


# -- echo servers for tests ---------------------------------------------------------------------


class _EchoServerFixture:
    """What both in-process echo servers share: the server, its PKI, the ended connections."""

    def __init__(self, server: EchoServer, pki: TestPKI, client_policy: Policy, *, mtls: bool,
                 version: str | None, nursery: trio.Nursery) -> None:
        #: The :class:`~trioecho.server.EchoServer` (its ``stats``, ``reload()``...).
        self.server = server
        #: The certificates in use.
        self.pki = pki
        #: Every connection that ended, in order (``ConnectionInfo``: outcome, version, resumed...).
        self.ended: list[ConnectionInfo] = []
        self._client_policy = client_policy
        self._mtls = mtls
        self._version = version
        self._nursery = nursery
        self._default_ctx: ssl.SSLContext | None = None
        self._changed = trio.Event()
        server.on_connection_end.append(self._record)

    def _record(self, info: ConnectionInfo) -> None:
        self.ended.append(info)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_ended(self, n: int = 1, *, timeout: float = 30) -> list[ConnectionInfo]:
        """Wait until at least ``n`` connections have ended, and return all that have.

        Raises:
            trio.TooSlowError: fewer than ``n`` ended within ``timeout`` seconds.
        """
        with trio.fail_after(timeout):
            while len(self.ended) < n:
                await self._changed.wait()
        return self.ended

    def client_policy(self, **changes: Any) -> Policy:
        """The client policy ``connect()`` uses by default, with ``changes`` applied."""
        cp = self._client_policy
        if self._mtls and cp.client_cert is None:
            cp = cp.replace(client_cert=CertSpec(self.pki.client_pem))
        if self._version is not None:
            cp = cp.replace(min_version=self._version, max_version=self._version)
        return cp.replace(**changes) if changes else cp

    def _context(self, client_policy: Policy | None, ssl_context: ssl.SSLContext | None) -> ssl.SSLContext:
        if ssl_context is not None:
            return ssl_context
        if client_policy is not None:
            return client_policy.client_context()
        # One default client context per server, so sessions resume across connect() calls.
        if self._default_ctx is None:
            self._default_ctx = self.client_policy().client_context()
        return self._default_ctx


class MemoryEchoServer(_EchoServerFixture):
    """An :class:`~trioecho.server.EchoServer` reached over trio's in-memory streams.

    Made by :func:`open_memory_echo_server`; each :meth:`connect` makes a new
    stream pair and serves its server end in the background.
    """

    def __init__(self, *args: Any, lockstep: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._maker = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        self._count = 0

    async def connect(
        self,
        *,
        client_policy: Policy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
        sessions: SessionCache | None = None,
        timeout: float = 10.0,
        max_frame: int = MAX_FRAME,
    ) -> EchoConnection:
        """Open a verified TLS connection to the server (handshake done).

        Args:
            client_policy: default: trusts the test CA, sends the client certificate
                if the server requires one, pinned to the server's version if it is pinned.
            ssl_context: use this client context as it is.
            server_hostname: the name verified and sent as SNI.
            sessions: resume the session kept here and keep the new one (resumption works
                across calls that use the default policy, or the same ``ssl_context``).
            timeout: deadline for the handshake and for each echo.
            max_frame: refuse echoes longer than this.

        Returns:
            An :class:`~trioecho.client.EchoConnection` (``await conn.echo(b"...")``;
            ``conn.stream`` is the client ``trio.SSLStream``; ``conn.tls`` what was negotiated).

        Raises:
            ConnectionFailed: the handshake failed (classified, as ``trioecho ping`` reports it).
        """
        policy = client_policy or self.client_policy()
        ctx = self._context(client_policy, ssl_context)
        client_raw, server_raw = self._maker()
        self._count += 1
        self._nursery.start_soon(functools.partial(self.server.handle_stream, server_raw,
                                                   peer=f"memory#{self._count}"))
        stream = trio.SSLStream(client_raw, ctx, server_hostname=server_hostname)
        if sessions is not None and sessions.session is not None:
            try:
                stream.session = sessions.session
            except ValueError:
                sessions.session = None  # a session from another context: start afresh
        t0 = time.perf_counter()
        with trio.move_on_after(timeout) as cs:
            try:
                await stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                await trio.aclose_forcefully(stream)
                raise _failure(exc, "handshake") from exc
        if cs.cancelled_caught:
            await trio.aclose_forcefully(stream)
            raise ConnectionFailed("timeout", f"TLS handshake over memory streams took longer than {timeout:g}s",
                                   "the server side is blocked or was cancelled")
        tls_time = time.perf_counter() - t0
        info = _tls_info(stream, policy, server_hostname, verified=ctx.verify_mode != ssl.CERT_NONE)
        return EchoConnection(stream, tls=info, tcp_time=0.0, tls_time=tls_time, max_frame=max_frame,
                              timeout=timeout, sessions=sessions)


class LoopbackEchoServer(_EchoServerFixture):
    """An :class:`~trioecho.server.EchoServer` listening on loopback (port picked by the kernel).

    Made by :func:`open_loopback_echo_server`.  Real peers (``openssl s_client``,
    your own client) can connect to :attr:`host`:``port``; :attr:`pki` has the
    CA file they should trust.
    """

    def __init__(self, *args: Any, host: str, port: int, plaintext: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The address the server is bound to, and its port.
        self.host = host
        self.port = port
        #: The server speaks the framing over bare TCP (``connect()`` then does too).
        self.plaintext = plaintext

    @property
    def address(self) -> str:
        """``HOST:PORT`` (IPv6 bracketed), e.g. for ``trioecho ping``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def connect(
        self,
        *,
        client_policy: Policy | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str = "localhost",
        sessions: SessionCache | None = None,
        timeout: float = 10.0,
        max_frame: int = MAX_FRAME,
    ) -> EchoConnection:
        """Open a verified TLS connection over TCP (see :meth:`MemoryEchoServer.connect`).

        Raises:
            ConnectionFailed: refused, timeout, or any TLS or verification failure.
        """
        if self.plaintext:
            return await open_echo_connection(self.host, self.port, plaintext=True, timeout=timeout,
                                              max_frame=max_frame)
        policy = client_policy or self.client_policy()
        ctx = self._context(client_policy, ssl_context)
        return await open_echo_connection(self.host, self.port, policy=policy, servername=server_hostname,
                                          timeout=timeout, sessions=sessions, ssl_context=ctx,
                                          max_frame=max_frame)


@contextmanager
def _unwrap_body_error() -> Iterator[None]:
    """Let an error from the ``async with`` body through as itself, not in an ExceptionGroup.

    The servers' own tasks never raise (each connection contains its failures), so a
    one-member group from the nursery holds the body's error: a failed ``assert`` or
    a ``ConnectionFailed`` in a user's test should read as that, and ``pytest.raises``
    around the whole block should work.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


def _server_side(pki: TestPKI | None, server_policy: Policy | None, version: str | None,
                 mtls: bool) -> tuple[TestPKI, Policy]:
    pki = pki or _pki()
    sp = server_policy or pki.server_policy()
    if version is not None:
        sp = sp.replace(min_version=version, max_version=version)
    if mtls:
        sp = sp.replace(client_auth="required", client_ca=pki.ca_pem)
    return pki, sp


@asynccontextmanager
async def open_memory_echo_server(
    *,
    pki: TestPKI | None = None,
    server_policy: Policy | None = None,
    client_policy: Policy | None = None,
    version: str | None = None,
    mtls: bool = False,
    limits: ServerLimits | None = None,
    lockstep: bool = False,
) -> AsyncIterator[MemoryEchoServer]:
    """Run an EchoServer in-process, reached over memory streams; stop it on exit.

    Callable with no arguments: a shared test CA, TLS 1.2-1.3, no client certificates.

    Args:
        pki: certificates (default: one shared per process).
        server_policy: the server's policy (default: the PKI's server certificate).
        client_policy: what ``connect()`` uses by default (default: trusts the PKI's CA).
        version: pin the server (and the default client) to "1.2" or "1.3".
        mtls: the server requires a client certificate; ``connect()`` sends the PKI's.
        limits: the server's timeouts and bounds.
        lockstep: use ``lockstep_stream_pair`` (no buffering) instead of ``memory_stream_pair``.

    Yields:
        A :class:`MemoryEchoServer`.  Connections still open at exit are cancelled.
    """
    pki, sp = _server_side(pki, server_policy, version, mtls)
    server = EchoServer(policy=sp, limits=limits)
    with _unwrap_body_error():
        async with trio.open_nursery() as nursery:
            fixture = MemoryEchoServer(server, pki, client_policy or pki.client_policy(), mtls=mtls,
                                       version=version, nursery=nursery, lockstep=lockstep)
            try:
                yield fixture
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_loopback_echo_server(
    *,
    pki: TestPKI | None = None,
    server_policy: Policy | None = None,
    client_policy: Policy | None = None,
    version: str | None = None,
    mtls: bool = False,
    limits: ServerLimits | None = None,
    host: str = "127.0.0.1",
    plaintext: bool = False,
) -> AsyncIterator[LoopbackEchoServer]:
    """Run an EchoServer in-process on ``host`` port 0 (started with ``nursery.start``); stop it on exit.

    Callable with no arguments.  Arguments as for :func:`open_memory_echo_server`, and:

    Args:
        host: the address to bind ("127.0.0.1" by default; "::1" for IPv6).
        plaintext: serve the framing over bare TCP (``connect()`` then connects without TLS),
            e.g. to compare a protocol's behaviour with and without TLS.

    Yields:
        A :class:`LoopbackEchoServer` with :attr:`~LoopbackEchoServer.port` bound.
    """
    pki, sp = _server_side(pki, server_policy, version, mtls)
    server = EchoServer(policy=None if plaintext else sp, limits=limits, plaintext=plaintext)
    with _unwrap_body_error():
        async with trio.open_nursery() as nursery:
            addrs = await nursery.start(functools.partial(server.serve, host=host, port=0))
            bound_host, port = addrs[0]
            fixture = LoopbackEchoServer(server, pki, client_policy or pki.client_policy(), mtls=mtls,
                                         version=version, nursery=nursery, host=bound_host, port=port,
                                         plaintext=plaintext)
            try:
                yield fixture
            finally:
                nursery.cancel_scope.cancel()
