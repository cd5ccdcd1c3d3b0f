"""Baseline: anyio's TLS listener on the asyncio backend (TLSListener + TLSStream)."""

from __future__ import annotations

import anyio
from anyio.streams.tls import TLSListener, TLSStream

from _common import parse_args, server_context


async def handle(stream: TLSStream) -> None:
    try:
        async with stream:
            while True:
                try:
                    data = await stream.receive(65536)
                except anyio.EndOfStream:
                    break
                await stream.send(data)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass  # the load generator hung up: nothing to report in a benchmark baseline


async def main() -> None:
    args = parse_args(__doc__ or "")
    ctx = server_context(args.cert, args.tickets)
    tcp = await anyio.create_tcp_listener(local_host=args.host, local_port=args.port, backlog=1024)
    listener = TLSListener(tcp, ctx, standard_compatible=False)
    print(f"listening on {args.host}:{args.port}", flush=True)
    await listener.serve(handle)


if __name__ == "__main__":
    try:
        anyio.run(main, backend="asyncio")
    except KeyboardInterrupt:
        pass
