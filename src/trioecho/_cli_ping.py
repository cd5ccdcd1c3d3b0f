"""`trioecho ping`: flags -> Pinger -> trio.run; the text, JSON and JSON Lines output.

The JSON and JSON Lines schemas are documented field by field in docs/ping.md,
and tests/test_ping_schema.py checks the output against that document.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ._cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    HelpFormatter,
    _count,
    _int_nonneg,
    _nonneg,
    _positive,
    add_client_tls_flags,
    add_policy_flags,
    die,
    parse_size,
    parse_sizes,
    policy_from_args,
)

#: The --json document's schema version (additive changes keep the number).
PING_SCHEMA = "trioecho.ping/1"
#: Every --jsonl line carries this schema name and a "type" ("probe" or "summary").
PING_JSONL_SCHEMA = "trioecho.ping.jsonl/1"
#: How percentiles are computed (printed and put in the JSON so nobody has to guess).
PERCENTILE_RULE = "nearest rank; p95 from 20 samples, p99 from 100"

#: Below this TCP connect time the network is local and a handshake is CPU-bound (its RTT ratio says little).
LOOPBACK_RTT = 0.0005

#: Why --session-file cannot work (issue 3 asks to say so plainly rather than pretend).
SESSION_FILE_UNSUPPORTED = (
    "--session-file: Python's ssl module cannot save or load a TLS session: ssl.SSLSession has no "
    "serialization (OpenSSL's i2d_SSL_SESSION/d2i_SSL_SESSION are not exposed, and it cannot be pickled), "
    "so a session cannot outlive the process. What works instead: resumption within one run "
    "(ping resumes from the second probe on: use --count 2 or more, and --expect resumed=yes in CI); "
    "across runs, `openssl s_client -sess_out F` then `-sess_in F`"
)


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    from .client import EXPECT_KEYS
    from .server import DEFAULT_PORT

    pp = sub.add_parser(
        "ping", help="measure and explain a TLS connection to an echo server (or any TLS server)",
        description="Connect (a new connection per probe, resuming the TLS session from the second on), "
                    "verify the server, echo random payloads and check them byte for byte. Prints the "
                    "negotiated TLS parameters and the server certificate, one line per probe (TCP connect, "
                    "TLS handshake and its cost in round trips, first echo, steady echo) and a summary. "
                    "Exit 0 if every probe echoed correctly and every --expect held, 1 otherwise, 2 on a "
                    "usage/configuration error.",
        epilog="Handshake cost in round trips = handshake time / TCP connect time (one round trip): "
               "expect about 2 for a full TLS 1.2 handshake and about 1 for TLS 1.3 and for resumed "
               "handshakes. A ratio far above that on a real network means something terminates TCP "
               "close to you (a proxy or load balancer), or the server is slow to compute.\n"
               "--expect keys: " + "; ".join(f"{k}: {v}" for k, v in EXPECT_KEYS.items()),
        formatter_class=HelpFormatter,
    )
    pp.add_argument("target", metavar="HOST[:PORT]",
                    help=f"server to ping (default port {DEFAULT_PORT}); IPv6 as [::1]:9443 or ::1")
    pp.add_argument("-c", "--count", type=_count, default=4, help="probes to send")
    pp.add_argument("-i", "--interval", type=_nonneg, default=1.0, metavar="S", help="pause between probes")
    pp.add_argument("-s", "--size", type=parse_sizes, default="64", metavar="N[,N...]",
                    help="payload bytes per echo; a list (64,1k,16k) or range (1k-1M, doubling) cycles through "
                         "sizes, with a summary line per size")
    pp.add_argument("-W", "--timeout", type=_positive, default=10.0, metavar="S",
                    help="deadline for connect+handshake, and for each echo")
    pp.add_argument("--warmup", type=_int_nonneg, default=0, metavar="N",
                    help="extra probes first, labelled (warmup) and left out of the statistics")
    pp.add_argument("-k", "--echoes", type=_count, default=1, metavar="K",
                    help="echoes per connection: the first is timed as 'first echo', the others as 'steady echo'")
    pp.add_argument("--keepalive", action="store_true",
                    help="one connection for the whole run (each probe = --echoes echoes on it) instead of a new "
                         "connection per probe")
    pp.add_argument("--plaintext", action="store_true", help="no TLS (against serve --plaintext)")
    pp.add_argument("--handshake-only", action="store_true",
                    help="connect and handshake only, no echo: works against any TLS server")
    pp.add_argument("--no-resume", action="store_true", help="full handshake on every probe")
    pp.add_argument("--session-file", metavar="F",
                    help="save/load the TLS session across runs: NOT possible with Python's ssl (exits 2 saying why)")
    pp.add_argument("--max-frame", type=parse_size, default="1M", metavar="BYTES", help="largest echo accepted")
    pp.add_argument("--expect", action="append", default=[], metavar="KEY=VALUE",
                    help="a check for CI (repeatable): version, cipher, alpn, resumed, verify, sni, key, "
                         "min_days_left, group; a failed one is reported and makes the exit code 1")
    out = pp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true",
                     help=f"print one JSON document (schema {PING_SCHEMA}, see docs/ping.md) instead of text")
    out.add_argument("--jsonl", action="store_true",
                     help="print one JSON line per probe as it happens, then a summary line (docs/ping.md)")
    pp.add_argument("-v", "--verbose", action="store_true",
                    help="more detail: certificate serial/fingerprint/validity, where the group came from, the client policy")
    add_client_tls_flags(pp)
    add_policy_flags(pp)

    pp.set_defaults(func=cmd_ping)


# -- formatting helpers ------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}ms"


def _ms_num(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 4)


def _size(n: int) -> str:
    for unit, mult in (("M", 1 << 20), ("k", 1024)):
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


def _rtts(v: float | None) -> str:
    return "" if v is None else f" ({v:.1f} RTT)"


def cmd_ping(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run ``trioecho ping``; returns the exit code."""
    try:
        return _cmd_ping(args, argv)
    except BrokenPipeError:
        # Output piped into `head` and closed: stop quietly (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _cmd_ping(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import trio

    from . import _opensslconf
    from .client import Expectation, Pinger, PingOptions, PingReport, parse_target
    from .errors import ConfigError

    try:
        if args.session_file is not None:
            raise ConfigError(SESSION_FILE_UNSUPPORTED)
        expectations = [Expectation.parse(e) for e in args.expect]
        host, port = parse_target(args.target)
        policy = policy_from_args(args, "client")
        if not args.plaintext:
            _opensslconf.reexec_if_needed([policy], argv)
        opts = PingOptions(
            host=host, port=port, servername=args.servername, count=args.count, interval=args.interval,
            sizes=args.size, timeout=args.timeout, plaintext=args.plaintext,
            handshake_only=args.handshake_only, resume=not args.no_resume, warmup=args.warmup,
            max_frame=args.max_frame, echoes=args.echoes, keepalive=args.keepalive,
        )
        if args.plaintext and expectations:
            raise ConfigError("--expect checks TLS parameters; with --plaintext there are none: drop one of them")
        pinger = Pinger(opts, policy)
    except ConfigError as exc:
        die(str(exc))
    if args.plaintext:
        tls_flags = [f for f, v in (("--cafile", args.cafile), ("--cert", args.cert), ("--servername", args.servername),
                                    ("--insecure", args.insecure)) if v]
        if tls_flags:
            print(f"trioecho: warning: --plaintext uses no TLS, so {', '.join(tls_flags)} "
                  f"{'has' if len(tls_flags) == 1 else 'have'} no effect", file=sys.stderr)
    elif args.insecure:
        print("trioecho: WARNING: --insecure: the server's certificate and name are NOT verified; "
              "anyone in the path can impersonate it", file=sys.stderr)
    if not args.handshake_only and max(args.size) > args.max_frame:
        die(f"--size {max(args.size)} is over --max-frame {args.max_frame}: lower one or raise the other")

    text = not (args.json or args.jsonl)
    header_done = False
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def on_probe(report: Any, p: Any) -> None:
        nonlocal header_done
        if args.jsonl:
            print(json.dumps({"schema": PING_JSONL_SCHEMA, "type": "probe", **_probe_json(p)}), flush=True)
            return
        if not text:
            return
        if not header_done and report.tls is not None:
            header_done = True
            _print_header(report, args)
        print(_probe_line(p, opts), flush=True)
        if not p.ok and p.hint:
            print(f"    fix: {p.hint}", flush=True)

    if text:
        print(_banner(target, args, opts), flush=True)
    report = PingReport(options=opts)
    interrupted = trio.run(_run_until_signal, pinger, on_probe, report)
    summary = report.summary()
    results = [e.check(report) for e in expectations]
    ok = summary["failed"] == 0 and summary["transmitted"] > 0 and all(r.ok for r in results)
    code = EXIT_OK if ok else EXIT_FAILED
    if interrupted and text:
        print(f"(interrupted after {summary['transmitted']} of {opts.count} probes)")
    if args.json or args.jsonl:
        doc = _ping_json(report, summary, results, args, host, port, code, interrupted)
        if args.jsonl:
            doc.pop("probes")
            doc = {"schema": PING_JSONL_SCHEMA, "type": "summary", **{k: v for k, v in doc.items() if k != "schema"}}
            print(json.dumps(doc), flush=True)
        else:
            print(json.dumps(doc, indent=2))
    else:
        _print_summary(target, summary, opts)
        for r in results:
            verdict = "ok" if r.ok else "FAILED"
            print(f"expect {r.key}={r.expected}: {verdict} (got {r.actual})")
    return code


