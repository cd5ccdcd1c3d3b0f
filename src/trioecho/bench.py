"""A load generator for any trioecho-compatible endpoint: closed loop or fixed rate.

Theory of operation
-------------------
``C`` worker tasks each drive one connection (or, with ``new_connection``, one
connection per echo: connect, handshake, echo, close).

* Closed loop (no ``rate``): each worker sends its next frame as soon as the
  previous echo arrived.  Latency is the round trip of each echo.
* Open loop (``rate`` R per second): a pacer task computes the *intended* start
  time of request ``i`` as ``t0 + i / R`` and hands it to whichever worker is
  free; latency is measured from the intended time, not from when a worker got
  round to it, so a stalled server shows up as queueing delay instead of being
  hidden (coordinated omission, Gil Tene's "How NOT to measure latency").
  Requests queue without bound in time but the queue holds only timestamps, at
  most ``R * duration`` of them.

The first ``warmup`` seconds are run but not counted.  Failures are counted by
their stable kind (:data:`trioecho.errors.ERROR_KINDS`); a keep-alive worker
reconnects after a failure.  Several processes (``processes``) split the
connections between them and their reports are merged (latencies included),
so the client need not be the bottleneck.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import queue
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .client import EchoConnection, SessionCache, open_echo_connection
from .errors import ConfigError, ConnectionFailed
from .framing import MAX_FRAME
from .policy import Policy

__all__ = ["BenchOptions", "BenchReport", "run_bench", "run_bench_processes"]

#: Pause before a failed worker reconnects, so a dead server is not hammered in a tight loop.
RECONNECT_PAUSE = 0.05
#: How often the progress callback runs.
PROGRESS_INTERVAL = 1.0
#: Latency percentiles reported.
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(frozen=True)
class BenchOptions:
    """What to run.

    Args:
        host, port: the echo endpoint.
        connections: concurrent workers (each with its own connection).
        duration: measured seconds (after ``warmup``).
        size: frame body bytes.
        rate: total echoes per second to offer (open loop); ``None`` for closed loop.
        new_connection: one new connection per echo (measures handshakes).
        resume: with ``new_connection``, resume the TLS session (tickets).
        warmup: seconds run first and not counted.
        timeout: deadline for connect + handshake and for each echo.
        plaintext: no TLS.
        servername: name to verify and send as SNI.
        policy: client TLS policy (CA file, versions...).
        processes: split the workers over this many processes.
    """

    host: str
    port: int
    connections: int = 1
    duration: float = 10.0
    size: int = 64
    rate: float | None = None
    new_connection: bool = False
    resume: bool = False
    warmup: float = 1.0
    timeout: float = 10.0
    plaintext: bool = False
    servername: str | None = None
    policy: Policy = field(default_factory=Policy)
    processes: int = 1

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ConfigError(f"--connections must be at least 1, not {self.connections}")
        if not self.duration > 0:
            raise ConfigError(f"--duration must be a positive number of seconds, not {self.duration}")
        if self.warmup < 0:
            raise ConfigError(f"--warmup must be zero or more seconds, not {self.warmup}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise ConfigError(f"--rate must be a positive number of echoes per second, not {self.rate}")
        if not 0 <= self.size <= MAX_FRAME:
            raise ConfigError(f"--size must be between 0 and {MAX_FRAME} bytes, not {self.size}")
        if self.resume and not self.new_connection:
            raise ConfigError("--resume needs --new-connection (a kept-alive connection handshakes only once)")
        if self.resume and self.plaintext:
            raise ConfigError("--resume resumes TLS sessions: drop --plaintext")
        if self.processes < 1:
            raise ConfigError(f"--processes must be at least 1, not {self.processes}")
        if self.processes > self.connections:
            raise ConfigError(f"--processes ({self.processes}) cannot exceed --connections ({self.connections})")


@dataclass
class BenchReport:
    """What happened in the measured window (latencies in seconds)."""

    options: dict[str, Any]
    elapsed: float = 0.0
    echoes: int = 0
    bytes: int = 0
    handshakes_full: int = 0
    handshakes_resumed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    #: open loop: requests whose intended start time fell in the window but never started.
    not_started: int = 0

    @property
    def echoes_per_s(self) -> float:
        return self.echoes / self.elapsed if self.elapsed else 0.0

    @property
    def mb_per_s(self) -> float:
        """Payload megabytes (10^6) per second, each way."""
        return self.bytes / self.elapsed / 1e6 if self.elapsed else 0.0

    @property
    def handshakes_per_s(self) -> float:
        return (self.handshakes_full + self.handshakes_resumed) / self.elapsed if self.elapsed else 0.0

    def percentiles(self) -> dict[str, float | None]:
        """p50/p90/p99/p99.9/max in seconds (nearest rank); ``None`` without samples."""
        v = sorted(self.latencies)
        out: dict[str, float | None] = {}
        for p in PERCENTILES:
            key = f"p{p:g}"
            out[key] = v[max(0, math.ceil(p / 100 * len(v)) - 1)] if v else None
        out["max"] = v[-1] if v else None
        return out

    def merge(self, other: BenchReport) -> None:
        """Add another process's report (same window) into this one."""
        self.elapsed = max(self.elapsed, other.elapsed)
        self.echoes += other.echoes
        self.bytes += other.bytes
        self.handshakes_full += other.handshakes_full
        self.handshakes_resumed += other.handshakes_resumed
        self.errors.update(other.errors)
        self.latencies.extend(other.latencies)
        self.not_started += other.not_started

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (schema ``trioecho.bench/1``; latencies in milliseconds)."""
        pct = self.percentiles()
        return {
            "schema": "trioecho.bench/1",
            "options": self.options,
            "elapsed_s": round(self.elapsed, 4),
            "echoes": self.echoes,
            "echoes_per_s": round(self.echoes_per_s, 2),
            "mb_per_s": round(self.mb_per_s, 4),
            "handshakes": {"full": self.handshakes_full, "resumed": self.handshakes_resumed,
                           "per_s": round(self.handshakes_per_s, 2)},
            "latency_ms": {k: (None if v is None else round(v * 1000, 4)) for k, v in pct.items()},
            "errors": dict(self.errors),
            "not_started": self.not_started,
        }


class _Window:
    """The measured window and the counters the progress line reads."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.live_echoes = 0  # all echoes, warm-up included (progress only)
        self.live_errors = 0


