"""Shared pieces of the command line: exit codes, value parsers, policy flags, errors."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "add_client_tls_flags", "add_policy_flags", "add_server_tls_flags",
           "die", "parse_size", "parse_sizes", "policy_from_args"]

#: Exit codes (stable, for scripts).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The longest timeout or interval a flag accepts (a day): longer is a typo, and
#: trio's deadlines need finite numbers.
MAX_SECONDS = 86400.0


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show a flag's default unless it is unset (None/False) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, False) or "default" in help_text or action.default is argparse.SUPPRESS:
            return help_text
        return super()._get_help_string(action) or help_text

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text: str) -> int:
    """``64``, ``16k``, ``1M`` (binary units) -> bytes."""
    t = text.strip().lower()
    num = t.rstrip("bikm")
    unit = t[len(num):]
    if unit not in _SIZE_UNITS or not num:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use bytes or a k/M suffix, e.g. 64, 16k, 1M")
    try:
        value = float(num) * _SIZE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use bytes or a k/M suffix, e.g. 64, 16k, 1M") from None
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"bad size {text!r}: must be a whole, non-negative number of bytes")
    return int(value)


def parse_sizes(text: str) -> tuple[int, ...]:
    """A list (``64,1k,16k``) or a range (``1k-16k``, doubling) of sizes."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part[1:]:
            lo_t, hi_t = part.split("-", 1)
            lo, hi = parse_size(lo_t), parse_size(hi_t)
            if lo > hi:
                raise argparse.ArgumentTypeError(f"bad size range {part!r}: the low end is above the high end")
            v = lo
            while v <= hi:
                out.append(v)
                v = v * 2 if v else 1
            if out[-1] != hi:
                out.append(hi)
        else:
            out.append(parse_size(part))
    if not out:
        raise argparse.ArgumentTypeError("no size given")
    return tuple(out)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v > 0 or math.isinf(v) or v > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds, at most {MAX_SECONDS:g}")
    return v


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v < 0 or math.isnan(v) or math.isinf(v) or v > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"{text!r}: must be from 0 to {MAX_SECONDS:g} seconds")
    return v


