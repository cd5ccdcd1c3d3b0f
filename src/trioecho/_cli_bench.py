"""`trioecho bench`: flags -> BenchOptions -> run, a progress line on a terminal, the report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ._cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    _count,
    _nonneg,
    _positive,
    add_client_tls_flags,
    add_policy_flags,
    die,
    parse_size,
    policy_from_args,
)


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of echoes per second") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of echoes per second")
    return v


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    from .server import DEFAULT_PORT

    bp = sub.add_parser(
        "bench", help="load-test a TLS echo server (throughput, latency percentiles, handshakes/s)",
        description="Drive load against any trioecho-compatible echo endpoint (4-byte big-endian length, then "
                    "the body) and report echoes/s, MB/s, handshakes/s (full and resumed), latency "
                    "p50/p90/p99/p99.9/max and errors by kind. Closed loop by default (each connection sends "
                    "its next frame when the echo is back); --rate R offers R echoes/s in total at fixed "
                    "intervals (open loop: latency counts from when each echo was due, so a stalled server "
                    "is not hidden). Exit 0 if every echo succeeded, 1 if any failed or none completed, "
                    "2 on a usage/configuration error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bp.add_argument("target", metavar="HOST[:PORT]", help=f"server to load (default port {DEFAULT_PORT})")
    bp.add_argument("-c", "--connections", type=_count, default=10, metavar="C", help="concurrent connections")
    bp.add_argument("-d", "--duration", type=_positive, default=10.0, metavar="S", help="measured seconds")
    bp.add_argument("-s", "--size", type=parse_size, default="64", metavar="N", help="frame body bytes (k/M suffixes)")
    bp.add_argument("--rate", type=_rate, default=None, metavar="R",
                    help="open loop: offer R echoes per second in total (default: closed loop)")
    bp.add_argument("--new-connection", action="store_true",
                    help="a new connection (TCP + TLS handshake) for every echo: measures handshakes")
    bp.add_argument("--resume", action="store_true",
                    help="with --new-connection: resume the TLS session from a ticket (per connection slot)")
    bp.add_argument("--warmup", type=_nonneg, default=1.0, metavar="S", help="seconds run first and not counted")
    bp.add_argument("-W", "--timeout", type=_positive, default=10.0, metavar="S",
                    help="deadline for connect+handshake and for each echo")
    bp.add_argument("--processes", type=_count, default=1, metavar="P",
                    help="split the connections over P processes (so the client is not the bottleneck)")
    bp.add_argument("--plaintext", action="store_true", help="no TLS (against serve --plaintext)")
    bp.add_argument("--json", action="store_true", help="print one JSON document (schema trioecho.bench/1)")
    add_client_tls_flags(bp)
    add_policy_flags(bp)
    bp.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import _opensslconf
    from .bench import BenchOptions, run_bench_processes
    from .client import parse_target
    from .errors import ConfigError

    try:
        host, port = parse_target(args.target)
        policy = policy_from_args(args, "client")
        _opensslconf.reexec_if_needed([policy], argv)
        opts = BenchOptions(
            host=host, port=port, connections=args.connections, duration=args.duration, size=args.size,
            rate=args.rate, new_connection=args.new_connection, resume=args.resume, warmup=args.warmup,
            timeout=args.timeout, plaintext=args.plaintext, servername=args.servername, policy=policy,
            processes=args.processes,
        )
        if not args.plaintext:
            policy.client_context()  # a broken policy fails here, once, with its fix
    except ConfigError as exc:
        die(str(exc))
    if args.insecure and not args.json:
        print("warning: --insecure: the server certificate is NOT verified", file=sys.stderr)
    progress = _progress_line if sys.stderr.isatty() and not args.json else None
    try:
        report = run_bench_processes(opts, progress=progress)
    except ConfigError as exc:
        die(str(exc), EXIT_FAILED)
    if progress is not None:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    doc = report.as_dict()
    if args.insecure:
        doc["insecure"] = True
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(_text(doc))
    return EXIT_OK if report.echoes and not report.errors else EXIT_FAILED


def _progress_line(p: dict[str, Any]) -> None:
    phase = "measuring" if p["measuring"] else ("warm-up" if p["elapsed"] < p["total"] else "finishing")
    print(f"\r\033[K{phase} {p['elapsed']:.0f}/{p['total']:.0f}s  {p['echoes']:,} echoes  {p['errors']} errors",
          end="", file=sys.stderr, flush=True)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}ms"


def _text(d: dict[str, Any]) -> str:
    o = d["options"]
    mode = f"open loop at {o['rate']:g}/s" if o["rate"] else "closed loop"
    conn = " new connection per echo" + (" (resumed)" if o["resume"] else "") if o["new_connection"] else ""
    lat = d["latency_ms"]
    hs = d["handshakes"]
    errors = ", ".join(f"{k}={v}" for k, v in sorted(d["errors"].items())) or "none"
    lines = [
        f"bench {o['target']}: {o['connections']} connections, {o['size']} B frames, {mode},{conn} "
        f"{o['duration_s']:g}s measured after {o['warmup_s']:g}s warm-up"
        + (f", {o['processes']} processes" if o["processes"] > 1 else ""),
        f"  echoes      {d['echoes']:,} ({d['echoes_per_s']:,.1f}/s), {d['mb_per_s']:.3f} MB/s each way",
    ]
    if o["new_connection"]:
        lines.append(f"  handshakes  {hs['full']:,} full, {hs['resumed']:,} resumed ({hs['per_s']:,.1f}/s)")
    lines.append(f"  latency     p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}  "
                 f"p99.9 {_ms(lat['p99.9'])}  max {_ms(lat['max'])}")
    if d.get("not_started"):
        lines.append(f"  not started {d['not_started']:,} (the offered rate was more than the server could take)")
    lines.append(f"  errors      {errors}")
    return "\n".join(lines)