async def run_bench(opts: BenchOptions, *, progress: Callable[[dict[str, Any]], None] | None = None,
                    workers: int | None = None, start_at: float | None = None) -> BenchReport:
    """Run the load in this process and return the report.

    Args:
        opts: what to run.
        progress: called about once a second with ``{"elapsed", "echoes", "errors", "measuring"}``.
        workers: run this many workers instead of ``opts.connections`` (a share, for several processes).
        start_at: ``time.monotonic()`` instant the run starts (aligns several processes).

    Raises:
        ConfigError: the policy cannot build a client context.
    """
    ctx: ssl.SSLContext | None = None if opts.plaintext else opts.policy.client_context()
    n_workers = workers or opts.connections
    report = BenchReport(options=_opts_dict(opts))
    payload = os.urandom(opts.size)
    if start_at is not None:
        await trio.sleep(max(0.0, start_at - time.monotonic()))
    t0 = trio.current_time()
    win = _Window(t0 + opts.warmup, t0 + opts.warmup + opts.duration)
    intended: tuple[trio.MemorySendChannel[float], trio.MemoryReceiveChannel[float]] | None = None
    if opts.rate is not None:
        intended = trio.open_memory_channel[float](math.inf)

    def record(started: float, done: float, conn: EchoConnection | None) -> None:
        win.live_echoes += 1
        if win.start <= started < win.end:
            report.echoes += 1
            report.bytes += opts.size
            report.latencies.append(done - started)
            if conn is not None and conn.tls is not None:
                if conn.tls.resumed:
                    report.handshakes_resumed += 1
                else:
                    report.handshakes_full += 1

    def failed(kind: str, when: float) -> None:
        win.live_errors += 1
        if win.start <= when <= win.end:
            report.errors[kind] += 1

    async def connect(sessions: SessionCache | None) -> EchoConnection:
        return await open_echo_connection(
            opts.host, opts.port, policy=opts.policy, servername=opts.servername, timeout=opts.timeout,
            plaintext=opts.plaintext, sessions=sessions, ssl_context=ctx, max_frame=max(opts.size, 1),
        )

    async def next_start(rx: trio.MemoryReceiveChannel[float] | None) -> float | None:
        """Closed loop: now.  Open loop: the next intended time (waiting for it)."""
        if rx is None:
            now = trio.current_time()
            return None if now >= win.end else now
        try:
            t = await rx.receive()
        except trio.EndOfChannel:
            return None
        await trio.sleep_until(t)
        return t

    async def worker(rx: trio.MemoryReceiveChannel[float] | None) -> None:
        sessions = SessionCache() if opts.resume else None
        conn: EchoConnection | None = None
        try:
            while True:
                started = await next_start(rx)
                if started is None:
                    return
                try:
                    if opts.new_connection:
                        c = await connect(sessions)
                        try:
                            await c.echo(payload)
                        finally:
                            await c.aclose()
                        record(started, trio.current_time(), c)
                    else:
                        if conn is None:
                            conn = await connect(None)
                        await conn.echo(payload)
                        record(started, trio.current_time(), None)
                except ConnectionFailed as exc:
                    failed(exc.kind, trio.current_time())
                    if conn is not None:
                        await conn.aclose()
                        conn = None
                    await trio.sleep(RECONNECT_PAUSE)
        finally:
            if conn is not None:
                with trio.CancelScope(shield=True):
                    await conn.aclose()

    async def pacer(tx: trio.MemorySendChannel[float]) -> None:
        assert opts.rate is not None
        interval = 1.0 / opts.rate
        i = 0
        async with tx:
            while True:
                t = t0 + i * interval
                if t >= win.end:
                    return
                await trio.sleep_until(t)
                tx.send_nowait(t)
                i += 1

    async def reporter() -> None:
        while True:
            await trio.sleep(PROGRESS_INTERVAL)
            now = trio.current_time()
            assert progress is not None
            progress({"elapsed": now - t0, "echoes": win.live_echoes, "errors": win.live_errors,
                      "measuring": win.start <= now <= win.end, "total": win.end - t0})

    async with trio.open_nursery() as nursery:
        if progress is not None:
            nursery.start_soon(reporter)
        async with trio.open_nursery() as load:
            if intended is not None:
                tx, rx = intended
                load.start_soon(pacer, tx)
                for _ in range(n_workers):
                    load.start_soon(worker, rx.clone())
                await rx.aclose()
            else:
                for _ in range(n_workers):
                    load.start_soon(worker, None)
            # Hard stop: whatever is still in flight a timeout after the window ends is abandoned.
            load.cancel_scope.deadline = win.end + opts.timeout
        if intended is not None:
            report.not_started = intended[1].statistics().current_buffer_used
        nursery.cancel_scope.cancel()
    report.elapsed = opts.duration
    return report


