"""`trioecho serve`: flags -> EchoServer -> trio.run, signals, exit codes."""

from __future__ import annotations

import argparse
import functools
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from ._cli_common import (
    EXIT_OK,
    HelpFormatter,
    _count,
    _nonneg,
    _port,
    _positive,
    add_policy_flags,
    add_server_tls_flags,
    die,
    parse_size,
    policy_from_args,
)


#: File descriptors beyond one per connection: listeners, logs, metrics, OpenSSL's files.
_FD_HEADROOM = 64


def _ensure_fd_limit(max_connections: int, log: Any) -> None:
    """Raise the soft open-file limit to fit --max-connections, or warn that it cannot."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + _FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning("--max-connections %d needs about %d open files but the limit is %d: connections past it "
                    "wait until others close; raise `ulimit -n` or lower --max-connections",
                    max_connections, need, soft)


def _warn_expiry(policy: Any, log: Any) -> None:
    from .policy import cert_expiry_problem

    for spec in policy.certs:
        problem = cert_expiry_problem(spec.cert)
        if problem:
            log.warning("%s", problem)


def _bind_host(text: str) -> str:
    """Accept an IPv6 address with or without brackets, as ping does."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    if not t:
        raise argparse.ArgumentTypeError("empty --host: leave it out to listen on all interfaces")
    return t


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    from .server import DEFAULT_PORT

    # serve ---------------------------------------------------------------------------------
    sp = sub.add_parser(
        "serve", help="run a TLS echo server",
        description="Serve the length-prefixed echo (4-byte big-endian length, then the body) over TLS. "
                    "Prints 'listening on HOST:PORT' per bound address once ready. Ctrl-C/SIGTERM stops "
                    "accepting, lets frames in flight finish (--grace), sends close_notify, logs a summary "
                    "of the counters, exits 0; a second signal exits at once. SIGHUP re-reads the "
                    "certificates and policy files for new connections (open ones keep theirs; a broken "
                    "new certificate is refused with a log line and the old one stays). "
                    "See docs/operations.md.",
        formatter_class=HelpFormatter,
    )
    sp.add_argument("--host", default=None, type=_bind_host,
                    help="address to bind, e.g. 127.0.0.1 or ::1 ([::1] works too) (default: all interfaces)")
    sp.add_argument("--port", type=_port, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    sp.add_argument("--plaintext", action="store_true", help="serve the same framing over bare TCP (no TLS)")
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
    lim.add_argument("--close-timeout", type=_positive, default=2.0, metavar="S",
                     help="time allowed for sending close_notify before the close turns forceful "
                          "(the client's close_notify is never waited for)")
    lim.add_argument("--max-connections", type=_count, default=4096, metavar="N",
                     help="connections served at once; more wait in the accept backlog")
    lim.add_argument("--grace", type=_nonneg, default=5.0, metavar="S",
                     help="on shutdown, time for frames in flight to finish")
    obs = sp.add_argument_group("observability")
    obs.add_argument("--stats-interval", type=_positive, default=None, metavar="S",
                     help="log the counters every S seconds (they are always logged at shutdown)")
    obs.add_argument("--metrics", default=None, metavar="HOST:PORT",
                     help="serve Prometheus metrics at http://HOST:PORT/metrics "
                          "(needs prometheus-client: pip install 'trioecho[metrics]'); port 0 picks one")
    scale = sp.add_argument_group("scale (see docs/deployment.md)")
    scale.add_argument("--workers", type=_count, default=1, metavar="N",
                       help="N processes sharing the port (one core each); TLS session tickets resume across them; "
                            "a worker that dies is restarted; SIGTERM drains all")
    scale.add_argument("--proxy-protocol", choices=["off", "v1", "v2", "any"], default="off",
                       help="expect a PROXY protocol header (HAProxy, AWS NLB...) before TLS, and log the client "
                            "address it carries; only behind a load balancer that sends it")
    add_server_tls_flags(sp)
    add_policy_flags(sp)

    sp.set_defaults(func=cmd_serve)

def cmd_serve(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import trio

    from . import _opensslconf
    from .errors import ConfigError
    from .server import EchoServer, ServerLimits

    log = logging.getLogger("trioecho.cli")
    try:
        limits = ServerLimits(
            max_frame=args.max_frame, handshake_timeout=args.handshake_timeout,
            idle_timeout=args.idle_timeout, frame_timeout=args.frame_timeout,
            send_timeout=args.send_timeout, close_timeout=args.close_timeout,
            max_connections=args.max_connections, grace=args.grace,
        )
        if args.plaintext:
            tls_flags = [f for f, v in (("--cert", args.cert), ("--client-ca", args.client_ca),
                                        ("--client-auth", args.client_auth != "none")) if v]
            if tls_flags:
                log.warning("--plaintext serves no TLS, so %s %s no effect", ", ".join(tls_flags),
                            "has" if len(tls_flags) == 1 else "have")
            server = EchoServer(limits=limits, plaintext=True)
        else:
            if not args.cert and not args.sni:
                raise ConfigError("serve needs --cert PEM (create one with: python scripts/gen_certs.py --out certs), "
                                  "or --plaintext for bare TCP")
            policy = policy_from_args(args, "server")
            _opensslconf.reexec_if_needed([policy], argv)
            # Building the context logs the key-mode and --keylog warnings (trioecho.policy).
            server = EchoServer(policy=policy, limits=limits)
            _warn_expiry(policy, log)
        _ensure_fd_limit(limits.max_connections, log)
        metrics_addr = None
        if args.metrics is not None:
            from .metrics import make_registry

            metrics_addr = _host_port(args.metrics)
            make_registry(server)  # fail now (exit 2) if prometheus-client is missing
    except ConfigError as exc:
        die(str(exc))
    server.proxy_protocol = args.proxy_protocol
    if args.workers > 1:
        if args.metrics is not None:
            die("--metrics with --workers is not supported yet (each worker has its own counters): "
                "run one process with --metrics, or use --stats-interval, which every worker logs")
        return _serve_workers(server, args)

    def reload() -> None:
        try:
            new_policy = policy_from_args(args, "server")
            server.reload(new_policy)
            _warn_expiry(new_policy, log)
        except ConfigError as exc:
            log.error("reload refused, still using the previous certificates and policy: %s", exc)

    async def main() -> int | tuple[str, OSError]:
        # Signals are caught before "listening on" is printed: a supervisor that
        # signals as soon as it sees that line must not hit the default actions.
        with trio.open_signal_receiver(*_signals()) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_signal_loop, signals, server, nursery.cancel_scope,
                                   None if args.plaintext else reload)
                try:
                    addrs = await nursery.start(_serve_task, server, args.host, args.port, nursery.cancel_scope)
                except OSError as exc:
                    nursery.cancel_scope.cancel()
                    return f"{args.host or '*'}:{args.port}", exc
                for host, port in addrs:
                    h = f"[{host}]" if ":" in host else host
                    print(f"listening on {h}:{port}", flush=True)
                if metrics_addr is not None:
                    from .metrics import serve_metrics

                    try:
                        maddrs = await nursery.start(functools.partial(
                            serve_metrics, server, host=metrics_addr[0], port=metrics_addr[1]))
                    except OSError as exc:
                        nursery.cancel_scope.cancel()
                        return f"--metrics {args.metrics}", exc
                    for host, port in maddrs:
                        h = f"[{host}]" if ":" in host else host
                        print(f"metrics on http://{h}:{port}/metrics", flush=True)
                if args.stats_interval:
                    nursery.start_soon(_stats_loop, server, args.stats_interval)
        logging.getLogger("trioecho.stats").info("stopped: %s", server.stats.summary(),
                                                 extra={"stats": server.stats.as_dict()})
        return EXIT_OK

    result = trio.run(main)
    if isinstance(result, tuple):
        where, err = result
        import socket

        if isinstance(err, socket.gaierror):
            die(f"cannot listen on {where}: --host {args.host!r} does not resolve to an address of this machine "
                f"({err.strerror}): use an IP such as 127.0.0.1 or ::1, or leave --host out for all interfaces")
        die(f"cannot listen on {where}: {err.strerror or err}: "
            "pick another port (0 picks a free one) or stop what holds it")
    return result


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` for --metrics (port 0 allowed: pick a free one)."""
    from .errors import ConfigError

    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464")
    return host, int(port)


def _serve_workers(server: Any, args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .workers import serve_workers

    def listening(addrs: list[tuple[str, int]]) -> None:
        for host, port in addrs:
            h = f"[{host}]" if ":" in host else host
            print(f"listening on {h}:{port} ({args.workers} workers)", flush=True)

    try:
        return serve_workers(server, workers=args.workers, host=args.host, port=args.port,
                             on_listening=listening, stats_interval=args.stats_interval)
    except ConfigError as exc:
        die(str(exc))
    except OSError as exc:
        die(f"cannot listen on {args.host or '*'}:{args.port}: {exc.strerror or exc}: "
            "pick another --port (0 picks a free one) or stop what holds it")


async def _serve_task(server: Any, host: str | None, port: int, scope: Any, task_status: Any) -> None:
    await server.serve(host=host, port=port, task_status=task_status)
    # serve() returns once a shutdown has drained: stop the whole command.
    scope.cancel()


async def _stats_loop(server: Any, interval: float) -> None:
    import trio

    log = logging.getLogger("trioecho.stats")
    while True:
        await trio.sleep(interval)
        log.info("stats %s", server.stats.summary(), extra={"stats": server.stats.as_dict()})


def _signals() -> list[signal.Signals]:
    sigs = [signal.SIGINT, signal.SIGTERM]
    if hasattr(signal, "SIGHUP"):  # caught even in --plaintext: its default action would kill us
        sigs.append(signal.SIGHUP)
    return sigs


async def _signal_loop(signals: Any, server: Any, scope: Any, reload: Callable[[], None] | None) -> None:
    log = logging.getLogger("trioecho.cli")
    first = True
    async for sig in signals:
        if sig == getattr(signal, "SIGHUP", None):
            if reload is None:
                log.info("got SIGHUP: nothing to reload (--plaintext)")
            else:
                log.info("got SIGHUP: reloading certificates and policy")
                reload()
        elif first:
            first = False
            log.info("got %s: draining (a second signal exits at once)", signal.Signals(sig).name)
            server.shutdown()
        else:
            log.warning("got %s again: exiting now, dropping %d connections",
                        signal.Signals(sig).name, server.stats.active)
            scope.cancel()
            return