async def _run_until_signal(pinger: Any, on_probe: Any, report: Any) -> bool:
    """Run the probes; Ctrl-C or SIGTERM ends the run early, keeping what was measured (like ping)."""
    import signal

    import trio

    interrupted = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            nonlocal interrupted
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        await pinger.run(on_probe, report)
        nursery.cancel_scope.cancel()
    return interrupted


def _banner(target: str, args: argparse.Namespace, opts: Any) -> str:
    mode = "plaintext" if args.plaintext else "TLS"
    if opts.handshake_only:
        what = "handshake only"
    else:
        what = f"{','.join(_size(s) for s in opts.sizes)} bytes"
        if opts.echoes > 1:
            what += f", {opts.echoes} echoes per probe"
    conn = "one kept-alive connection" if opts.keepalive else "a new connection per probe"
    n = opts.count
    warm = f" (+{opts.warmup} warmup)" if opts.warmup else ""
    return f"PING {target} over {mode}: {n} probe{'s' if n != 1 else ''}{warm}, {what}, {conn}"


def _probe_line(p: Any, opts: Any) -> str:
    tag = " (warmup)" if p.warmup else ""
    head = f"seq={p.seq}" if opts.handshake_only else f"seq={p.seq} size={_size(p.size)}"
    if not p.ok:
        return f"{head} FAILED {p.error_kind}: {p.error}{tag}"
    parts = [head]
    if p.fresh:
        parts.append(f"tcp={_ms(p.tcp)}")
        if p.tls is not None:
            parts.append(f"tls={_ms(p.tls)}{_rtts(p.handshake_rtts)}")
    else:
        parts.append("(kept connection)")
    if not opts.handshake_only:
        parts.append(f"{'first' if p.fresh else 'echo'}={_ms(p.echo)}")
        if p.steady:
            from .client import stats

            st = stats(p.steady)
            parts.append(f"steady={_ms(st['median'])} (median of {st['n']})")
    if p.fresh and p.resumed is not None:
        parts.append("resumed" if p.resumed else "full")
    return " ".join(parts) + tag


