"""`trioecho policy show`: what a policy asks for and what the built contexts enforce.

Every "enforced" value is read back from contexts built the way ``serve`` and
``ping`` build them: ``get_ciphers()`` for suites and ciphers, context options
and attributes for the switches, in-memory handshakes for the groups, and a
loopback handshake (full, then resumed) per TLS version.  Nothing is echoed
from the request.
"""

from __future__ import annotations

import argparse
import json
import ssl
from collections.abc import Sequence
from typing import Any

from ._cli_common import (
    EXIT_OK,
    add_policy_flags,
    die,
    policy_from_args,
)

#: What every profile refuses or cannot do, and why (shown by `policy show`).
FIXED_FACTS: dict[str, str] = {
    "early_data_0rtt": "refused: tickets are issued with max_early_data 0 (replay risk; Python's ssl has no "
                       "early-data API)",
    "compression": "off (OP_NO_COMPRESSION; CRIME)",
    "renegotiation": "off (OP_NO_RENEGOTIATION); the secure-renegotiation extension is still sent",
    "ocsp_stapling": "n/a: Python's ssl has no API to staple OCSP responses",
    "hsts": "n/a: not HTTP",
}

PROFILE_NOTES: dict[str, str] = {
    "baseline": "what the library builds by default: TLS 1.2+1.3, ECDHE+AEAD for TLS 1.2, OpenSSL's default "
                "TLS 1.3 suites and groups (enforceable on any Python)",
    "intermediate": "Mozilla server-side TLS 5.7 'intermediate' (minus DHE, as in 5.8/6.0)",
    "modern": "Mozilla server-side TLS 5.7 'modern': TLS 1.3 only",
    "chapter": "the design chapter's policy (section 14.3.2)",
}


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    pol = sub.add_parser("policy", help="show the effective TLS policy",
                         description="Print what a profile and flags ask for and what the built contexts enforce.")
    polsub = pol.add_subparsers(dest="policy_command", metavar="ACTION")
    show = polsub.add_parser(
        "show", help="print the effective policy (read back from the built contexts)",
        description="Build the server and client contexts `serve` and `ping` would build (the server with a "
                    "throwaway certificate), read back what they enforce, and run a loopback handshake per TLS "
                    "version. Exit 2 if the policy cannot be enforced in this process.")
    show.add_argument("--json", action="store_true", help="print JSON")
    t = show.add_mutually_exclusive_group()
    t.add_argument("--tickets", type=int, metavar="N", default=None, help="TLS 1.3 session tickets per handshake")
    t.add_argument("--no-tickets", action="store_true", help="issue no tickets: resumption off")
    add_policy_flags(show)
    pol.set_defaults(func=cmd_policy)


