"""`trioecho policy show`: what a policy asks for and what the built contexts enforce."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ._cli_common import (
    EXIT_OK,
    add_policy_flags,
    die,
    policy_from_args,
)


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""

    # policy --------------------------------------------------------------------------------
    pol = sub.add_parser("policy", help="show the effective TLS policy",
                         description="Print what a profile and flags ask for and what the built contexts enforce.")
    polsub = pol.add_subparsers(dest="policy_command", metavar="ACTION")
    show = polsub.add_parser("show", help="print the effective policy (read back from the built contexts)")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_policy_flags(show)
    pol.set_defaults(func=cmd_policy)

def cmd_policy(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import _opensslconf
    from .errors import ConfigError
    from .policy import effective_settings

    if args.policy_command != "show":
        die("usage: trioecho policy show [--profile P] [flags]")
    try:
        policy = policy_from_args(args, "show")
        _opensslconf.reexec_if_needed([policy], argv)
        client = policy.client_context()
    except ConfigError as exc:
        die(str(exc))
    asked = {
        "profile": policy.profile, "min_version": policy.min_version, "max_version": policy.max_version,
        "ciphers": policy.ciphers, "ciphersuites": list(policy.ciphersuites or []) or None,
        "groups": list(policy.groups or []) or None,
        "alpn_server": list(policy.server_alpn()), "alpn_client": list(policy.client_alpn()),
        "num_tickets": policy.num_tickets,
    }
    eff = effective_settings(client)
    eff["groups"] = sorted(_probe(policy)) if policy.groups else "OpenSSL default"
    eff["early_data_0rtt"] = "refused (replay risk; Python's ssl has no early-data API)"
    if args.json:
        print(json.dumps({"asked": asked, "enforced": eff}, indent=2))
        return EXIT_OK
    print(f"profile {policy.profile}")
    print("asked:")
    for k, v in asked.items():
        print(f"  {k:<14} {v}")
    print("enforced (read back from a built context):")
    for k, v in eff.items():
        print(f"  {k:<22} {', '.join(v) if isinstance(v, list) else v}")
    return EXIT_OK


def _probe(policy: Any) -> set[str]:
    from . import _opensslconf

    return _opensslconf._probe_with_throwaway_cert(policy)


