"""Helpers for the policy tests: RFC 5280-strict certificates, trioecho serve/ping as subprocesses.

trustme marks subjectAltName critical while also filling the subject (O/OU), which
RFC 5280 section 4.2.1.6 forbids; strict verifiers (sslyze through cryptography's
X.509 verifier) refuse such a leaf.  An outside scanner must see a chain a real
deployment would have, so these tests issue the leaves themselves, signed by a
trustme CA: ECDSA P-256, 90 days, SAN not critical, CN set.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .conftest import CLI, cli_env
from .peers import Proc, run


@dataclass
class StrictPKI:
    """A CA and leaves that pass strict path validation, as PEM files."""

    dir: Path
    ca: trustme.CA

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    def leaf(self, name: str, *sans: str, client: bool = False, days: int = 90,
             encrypt_with: bytes | None = None) -> tuple[Path, Path]:
        """Issue a leaf; returns (chain.pem, key.pem), written with mode 600 for the key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), password=None)
        alt: list[x509.GeneralName] = []
        for s in sans or (name,):
            try:
                import ipaddress

                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now - datetime.timedelta(hours=1) + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        stem = re.sub(r"[^A-Za-z0-9.-]", "_", name) + ("-client" if client else "")
        chain = self.dir / f"{stem}.crt"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(encrypt_with) if encrypt_with else serialization.NoEncryption()
        )
        keyfile = self.dir / f"{stem}.key"
        keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
        os.chmod(keyfile, 0o600)
        return chain, keyfile


def gen_certs(out: Path, *args: str) -> dict[str, Path]:
    """Run scripts/gen_certs.py (the script users run) into ``out``; return its files by name."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_certs.py"
    res = subprocess.run([sys.executable, str(script), "--out", str(out), *args], capture_output=True, text=True,
                         env=cli_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    return {p.name: p for p in out.iterdir()}


def strict_pki(directory: Path) -> StrictPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return StrictPKI(directory, ca)


LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)\n")


@asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None,
                log_level: str = "info") -> AsyncIterator[tuple[Proc, int]]:
    """``trioecho serve --host 127.0.0.1 --port 0 ARGS``; yields (process, port) once listening.

    stdout and stderr share one pipe that is read only when a test asks: keep
    ``log_level`` at "warning" for anything that makes many connections, or the
    server blocks on a full pipe.
    """
    argv = [*CLI, "--log-level", log_level, "serve", "--host", "127.0.0.1", "--port", "0", *args]
    async with run(argv, env=env or cli_env()) as proc:
        port = int((await proc.read_until(LISTENING, timeout=30)).group(1))
        yield proc, port


def ping_argv(port: int, *args: str, host: str = "localhost") -> Sequence[str]:
    return [*CLI, "ping", f"{host}:{port}", "-i", "0", *args]
