#!/usr/bin/env python3
"""Handshakes per second, full vs resumed: `trioecho ping --handshake-only` beside `openssl s_time`.

One `openssl s_server` on loopback (ECDSA P-256 certificate from trustme) per TLS version; against it:

- `openssl s_time -new` (full handshakes) and `-reuse` (session reuse), serial, in C;
- `openssl s_client -reconnect` (1 + 5 connections, "New"/"Reused" per connection);
- trioecho's Pinger in-process, `--handshake-only --no-resume` (full) and resumed (the default),
  `interval=0`, serial like s_time.

It prints connections per wall-clock second and, for every tool, how many connections actually
resumed: on TLS 1.3 `s_time -reuse` and `s_client -reconnect` never resume (they do not read the
NewSessionTicket that arrives after the handshake: openssl/openssl#10714, #8517), so their
"reuse" figure is a full-handshake figure.  ping waits for the ticket (stopping as soon as it is
there) and resumes.

Usage:
    python benchmarks/ping_vs_openssl.py               # 3 s per s_time run, 300 ping probes
    python benchmarks/ping_vs_openssl.py --smoke       # a quick run, for CI
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import trio  # noqa: E402
import trustme  # noqa: E402

from trioecho import Pinger, PingOptions, Policy  # noqa: E402


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(d / "server.key"))
    (d / "server.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    return d / "ca.pem", d / "server.crt", d / "server.key"


class SServer:
    """`openssl s_server` on 127.0.0.1, port 0, pinned to one TLS version; stdin kept open."""

    def __init__(self, openssl: str, crt: Path, key: Path, version: str) -> None:
        self.proc = subprocess.Popen(
            [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(crt), "-key", str(key),
             f"-tls{version.replace('.', '_')}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 10
        self.port = 0
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            raise SystemExit("openssl s_server did not start")
        # s_server reports every connection on stdout: drain it, or it blocks once the pipe is full.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def s_time(openssl: str, port: int, ca: Path, mode: str, seconds: int) -> dict[str, float]:
    t0 = time.perf_counter()
    res = subprocess.run([openssl, "s_time", "-connect", f"127.0.0.1:{port}", mode, "-time", str(seconds),
                          "-CAfile", str(ca)], capture_output=True, text=True, timeout=seconds + 60)
    wall = time.perf_counter() - t0
    m = re.search(r"(\d+) connections in [\d.]+s", res.stdout)
    if not m:
        raise SystemExit(f"cannot read s_time's output: {res.stdout[-500:]}{res.stderr[-500:]}")
    n = int(m.group(1))
    # one progress character per connection: 'r' = reused, '*' = new
    progress = "".join(re.findall(r"^[*r]+$", res.stdout, re.M))
    return {"n": n, "seconds": wall, "rate": n / wall, "resumed": progress.count("r"), "median_ms": float("nan")}


def s_client_reconnect(openssl: str, port: int, ca: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    res = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                          "-CAfile", str(ca), "-reconnect"], input="", capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t0
    new = len(re.findall(r"^New,", res.stdout, re.M))
    reused = len(re.findall(r"^Reused,", res.stdout, re.M))
    n = new + reused
    return {"n": n, "seconds": wall, "rate": n / wall, "resumed": reused, "median_ms": float("nan")}


def ping(port: int, ca: Path, count: int, resume: bool) -> dict[str, float]:
    opts = PingOptions(host="localhost", port=port, count=count, interval=0, handshake_only=True,
                       resume=resume, timeout=10)
    pinger = Pinger(opts, Policy(cafile=ca))
    t0 = time.perf_counter()
    report = trio.run(pinger.run)
    wall = time.perf_counter() - t0
    ok = [p for p in report.probes if p.ok]
    if len(ok) != count:
        bad = next(p for p in report.probes if not p.ok)
        raise SystemExit(f"ping failed: {bad.error_kind}: {bad.error}")
    tls = [p.tls for p in ok[1:] if p.tls is not None] if resume else [p.tls for p in ok if p.tls is not None]
    return {"n": count, "seconds": wall, "rate": count / wall, "resumed": sum(1 for p in ok if p.resumed),
            "median_ms": statistics.median(tls) * 1000 if tls else float("nan")}


def latency_table(delay: float, count: int) -> list[str]:
    """Real time through a LatencyProxy: handshake cost in RTTs per version, full and resumed."""
    import functools

    from trioecho import EchoServer
    from trioecho._proxy import LatencyProxy
    from trioecho.testing import make_pki

    pki = make_pki()
    out = [f"handshake cost through a {delay * 1000:.0f} ms-per-direction proxy (real time, {count} probes; "
           "RTT = TCP connect time):", f"{'version':<8} {'mode':<8} {'tcp ms':>8} {'tls ms':>8} {'RTTs':>6}"]

    async def one(version: str) -> None:
        server = EchoServer(policy=pki.server_policy(min_version=version, max_version=version))
        async with trio.open_nursery() as nursery:
            addrs = await nursery.start(functools.partial(server.serve, host="127.0.0.1", port=0))
            proxy = LatencyProxy("127.0.0.1", addrs[0][1], delay=delay)
            host, port = await nursery.start(proxy.serve)
            opts = PingOptions(host=host, port=port, servername="localhost", count=count, interval=0, timeout=10)
            report = await Pinger(opts, pki.client_policy(), open_stream=proxy.open_stream).run()
            nursery.cancel_scope.cancel()
        s = report.summary()
        for mode in ("full", "resumed"):
            tls, rt = s[f"tls_{mode}"], s[f"handshake_rtts_{mode}"]
            if tls["n"]:
                out.append(f"TLSv{version:<4} {mode:<8} {s['tcp']['median'] * 1000:>8.1f} "
                           f"{tls['median'] * 1000:>8.1f} {rt['median']:>6.2f}")

    for v in ("1.2", "1.3"):
        trio.run(one, v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=3, help="duration of each s_time run")
    ap.add_argument("--count", type=int, default=300, help="ping probes per mode")
    ap.add_argument("--versions", default="1.2,1.3")
    ap.add_argument("--smoke", action="store_true", help="quick run (1 s, 30 probes) for CI")
    ap.add_argument("--latency-ms", type=float, default=50, help="one-way delay of the RTT demo (0: skip it)")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.count = 1, 30
    openssl = shutil.which("openssl")
    if openssl is None:
        raise SystemExit("openssl is not installed (apt-get install openssl)")
    version = subprocess.run([openssl, "version"], capture_output=True, text=True).stdout.strip()
    rows: list[tuple[str, str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ca, crt, key = make_certs(Path(tmp))
        for v in args.versions.split(","):
            server = SServer(openssl, crt, key, v)
            try:
                rows.append((f"TLSv{v}", "openssl s_time -new", "full", s_time(openssl, server.port, ca, "-new", args.seconds)))
                rows.append((f"TLSv{v}", "openssl s_time -reuse", "reuse", s_time(openssl, server.port, ca, "-reuse", args.seconds)))
                rows.append((f"TLSv{v}", "openssl s_client -reconnect", "reuse", s_client_reconnect(openssl, server.port, ca)))
                rows.append((f"TLSv{v}", "trioecho ping --no-resume", "full", ping(server.port, ca, args.count, False)))
                rows.append((f"TLSv{v}", "trioecho ping (resume)", "reuse", ping(server.port, ca, args.count, True)))
            finally:
                server.close()
    print(f"server: openssl s_server, {version}, ECDSA P-256, loopback; Python {sys.version.split()[0]}")
    print("handshake-only connections, serial (one at a time); rate = connections / wall-clock seconds")
    print("(s_client -reconnect: 6 connections including process start-up, for its resumption column only)")
    print()
    head = f"{'version':<8} {'client':<29} {'mode':<6} {'conns':>6} {'seconds':>8} {'conn/s':>8} {'resumed':>9} {'median hs':>10}"
    print(head)
    print("-" * len(head))
    for ver, tool, mode, r in rows:
        share = f"{r['resumed']:.0f}/{r['n']:.0f}"
        med = "-" if r["median_ms"] != r["median_ms"] else f"{r['median_ms']:.3f}ms"
        print(f"{ver:<8} {tool:<29} {mode:<6} {r['n']:>6.0f} {r['seconds']:>8.2f} {r['rate']:>8.0f} {share:>9} {med:>10}")
    print()
    print("ping's 'resume' row: every connection after the first resumed (TLS 1.3 tickets are read before the close).")
    if args.latency_ms > 0:
        print()
        print("\n".join(latency_table(args.latency_ms / 1000, 3 if args.smoke else 5)))
        print("expected (the chapter's formula): TLS 1.2 full ~2 RTT; TLS 1.3 full and both resumed forms ~1 RTT")


if __name__ == "__main__":
    main()
