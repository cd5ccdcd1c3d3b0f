"""PROXY protocol v1/v2: table tests of the sans-IO parser, exact reads, and the server hook."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trioecho import open_echo_connection
from trioecho.errors import ERROR_KINDS
from trioecho.proxyproto import (
    V1_MAX,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
    parse,
    scan,
)
from trioecho.testing import TestPKI

V2_TCP4 = encode_v2(("203.0.113.7", 55555), ("198.51.100.1", 9443))
V2_TCP6 = encode_v2(("2001:db8::7", 443), ("2001:db8::1", 9443))

GOOD = [
    # (wire bytes, accept, version, command, family, client)
    (b"PROXY TCP4 203.0.113.7 198.51.100.1 55555 9443\r\n", "v1", 1, "PROXY", "TCP4", "203.0.113.7:55555"),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 443 9443\r\n", "any", 1, "PROXY", "TCP6", "[2001:db8::7]:443"),
    (b"PROXY UNKNOWN\r\n", "any", 1, "PROXY", "UNKNOWN", None),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", "v1", 1, "PROXY", "UNKNOWN", None),
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", "any", 1, "PROXY", "TCP4",
     "255.255.255.255:65535"),
    (V2_TCP4, "v2", 2, "PROXY", "TCP4", "203.0.113.7:55555"),
    (V2_TCP6, "any", 2, "PROXY", "TCP6", "[2001:db8::7]:443"),
    (encode_v2(None, None), "v2", 2, "LOCAL", "UNSPEC", None),
    # TLVs (HAProxy's unique-id, ALPN...) are skipped.
    (encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=b"\x05\x00\x03abc"), "v2", 2, "PROXY", "TCP4", "192.0.2.1:1"),
    # UDP and unix families parse; they carry no TCP client to log for a TCP echo, but UDP4 does carry one.
    (V2_SIGNATURE + bytes([0x21, 0x12, 0, 12]) + bytes([192, 0, 2, 9, 192, 0, 2, 1, 0, 7, 0, 8]), "v2", 2,
     "PROXY", "UDP4", "192.0.2.9:7"),
    (V2_SIGNATURE + bytes([0x21, 0x31, 0, 216]) + b"\0" * 216, "v2", 2, "PROXY", "UNIX", None),
]


@pytest.mark.parametrize("wire,accept,version,command,family,client", GOOD)
def test_good_headers(wire: bytes, accept: str, version: int, command: str, family: str, client: str | None) -> None:
    h = parse(wire, accept)
    assert (h.version, h.command, h.family, h.client, h.length) == (version, command, family, client, len(wire))


@pytest.mark.parametrize("wire", [w for w, *_ in GOOD])
def test_scan_never_asks_past_the_header(wire: bytes) -> None:
    """Feeding exactly what scan() asks for ends exactly at the header's end, at every step."""
    buf = b""
    steps = 0
    while (need := scan(buf)) != 0:
        assert need >= 1
        assert len(buf) + need <= len(wire), "scan asked for bytes past the header"
        buf += wire[len(buf):len(buf) + need]
        steps += 1
    assert buf == wire
    assert steps <= V1_MAX


