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


def generate(out: Path, hosts: list[str], key_type: str = "ecdsa", days: int = DEFAULT_DAYS) -> dict[str, Path]:
    """Write the CA, server and client files into ``out``; return their paths."""
    import trustme

    kt = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}[key_type]
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=days)
    ca = trustme.CA(key_type=kt)
    # trustme's default notBefore is far in the past, which would make the
    # lifetime decades long (scanners check notAfter - notBefore): start now.
    server = ca.issue_cert(*hosts, key_type=kt, not_before=now, not_after=not_after)
    client = ca.issue_cert("trioecho-client@example.invalid", key_type=kt, not_before=now, not_after=not_after)
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    paths = {
        "ca.pem": (ca.cert_pem.bytes(), False),
        "server.pem": (server.private_key_pem.bytes() + chain, True),
        "server.crt": (chain, False),
        "server.key": (server.private_key_pem.bytes(), True),
        "client.pem": (client.private_key_and_cert_chain_pem.bytes(), True),
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
    args = p.parse_args(argv)
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if not hosts:
        p.error("--hosts needs at least one name or IP")
    bad = [h for h in hosts if h.startswith("[")]
    if bad:
        p.error(f"write IPv6 addresses without brackets: {', '.join(bad)}")
    if not 1 <= args.days <= MAX_DAYS:
        p.error(f"--days must be 1-{MAX_DAYS}: browsers and scanners reject longer certificate lifetimes")
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
