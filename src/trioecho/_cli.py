"""Command line: argparse -> Policy -> trio.run.  Printing and exit codes live in the _cli* modules only.

Exit codes (stable, for scripts):
  0  success: the server stopped cleanly / every probe echoed correctly
  1  failure: some or all probes failed, or an --expect did not hold
  2  usage or configuration error (bad flag, missing file, policy not enforceable)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ._cli_common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

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

    from . import _cli_ping, _cli_policy, _cli_serve

    _cli_serve.add_parser(sub)
    _cli_ping.add_parser(sub)
    _cli_policy.add_parser(sub)
    from . import _cli_bench; _cli_bench.add_parser(sub)  # noqa: E702  (one line: easy to merge)
    return parser


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
        stats = getattr(record, "stats", None)
        if stats:
            doc["stats"] = stats
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trioecho command line; exits with the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        sys.exit(EXIT_USAGE)
    _setup_logging(args.log_level, args.log_format)
    try:
        code = args.func(args, argv)
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = EXIT_OK if args.command == "serve" else EXIT_FAILED
    except BrokenPipeError:
        # Output piped into `head` and closed: stop quietly, like other Unix tools
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        _silence_stdout()
        code = EXIT_FAILED
    except OSError as exc:
        if exc.errno is None or sys.stdout is None:
            raise
        _silence_stdout()
        print(f"trioecho: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        code = EXIT_FAILED
    sys.exit(code)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


if __name__ == "__main__":
    main()
