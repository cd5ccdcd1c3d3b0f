"""`trioecho ping`: flags -> Pinger -> trio.run; the text and JSON output."""

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
    parse_sizes,
    policy_from_args,
)


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    from .server import DEFAULT_PORT

    # ping ----------------------------------------------------------------------------------
    pp = sub.add_parser(
        "ping", help="measure and explain a TLS connection to an echo server",
        description="Connect (a new connection per probe, resuming the TLS session from the second on), "
                    "verify the server, echo random payloads and check them byte for byte. Prints the "
                    "negotiated TLS parameters, one line per probe (TCP connect, TLS handshake, echo round "
                    "trip) and a summary. Exit 0 if every probe echoed correctly, 1 if any failed, 2 on a "
                    "usage/configuration error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    pp.add_argument("target", metavar="HOST[:PORT]",
                    help=f"server to ping (default port {DEFAULT_PORT}); IPv6 as [::1]:9443 or ::1")
    pp.add_argument("-c", "--count", type=_count, default=4, help="probes to send")
    pp.add_argument("-i", "--interval", type=_nonneg, default=1.0, metavar="S", help="pause between probes")
    pp.add_argument("-s", "--size", type=parse_sizes, default=(64,), metavar="N[,N...]",
                    help="payload bytes per echo; a list (64,1k,16k) or range (1k-1M) cycles through sizes")
    pp.add_argument("-W", "--timeout", type=_positive, default=10.0, metavar="S",
                    help="deadline for connect+handshake, and for each echo")
    pp.add_argument("--warmup", type=int, default=0, metavar="N", help="extra probes first, left out of the statistics")
    pp.add_argument("--plaintext", action="store_true", help="no TLS (against serve --plaintext)")
    pp.add_argument("--handshake-only", action="store_true",
                    help="connect and handshake only, no echo: works against any TLS server")
    pp.add_argument("--no-resume", action="store_true", help="full handshake on every probe")
    pp.add_argument("--max-frame", type=parse_size, default="1M", metavar="BYTES", help="largest echo accepted")
    pp.add_argument("--json", action="store_true", help="print one JSON document (schema trioecho.ping/1) instead of text")
    pp.add_argument("-v", "--verbose", action="store_true", help="more detail in the header")
    add_client_tls_flags(pp)
    add_policy_flags(pp)

    pp.set_defaults(func=cmd_ping)

PING_SCHEMA = "trioecho.ping/1"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}ms"


def _ms_num(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 4)


