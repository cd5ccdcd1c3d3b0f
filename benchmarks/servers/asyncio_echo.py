"""Baseline B: the stdlib asyncio TLS echo a user would write (streams API).

An echo of a length-prefixed stream is the identity on bytes, so this echoes
whatever arrives: read(64 KiB) -> write -> drain.
"""

from __future__ import annotations

import asyncio

from _common import parse_args, server_context


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # the load generator hung up: nothing to report in a benchmark baseline
    finally:
        writer.close()


async def main() -> None:
    args = parse_args(__doc__ or "")
    ctx = server_context(args.cert, args.tickets)
    server = await asyncio.start_server(handle, args.host, args.port, ssl=ctx, backlog=1024)
    print(f"listening on {args.host}:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
