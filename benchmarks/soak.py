#!/usr/bin/env python3
"""Soak benchmark: hundreds of verified clients against ``trioecho serve`` while a chaos process churns.

What it does
------------
* Starts the real server (``python -m trioecho serve``) with ``--metrics`` on loopback.
* Runs ``--clients`` well-behaved clients in this process for ``--duration`` seconds.
  Each opens a TLS connection (resuming sessions where it can), echoes a random
  number of frames with random sizes up to ``--max-frame`` (a few hit the limit
  exactly), checks every echo byte for byte, and closes with close_notify.
* Runs a second process (this script with ``--role chaos``) with
  ``--chaos-clients`` clients that end their connections badly at random: TCP
  reset mid-frame, FIN without close_notify mid-frame, send-and-close, a stalled
  frame, an aborted handshake; they reconnect at once.  The driver also
  SIGKILLs the whole chaos process at random moments and restarts it.
* Samples the server's RSS every second, scrapes its Prometheus counters at
  the end, stops it with SIGTERM and checks it exits 0 without a traceback.

It fails (exit 1) if any echo on a well-behaved connection was corrupted or
lost, if a well-behaved client saw any error, or if the server logged an
internal error or did not stop cleanly.

Usage::

    python benchmarks/soak.py                       # 300 clients, 60 s
    python benchmarks/soak.py --short               # CI: 100 clients, 10 s
    python benchmarks/soak.py --clients 500 --duration 300 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import trio  # noqa: E402

from trioecho import ConnectionFailed, SessionCache, encode_frame, open_echo_connection  # noqa: E402
from trioecho._classify import classify  # noqa: E402
from trioecho.policy import Policy  # noqa: E402

#: Random payloads are slices of this pool (generating MiBs of randomness per frame would
#: measure os.urandom, not the server).  Its length is max_frame plus slack for the offset.
_POOL_SLACK = 65536
#: Ways a chaos client ends a connection, and how often.
CHAOS_ENDS = {"rst_mid_frame": 3, "fin_mid_frame": 2, "send_and_close": 2, "stall_mid_frame": 1,
              "abort_handshake": 1, "clean": 1}


def frame_size(rng: random.Random, max_frame: int) -> int:
    """Mostly small, some large, 1% exactly at the limit (the edge that breaks first)."""
    r = rng.random()
    if r < 0.01:
        return max_frame
    if r < 0.02:
        return 0
    if r < 0.60:
        return rng.randint(1, min(1024, max_frame))
    if r < 0.90:
        return rng.randint(1, min(65536, max_frame))
    return rng.randint(1, max_frame)


# -- well-behaved clients (this process) ---------------------------------------------------

class Tally:
    def __init__(self) -> None:
        self.connections = 0
        self.clean_closes = 0
        self.resumed = 0
        self.frames = 0
        self.bytes = 0
        self.corrupted = 0
        self.lost = 0
        self.errors: Counter[str] = Counter()


async def clean_client(i: int, host: str, port: int, policy: Policy, ctx: ssl.SSLContext, pool: bytes,
                       max_frame: int, deadline: float, tally: Tally, seed: int) -> None:
    rng = random.Random(seed * 100_003 + i)
    sessions = SessionCache()
    while trio.current_time() < deadline:
        try:
            conn = await open_echo_connection(host, port, policy=policy, ssl_context=ctx, sessions=sessions,
                                              servername="localhost", timeout=60, max_frame=max_frame)
        except ConnectionFailed as exc:
            tally.errors[f"connect:{exc.kind}"] += 1
            await trio.sleep(0.1)
            continue
        tally.connections += 1
        tally.resumed += bool(conn.tls and conn.tls.resumed)
        try:
            for _ in range(rng.randint(1, 30)):
                size = frame_size(rng, max_frame)
                off = rng.randint(0, len(pool) - size)
                await conn.echo(pool[off:off + size])  # checks the echo byte for byte
                tally.frames += 1
                tally.bytes += size
                if trio.current_time() >= deadline:
                    break
        except ConnectionFailed as exc:
            if exc.kind == "echo_mismatch":
                tally.corrupted += 1
            elif exc.kind == "closed_early":
                tally.lost += 1  # the server closed cleanly without echoing: a lost echo
            tally.errors[f"echo:{exc.kind}"] += 1
            await trio.aclose_forcefully(conn.stream)
            continue
        await conn.aclose()
        tally.clean_closes += 1


# -- chaos clients (the second process) ------------------------------------------------------

def _linger0(sock: trio.SocketStream) -> None:
    sock.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def chaos_client(i: int, host: str, port: int, ctx: ssl.SSLContext, pool: bytes, max_frame: int,
                       seed: int) -> None:
    rng = random.Random(seed * 7919 + i)
    ends = list(CHAOS_ENDS)
    weights = list(CHAOS_ENDS.values())
    while True:
        end = rng.choices(ends, weights)[0]
        frames = corrupt = 0
        try:
            sock = await trio.open_tcp_stream(host, port)
            if end == "abort_handshake":
                await sock.send_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + pool[:40])
                _linger0(sock)
                sock.socket.close()
                print(json.dumps({"end": end, "frames": 0, "corrupt": 0}), flush=True)
                continue
            tls = trio.SSLStream(sock, ctx, server_hostname="localhost")
            with trio.fail_after(30):
                await tls.do_handshake()
                for _ in range(rng.randint(0, 5)):
                    size = frame_size(rng, min(max_frame, 65536))
                    payload = pool[:size]
                    got = bytearray()
                    frame = encode_frame(payload)
                    async with trio.open_nursery() as n:
                        n.start_soon(tls.send_all, frame)
                        while len(got) < len(frame):
                            data = await tls.receive_some()
                            if not data:
                                break
                            got += data
                    frames += 1
                    corrupt += bytes(got) != frame
                half = encode_frame(pool[:20000])[:10000]
                if end == "clean":
                    await tls.aclose()
                elif end == "rst_mid_frame":
                    await tls.send_all(half)
                    _linger0(sock)
                    sock.socket.close()
                elif end == "fin_mid_frame":
                    await tls.send_all(half)
                    sock.socket.close()
                elif end == "send_and_close":
                    await tls.send_all(encode_frame(pool[:100]))
                    sock.socket.close()
                elif end == "stall_mid_frame":
                    await tls.send_all(half)
                    with trio.move_on_after(rng.uniform(0.1, 1.0)):
                        await tls.receive_some()
                    sock.socket.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError, OSError) as exc:
            end = f"error:{classify(exc, side='client').kind}"
        print(json.dumps({"end": end, "frames": frames, "corrupt": corrupt}), flush=True)


def run_chaos(args: argparse.Namespace) -> int:
    policy = Policy().replace(cafile=Path(args.cafile))
    pool = random.Random(args.seed).randbytes(min(args.max_frame, 65536) + _POOL_SLACK)

    async def main() -> None:
        ctx = policy.client_context()
        async with trio.open_nursery() as n:
            for i in range(args.chaos_clients):
                n.start_soon(chaos_client, i, args.host, args.port, ctx, pool, args.max_frame, args.seed)

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    return 0


# -- the driver ---------------------------------------------------------------------------

def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            fields[k] = int(v.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _cpu_s(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


async def _scrape(port: int) -> dict[str, float]:
    s = await trio.open_tcp_stream("127.0.0.1", port)
    await s.send_all(b"GET /metrics HTTP/1.0\r\n\r\n")
    raw = b""
    while chunk := await s.receive_some():
        raw += chunk
    await s.aclose()
    out = {}
    for line in raw.decode().split("\r\n\r\n", 1)[1].splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    from trioecho.testing import make_pki

    tmp = Path(tempfile.mkdtemp(prefix="trioecho-soak-"))
    pki = make_pki(tmp / "pki")
    pki.server_pem.chmod(0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server_log = (tmp / "server.log").open("wb")
    server = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trioecho", "--log-level", "warning", "serve", "--host", "127.0.0.1", "--port", "0",
         "--cert", str(pki.server_pem), "--max-frame", str(args.max_frame), "--metrics", "127.0.0.1:0",
         "--max-connections", str(args.clients + args.chaos_clients + 64)],
        stdout=subprocess.PIPE, stderr=server_log, env=env)
    assert server.stdout is not None
    buf = b""
    with trio.fail_after(30):
        while b"/metrics\n" not in buf:
            chunk = await server.stdout.receive_some()
            if not chunk:
                raise SystemExit(f"server did not start; log: {(tmp / 'server.log').read_text()}")
            buf += chunk
    port = int(re.search(rb"listening on 127\.0\.0\.1:(\d+)", buf).group(1))  # type: ignore[union-attr]
    mport = int(re.search(rb"metrics on http://127\.0\.0\.1:(\d+)/", buf).group(1))  # type: ignore[union-attr]

    policy = pki.client_policy()
    ctx = policy.client_context()
    pool = random.Random(args.seed).randbytes(args.max_frame + _POOL_SLACK)
    tally = Tally()
    chaos: Counter[str] = Counter()
    chaos_frames = chaos_corrupt = chaos_kills = 0
    rss_samples: list[int] = []
    t_start = trio.current_time()
    deadline = t_start + args.duration

    async def sample_rss() -> None:
        while True:
            rss_samples.append(_rss_kib(server.pid)[0])
            await trio.sleep(1)

    async def read_chaos(proc: trio.Process) -> None:
        nonlocal chaos_frames, chaos_corrupt
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.receive_some():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                doc = json.loads(line)
                chaos[doc["end"]] += 1
                chaos_frames += doc["frames"]
                chaos_corrupt += doc["corrupt"]

    async def chaos_monkey() -> None:
        nonlocal chaos_kills
        rng = random.Random(args.seed + 1)
        cmd = [sys.executable, __file__, "--role", "chaos", "--host", "127.0.0.1", "--port", str(port),
               "--cafile", str(pki.ca_pem), "--chaos-clients", str(args.chaos_clients),
               "--max-frame", str(args.max_frame), "--seed"]
        gen = 0
        while True:
            gen += 1
            proc = await trio.lowlevel.open_process([*cmd, str(args.seed + gen)], stdout=subprocess.PIPE, env=env)
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(read_chaos, proc)
                    await trio.sleep(rng.uniform(1.0, 4.0))
                    proc.kill()  # every chaos connection dies at once, mid-whatever
                    chaos_kills += 1
            finally:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
                    if proc.stdout is not None:
                        await proc.stdout.aclose()

    cpu0 = _cpu_s(server.pid)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_rss)
        if args.chaos_clients:
            nursery.start_soon(chaos_monkey)
        async with trio.open_nursery() as clients:
            for i in range(args.clients):
                clients.start_soon(clean_client, i, "127.0.0.1", port, policy, ctx, pool, args.max_frame,
                                   deadline, tally, args.seed)
        nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - t_start
    cpu = _cpu_s(server.pid) - cpu0
    metrics = await _scrape(mport)
    rss, hwm = _rss_kib(server.pid)
    server.send_signal(signal.SIGTERM)
    with trio.fail_after(60):
        code = await server.wait()
    server_log.close()
    log_text = (tmp / "server.log").read_text(errors="replace")

    def labelled(prefix: str) -> dict[str, int]:
        out = {}
        for k, v in metrics.items():
            if k.startswith(prefix + "{"):
                out[k.split('"')[1]] = int(v)
        return out

    handshakes_failed = {k.split('kind="')[1].split('"')[0]: int(v) for k, v in metrics.items()
                         if k.startswith("trioecho_handshakes_total{") and 'result="failed"' in k}
    return {
        "duration_s": round(elapsed, 1),
        "clients": args.clients,
        "chaos_clients": args.chaos_clients,
        "max_frame": args.max_frame,
        "clean": {
            "connections": tally.connections,
            "closed_cleanly": tally.clean_closes,
            "resumed": tally.resumed,
            "frames_verified": tally.frames,
            "bytes_verified": tally.bytes,
            "corrupted": tally.corrupted,
            "lost": tally.lost,
            "errors": dict(tally.errors),
        },
        "chaos": {"process_kills": chaos_kills, "connection_ends": dict(chaos), "frames_verified": chaos_frames,
                  "corrupted": chaos_corrupt},
        "server": {
            "connections": int(metrics.get("trioecho_connections_total", 0)),
            "frames_echoed": int(metrics.get("trioecho_frames_echoed_total", 0)),
            "bytes_echoed": int(metrics.get("trioecho_bytes_echoed_total", 0)),
            "outcomes": labelled("trioecho_connection_outcomes_total"),
            "closes": labelled("trioecho_connection_closes_total"),
            "handshakes_failed": handshakes_failed,
            "resumption_ratio": metrics.get("trioecho_resumption_ratio"),
            "peak_connections": int(metrics.get("trioecho_connections_peak", 0)),
            "rss_start_mib": round(rss_samples[0] / 1024, 1) if rss_samples else None,
            "rss_end_mib": round(rss / 1024, 1),
            # RSS at each tenth of the run: a plateau means bounded, a slope means a leak
            "rss_timeline_mib": [round(rss_samples[min(len(rss_samples) - 1, k * len(rss_samples) // 10)] / 1024)
                                 for k in range(11)] if rss_samples else [],
            "peak_rss_mib": round(hwm / 1024, 1),
            "cpu_s": round(cpu, 1),
            "exit_code": code,
            "traceback_in_log": "Traceback" in log_text,
            "internal_errors": labelled("trioecho_connection_outcomes_total").get("internal_error", 0),
        },
    }


def verdict(r: dict[str, Any]) -> list[str]:
    bad = []
    c, s = r["clean"], r["server"]
    if c["corrupted"] or r["chaos"]["corrupted"]:
        bad.append(f"corrupted echoes: {c['corrupted']} (clean clients), {r['chaos']['corrupted']} (chaos)")
    if c["lost"]:
        bad.append(f"lost echoes on clean connections: {c['lost']}")
    if c["errors"]:
        bad.append(f"well-behaved clients saw errors: {c['errors']}")
    if c["frames_verified"] == 0:
        bad.append("no frame was echoed at all")
    if s["exit_code"] != 0:
        bad.append(f"server exit code {s['exit_code']} after SIGTERM")
    if s["traceback_in_log"] or s["internal_errors"]:
        bad.append("the server logged a traceback / internal error")
    return bad


def print_report(r: dict[str, Any]) -> None:
    c, ch, s = r["clean"], r["chaos"], r["server"]
    print(f"soak: {r['clients']} clients + {r['chaos_clients']} chaos clients for {r['duration_s']} s, "
          f"frames up to {r['max_frame']} B")
    print(f"  well-behaved : {c['connections']} connections ({c['closed_cleanly']} closed cleanly, "
          f"{c['resumed']} resumed), {c['frames_verified']} frames / {c['bytes_verified'] / 2**20:.1f} MiB "
          f"verified byte for byte; corrupted {c['corrupted']}, lost {c['lost']}, errors {c['errors'] or 0}")
    print(f"  chaos        : {sum(ch['connection_ends'].values())} connections ended "
          f"{dict(sorted(ch['connection_ends'].items()))}; process killed {ch['process_kills']} times; "
          f"{ch['frames_verified']} frames verified, corrupted {ch['corrupted']}")
    print(f"  server       : {s['connections']} connections, {s['frames_echoed']} frames, "
          f"{s['bytes_echoed'] / 2**20:.1f} MiB echoed; peak {s['peak_connections']} open at once")
    print(f"  outcomes     : {dict(sorted(s['outcomes'].items()))}")
    print(f"  closes       : {dict(sorted(s['closes'].items()))}")
    print(f"  handshakes failed: {dict(sorted(s['handshakes_failed'].items()))}; "
          f"resumption ratio {s['resumption_ratio']:.2f}" if s["resumption_ratio"] is not None else "")
    print(f"  memory       : RSS {s['rss_start_mib']} MiB at start -> {s['rss_end_mib']} MiB at end, "
          f"peak {s['peak_rss_mib']} MiB; server CPU {s['cpu_s']} s; exit code {s['exit_code']}")
    print(f"  RSS timeline : {s['rss_timeline_mib']} MiB (each tenth of the run)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=300, help="well-behaved concurrent clients")
    ap.add_argument("--chaos-clients", type=int, default=50, help="clients in the chaos process")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--max-frame", type=int, default=1 << 20, help="server --max-frame; sizes go up to it")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="CI smoke form: 100 clients, 20 chaos, 10 s")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--role", choices=["driver", "chaos"], default="driver", help=argparse.SUPPRESS)
    ap.add_argument("--host", default="127.0.0.1", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--cafile", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "chaos":
        return run_chaos(args)
    if args.short:
        args.clients, args.chaos_clients, args.duration = 100, 20, 10.0
    report = trio.run(drive, args)
    bad = verdict(report)
    report["failures"] = bad
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
        for b in bad:
            print(f"FAIL: {b}")
        if not bad:
            print("OK: zero corrupted or lost echoes; the server stopped cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