def _print_header(report: Any, args: argparse.Namespace) -> None:
    """A readable s_client -brief: what was negotiated, and who the server says it is."""
    tls = report.tls
    bits = f" ({tls.cipher_bits}-bit)" if tls.cipher_bits else ""
    print(f"{tls.version} {tls.cipher}{bits}, {'resumed' if tls.resumed else 'full'} handshake")
    if tls.group:
        print(f"  group    {tls.group}" + (f" ({tls.group_note})" if args.verbose and tls.group_note else ""))
    else:
        print(f"  group    {tls.group_note}")
    if tls.signature_scheme:
        print(f"  sigalg   {tls.signature_scheme} (the server's handshake signature)")
    if tls.client_cert_requested is not None:
        asked = "asked for" if tls.client_cert_requested else "did not ask for"
        sent = "" if not tls.client_cert_requested else (
            "; we sent --cert" if tls.client_cert_sent else "; we sent none")
        print(f"  mTLS     the server {asked} a client certificate{sent}")
    offered = ", ".join(tls.alpn_offered) or "none"
    print(f"  ALPN     {tls.alpn or 'none negotiated'} (offered {offered})")
    print(f"  SNI      {tls.sni or 'none sent (the target is an IP address)'}")
    if tls.verified:
        anchor = f"--cafile {args.cafile}" if getattr(args, "cafile", None) else "the system trust store"
        name = args.servername or report.options.host
        print(f"  verify   ok: chain trusted by {anchor}, certificate holds {name!r}")
    else:
        print("  verify   OFF (--insecure): anyone in the path could be answering")
    pc = tls.peer
    if pc is None:
        print("  server   sent no certificate")
        return
    print(f"  server   {pc.subject or '(empty subject)'}")
    print(f"           SAN {', '.join(pc.san) or '(none)'}")
    print(f"           issuer {pc.issuer or '-'}{' (self-signed)' if pc.self_signed else ''}")
    days = "" if pc.days_left is None else (
        f" ({pc.days_left} days left)" if pc.days_left >= 0 else f" (EXPIRED {-pc.days_left} days ago)")
    print(f"           expires {pc.not_after}{days}")
    key = pc.key_type or "unknown key"
    if pc.key_bits and pc.key_type and not pc.key_type.startswith(("Ed", "EC")):
        key += f" {pc.key_bits} bits"
    print(f"           key {key}, signed with {pc.signature_algorithm or 'unknown'}")
    if args.verbose:
        print(f"           valid from {pc.not_before}; serial {pc.serial}")
        print(f"           sha256 {pc.sha256}")
        print(f"  chain    leaf only: Python {sys.version_info[0]}.{sys.version_info[1]} exposes only the peer's "
              "leaf certificate (get_verified_chain arrives in 3.13)" if sys.version_info < (3, 13) else
              "  chain    leaf shown")
        import ssl

        from .policy import effective_settings

        pol = report.options
        eff = effective_settings(_client_ctx_for_display(args))
        print(f"  client   {ssl.OPENSSL_VERSION}; versions {eff['minimum_version']}..{eff['maximum_version']}; "
              f"resumption {'on' if pol.resume else 'off'}")
        print(f"           TLS 1.3 suites {', '.join(eff['tls13_suites']) or '-'}")
        print(f"           TLS 1.2 ciphers {', '.join(eff['tls12_ciphers']) or '-'}")


