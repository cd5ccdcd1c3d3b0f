"""Baseline T: the naive trio TLS echo (serve_ssl_over_tcp + receive_some/send_all).

Shows what trioecho adds on top of plain trio.SSLStream usage.
"""

from __future__ import annotations

from typing import Any

import trio

from _common import parse_args, server_context


async def handle(stream: trio.SSLStream[Any]) -> None:
    try:
        while True:
            data = await stream.receive_some()
            if not data:
                break
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the load generator hung up: nothing to report in a benchmark baseline
    finally:
        with trio.move_on_after(1):
            try:
                await stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass


async def main() -> None:
    args = parse_args(__doc__ or "")
    ctx = server_context(args.cert, args.tickets)
    print(f"listening on {args.host}:{args.port}", flush=True)
    await trio.serve_ssl_over_tcp(handle, args.port, ctx, host=args.host, backlog=1024)


if __name__ == "__main__":
    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
