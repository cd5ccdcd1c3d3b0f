"""Command line: argparse -> Policy -> trio.run.  Printing and exit codes live here only.

Exit codes (stable, for scripts):
  0  success: the server stopped cleanly / every probe echoed correctly
  1  failure: some or all probes failed, or an --expect did not hold
  2  usage or configuration error (bad flag, missing file, policy not enforceable)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

PING_SCHEMA = "trioecho.ping/1"

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
    if not v > 0 or math.isinf(v):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number of seconds")
    return v


def _nonneg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if v < 0 or math.isnan(v):
        raise argparse.ArgumentTypeError(f"{text!r}: must be zero or more seconds")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return v


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port {v} is out of range 0-65535 (0 picks a free port)")
    return v


# -- the parser ------------------------------------------------------------------------------

def _add_policy_flags(p: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .server import DEFAULT_PORT

    parser = argparse.ArgumentParser(
        prog="trioecho",
        description="A TLS echo toolkit: a reference TLS endpoint (serve) and a TLS ping that measures and explains (ping).",
        epilog="Quick start:\n"
               "  python scripts/gen_certs.py --out certs\n"
               "  trioecho serve --cert certs/server.pem --port 9443 &\n"
               "  trioecho ping localhost:9443 --cafile certs/ca.pem\n\n"
               "Exit codes: 0 success, 1 probes or expectations failed, 2 usage/configuration error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trioecho {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                        help="log verbosity on stderr (default info)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="log lines as readable text (default) or one JSON object per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    # serve ---------------------------------------------------------------------------------
    sp = sub.add_parser(
        "serve", help="run a TLS echo server",
        description="Serve the length-prefixed echo (4-byte big-endian length, then the body) over TLS. "
                    "Prints 'listening on HOST:PORT' per bound address once ready. Ctrl-C/SIGTERM stops "
                    "accepting, lets frames in flight finish (--grace), sends close_notify, exits 0; "
                    "a second signal exits at once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sp.add_argument("--host", default=None, help="address to bind (default: all interfaces)")
    sp.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    sp.add_argument("--cert", action="append", type=Path, metavar="PEM",
                    help="certificate chain (leaf first), optionally with its key (server.pem from gen_certs.py)")
    sp.add_argument("--key", type=Path, metavar="PEM", help="private key, if not inside --cert")
    sp.add_argument("--key-password-file", type=Path, metavar="FILE", help="password of an encrypted key")
    sp.add_argument("--plaintext", action="store_true", help="serve the same framing over bare TCP (no TLS)")
    sp.add_argument("--client-auth", choices=["none", "optional", "required"], default="none",
                    help="ask clients for a certificate (mTLS)")
    sp.add_argument("--client-ca", type=Path, metavar="PEM", help="CA that issues accepted client certificates")
    sp.add_argument("--alpn-strict", action="store_true",
                    help="close connections whose client offered no ALPN protocol we accept "
                         "(OpenSSL alone lets them through with no ALPN)")
    t = sp.add_mutually_exclusive_group()
    t.add_argument("--tickets", type=int, metavar="N", default=None,
                   help="TLS 1.3 session tickets per handshake (default 1)")
    t.add_argument("--no-tickets", action="store_true", help="issue no tickets: resumption off")
    lim = sp.add_argument_group("limits and timeouts")
    lim.add_argument("--max-frame", type=parse_size, default="1M", metavar="BYTES",
                     help="largest frame body accepted (k/M suffixes)")
    lim.add_argument("--handshake-timeout", type=_positive, default=10.0, metavar="S",
                     help="one overall deadline for the TLS handshake")
    lim.add_argument("--idle-timeout", type=_positive, default=300.0, metavar="S",
                     help="close a client silent this long between frames")
    lim.add_argument("--frame-timeout", type=_positive, default=30.0, metavar="S",
                     help="close a client whose frame takes longer than this to arrive")
    lim.add_argument("--send-timeout", type=_positive, default=30.0, metavar="S",
                     help="close a client that does not read its echo for this long")
    lim.add_argument("--max-connections", type=_count, default=4096, metavar="N",
                     help="connections served at once; more wait in the accept backlog")
    lim.add_argument("--grace", type=_nonneg, default=5.0, metavar="S",
                     help="on shutdown, time for frames in flight to finish")
    sp.add_argument("--stats-interval", type=_positive, default=None, metavar="S",
                    help="log the counters every S seconds")
    _add_policy_flags(sp)

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
    pp.add_argument("--cafile", type=Path, metavar="PEM", help="trust these CAs instead of the system store")
    pp.add_argument("--servername", metavar="NAME", help="name to verify and send as SNI (default: HOST)")
    pp.add_argument("--insecure", action="store_true",
                    help="do not verify the certificate or the name (prints a warning; shown in --json)")
    pp.add_argument("--cert", type=Path, metavar="PEM", help="client certificate (and key) for mTLS")
    pp.add_argument("--key", type=Path, metavar="PEM", help="client key, if not inside --cert")
    pp.add_argument("--key-password-file", type=Path, metavar="FILE", help="password of an encrypted client key")
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
    _add_policy_flags(pp)

    # policy --------------------------------------------------------------------------------
    pol = sub.add_parser("policy", help="show the effective TLS policy",
                         description="Print what a profile and flags ask for and what the built contexts enforce.")
    polsub = pol.add_subparsers(dest="policy_command", metavar="ACTION")
    show = polsub.add_parser("show", help="print the effective policy (read back from the built contexts)")
    show.add_argument("--json", action="store_true", help="print JSON")
    _add_policy_flags(show)
    return parser


# -- policy from flags --------------------------------------------------------------------------

def policy_from_args(args: argparse.Namespace, role: str) -> Any:
    """Build the Policy for ``role`` ("server", "client" or "show") from parsed flags.

    Raises:
        ConfigError: bad values.
    """
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
        if certs:
            specs = [CertSpec(certs[0], args.key)]
            specs += [CertSpec(c) for c in certs[1:]]
            over["certs"] = tuple(specs)
        over["client_auth"] = args.client_auth
        if args.client_ca is not None:
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


# -- logging -----------------------------------------------------------------------------------

class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        conn = getattr(record, "conn", None)
        if conn:
            doc.update(conn)
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("trioecho")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _die(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"trioecho: error: {msg}", file=sys.stderr)
    sys.exit(code)


# -- serve -------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import trio

    from . import _opensslconf
    from .errors import ConfigError
    from .policy import key_is_exposed
    from .server import EchoServer, ServerLimits

    log = logging.getLogger("trioecho.cli")
    try:
        limits = ServerLimits(
            max_frame=args.max_frame, handshake_timeout=args.handshake_timeout,
            idle_timeout=args.idle_timeout, frame_timeout=args.frame_timeout,
            send_timeout=args.send_timeout, max_connections=args.max_connections, grace=args.grace,
        )
        if args.plaintext:
            server = EchoServer(limits=limits, plaintext=True)
        else:
            if not args.cert:
                raise ConfigError("serve needs --cert PEM (create one with: python scripts/gen_certs.py --out certs), "
                                  "or --plaintext for bare TCP")
            policy = policy_from_args(args, "server")
            _opensslconf.reexec_if_needed([policy], argv)
            server = EchoServer(policy=policy, limits=limits)
            for spec in policy.certs:
                keyfile = spec.key or spec.cert
                if key_is_exposed(keyfile):
                    log.warning("private key %s is readable by group or others: chmod 600 %s", keyfile, keyfile)
            if policy.keylog is not None:
                log.warning("--keylog %s: TLS secrets are being written; anyone with the file can decrypt traffic",
                            policy.keylog)
    except ConfigError as exc:
        _die(str(exc))

    async def main() -> int | OSError:
        async with trio.open_nursery() as nursery:
            try:
                addrs = await nursery.start(_serve_task, server, args.host, args.port, nursery.cancel_scope)
            except OSError as exc:
                return exc
            for host, port in addrs:
                h = f"[{host}]" if ":" in host else host
                print(f"listening on {h}:{port}", flush=True)
            if args.stats_interval:
                nursery.start_soon(_stats_loop, server, args.stats_interval)
            nursery.start_soon(_signal_loop, server, nursery.cancel_scope)
        log.info("stopped: %s", server.stats.summary())
        return EXIT_OK

    result = trio.run(main)
    if isinstance(result, OSError):
        _die(f"cannot listen on {args.host or '*'}:{args.port}: {result.strerror or result}: "
             "pick another --port (0 picks a free one) or stop what holds it")
    return result


async def _serve_task(server: Any, host: str | None, port: int, scope: Any, task_status: Any) -> None:
    await server.serve(host=host, port=port, task_status=task_status)
    # serve() returns once a shutdown has drained: stop the whole command.
    scope.cancel()


async def _stats_loop(server: Any, interval: float) -> None:
    import trio

    log = logging.getLogger("trioecho.stats")
    while True:
        await trio.sleep(interval)
        log.info("stats %s", server.stats.summary())


async def _signal_loop(server: Any, scope: Any) -> None:
    import trio

    log = logging.getLogger("trioecho.cli")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        first = True
        async for sig in signals:
            if first:
                first = False
                log.info("got %s: draining (a second signal exits at once)", signal.Signals(sig).name)
                server.shutdown()
            else:
                log.warning("got %s again: exiting now, dropping %d connections",
                            signal.Signals(sig).name, server.stats.active)
                scope.cancel()
                return


# -- ping --------------------------------------------------------------------------------------

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
        _die(str(exc))
    if args.insecure:
        print("trioecho: WARNING: --insecure: the server's certificate and name are NOT verified; "
              "anyone in the path can impersonate it", file=sys.stderr)
    if max(args.size) > args.max_frame:
        _die(f"--size {max(args.size)} is over --max-frame {args.max_frame}: lower one or raise the other")

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


# -- policy show --------------------------------------------------------------------------------

def cmd_policy(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from . import _opensslconf
    from .errors import ConfigError
    from .policy import effective_settings

    if args.policy_command != "show":
        _die("usage: trioecho policy show [--profile P] [flags]")
    try:
        policy = policy_from_args(args, "show")
        _opensslconf.reexec_if_needed([policy], argv)
        client = policy.client_context()
    except ConfigError as exc:
        _die(str(exc))
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


# -- entry point ---------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the trioecho command line; returns (and exits with) the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _setup_logging(args.log_level, args.log_format)
    handler = {"serve": cmd_serve, "ping": cmd_ping, "policy": cmd_policy}[args.command]
    try:
        code = handler(args, argv)
    except KeyboardInterrupt:
        code = EXIT_OK if args.command == "serve" else EXIT_FAILED
    sys.exit(code)


if __name__ == "__main__":
    main()