def cmd_policy(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import _opensslconf
    from .errors import ConfigError

    if args.policy_command != "show":
        die("usage: trioecho policy show [--profile P] [flags]")
    try:
        policy = policy_from_args(args, "show")
        if args.no_tickets:
            policy = policy.replace(num_tickets=0)
        elif args.tickets is not None:
            policy = policy.replace(num_tickets=args.tickets)
        _opensslconf.reexec_if_needed([policy], argv)
        doc = describe(policy)
    except ConfigError as exc:
        die(str(exc))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _print_text(doc)
    return EXIT_OK


def describe(policy: Any) -> dict[str, Any]:
    """Asked versus enforced, as one JSON-able document.

    Raises:
        ConfigError: the policy cannot be enforced in this process.
    """
    from . import _opensslconf
    from .policy import CertSpec, effective_settings

    cert, key = _opensslconf._throwaway_cert()
    server_policy = policy.replace(certs=(CertSpec(cert, key),))  # type: ignore[arg-type]
    sctx = server_policy.server_context()
    # The client as `ping` builds it (system trust store), for the read-back;
    # an unverifying twin for the loopback handshakes with the throwaway certificate.
    client = effective_settings(policy.client_context())
    cctx = policy.replace(insecure=True, cafile=None, client_cert=None).client_context()
    server = effective_settings(sctx)
    server["groups"] = sorted(_opensslconf.enforced_groups(policy, "server"))
    client["groups"] = sorted(_opensslconf.enforced_groups(policy, "client"))
    server["alpn"] = list(policy.server_alpn())
    server["alpn_strict"] = policy.alpn_strict
    client["alpn"] = list(policy.client_alpn())
    via = "OpenSSL configuration (re-executed with OPENSSL_CONF)" if _opensslconf.reexecuted else \
        "ssl module API"
    asked = {
        "profile": policy.profile,
        "min_version": policy.min_version,
        "max_version": policy.max_version,
        "ciphers": policy.ciphers,
        "ciphersuites": list(policy.ciphersuites) if policy.ciphersuites is not None else None,
        "groups": list(policy.groups) if policy.groups is not None else None,
        "alpn": list(policy.alpn) if policy.alpn is not None else None,
        "num_tickets": policy.num_tickets,
    }
    return {
        "schema": "trioecho.policy/1",
        "profile": policy.profile,
        "note": PROFILE_NOTES.get(policy.profile, ""),
        "asked": asked,
        "enforced": {"server": server, "client": client},
        "enforced_via": via if (policy.ciphersuites is not None or policy.groups is not None) else "ssl module API",
        "loopback": _loopback(sctx, cctx, policy),
        "fixed": dict(FIXED_FACTS),
        "openssl": ssl.OPENSSL_VERSION,
    }


def _loopback(sctx: ssl.SSLContext, cctx: ssl.SSLContext, policy: Any) -> list[dict[str, Any]]:
    """A full and a resumed in-memory handshake per TLS version the policy allows."""
    from . import _opensslconf

    out = []
    for version in ("1.2", "1.3"):
        v = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
        if not sctx.minimum_version <= v <= sctx.maximum_version:
            continue
        pinned = policy.replace(insecure=True, cafile=None, client_cert=None, min_version=version,
                                max_version=version)
        c = pinned.client_context()
        first = _opensslconf.loopback(sctx, c)
        row: dict[str, Any] = {"version": f"TLSv{version}", "ok": first is not None}
        if first is not None:
            cipher = first.cipher()
            row["negotiated"] = first.version()
            row["cipher"] = cipher[0] if cipher else None
            row["alpn"] = first.selected_alpn_protocol()
            again = _opensslconf.loopback(sctx, c, session=first.session) if first.session else None
            row["resumed"] = bool(again is not None and again.session_reused)
        out.append(row)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "(none)"
    if v is None:
        return "-"
    return str(v)


def _print_text(doc: dict[str, Any]) -> None:
    print(f"profile {doc['profile']}: {doc['note']}")
    print("asked:")
    for k, v in doc["asked"].items():
        default = "(role default: see enforced)" if k == "alpn" else "(OpenSSL default)"
        print(f"  {k:<14} {_fmt(v) if v is not None else default}")
    print(f"enforced (read back from built contexts; restrictions applied via {doc['enforced_via']}):")
    keys = ["minimum_version", "maximum_version", "tls13_suites", "tls12_ciphers", "groups", "alpn",
            "verify_mode", "check_hostname", "num_tickets", "tickets", "server_cipher_preference", "alpn_strict",
            "keylog"]
    for role in ("server", "client"):
        eff = doc["enforced"][role]
        print(f"  {role}:")
        for k in keys:
            if k in eff and eff[k] is not None:
                print(f"    {k:<25} {_fmt(eff[k])}")
    print("loopback handshakes (full, then resumed):")
    for row in doc["loopback"]:
        if row["ok"]:
            print(f"  {row['version']}: {row['cipher']} alpn={row['alpn'] or '-'} "
                  f"resumed={'yes' if row['resumed'] else 'no'}")
        else:
            print(f"  {row['version']}: FAILED (the policy allows this version but no handshake succeeds)")
    print("always:")
    for k, v in doc["fixed"].items():
        print(f"  {k:<16} {v}")
    print(f"  {'openssl':<16} {doc['openssl']}")
