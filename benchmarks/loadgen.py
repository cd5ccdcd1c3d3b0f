"""The neutral load generator: stdlib asyncio + ssl, several processes, no trioecho code.

Theory of operation
-------------------
Every target (trioecho, asyncio, naive trio, socat, anyio) is driven by this one
client, so no server gets a home advantage.  Each process runs an asyncio loop
with a small TLS client of its own: a non-blocking socket, ``ssl.SSLObject``
over two ``MemoryBIO`` (the only stdlib API that can offer a TLS 1.3 session
ticket for resumption), one write per frame.

The harness passes absolute ``time.monotonic()`` instants (``t_start``,
``t_end``; CLOCK_MONOTONIC is system-wide on Linux): connections are made and
warmed up before ``t_start``, only work completed inside the window counts, and
the harness reads the server's CPU counters at the same two instants.

Modes (``--mode``):
  conn  connect, handshake (``--resume``: with the last ticket), one echo, close; loop
  echo  ``--connections`` kept-alive connections echoing ``--size`` frames closed-loop
  idle  open ``--connections`` (handshake + one echo), print "ready", hold until stdin closes

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import socket
import ssl
import struct
import sys
import time
from collections import Counter
from typing import Any

RECV = 65536


class Client:
    """One TLS connection: SSLObject + MemoryBIO over an asyncio socket."""

    def __init__(self, ctx: ssl.SSLContext, host: str, port: int, servername: str | None) -> None:
        self.ctx, self.host, self.port, self.servername = ctx, host, port, servername
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self.obj: ssl.SSLObject | None = None
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()

    async def connect(self, session: ssl.SSLSession | None = None) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        await self.loop.sock_connect(sock, (self.host, self.port))
        if self.ctx is None:
            return
        self.obj = self.ctx.wrap_bio(self.inc, self.out, server_hostname=self.servername, session=session)
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
        await self._flush()

    async def _flush(self) -> None:
        data = self.out.read()
        if data:
            assert self.sock is not None
            await self.loop.sock_sendall(self.sock, data)

    async def _fill(self) -> None:
        assert self.sock is not None
        data = await self.loop.sock_recv(self.sock, RECV)
        if not data:
            raise ConnectionError("server closed the connection")
        self.inc.write(data)

    async def echo(self, frame: bytes) -> None:
        """Send one frame (one write: one TLS record up to 16 KiB) and read its echo back whole."""
        n = len(frame)
        sock = self.sock
        assert sock is not None
        if self.obj is None:  # plaintext
            await self.loop.sock_sendall(sock, frame)
            got = bytearray()
            while len(got) < n:
                d = await self.loop.sock_recv(sock, RECV)
                if not d:
                    raise ConnectionError("server closed the connection")
                got += d
        else:
            obj = self.obj
            obj.write(frame)
            await self._flush()
            got = bytearray()
            while len(got) < n:
                try:
                    d = obj.read(n - len(got))
                except ssl.SSLWantReadError:
                    await self._fill()
                    continue
                if not d:
                    raise ConnectionError("server sent close_notify")
                got += d
        if got != frame:
            raise ValueError("echo differs from what was sent")

    def close(self) -> None:
        if self.obj is not None and self.sock is not None:
            try:
                self.obj.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass  # we never wait for the server's close_notify
            data = self.out.read()
            if data:
                try:
                    self.sock.send(data)
                except OSError:
                    pass  # best effort: the connection is going away either way
        if self.sock is not None:
            self.sock.close()


def frame_of(size: int) -> bytes:
    return struct.pack(">I", size) + os.urandom(size)


def client_context(cafile: str | None, tickets: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _err(errors: Counter[str], exc: BaseException) -> None:
    errors[type(exc).__name__] += 1


async def run_conn(a: argparse.Namespace, n_tasks: int) -> dict[str, Any]:
    ctx = client_context(a.cafile, True)
    frame = frame_of(a.size)
    lat: list[int] = []
    errors: Counter[str] = Counter()
    done = 0
    resumed = 0

    async def loop_one() -> None:
        nonlocal done, resumed
        session: ssl.SSLSession | None = None
        while True:
            now = time.monotonic()
            if now >= a.t_end:
                return
            t0 = time.perf_counter_ns()
            c = Client(ctx, a.host, a.port, a.servername)
            try:
                await c.connect(session if a.resume else None)
                await c.echo(frame)
                if a.resume and c.obj is not None:
                    s = c.obj.session
                    if s is not None and s.has_ticket:
                        session = s
                ok = True
            except (OSError, ssl.SSLError, ValueError) as exc:
                _err(errors, exc)
                ok = False
            finally:
                c.close()
            t1 = time.perf_counter_ns()
            if ok and now >= a.t_start:
                done += 1
                lat.append(t1 - t0)
                if c.obj is not None and c.obj.session_reused:
                    resumed += 1
            elif not ok:
                await asyncio.sleep(0.01)

    await asyncio.gather(*(loop_one() for _ in range(n_tasks)))
    return {"ops": done, "lat_ns": lat, "errors": dict(errors), "resumed": resumed}


async def run_echo(a: argparse.Namespace, n_tasks: int) -> dict[str, Any]:
    ctx = None if a.plaintext else client_context(a.cafile, False)
    frame = frame_of(a.size)
    lat: list[int] = []
    errors: Counter[str] = Counter()
    done = 0

    async def loop_one() -> None:
        nonlocal done
        c = Client(ctx, a.host, a.port, a.servername)  # type: ignore[arg-type]
        try:
            await c.connect()
            await c.echo(frame)
            while True:
                t0 = time.perf_counter_ns()
                now = time.monotonic()
                if now >= a.t_end:
                    return
                await c.echo(frame)
                if now >= a.t_start:
                    lat.append(time.perf_counter_ns() - t0)
                    done += 1
        except (OSError, ssl.SSLError, ValueError) as exc:
            _err(errors, exc)
        finally:
            c.close()

    await asyncio.gather(*(loop_one() for _ in range(n_tasks)))
    return {"ops": done, "lat_ns": lat, "errors": dict(errors)}


async def run_idle(a: argparse.Namespace, n: int) -> dict[str, Any]:
    ctx = client_context(a.cafile, False)
    frame = frame_of(5)
    clients: list[Client] = []
    errors: Counter[str] = Counter()
    sem = asyncio.Semaphore(64)  # do not storm the accept backlog

    async def one() -> None:
        async with sem:
            c = Client(ctx, a.host, a.port, a.servername)
            try:
                await c.connect()
                await c.echo(frame)
                clients.append(c)
            except (OSError, ssl.SSLError, ValueError) as exc:
                _err(errors, exc)
                c.close()

    await asyncio.gather(*(one() for _ in range(n)))
    print(json.dumps({"ready": len(clients), "errors": dict(errors)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for c in clients:
        c.close()
    return {"ops": len(clients), "lat_ns": [], "errors": dict(errors)}


def _worker(a: argparse.Namespace, n_tasks: int, q: Any) -> None:
    runner = {"conn": run_conn, "echo": run_echo}[a.mode]
    try:
        q.put(asyncio.run(runner(a, n_tasks)))
    except BaseException as exc:  # report, never hang the master
        q.put({"ops": 0, "lat_ns": [], "errors": {f"worker:{type(exc).__name__}": 1}})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--servername", default="localhost")
    p.add_argument("--cafile")
    p.add_argument("--plaintext", action="store_true")
    p.add_argument("--mode", choices=["conn", "echo", "idle"], required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--t-start", type=float, default=0.0)
    p.add_argument("--t-end", type=float, default=0.0)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if a.mode == "idle":
        out = asyncio.run(run_idle(a, a.connections))
        print(json.dumps({k: v for k, v in out.items() if k != "lat_ns"}), flush=True)
        return
    procs = max(1, min(a.procs, a.connections))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    shares = [a.connections // procs + (1 if i < a.connections % procs else 0) for i in range(procs)]
    workers = [ctx.Process(target=_worker, args=(a, n, q)) for n in shares]
    for w in workers:
        w.start()
    results = [q.get() for _ in workers]
    for w in workers:
        w.join()
    lat = sorted(x for r in results for x in r["lat_ns"])
    errors: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
    window = a.t_end - a.t_start
    out = {
        "ops": sum(r["ops"] for r in results),
        "window": window,
        "resumed": sum(r.get("resumed", 0) for r in results),
        "errors": dict(errors),
        "late": time.monotonic() > a.t_end + 5,
        "lat_us": percentiles(lat),
    }
    print(json.dumps(out), flush=True)


def percentiles(sorted_ns: list[int]) -> dict[str, float | None]:
    def pick(q: float) -> float | None:
        if not sorted_ns:
            return None
        i = min(len(sorted_ns) - 1, max(0, int(round(q * len(sorted_ns) + 0.5)) - 1))
        return sorted_ns[i] / 1000

    return {"n": len(sorted_ns), "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99),
            "p99.9": pick(0.999), "max": (sorted_ns[-1] / 1000) if sorted_ns else None}


if __name__ == "__main__":
    main()
