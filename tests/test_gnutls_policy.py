"""gnutls-cli (GnuTLS, not OpenSSL) against `trioecho serve` with each profile.

For each profile: the version, cipher and ALPN gnutls-cli reports; ``--resume``
resumes (TLS 1.3 included: the server sends its tickets right after the handshake,
see trioecho._compat.send_tickets_now); early data offered on resumption is never
echoed (0-RTT refused); versions and suites outside the profile fail while the
server goes on serving.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
import trio

from .peers import need
from .policy_helpers import gen_certs, serve

pytestmark = pytest.mark.interop

FRAME = struct.pack(">I", 5) + b"hello"
EARLY = struct.pack(">I", 5) + b"early"
TLS12_ONLY = "NORMAL:-VERS-ALL:+VERS-TLS1.2"
CHACHA_FIRST = "NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305:+AES-256-GCM:+AES-128-GCM"
DESCRIPTION = re.compile(rb"- Description: \((TLS1\.[23])-X\.509\)-.*?\(([A-Z0-9-]+)\)\n")


@pytest.fixture(scope="module")
def spki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """scripts/gen_certs.py output: (ca.pem, server.crt, server.key)."""
    files = gen_certs(tmp_path_factory.mktemp("gnutls-pki"))
    return files["ca.pem"], files["server.crt"], files["server.key"]


async def gnutls_cli(port: int, ca: Path, *args: str, stdin: bytes = FRAME) -> tuple[int, bytes]:
    argv = [need("gnutls-cli"), "--x509cafile", str(ca), "-p", str(port), *args, "localhost"]
    with trio.fail_after(30):
        done = await trio.run_process(argv, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("profile", "priority", "version", "ciphers"),
    [
        ("intermediate", None, "TLS1.3", {"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}),
        ("intermediate", TLS12_ONLY, "TLS1.2", {"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}),
        ("modern", None, "TLS1.3", {"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}),
        ("chapter", None, "TLS1.3", {"AES-128-GCM", "CHACHA20-POLY1305"}),
        ("chapter", TLS12_ONLY, "TLS1.2", {"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}),
        ("baseline", None, "TLS1.3", {"AES-256-GCM", "AES-128-GCM", "CHACHA20-POLY1305"}),
    ],
)
async def test_gnutls_connects_and_resumes(spki: tuple[Path, Path, Path], profile: str,
                                           priority: str | None, version: str, ciphers: set[str]) -> None:
    ca, crt, key = spki
    extra = ["--priority", priority] if priority else []
    async with serve("--cert", str(crt), "--key", str(key), "--profile", profile) as (proc, port):
        code, out = await gnutls_cli(port, ca, "--alpn", "echo/1", "--resume", "--waitresumption",
                                     "--earlydata", "/dev/null", *extra)
        assert code == 0, out.decode(errors="replace")
        full, again = DESCRIPTION.findall(out)
        assert full[0].decode() == version and full[1].decode() in ciphers, full
        assert again[0].decode() == version
        assert b"- Status: The certificate is trusted." in out
        assert out.count(b"- Application protocol: echo/1") == 2
        assert b"*** This is a resumed session" in out
        assert b"hello" in out  # the frame sent on the resumed session came back
        # the server agrees: one full handshake, then a resumed one that echoed the frame
        await proc.read_until(rb"resumed=False sni=localhost")
        await proc.read_until(rb"resumed=True sni=localhost frames=1")


async def test_early_data_is_never_accepted(spki: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """0-RTT: gnutls-cli offers a frame as early data when resuming; it is never echoed."""
    ca, crt, key = spki
    early = tmp_path / "early.bin"
    early.write_bytes(EARLY)
    async with serve("--cert", str(crt), "--key", str(key), "--profile", "modern") as (proc, port):
        code, out = await gnutls_cli(port, ca, "--resume", "--waitresumption", "--earlydata", str(early))
        assert code == 0, out.decode(errors="replace")
        assert b"*** This is a resumed session" in out
        assert b"hello" in out and b"early" not in out
        await proc.read_until(rb"resumed=True sni=localhost frames=1 bytes=9 ")


async def test_client_order_decides_for_mozilla_profiles(spki: tuple[Path, Path, Path]) -> None:
    """Mozilla's server_preferred_order=false: a client that puts ChaCha20 first gets it;
    the chapter profile keeps the server's order (AES-128-GCM first)."""
    ca, crt, key = spki
    for profile, expected in (("intermediate", "CHACHA20-POLY1305"), ("chapter", "AES-128-GCM")):
        async with serve("--cert", str(crt), "--key", str(key), "--profile", profile) as (_proc, port):
            code, out = await gnutls_cli(port, ca, "--priority", CHACHA_FIRST)
            assert code == 0, out.decode(errors="replace")
            ((_v, cipher),) = DESCRIPTION.findall(out)
            assert cipher.decode() == expected, profile


@pytest.mark.parametrize(
    ("profile", "priority"),
    [
        ("modern", TLS12_ONLY),  # TLS 1.2 refused
        ("chapter", "NORMAL:-CIPHER-ALL:+AES-256-GCM:-VERS-TLS1.2"),  # a TLS 1.3 suite the chapter leaves out
        ("intermediate", "NORMAL:-GROUP-ALL:+GROUP-SECP521R1"),  # a group Mozilla leaves out
    ],
)
async def test_outside_the_profile_is_refused_and_server_goes_on(
        spki: tuple[Path, Path, Path], profile: str, priority: str) -> None:
    ca, crt, key = spki
    async with serve("--cert", str(crt), "--key", str(key), "--profile", profile) as (proc, port):
        code, out = await gnutls_cli(port, ca, "--priority", priority)
        assert code != 0 and b"Handshake was completed" not in out, out.decode(errors="replace")
        await proc.read_until(rb"outcome=(tls_version|no_shared_cipher|handshake_failure) ")
        code, out = await gnutls_cli(port, ca, "--alpn", "echo/1")
        assert code == 0 and b"- Application protocol: echo/1" in out