def _whole(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
    return v


def _count(text: str) -> int:
    """A whole number >= 1 (counts, connections, workers)."""
    return _whole(text, 1)


def _int_nonneg(text: str) -> int:
    """A whole number >= 0 (warmup probes)."""
    return _whole(text, 0)


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port {v} is out of range 0-65535 (0 picks a free port)")
    return v


def add_policy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS policy (a profile, then individual overrides)")
    g.add_argument("--profile", default="intermediate",
                   help="intermediate (default; Mozilla 5.7: TLS 1.2+1.3, ECDHE+AEAD, X25519/P-256/P-384), "
                        "modern (TLS 1.3 only), chapter (the design chapter's lists), baseline (OpenSSL's "
                        "default TLS 1.3 suites and groups)")
    g.add_argument("--min-version", metavar="V", help="lowest TLS version: 1.2 or 1.3")
    g.add_argument("--max-version", metavar="V", help="highest TLS version: 1.2 or 1.3")
    g.add_argument("--ciphers", metavar="LIST", help="TLS 1.2 cipher list, OpenSSL syntax")
    g.add_argument("--ciphersuites", metavar="LIST", help="TLS 1.3 suites, comma-separated, e.g. TLS_AES_128_GCM_SHA256")
    g.add_argument("--groups", metavar="LIST", help="key-exchange groups, e.g. X25519,P-256")
    g.add_argument("--alpn", metavar="LIST",
                   help="ALPN protocols, comma-separated (server default echo/1; client default echo/1,h2,http/1.1); "
                        "an empty string offers none")
    g.add_argument("--keylog", metavar="FILE", type=Path,
                   help="append TLS secrets to FILE in NSS key log format for Wireshark (debugging only: "
                        "anyone with the file can decrypt the traffic)")


def add_server_tls_flags(sp: argparse.ArgumentParser) -> None:
    """The server's certificates, client authentication, ALPN strictness and tickets."""
    g = sp.add_argument_group("server identity, client certificates (mTLS), resumption")
    g.add_argument("--cert", action="append", type=Path, metavar="PEM",
                    help="certificate chain (leaf first), optionally with its key (server.pem from gen_certs.py); "
                         "repeat for several certificates: the first is the default, each other one is chosen "
                         "when the client's SNI matches one of its DNS names (wildcards too)")
    g.add_argument("--key", type=Path, metavar="PEM", help="private key of the first --cert, if not inside it")
    g.add_argument("--sni", action="append", type=_sni_spec, metavar="NAME=PEM", default=[],
                    help="serve PEM (key and chain in one file) to clients asking for NAME "
                         "(comma-separated names, *.example.com wildcards); repeatable")
    g.add_argument("--key-password-file", type=Path, metavar="FILE", help="password of an encrypted key")
    g.add_argument("--client-auth", choices=["none", "optional", "required"], default="none",
                    help="ask clients for a certificate (mTLS)")
    g.add_argument("--client-ca", type=Path, metavar="PEM", help="CA that issues accepted client certificates")
    g.add_argument("--alpn-strict", action="store_true",
                    help="close connections whose client offered no ALPN protocol we accept "
                         "(OpenSSL alone lets them through with no ALPN)")
    t = g.add_mutually_exclusive_group()
    t.add_argument("--tickets", type=int, metavar="N", default=None,
                   help="TLS 1.3 session tickets per handshake (default 1)")
    t.add_argument("--no-tickets", action="store_true", help="issue no tickets: resumption off")


def add_client_tls_flags(pp: argparse.ArgumentParser) -> None:
    """The client's trust anchors, name to verify, and client certificate."""
    g = pp.add_argument_group("verification and client certificate")
    g.add_argument("--cafile", type=Path, metavar="PEM", help="trust these CAs instead of the system store")
    g.add_argument("--servername", metavar="NAME", help="name to verify and send as SNI (default: HOST)")
    g.add_argument("--insecure", action="store_true",
                    help="do not verify the certificate or the name (prints a warning; shown in --json)")
    g.add_argument("--cert", type=Path, metavar="PEM", help="client certificate (and key) for mTLS")
    g.add_argument("--key", type=Path, metavar="PEM", help="client key, if not inside --cert")
    g.add_argument("--key-password-file", type=Path, metavar="FILE", help="password of an encrypted client key")


def _sni_spec(text: str) -> tuple[tuple[str, ...], Path]:
    names, sep, pem = text.partition("=")
    names_t = tuple(n.strip() for n in names.split(",") if n.strip())
    if not sep or not names_t or not pem:
        raise argparse.ArgumentTypeError(f"bad --sni {text!r}: write NAME=PEM, e.g. api.example.com=api.pem")
    return names_t, Path(pem)


# -- policy from flags --------------------------------------------------------------------------

def policy_from_args(args: argparse.Namespace, role: str) -> Any:
    """Build the Policy for ``role`` ("server", "client" or "show") from parsed flags.

    Raises:
        ConfigError: bad values.
    """
    from .errors import ConfigError
    from .policy import CertSpec, Policy, parse_list

    over: dict[str, Any] = {}
    for name in ("min_version", "max_version", "ciphers"):
        v = getattr(args, name, None)
        if v is not None:
            over[name] = v
    if getattr(args, "ciphersuites", None) is not None:
        over["ciphersuites"] = parse_list(args.ciphersuites)
    if getattr(args, "groups", None) is not None:
        over["groups"] = parse_list(args.groups)
    if getattr(args, "alpn", None) is not None:
        over["alpn"] = parse_list(args.alpn)
    if getattr(args, "keylog", None) is not None:
        over["keylog"] = args.keylog
    if getattr(args, "key_password_file", None) is not None:
        over["key_password_file"] = args.key_password_file
    if role == "server":
        certs = list(args.cert or [])
        specs = [CertSpec(certs[0], args.key)] if certs else []
        specs += [CertSpec(c) for c in certs[1:]]
        specs += [CertSpec(pem, names=names) for names, pem in getattr(args, "sni", [])]
        if specs:
            over["certs"] = tuple(specs)
        over["client_auth"] = args.client_auth
        if args.client_ca is not None:
            if args.client_auth == "none" and not getattr(args, "plaintext", False):
                raise ConfigError(f"--client-ca {args.client_ca} does nothing without --client-auth: "
                                  "add --client-auth required (or optional) to ask clients for certificates")
            over["client_ca"] = args.client_ca
        over["alpn_strict"] = args.alpn_strict
        if args.no_tickets:
            over["num_tickets"] = 0
        elif args.tickets is not None:
            over["num_tickets"] = args.tickets
        over["handshake_timeout"] = args.handshake_timeout
    elif role == "client":
        if args.cafile is not None:
            over["cafile"] = args.cafile
        over["insecure"] = args.insecure
        if args.cert is not None:
            over["client_cert"] = CertSpec(args.cert, args.key)
        over["handshake_timeout"] = args.timeout
    return Policy.from_profile(args.profile, **over)


def die(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print one error line (no traceback) and exit (2 by default)."""
    print(f"trioecho: error: {msg}", file=sys.stderr)
    sys.exit(code)