def _opts_dict(opts: BenchOptions) -> dict[str, Any]:
    return {
        "target": f"{opts.host}:{opts.port}", "connections": opts.connections, "duration_s": opts.duration,
        "size": opts.size, "rate": opts.rate, "mode": "open-loop" if opts.rate else "closed-loop",
        "new_connection": opts.new_connection, "resume": opts.resume, "warmup_s": opts.warmup,
        "plaintext": opts.plaintext, "processes": opts.processes,
    }


def _child(opts: BenchOptions, share: int, start_at: float, q: Any) -> None:
    import dataclasses

    child_opts = dataclasses.replace(opts, rate=(opts.rate / opts.processes) if opts.rate else None)
    try:
        rep = trio.run(lambda: run_bench(child_opts, workers=share, start_at=start_at))
        q.put(("ok", rep))
    except BaseException as exc:  # report to the parent, never leave it waiting
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def run_bench_processes(opts: BenchOptions, *,
                        progress: Callable[[dict[str, Any]], None] | None = None) -> BenchReport:
    """Run ``run_bench`` split over ``opts.processes`` processes and merge the reports.

    With one process, runs in this process (and calls ``progress``).

    Raises:
        ConfigError: bad options, or a worker process failed.
    """
    if opts.processes == 1:
        return trio.run(lambda: run_bench(opts, progress=progress))
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    n, p = opts.connections, opts.processes
    shares = [n // p + (1 if i < n % p else 0) for i in range(p)]
    start_at = time.monotonic() + 0.5  # every child starts its clock at the same instant
    procs = [ctx.Process(target=_child, args=(opts, s, start_at, q), daemon=True) for s in shares]
    for pr in procs:
        pr.start()
    deadline = opts.warmup + opts.duration + opts.timeout + 30
    total = BenchReport(options=_opts_dict(opts))
    problems: list[str] = []
    t_end = time.monotonic() + deadline
    for _ in procs:
        remaining = t_end - time.monotonic()
        try:
            status, value = q.get(timeout=max(0.1, remaining))
        except queue.Empty:
            problems.append("a load process died without reporting (see its error above)")
            break
        if status == "ok":
            total.merge(value)
        else:
            problems.append(value)
    for pr in procs:
        pr.join(timeout=5)
        if pr.is_alive():
            pr.kill()
    if problems:
        raise ConfigError(f"load process failed: {problems[0]}")
    return total