def _client_ctx_for_display(args: argparse.Namespace) -> Any:
    return policy_from_args(args, "client").client_context()


def _stat_line(label: str, st: dict[str, Any], unit: str = "ms", scale: float = 1000.0) -> str:
    vals = "/".join(f"{st[k] * scale:.3f}" for k in ("min", "avg", "median", "max", "mdev"))
    line = f"{label:<16} min/avg/median/max/mdev = {vals} {unit}"
    if st["p95"] is not None:
        line += f"  p95={st['p95'] * scale:.3f}"
    if st["p99"] is not None:
        line += f" p99={st['p99'] * scale:.3f}"
    return line


def _print_summary(target: str, s: dict[str, Any], opts: Any) -> None:
    print(f"--- {target} ping statistics ---")
    loss = "-" if s["loss"] is None else f"{s['loss']:.0%}"
    verb = "completed" if opts.handshake_only else "echoed"
    n = s["transmitted"]
    line = f"{n} probe{'' if n == 1 else 's'} sent, {s['received']} {verb}, {s['failed']} failed, {loss} loss"
    if not opts.plaintext:
        rate = s["resumption_rate"]
        c = s["connections"]
        line += f"; {c} connection{'' if c == 1 else 's'}"
        if rate is not None:
            line += f", {s['resumed']} resumed ({rate:.0%} of repeat connections)"
    print(line)
    for key, label in (("tcp", "tcp connect"), ("tls_full", "tls full"), ("tls_resumed", "tls resumed"),
                       ("first_echo", "first echo"), ("steady_echo", "steady echo")):
        st = s[key]
        if not st["n"]:
            continue
        out = _stat_line(label, st)
        rt = s.get(f"handshake_rtts_{key[4:]}") if key.startswith("tls_") else None
        if rt and rt["n"]:
            out += f"  = {rt['median']:.1f} RTT (median of tls/tcp)"
        print(out)
    tcp_med = s["tcp"]["median"]
    if tcp_med is not None and tcp_med < LOOPBACK_RTT and (s["tls_full"]["n"] or s["tls_resumed"]["n"]):
        print(f"note: the TCP connect took {tcp_med * 1000:.2f} ms (a local network): the handshake is "
              "CPU-bound here, so its cost in RTTs says little; over a real link TLS 1.2 costs ~2 RTT, "
              "TLS 1.3 and resumed handshakes ~1")
    if len(s["sizes"]) > 1:
        for size, per in s["sizes"].items():
            for key, label in (("first_echo", "first"), ("steady_echo", "steady")):
                if per[key]["n"]:
                    print(_stat_line(f"size {_size(size)} {label}", per[key]))
            if per["received"] < per["probes"]:
                print(f"size {_size(size)}: {per['probes'] - per['received']} of {per['probes']} probes failed")
    if any(s[k]["n"] >= 20 for k in ("tcp", "tls", "first_echo", "steady_echo")):
        print(f"percentiles: {PERCENTILE_RULE}")
    if s["errors"]:
        print("errors: " + ", ".join(f"{k}={v}" for k, v in sorted(s["errors"].items())))


