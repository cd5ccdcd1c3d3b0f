"""Every failure the ping issue lists gets its stable error_kind and a one-line explanation with a fix.

Servers run in-process on loopback, port 0.  Each negative case asserts both sides: the client's
classified error, and that the server then still serves a correct client.
"""

from __future__ import annotations

import datetime
import functools
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from trioecho import Pinger, PingOptions, Policy
from trioecho.errors import ERROR_KINDS
from trioecho.framing import encode_frame
from trioecho.testing import TestPKI, make_pki

from .conftest import RunningServer


async def ping_once(host: str, port: int, policy: Policy | None, **opts: Any):  # type: ignore[no-untyped-def]
    options = PingOptions(host=host, port=port, count=1, interval=0, timeout=opts.pop("timeout", 10), **opts)
    report = await Pinger(options, policy).run()
    (probe,) = report.probes
    return probe


async def assert_kind(kind: str, host: str, port: int, policy: Policy | None, **opts: Any):  # type: ignore[no-untyped-def]
    p = await ping_once(host, port, policy, **opts)
    assert (p.ok, p.error_kind) == (False, kind), (p.error_kind, p.error, p.hint)
    assert p.error and "\n" not in p.error
    assert p.hint and "\n" not in p.hint
    return p


async def assert_serves(pki: TestPKI, srv: RunningServer) -> None:
    p = await ping_once("localhost", srv.port, pki.client_policy())
    assert p.ok, p.error


# -- reaching the server -----------------------------------------------------------------------------


async def test_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # bound, never listened: connecting is refused
    await assert_kind("refused", "127.0.0.1", port, Policy())


async def test_dns() -> None:
    # .invalid never resolves (RFC 6761); the long deadline lets a slow or unreachable resolver
    # still answer "temporary failure" (a dns error) before ping's own timeout.
    p = await assert_kind("dns", "no-such-host.invalid", 9443, Policy(), timeout=60)
    assert "--servername" in p.hint


async def serve_raw(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]) -> int:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_timeout_silent_server(nursery: trio.Nursery, pki: TestPKI) -> None:
    """A server that accepts and never speaks: the handshake deadline fires."""

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    port = await serve_raw(nursery, silent)
    p = await assert_kind("timeout", "localhost", port, pki.client_policy(), timeout=0.3)
    assert "took longer than 0.3s" in (p.error or "")


async def test_reset(nursery: trio.Nursery, pki: TestPKI) -> None:
    """A server that aborts the TCP connection (RST) on accept."""

    async def rst(stream: trio.SocketStream) -> None:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await stream.receive_some()  # wait for the ClientHello, then reset
        stream.socket.close()

    port = await serve_raw(nursery, rst)
    await assert_kind("reset", "localhost", port, pki.client_policy())


# -- the handshake -------------------------------------------------------------------------------