def cmd_ping(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import trio

    from . import _opensslconf
    from .client import Pinger, PingOptions, parse_target
    from .errors import ConfigError

    try:
        host, port = parse_target(args.target)
        policy = policy_from_args(args, "client")
        if not args.plaintext:
            _opensslconf.reexec_if_needed([policy], argv)
        opts = PingOptions(
            host=host, port=port, servername=args.servername, count=args.count, interval=args.interval,
            sizes=args.size, timeout=args.timeout, plaintext=args.plaintext,
            handshake_only=args.handshake_only, resume=not args.no_resume, warmup=max(args.warmup, 0),
            max_frame=args.max_frame,
        )
        pinger = Pinger(opts, policy)
    except ConfigError as exc:
        die(str(exc))
    if args.insecure:
        print("trioecho: WARNING: --insecure: the server's certificate and name are NOT verified; "
              "anyone in the path can impersonate it", file=sys.stderr)
    if max(args.size) > args.max_frame:
        die(f"--size {max(args.size)} is over --max-frame {args.max_frame}: lower one or raise the other")

    text = not args.json
    header_done = False
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def on_probe(report: Any, p: Any) -> None:
        nonlocal header_done
        if not text:
            return
        if not header_done and report.tls is not None:
            header_done = True
            _print_header(report, args)
        tag = " (warmup)" if p.warmup else ""
        if p.ok:
            mode = "" if p.resumed is None else (" resumed" if p.resumed else " full")
            echo = "" if opts.handshake_only else f" echo={_ms(p.echo)}"
            print(f"seq={p.seq} size={p.size} tcp={_ms(p.tcp)} tls={_ms(p.tls)}{echo}{mode}{tag}", flush=True)
        else:
            print(f"seq={p.seq} size={p.size} FAILED {p.error_kind}: {p.error}{tag}", flush=True)
            if p.hint:
                print(f"    fix: {p.hint}", flush=True)

    if text:
        mode = "plaintext" if args.plaintext else "TLS"
        what = "handshake-only" if args.handshake_only else f"{','.join(map(str, args.size))} bytes"
        print(f"PING {target} {mode}: {args.count} probe{'s' if args.count != 1 else ''}, {what}", flush=True)
    report = trio.run(pinger.run, on_probe)
    summary = report.summary()
    code = EXIT_OK if summary["failed"] == 0 and summary["transmitted"] > 0 else EXIT_FAILED
    if args.json:
        doc = _ping_json(report, summary, args, host, port, code)
        print(json.dumps(doc, indent=2))
    else:
        _print_summary(target, summary, opts.handshake_only)
    return code


def _print_header(report: Any, args: argparse.Namespace) -> None:
    tls = report.tls
    alpn = tls.alpn or "none"
    verify = "ok" if tls.verified else "OFF (--insecure)"
    print(f"{tls.version} {tls.cipher} ({tls.cipher_bits} bits) alpn={alpn} "
          f"(offered {','.join(tls.alpn_offered) or 'none'}) sni={tls.sni or '-'} verify={verify}")
    if tls.peer is not None:
        pc = tls.peer
        days = "" if pc.days_left is None else f" ({pc.days_left} days left)"
        print(f"peer: {pc.subject or '(no subject)'}; SAN {', '.join(pc.san) or '-'}")
        print(f"      issuer {pc.issuer or '-'}; expires {pc.not_after}{days}")


def _print_summary(target: str, s: dict[str, Any], handshake_only: bool) -> None:
    print(f"--- {target} ping statistics ---")
    loss = "-" if s["loss"] is None else f"{s['loss']:.0%}"
    rate = s["resumption_rate"]
    res = "" if rate is None else f", resumed {s['resumed']} ({rate:.0%} of repeat probes)"
    verb = "completed" if handshake_only else "echoed"
    print(f"{s['transmitted']} probes sent, {s['received']} {verb}, {s['failed']} failed, {loss} loss{res}")
    phases = [("tcp", "tcp connect"), ("tls_full", "tls full"), ("tls_resumed", "tls resumed"), ("echo", "echo rtt")]
    for key, label in phases:
        st = s[key]
        if not st["n"]:
            continue
        line = (f"{label:<12} min/avg/median/max/mdev = "
                f"{st['min']*1000:.3f}/{st['avg']*1000:.3f}/{st['median']*1000:.3f}/{st['max']*1000:.3f}/"
                f"{st['mdev']*1000:.3f} ms")
        if st["p95"] is not None:
            line += f"  p95={st['p95']*1000:.3f}"
        if st["p99"] is not None:
            line += f" p99={st['p99']*1000:.3f}"
        print(line)
    if s["errors"]:
        print("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(s["errors"].items())))


def _ping_json(report: Any, s: dict[str, Any], args: argparse.Namespace, host: str, port: int, code: int) -> dict[str, Any]:
    def st_ms(st: dict[str, Any]) -> dict[str, Any]:
        return {k: (v if k == "n" else _ms_num(v)) for k, v in st.items()}

    probes = []
    for p in report.probes:
        probes.append({
            "seq": p.seq, "size": p.size, "warmup": p.warmup, "ok": p.ok,
            "tcp_ms": _ms_num(p.tcp), "tls_ms": _ms_num(p.tls), "echo_ms": _ms_num(p.echo),
            "resumed": p.resumed, "error_kind": p.error_kind, "error": p.error, "hint": p.hint,
        })
    return {
        "schema": PING_SCHEMA,
        "target": {"host": host, "port": port, "servername": args.servername or host},
        "plaintext": args.plaintext,
        "insecure": bool(getattr(args, "insecure", False)),
        "handshake_only": args.handshake_only,
        "tls": None if report.tls is None else report.tls.as_dict(),
        "probes": probes,
        "summary": {
            "transmitted": s["transmitted"], "received": s["received"], "failed": s["failed"],
            "loss": s["loss"], "resumed": s["resumed"], "resumption_rate": s["resumption_rate"],
            "errors": s["errors"],
            "tcp_ms": st_ms(s["tcp"]), "tls_full_ms": st_ms(s["tls_full"]),
            "tls_resumed_ms": st_ms(s["tls_resumed"]), "echo_ms": st_ms(s["echo"]),
        },
        "exit_code": code,
    }


