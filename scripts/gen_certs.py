#!/usr/bin/env python3
"""Generate a test CA, a server certificate and a client certificate with trustme.

Usage:
    python scripts/gen_certs.py --out certs [--hosts localhost,127.0.0.1,::1]
                                [--key-type ecdsa|rsa] [--days 90]

Writes into --out:
    ca.pem       the CA certificate (give it to clients: trioecho ping --cafile)
    server.pem   server private key + certificate chain (trioecho serve --cert)
    server.crt   server certificate chain only
    server.key   server private key only
    client.pem   client private key + chain, for mTLS (trioecho ping --cert)
Private keys are written with mode 0600.  ECDSA P-256 by default (about 13x
cheaper to sign than RSA-2048, so handshakes cost less); 90 days by default,
never more than 366 (browsers and scanners reject longer lifetimes).

The CA comes from trustme; the leaves are issued here, RFC 5280-strict, so that
strict verifiers and scanners (sslyze's Mozilla check) accept them: trustme's
own leaves mark subjectAltName critical next to a non-empty subject, which
RFC 5280 section 4.2.1.6 forbids, and start in the year 2000, which makes their
lifetime decades long whatever --days says.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

#: CA/Browser Forum and Mozilla cap certificate lifetimes at 366 days.
MAX_DAYS = 366
#: Mozilla's recommended lifetime.
DEFAULT_DAYS = 90


def _write(path: Path, data: bytes, private: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600 if private else 0o644)


def _leaf(ca: object, name: str, sans: list[str], *, client: bool, key_type: str,
          not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[bytes, bytes]:
    """A leaf signed by the trustme CA: (key PEM, cert PEM).  SAN not critical, CN set, EKU for the role."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())  # type: ignore[attr-defined]
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)  # type: ignore[attr-defined]
    key = ec.generate_private_key(ec.SECP256R1()) if key_type == "ecdsa" else rsa.generate_private_key(65537, 2048)
    alt: list[x509.GeneralName] = []
    for s in sans:
        if "@" in s:
            alt.append(x509.RFC822Name(s))
            continue
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            alt.append(x509.DNSName(s))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=key_type == "rsa", data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def generate(out: Path, hosts: list[str], key_type: str = "ecdsa", days: int = DEFAULT_DAYS) -> dict[str, Path]:
    """Write the CA, server and client files into ``out``; return their paths."""
    import trustme

    kt = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}[key_type]
    out.mkdir(parents=True, exist_ok=True)
    # An hour of slack for clocks that run a little behind; the lifetime is exactly `days`.
    not_before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    not_after = not_before + datetime.timedelta(days=days)
    ca = trustme.CA(key_type=kt)
    server_key, server_cert = _leaf(ca, hosts[0], hosts, client=False, key_type=key_type,
                                    not_before=not_before, not_after=not_after)
    client_key, client_cert = _leaf(ca, "trioecho-client", ["trioecho-client@example.invalid"], client=True,
                                    key_type=key_type, not_before=not_before, not_after=not_after)
    chain = server_cert  # the CA is the trust anchor: clients have it, servers need not send it
    paths = {
        "ca.pem": (ca.cert_pem.bytes(), False),
        "server.pem": (server_key + chain, True),
        "server.crt": (chain, False),
        "server.key": (server_key, True),
        "client.pem": (client_key + client_cert, True),
    }
    result = {}
    for name, (data, private) in paths.items():
        _write(out / name, data, private)
        result[name] = out / name
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="directory to write into (created if missing)")
    p.add_argument("--hosts", default="localhost,127.0.0.1,::1",
                   help="names and IPs the server certificate holds (comma-separated)")
    p.add_argument("--key-type", choices=["ecdsa", "rsa"], default="ecdsa", help="ECDSA P-256 or RSA-2048")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"validity in days (1-{MAX_DAYS})")
    p.add_argument("--force", action="store_true",
                   help="replace certificates already in --out (clients that trust the old ca.pem will stop trusting)")
    args = p.parse_args(argv)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if not hosts:
        p.error("--hosts needs at least one name or IP")
    bad = [h for h in hosts if h.startswith("[")]
    if bad:
        p.error(f"write IPv6 addresses without brackets: {', '.join(bad)}")
    if not 1 <= args.days <= MAX_DAYS:
        p.error(f"--days must be 1-{MAX_DAYS}" + (": browsers and scanners reject longer certificate lifetimes"
                                                   if args.days > MAX_DAYS else ""))
    if (args.out / "ca.pem").exists() and not args.force:
        p.error(f"{args.out / 'ca.pem'} already exists: pass --force to replace the CA and every certificate "
                "(clients trusting the old ca.pem will then refuse the server), or choose another --out")
    try:
        files = generate(args.out, hosts, args.key_type, args.days)
    except OSError as exc:
        print(f"gen_certs: error: cannot write into {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"gen_certs: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(str(f) for f in files.values())}")
    print(f"server certificate: {args.key_type}, for {', '.join(hosts)}, valid {args.days} days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
