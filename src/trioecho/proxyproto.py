"""Sans-IO PROXY protocol (v1 text and v2 binary): who the client really is, behind a load balancer.

Theory of operation
-------------------
A TCP load balancer (HAProxy ``send-proxy``/``send-proxy-v2``, AWS NLB, ...)
opens its own connection to the server, so the server sees the balancer's
address.  With the PROXY protocol the balancer first writes one header
carrying the client's address, then relays the client's bytes (here: the TLS
ClientHello) untouched.  Spec: https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt

Nothing here does I/O.  The reader must not consume a single byte past the
header (those bytes belong to TLS), so :func:`scan` says how many more bytes
are *certainly* part of the header: read exactly that many and call again,
until it returns 0; then :func:`parse` the buffer.  Both versions are at least
15 bytes long, so the first read is 8 bytes; a v2 header then announces its
own length; a v1 header ends at CRLF, within 107 bytes (the I/O side may peek
for the CRLF instead of reading byte by byte).

Every malformed input raises :class:`ProxyProtocolError` with what was
expected and what came, as soon as the prefix cannot be a header any more: a
client that connects directly (no balancer) fails on its first bytes, not
after a timeout.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .errors import RemoteProtocolError

__all__ = [
    "ACCEPT",
    "V1_MAX",
    "V2_MAX_BODY",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyProtocolError",
    "encode_v1",
    "encode_v2",
    "parse",
    "scan",
]

#: The spec's limit for a v1 line, CRLF included.
V1_MAX = 107
#: The 12-byte v2 signature.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: v2 address block + TLVs we accept; HAProxy's own TLVs fit easily (the field allows 64 KiB).
V2_MAX_BODY = 2048
#: Which versions a server accepts: "v1", "v2" or "any".
ACCEPT = ("v1", "v2", "any")

_V1_PREFIX = b"PROXY "
_FIRST_READ = 8  # both versions are longer than this, so reading it never over-reads
_V2_FIXED = 16
_V2_FAMILIES = {
    0x00: ("UNSPEC", 0), 0x11: ("TCP4", 12), 0x12: ("UDP4", 12), 0x21: ("TCP6", 36), 0x22: ("UDP6", 36),
    0x31: ("UNIX", 216), 0x32: ("UNIX_DGRAM", 216),
}


class ProxyProtocolError(RemoteProtocolError):
    """The bytes before TLS are not a valid PROXY protocol header (of an accepted version)."""


@dataclass(frozen=True)
class ProxyHeader:
    """One parsed header.

    Attributes:
        version: 1 or 2.
        command: "PROXY" (relayed connection) or "LOCAL" (v2: the balancer's own health check).
        family: "TCP4", "TCP6", "UNKNOWN" (v1) / "UNSPEC", "UDP4", "UDP6", "UNIX"... (v2).
        src, dst: (address, port) of the client and of the address it dialled; ``None`` when not carried.
        length: bytes the header took on the wire.
    """

    version: int
    command: str
    family: str
    src: tuple[str, int] | None
    dst: tuple[str, int] | None
    length: int

    @property
    def client(self) -> str | None:
        """The client's address as ``host:port`` (``[v6]:port``), or ``None`` (LOCAL, UNKNOWN...)."""
        if self.command != "PROXY" or self.src is None:
            return None
        host, port = self.src
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_accept(accept: str) -> None:
    if accept not in ACCEPT:
        raise ValueError(f"accept must be one of {', '.join(ACCEPT)}, not {accept!r}")


def _show(data: bytes | bytearray) -> str:
    return repr(bytes(data[:24])) + ("..." if len(data) > 24 else "")


def scan(buf: bytes | bytearray, accept: str = "any") -> int:
    """How many more bytes to read (exactly) before the header may be complete; 0 when ``buf`` is one header.

    Raises:
        ProxyProtocolError: ``buf`` cannot be the start of an accepted header.
    """
    _check_accept(accept)
    n = len(buf)
    v1_ok, v2_ok = accept in ("v1", "any"), accept in ("v2", "any")
    head = bytes(buf[:12])
    if n < len(_V1_PREFIX):
        could_v1 = v1_ok and _V1_PREFIX.startswith(head)
    else:
        could_v1 = v1_ok and head.startswith(_V1_PREFIX)
    if n < len(V2_SIGNATURE):
        could_v2 = v2_ok and V2_SIGNATURE.startswith(head)
    else:
        could_v2 = v2_ok and head == V2_SIGNATURE
    if not (could_v1 or could_v2):
        want = {"v1": "a PROXY v1 line ('PROXY TCP4 ...')", "v2": "the PROXY v2 signature",
                "any": "a PROXY protocol header (v1 'PROXY ...' or the v2 signature)"}[accept]
        hint = ""
        if buf[:1] == b"\x16":
            hint = ": this looks like a TLS ClientHello sent directly, not through the load balancer"
        raise ProxyProtocolError(f"expected {want}, got {_show(buf)}{hint}")
    if n < _FIRST_READ:
        return _FIRST_READ - n
    if could_v1:
        end = bytes(buf).find(b"\r\n")
        if end >= 0:
            if end + 2 != n:
                raise ProxyProtocolError("bytes after the PROXY v1 line were read as part of it (reader bug)")
            return 0
        if n >= V1_MAX:
            raise ProxyProtocolError(f"PROXY v1 line has no CRLF within {V1_MAX} bytes")
        return 1
    if n < _V2_FIXED:
        return _V2_FIXED - n
    body = int.from_bytes(buf[14:16], "big")
    if body > V2_MAX_BODY:
        raise ProxyProtocolError(f"PROXY v2 header announces {body} bytes of addresses and TLVs, "
                                 f"over the {V2_MAX_BODY}-byte limit")
    total = _V2_FIXED + body
    if n > total:
        raise ProxyProtocolError("bytes after the PROXY v2 header were read as part of it (reader bug)")
    return total - n


def parse(buf: bytes | bytearray, accept: str = "any") -> ProxyHeader:
    """Parse exactly one complete header (``scan(buf) == 0``).

    Raises:
        ProxyProtocolError: malformed, incomplete, or of a version not accepted.
    """
    if scan(buf, accept) != 0:
        raise ProxyProtocolError(f"incomplete PROXY header ({len(buf)} bytes)")
    data = bytes(buf)
    if data.startswith(_V1_PREFIX):
        return _parse_v1(data)
    return _parse_v2(data)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProxyProtocolError(f"PROXY v1 port {text!r} is not a number from 0 to 65535")
    return int(text)


def _parse_v1(data: bytes) -> ProxyHeader:
    try:
        line = data[:-2].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyProtocolError(f"PROXY v1 line is not ASCII: {_show(data)}") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(1, "PROXY", "UNKNOWN", None, None, len(data))
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyProtocolError(
            f"expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' or 'PROXY UNKNOWN', got {line!r}")
    _, family, src, dst, sport, dport = parts
    version = 4 if family == "TCP4" else 6
    for addr in (src, dst):
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            raise ProxyProtocolError(f"PROXY v1 address {addr!r} is not an IP address") from None
        if ip.version != version or (version == 6 and "%" in addr):
            raise ProxyProtocolError(f"PROXY v1 address {addr!r} is not an IPv{version} address ({family})")
    return ProxyHeader(1, "PROXY", family, (src, _port(sport)), (dst, _port(dport)), len(data))


def _parse_v2(data: bytes) -> ProxyHeader:
    ver_cmd, fam, body = data[12], data[13], int.from_bytes(data[14:16], "big")
    if ver_cmd >> 4 != 2:
        raise ProxyProtocolError(f"PROXY v2 header has version {ver_cmd >> 4}, expected 2")
    cmd = ver_cmd & 0x0F
    if cmd not in (0, 1):
        raise ProxyProtocolError(f"PROXY v2 command {cmd} is neither LOCAL (0) nor PROXY (1)")
    if fam not in _V2_FAMILIES:
        raise ProxyProtocolError(f"PROXY v2 address family/protocol byte 0x{fam:02x} is not defined")
    family, need = _V2_FAMILIES[fam]
    command = "LOCAL" if cmd == 0 else "PROXY"
    if command == "LOCAL":
        return ProxyHeader(2, "LOCAL", family, None, None, len(data))
    if body < need:
        raise ProxyProtocolError(f"PROXY v2 {family} needs {need} address bytes, the header has {body}")
    a = data[16:16 + need]
    src: tuple[str, int] | None = None
    dst: tuple[str, int] | None = None
    if family in ("TCP4", "UDP4"):
        src = (str(ipaddress.IPv4Address(a[0:4])), struct.unpack_from(">H", a, 8)[0])
        dst = (str(ipaddress.IPv4Address(a[4:8])), struct.unpack_from(">H", a, 10)[0])
    elif family in ("TCP6", "UDP6"):
        src = (str(ipaddress.IPv6Address(a[0:16])), struct.unpack_from(">H", a, 32)[0])
        dst = (str(ipaddress.IPv6Address(a[16:32])), struct.unpack_from(">H", a, 34)[0])
    return ProxyHeader(2, command, family, src, dst, len(data))


def encode_v1(src: tuple[str, int] | None, dst: tuple[str, int] | None) -> bytes:
    """A v1 header (``PROXY UNKNOWN`` when either address is ``None``); for tests and clients."""
    if src is None or dst is None:
        return b"PROXY UNKNOWN\r\n"
    family = "TCP6" if ":" in src[0] else "TCP4"
    return f"PROXY {family} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode("ascii")


def encode_v2(src: tuple[str, int] | None, dst: tuple[str, int] | None, *, tlvs: bytes = b"") -> bytes:
    """A v2 header (LOCAL when either address is ``None``); for tests and clients."""
    if src is None or dst is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack(">H", len(tlvs)) + tlvs
    s, d = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    fam = 0x11 if s.version == 4 else 0x21
    addrs = s.packed + d.packed + struct.pack(">HH", src[1], dst[1]) + tlvs
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack(">H", len(addrs)) + addrs