async def test_tls_version(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(policy=pki.server_policy(max_version="1.2"))
    await assert_kind("tls_version", "localhost", srv.port, pki.client_policy(min_version="1.3"))
    await assert_serves(pki, srv)


async def test_no_shared_cipher(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(policy=pki.server_policy(max_version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    client = pki.client_policy(max_version="1.2", ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    # OpenSSL's server answers "no shared cipher" with a generic handshake_failure alert; ping
    # tells it apart because the alert came before any ServerHello.
    p = await assert_kind("no_shared_cipher", "localhost", srv.port, client)
    assert "trioecho policy show" in (p.hint or "")
    (info,) = await srv.wait_ended(1)
    assert info.outcome == "no_shared_cipher"
    await assert_serves(pki, srv)


async def test_unknown_ca(pki: TestPKI, start_server: Any, tmp_path: Any) -> None:
    srv = await start_server()
    other = make_pki(tmp_path / "other")
    p = await assert_kind("unknown_ca", "localhost", srv.port, other.client_policy())
    assert "--cafile" in (p.hint or "")
    await assert_serves(pki, srv)


async def test_hostname_mismatch_lists_the_names(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    p = await assert_kind("hostname_mismatch", "127.0.0.1", srv.port, pki.client_policy(),
                          servername="wrong.example")
    assert "DNS:localhost" in (p.error or "") and "--servername localhost" in (p.hint or "")
    await assert_serves(pki, srv)


@pytest.mark.parametrize(
    ("kind", "dates"),
    [
        ("cert_expired", {"not_before": datetime.datetime(2020, 1, 1), "not_after": datetime.datetime(2021, 1, 1)}),
        ("cert_not_yet_valid", {"not_before": datetime.datetime(2990, 1, 1), "not_after": datetime.datetime(2999, 1, 1)}),
    ],
)
async def test_certificate_dates(start_server: Any, tmp_path: Any, kind: str, dates: dict[str, Any]) -> None:
    bad = make_pki(tmp_path / "bad", **dates)
    srv = await start_server(policy=bad.server_policy())
    await assert_kind(kind, "localhost", srv.port, bad.client_policy())
    # the same server, read without verification, still serves
    p = await ping_once("localhost", srv.port, bad.client_policy(insecure=True))
    assert p.ok, p.error


async def test_self_signed(start_server: Any, tmp_path: Any) -> None:
    import trustme

    from trioecho.policy import CertSpec

    ca = trustme.CA()  # a CA certificate is self-signed: serve it as the leaf
    pem = tmp_path / "self.pem"
    pem.write_bytes(ca.private_key_pem.bytes() + ca.cert_pem.bytes())
    srv = await start_server(policy=Policy(certs=(CertSpec(pem),)))
    p = await assert_kind("self_signed", "localhost", srv.port, Policy())
    assert "--cafile" in (p.hint or "")


async def test_client_cert_rejected(pki: TestPKI, start_server: Any, tmp_path: Any) -> None:
    """The server trusts another CA for client certificates: TLS 1.2 and 1.3 both say so."""
    from trioecho.policy import CertSpec

    other = make_pki(tmp_path / "other")
    srv = await start_server(policy=pki.server_policy(client_auth="required", client_ca=pki.ca_pem))
    for version in ("1.2", "1.3"):
        client = pki.client_policy(max_version=version, client_cert=CertSpec(other.client_pem))
        p = await assert_kind("client_cert_rejected", "localhost", srv.port, client)
        assert "--client-ca" in (p.hint or "")
    good = pki.client_policy(client_cert=CertSpec(pki.client_pem))
    assert (await ping_once("localhost", srv.port, good)).ok


async def test_alpn_mismatch(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server(policy=pki.server_policy(alpn_strict=True))
    p = await assert_kind("alpn_mismatch", "localhost", srv.port, pki.client_policy(alpn=("h2",)))
    assert "echo/1" in (p.hint or "")
    await assert_serves(pki, srv)


async def test_plaintext_peer(pki: TestPKI, start_server: Any) -> None:
    """TLS ping against a plaintext echo server: the server answers bytes that are no TLS."""
    srv = await start_server(plaintext=True)
    p = await assert_kind("plaintext_peer", "localhost", srv.port, pki.client_policy())
    assert "--plaintext" in (p.hint or "")
    q = await ping_once("localhost", srv.port, None, plaintext=True)
    assert q.ok, q.error


async def test_plaintext_client_against_tls_server(pki: TestPKI, start_server: Any) -> None:
    srv = await start_server()
    p = await assert_kind("plaintext_peer", "localhost", srv.port, None, plaintext=True)
    assert "drop --plaintext" in (p.hint or "")
    await assert_serves(pki, srv)


# -- after the handshake ---------------------------------------------------------------------------


async def tls_server(nursery: trio.Nursery, pki: TestPKI,
                     after: Callable[[trio.SSLStream[Any]], Awaitable[None]]) -> int:
    ctx = pki.server_policy().server_context()

    async def handler(stream: trio.SocketStream) -> None:
        s = trio.SSLStream(stream, ctx, server_side=True)
        try:
            await s.do_handshake()
            await after(s)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(s)

    return await serve_raw(nursery, handler)


async def test_truncated(nursery: trio.Nursery, pki: TestPKI) -> None:
    """The server drops TCP after the handshake without close_notify."""

    async def drop(s: trio.SSLStream[Any]) -> None:
        await s.receive_some()
        s.transport_stream.socket.close()  # no close_notify

    port = await tls_server(nursery, pki, drop)
    p = await assert_kind("truncated", "localhost", port, pki.client_policy())
    assert "close_notify" in (p.error or "")


async def test_echo_mismatch(nursery: trio.Nursery, pki: TestPKI) -> None:
    async def liar(s: trio.SSLStream[Any]) -> None:
        data = await s.receive_some()
        await s.send_all(encode_frame(b"x" * (len(data) - 4)))
        await s.aclose()

    port = await tls_server(nursery, pki, liar)
    p = await assert_kind("echo_mismatch", "localhost", port, pki.client_policy())
    assert "first difference at byte 0" in (p.error or "")


def test_every_kind_has_a_fix() -> None:
    for name, k in ERROR_KINDS.items():
        assert k.fix and k.symptom and "\n" not in k.fix, name
    assert ssl.OPENSSL_VERSION  # the table is the same whatever the OpenSSL


async def test_hostname_mismatch_diagnosed_once_per_run(pki: TestPKI, start_server: Any) -> None:
    """ping -c 3 against a misnamed server: three failures explained, one diagnostic connection."""
    from trioecho import Pinger, PingOptions

    srv = await start_server()
    report = await Pinger(PingOptions(host="127.0.0.1", port=srv.port, servername="wrong.example", count=3,
                                      interval=0), pki.client_policy()).run()
    assert [p.error_kind for p in report.probes] == ["hostname_mismatch"] * 3
    assert all("localhost" in (p.error or "") for p in report.probes)
    ended = await srv.wait_ended(4)  # 3 probes + 1 diagnosis
    assert len(ended) == 4
    diag = [i for i in ended if i.version is not None]
    assert len(diag) == 1 and diag[0].outcome == "clean"  # the diagnosis closes with close_notify