BAD = [
    # (wire, accept, message fragment)
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc", "any", "TLS ClientHello sent directly"),
    (b"GET / HTTP/1.1\r\n", "any", "expected a PROXY protocol header"),
    (b"PROXY TCP4 203.0.113.7 198.51.100.1 55555 9443\r\n", "v2", "expected the PROXY v2 signature"),
    (V2_TCP4, "v1", "expected a PROXY v1 line"),
    (b"PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n", "any", "expected 'PROXY TCP4|TCP6"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n", "any", "expected 'PROXY TCP4|TCP6"),
    (b"PROXY TCP4 1.2.3.4  1.2.3.5 1 2\r\n", "any", "expected 'PROXY TCP4|TCP6"),
    (b"PROXY TCP4 2001:db8::1 1.2.3.5 1 2\r\n", "any", "not an IPv4 address"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "any", "not an IPv6 address"),
    (b"PROXY TCP4 1.2.3.400 1.2.3.5 1 2\r\n", "any", "not an IP address"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n", "any", "0 to 65535"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 01 2\r\n", "any", "0 to 65535"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 -1 2\r\n", "any", "0 to 65535"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.5 1 2\xff\r\n", "any", "not ASCII"),
    (b"PROXY " + b"9" * (V1_MAX - 6), "any", "no CRLF within 107 bytes"),
    (V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + b"\0" * 12, "any", "version 1, expected 2"),
    (V2_SIGNATURE + bytes([0x22, 0x11, 0, 12]) + b"\0" * 12, "any", "neither LOCAL (0) nor PROXY (1)"),
    (V2_SIGNATURE + bytes([0x21, 0x13, 0, 12]) + b"\0" * 12, "any", "0x13 is not defined"),
    (V2_SIGNATURE + bytes([0x21, 0x21, 0, 12]) + b"\0" * 12, "any", "needs 36 address bytes"),
    (V2_SIGNATURE + bytes([0x21, 0x11, 0x08, 0x01]), "any", "over the 2048-byte limit"),
    (V2_SIGNATURE[:11] + b"X", "any", "expected a PROXY protocol header"),
]


@pytest.mark.parametrize("wire,accept,fragment", BAD)
def test_bad_headers_fail_with_what_was_expected(wire: bytes, accept: str, fragment: str) -> None:
    with pytest.raises(ProxyProtocolError, match=fragment.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")):
        buf = b""
        while (need := scan(buf, accept)) != 0:
            if len(buf) >= len(wire):
                pytest.fail("scan wants more bytes than the bad input has, without failing")
            buf += wire[len(buf):len(buf) + need]
        parse(buf, accept)


def test_incomplete_and_over_read_are_refused() -> None:
    with pytest.raises(ProxyProtocolError, match="incomplete"):
        parse(V2_TCP4[:-1])
    with pytest.raises(ProxyProtocolError, match="reader bug"):
        scan(V2_TCP4 + b"\x16")
    with pytest.raises(ProxyProtocolError, match="reader bug"):
        scan(b"PROXY UNKNOWN\r\n\x16")
    with pytest.raises(ValueError):
        scan(b"", "v3")


def test_proxy_protocol_is_an_error_kind() -> None:
    assert ERROR_KINDS["proxy_protocol"].side == "server"


@given(st.sampled_from(["v1", "v2"]), st.ip_addresses(), st.integers(0, 65535), st.integers(0, 65535))
def test_round_trip(version: str, ip: Any, sport: int, dport: int) -> None:
    src = (str(ip), sport)
    dst = ("::1" if ip.version == 6 else "127.0.0.1", dport)
    wire = (encode_v1 if version == "v1" else encode_v2)(src, dst)
    h = parse(wire, version)
    assert isinstance(h, ProxyHeader)
    assert h.src == src and h.dst == dst


# -- the server hook (real sockets) ---------------------------------------------------------------

async def _send_then_ping(port: int, pki: TestPKI, header: bytes, *, stall: bool = False) -> None:
    """Connect, write a PROXY header (in two pieces, to exercise exact reads), then TLS through it."""
    import ssl

    sock = await trio.open_tcp_stream("127.0.0.1", port)
    await sock.send_all(header[:5])
    await trio.sleep(0)
    await sock.send_all(header[5:])
    ctx = pki.client_policy().client_context()
    s = trio.SSLStream(sock, ctx, server_hostname="localhost")
    await s.do_handshake()
    await s.send_all(b"\x00\x00\x00\x02hi")
    got = b""
    while len(got) < 6:
        got += await s.receive_some()
    assert got == b"\x00\x00\x00\x02hi"
    await s.aclose()
    assert isinstance(ctx, ssl.SSLContext)


@pytest.mark.parametrize("header", [
    encode_v1(("203.0.113.7", 55555), ("127.0.0.1", 9443)),
    encode_v2(("2001:db8::7", 4242), ("::1", 9443)),
])
async def test_server_logs_the_client_address_from_the_header(start_server: Callable[..., Any], pki: TestPKI,
                                                              header: bytes, caplog: pytest.LogCaptureFixture) -> None:
    srv = await start_server()
    srv.server.proxy_protocol = "any"
    caplog.set_level(logging.INFO, logger="trioecho")
    with trio.fail_after(10):
        await _send_then_ping(srv.port, pki, header)
        ended = await srv.wait_ended(1)
    want = parse(header).client
    assert ended[0].peer == want and ended[0].outcome == "clean"
    assert any(f"peer={want}" in r.getMessage() for r in caplog.records)


async def test_local_header_keeps_the_balancer_address(start_server: Callable[..., Any], pki: TestPKI) -> None:
    srv = await start_server()
    srv.server.proxy_protocol = "v2"
    with trio.fail_after(10):
        await _send_then_ping(srv.port, pki, encode_v2(None, None))
        ended = await srv.wait_ended(1)
    assert ended[0].peer.startswith("127.0.0.1:")


async def test_direct_tls_client_is_refused_and_the_server_keeps_serving(start_server: Callable[..., Any],
                                                                         pki: TestPKI) -> None:
    srv = await start_server()
    srv.server.proxy_protocol = "any"
    with trio.fail_after(10):
        from trioecho.errors import ConnectionFailed

        with pytest.raises(ConnectionFailed):
            conn = await open_echo_connection("127.0.0.1", srv.port, policy=pki.client_policy(),
                                              servername="localhost", timeout=5)
            await conn.echo(b"x")
        ended = await srv.wait_ended(1)
        assert ended[0].outcome == "proxy_protocol"
        assert "TLS ClientHello sent directly" in ended[0].detail
        # The next, well-behaved connection is served.
        await _send_then_ping(srv.port, pki, encode_v1(("192.0.2.1", 1), ("127.0.0.1", 2)))
        ended = await srv.wait_ended(2)
    assert ended[1].outcome == "clean" and ended[1].peer == "192.0.2.1:1"


async def test_silent_client_times_out_as_proxy_protocol(start_server: Callable[..., Any]) -> None:
    from trioecho import ServerLimits

    srv = await start_server(limits=ServerLimits(handshake_timeout=0.2))
    srv.server.proxy_protocol = "any"
    with trio.fail_after(10):
        sock = await trio.open_tcp_stream("127.0.0.1", srv.port)
        await sock.send_all(b"PROXY TCP4 ")
        ended = await srv.wait_ended(1)
        await sock.aclose()
    assert ended[0].outcome == "proxy_protocol"
    assert "no complete PROXY header within 0.2s (11 bytes came)" in ended[0].detail