# -- JSON ----------------------------------------------------------------------------------------

def _st_ms(st: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k == "n" else _ms_num(v)) for k, v in st.items()}


def _st_plain(st: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k == "n" or v is None else round(v, 3)) for k, v in st.items()}


def _probe_json(p: Any) -> dict[str, Any]:
    rt = p.handshake_rtts
    return {
        "seq": p.seq, "size": p.size, "warmup": p.warmup, "ok": p.ok,
        "connection": "new" if p.fresh else "kept",
        "tcp_ms": _ms_num(p.tcp), "tls_ms": _ms_num(p.tls),
        "handshake_rtts": None if rt is None else round(rt, 3),
        "first_echo_ms": _ms_num(p.first_echo),
        "steady_echo_ms": [_ms_num(x) for x in p.steady_samples()],
        "resumed": p.resumed, "error_kind": p.error_kind, "error": p.error, "hint": p.hint,
    }


def _ping_json(report: Any, s: dict[str, Any], results: list[Any], args: argparse.Namespace,
               host: str, port: int, code: int, interrupted: bool = False) -> dict[str, Any]:
    o = report.options
    return {
        "schema": PING_SCHEMA,
        "target": {"host": host, "port": port, "servername": args.servername or host},
        "plaintext": args.plaintext,
        "insecure": bool(getattr(args, "insecure", False)),
        "handshake_only": args.handshake_only,
        "mode": "keepalive" if o.keepalive else "new-connection",
        "echoes": o.echoes,
        "sizes": list(o.sizes),
        "count": o.count,
        "warmup": o.warmup,
        "tls": None if report.tls is None else report.tls.as_dict(),
        "probes": [_probe_json(p) for p in report.probes],
        "summary": {
            "transmitted": s["transmitted"], "received": s["received"], "failed": s["failed"],
            "loss": s["loss"], "connections": s["connections"], "resumed": s["resumed"],
            "resumption_rate": s["resumption_rate"], "errors": s["errors"],
            "tcp_ms": _st_ms(s["tcp"]), "tls_full_ms": _st_ms(s["tls_full"]),
            "tls_resumed_ms": _st_ms(s["tls_resumed"]),
            "handshake_rtts_full": _st_plain(s["handshake_rtts_full"]),
            "handshake_rtts_resumed": _st_plain(s["handshake_rtts_resumed"]),
            "first_echo_ms": _st_ms(s["first_echo"]), "steady_echo_ms": _st_ms(s["steady_echo"]),
            "sizes": [{"size": size, "probes": per["probes"], "received": per["received"],
                       "first_echo_ms": _st_ms(per["first_echo"]), "steady_echo_ms": _st_ms(per["steady_echo"])}
                      for size, per in s["sizes"].items()],
            "percentile_rule": PERCENTILE_RULE,
        },
        "expectations": [r.as_dict() for r in results],
        "interrupted": interrupted,
        "exit_code": code,
    }
