"""`trioecho serve`: flags -> EchoServer -> trio.run, signals, exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Sequence
from typing import Any

from ._cli_common import (
    EXIT_OK,
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


def add_parser(sub: Any) -> None:
    """Add the subcommand to the top-level parser's subparsers."""
    from .server import DEFAULT_PORT

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
    lim.add_argument("--max-connections", type=_count, default=4096, metavar="N",
                     help="connections served at once; more wait in the accept backlog")
    lim.add_argument("--grace", type=_nonneg, default=5.0, metavar="S",
                     help="on shutdown, time for frames in flight to finish")
    sp.add_argument("--stats-interval", type=_positive, default=None, metavar="S",
                    help="log the counters every S seconds")
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
        die(str(exc))
    server.proxy_protocol = args.proxy_protocol
    if args.workers > 1:
        return _serve_workers(server, args)

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
        die(f"cannot listen on {args.host or '*'}:{args.port}: {result.strerror or result}: "
             "pick another --port (0 picks a free one) or stop what holds it")
    return result


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


