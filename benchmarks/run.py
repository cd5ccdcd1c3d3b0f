#!/usr/bin/env python3
"""trioecho side by side with what users would pick instead: one command, one run, ratios.

Usage::

    python benchmarks/run.py                   # full run (about 20-25 min), table + JSON
    python benchmarks/run.py --smoke           # everything tiny, well under a minute (CI)
    python benchmarks/run.py --targets trioecho,asyncio --scenarios tput_64,lat_64 --repeat 5

Targets (the same ECDSA P-256 certificate, TLS 1.3, one ticket per handshake):
  trioecho     trioecho serve (this checkout)
  asyncio      asyncio.start_server(ssl=...) streams echo (benchmarks/servers/asyncio_echo.py)
  naive-trio   trio.serve_ssl_over_tcp + receive_some/send_all (what trioecho adds on top)
  socat        socat OPENSSL-LISTEN,fork ... PIPE (C; forks one process per connection)
  anyio        anyio TLSListener on asyncio (optional)
  trioecho-w2  trioecho serve --workers 2 (both cores; reported apart, never in ratios)

Method (see docs/performance.md): each server runs pinned to CPU 0 (``taskset``),
the load generator (benchmarks/loadgen.py: stdlib asyncio + ssl, the same for
every target) pinned to CPU 1.  A fresh server process per measurement; targets
interleaved (the order rotates every repetition); warm-up discarded; median and
min-max over the repetitions.  Server CPU comes from /proc utime+stime (children
included, for socat), so CPU-us per echo does not depend on how fast the client
is.  Idle memory is the server's RSS growth per held connection.

Prints a markdown table with ratio columns (trioecho/asyncio, trioecho/naive-trio,
trioecho/socat) and writes JSON with every sample, the versions and the machine.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

ALL_TARGETS = ["trioecho", "asyncio", "naive-trio", "socat", "anyio", "trioecho-w2"]
DEFAULT_TARGETS = ["trioecho", "asyncio", "naive-trio", "socat", "anyio", "trioecho-w2"]
#: The columns of the ratio table: trioecho divided by each of these.
RATIO_AGAINST = ["asyncio", "naive-trio", "socat"]


@dataclass
class Scenario:
    name: str
    mode: str  # conn | echo | idle
    connections: int
    size: int = 64
    resume: bool = False
    what: str = ""


def scenarios(smoke: bool) -> list[Scenario]:
    c_conn, c_tput = (2, 4) if smoke else (10, 50)
    idle = (20, 40) if smoke else (1000, 5000)
    all_ = [
        Scenario("conn_full", "conn", c_conn, 5, what=f"full TLS 1.3 connections (handshake, 5 B echo, close), C={c_conn}"),
        Scenario("conn_resumed", "conn", c_conn, 5, resume=True, what=f"the same, resumed with a ticket, C={c_conn}"),
        Scenario("lat_64", "echo", 1, 64, what="one connection, 64 B round trips"),
        Scenario("lat_16k", "echo", 1, 16384, what="one connection, 16 KiB round trips"),
        Scenario("tput_64", "echo", c_tput, 64, what=f"C={c_tput} closed loop, 64 B frames"),
        Scenario("tput_1k", "echo", c_tput, 1024, what=f"C={c_tput} closed loop, 1 KiB frames"),
        Scenario("tput_16k", "echo", c_tput, 16384, what=f"C={c_tput} closed loop, 16 KiB frames"),
        Scenario("tput_64k", "echo", c_tput, 65536, what=f"C={c_tput} closed loop, 64 KiB frames"),
        Scenario(f"idle_{idle[0]}", "idle", idle[0], what=f"{idle[0]} idle TLS connections held"),
        Scenario(f"idle_{idle[1]}", "idle", idle[1], what=f"{idle[1]} idle TLS connections held"),
    ]
    if smoke:  # one of each kind: keeps every code path working in CI, in about half a minute
        keep = {"conn_full", "conn_resumed", "lat_64", "tput_64", "tput_64k", f"idle_{idle[0]}"}
        all_ = [s for s in all_ if s.name in keep]
    return all_


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: --compare-src DIR: run "trioecho-base" from another checkout's src (A/B of a change).
COMPARE_SRC: Path | None = None


def server_argv(target: str, port: int, pem: Path, tickets: int) -> list[str]:
    base = ["--host", "127.0.0.1", "--port", str(port), "--cert", str(pem)]
    if target.startswith("trioecho"):
        argv = [PY, "-m", "trioecho", "--log-level", "warning", "serve", *base, "--tickets", str(tickets),
                "--max-connections", "20000", "--idle-timeout", "3600"]
        if target == "trioecho-w2":
            argv += ["--workers", "2"]
        if target == "trioecho-base":
            argv = ["env", f"PYTHONPATH={COMPARE_SRC}", *argv]
        return argv
    if target == "socat":
        return ["socat", "-b", "65536",
                f"OPENSSL-LISTEN:{port},bind=127.0.0.1,cert={pem},verify=0,fork,reuseaddr,backlog=1024,nodelay", "PIPE"]
    script = {"asyncio": "asyncio_echo.py", "naive-trio": "naive_trio_echo.py", "anyio": "anyio_echo.py"}[target]
    return [PY, str(HERE / "servers" / script), *base, "--tickets", str(tickets)]


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("OPENSSL_CONF", None)
    e.pop("TRIOECHO_OPENSSL_CONF_FOR", None)
    return e


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"server not listening on {port} after {timeout}s")


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime+cutime+cstime ticks, rss pages) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    ppid = int(rest[1])
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return ppid, ticks, int(rest[21])


def tree(root: int) -> dict[int, tuple[int, int]]:
    """{pid: (cpu ticks, rss pages)} for root and its live descendants."""
    procs: dict[int, tuple[int, int, int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st is not None:
                procs[int(d)] = st
    keep = {root}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _, _) in procs.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                changed = True
    return {p: (procs[p][1], procs[p][2]) for p in keep if p in procs}


def cpu_seconds(root: int) -> float:
    return sum(t for t, _ in tree(root).values()) / CLK_TCK


def rss_bytes(root: int) -> int:
    return sum(r for _, r in tree(root).values()) * PAGE


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# -- one measurement -----------------------------------------------------------------------------

@dataclass
class Ctx:
    pem: Path
    ca: Path
    tickets: int
    duration: float
    warmup: float
    procs: int
    pin_server: str | None
    pin_client: str | None
    logdir: Path


def run_one(ctx: Ctx, target: str, sc: Scenario) -> dict[str, Any]:
    port = free_port()
    cpus = ctx.pin_server
    if target == "trioecho-w2":
        cpus = None  # two workers need both cores; reported apart
    log = open(ctx.logdir / f"{target}-{sc.name}.log", "ab")
    srv = subprocess.Popen(pinned(server_argv(target, port, ctx.pem, ctx.tickets), cpus), env=env(),
                           stdout=log, stderr=log, start_new_session=True)
    try:
        wait_listening(port, srv)
        time.sleep(0.05)  # let the readiness probe's connection end
        if sc.mode == "idle":
            return _idle(ctx, srv, port, sc)
        return _load(ctx, srv, port, sc)
    finally:
        _stop(srv)
        log.close()


def _stop(srv: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(srv.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        srv.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait()


def _loadgen_argv(ctx: Ctx, port: int, sc: Scenario, extra: list[str]) -> list[str]:
    argv = [PY, str(HERE / "loadgen.py"), "--port", str(port), "--cafile", str(ctx.ca), "--mode", sc.mode,
            "--connections", str(sc.connections), "--size", str(sc.size), "--procs", str(ctx.procs), *extra]
    if sc.resume:
        argv.append("--resume")
    return pinned(argv, ctx.pin_client)


def _load(ctx: Ctx, srv: subprocess.Popen[bytes], port: int, sc: Scenario) -> dict[str, Any]:
    t_start = time.monotonic() + ctx.warmup
    t_end = t_start + ctx.duration
    lg = subprocess.Popen(_loadgen_argv(ctx, port, sc, ["--t-start", repr(t_start), "--t-end", repr(t_end)]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(max(0.0, t_start - time.monotonic()))
    cpu0 = cpu_seconds(srv.pid)
    time.sleep(max(0.0, t_end - time.monotonic()))
    cpu1 = cpu_seconds(srv.pid)
    rss = rss_bytes(srv.pid)
    out, err = lg.communicate(timeout=ctx.duration + 120)
    if lg.returncode != 0:
        raise RuntimeError(f"load generator failed: {err.decode(errors='replace')[-500:]}")
    r = json.loads(out.decode().strip().splitlines()[-1])
    ops = r["ops"]
    cpu = cpu1 - cpu0
    window = t_end - t_start
    m: dict[str, Any] = {
        "ops_per_s": ops / window,
        "server_cpu_pct": 100 * cpu / window,
        "cpu_us_per_op": (1e6 * cpu / ops) if ops else None,
        "p50_us": r["lat_us"]["p50"], "p99_us": r["lat_us"]["p99"], "p99.9_us": r["lat_us"]["p99.9"],
        "errors": r["errors"], "ops": ops, "server_rss_kib": rss // 1024,
    }
    if sc.mode == "echo":
        m["mb_per_s"] = ops * sc.size / window / 1e6
    if sc.mode == "conn":
        m["resumed_pct"] = 100 * r["resumed"] / ops if ops else None
    return m


def _idle(ctx: Ctx, srv: subprocess.Popen[bytes], port: int, sc: Scenario) -> dict[str, Any]:
    before = rss_bytes(srv.pid)
    cpu0 = cpu_seconds(srv.pid)
    lg = subprocess.Popen(_loadgen_argv(ctx, port, sc, []), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert lg.stdout is not None and lg.stdin is not None
    line = lg.stdout.readline()
    if not line:
        raise RuntimeError(f"load generator failed: {lg.stderr.read().decode(errors='replace')[-500:] if lg.stderr else ''}")
    r = json.loads(line)
    time.sleep(0.3)  # let the server finish the last handshakes' bookkeeping
    after = rss_bytes(srv.pid)
    cpu1 = cpu_seconds(srv.pid)
    lg.stdin.close()
    lg.wait(timeout=60)
    n = r["ready"]
    return {
        "rss_kib_per_conn": (after - before) / 1024 / n if n else None,
        "cpu_us_per_conn": 1e6 * (cpu1 - cpu0) / n if n else None,
        "held": n, "errors": r["errors"],
        "server_rss_kib": after // 1024,
    }


# -- reporting ------------------------------------------------------------------------------------

#: (scenario prefix, metric, label, higher is better)
METRICS: list[tuple[str, str, str, bool]] = [
    ("conn", "ops_per_s", "conn/s", True),
    ("conn", "cpu_us_per_op", "server CPU us/conn", False),
    ("conn", "p50_us", "connect+echo p50 us", False),
    ("conn", "p99_us", "connect+echo p99 us", False),
    ("conn", "resumed_pct", "resumed %", True),
    ("lat", "p50_us", "RTT p50 us", False),
    ("lat", "p99_us", "RTT p99 us", False),
    ("lat", "p99.9_us", "RTT p99.9 us", False),
    ("lat", "cpu_us_per_op", "server CPU us/echo", False),
    ("tput", "ops_per_s", "echo/s", True),
    ("tput", "mb_per_s", "MB/s each way", True),
    ("tput", "cpu_us_per_op", "server CPU us/echo", False),
    ("tput", "server_cpu_pct", "server CPU %", True),
    ("idle", "rss_kib_per_conn", "RSS KiB/conn", False),
    ("idle", "cpu_us_per_conn", "server CPU us/conn", False),
]


def summarize(samples: list[float | None]) -> dict[str, float] | None:
    vals = [v for v in samples if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(results: dict[str, dict[str, list[dict[str, Any]]]], scs: list[Scenario], targets: list[str],
          repeats: int) -> str:
    ratio_cols = [t for t in RATIO_AGAINST if t in targets and "trioecho" in targets]
    head = ["scenario", "metric", *targets, *(f"trioecho/{t}" for t in ratio_cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for sc in scs:
        kind = sc.name.split("_")[0]
        for prefix, key, label, higher in METRICS:
            if prefix != kind:
                continue
            summ = {t: summarize([s.get(key) for s in results.get(sc.name, {}).get(t, [])]) for t in targets}
            if all(v is None for v in summ.values()):
                continue
            cells = []
            for t in targets:
                s = summ[t]
                if s is None:
                    cells.append("—")
                elif repeats > 1:
                    cells.append(f"{fmt(s['median'])} [{fmt(s['min'])}–{fmt(s['max'])}]")
                else:
                    cells.append(fmt(s["median"]))
            for t in ratio_cols:
                a, b = summ.get("trioecho"), summ.get(t)
                if a is None or b is None or not b["median"]:
                    cells.append("—")
                else:
                    r = a["median"] / b["median"]
                    good = r >= 1 if higher else r <= 1
                    cells.append(f"{r:.2f}{'' if good else ' ✗'}")
            arrow = "↑" if higher else "↓"
            lines.append(f"| {sc.name} | {label} {arrow} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def ver(pkg: str) -> str | None:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return None

    socat = subprocess.run(["socat", "-V"], capture_output=True, text=True).stdout.splitlines() if shutil.which("socat") else []
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "uname": " ".join(platform.uname()),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "trio": ver("trio"), "anyio": ver("anyio"),
        "socat": next((line for line in socat if "socat version" in line), None),
        "loadavg_start": loadavg(),
    }


def make_certs(d: Path) -> tuple[Path, Path]:
    """One ECDSA P-256 certificate for every target (trustme, as scripts/gen_certs.py)."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    pem, capem = d / "server.pem", d / "ca.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca.cert_pem.write_to_path(str(capem))
    os.chmod(pem, 0o600)
    return pem, capem


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="everything tiny (CI: keeps the harness working; not a measurement)")
    p.add_argument("--targets", default=None, help=f"comma-separated, from {','.join(ALL_TARGETS)}")
    p.add_argument("--scenarios", default=None, help="comma-separated scenario names (default: all)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions per target and scenario (default 3; smoke 1)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per run (default 5; smoke 0.3)")
    p.add_argument("--warmup", type=float, default=None, help="discarded seconds before each window (default 1.5)")
    p.add_argument("--client-procs", type=int, default=1, help="load-generator processes (all on the client CPU)")
    p.add_argument("--tickets", type=int, default=1, help="TLS 1.3 tickets per handshake, for every target")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate CPUs")
    p.add_argument("--compare-src", type=Path, default=None,
                   help="also run target trioecho-base from this src directory (A/B of a change)")
    p.add_argument("--json", type=Path, default=None, help="write results here (default benchmarks/results/<date>.json)")
    a = p.parse_args(argv)

    targets = a.targets.split(",") if a.targets else list(DEFAULT_TARGETS)
    if a.compare_src is not None:
        global COMPARE_SRC
        COMPARE_SRC = a.compare_src.resolve()
        if "trioecho-base" not in targets:
            targets.insert(1, "trioecho-base")
    bad = [t for t in targets if t not in ALL_TARGETS + ["trioecho-base"]]
    if bad:
        p.error(f"unknown target(s) {','.join(bad)}: choose from {','.join(ALL_TARGETS)}")
    if "socat" in targets and not shutil.which("socat"):
        print("warning: socat not installed (apt-get install socat): skipping it", file=sys.stderr)
        targets.remove("socat")
    scs = scenarios(a.smoke)
    if a.scenarios:
        want = a.scenarios.split(",")
        unknown = [w for w in want if w not in {s.name for s in scs}]
        if unknown:
            p.error(f"unknown scenario(s) {','.join(unknown)}: choose from {','.join(s.name for s in scs)}")
        scs = [s for s in scs if s.name in want]
    repeats = a.repeat or (1 if a.smoke else 3)
    duration = a.duration or (0.3 if a.smoke else 5.0)
    warmup = a.warmup if a.warmup is not None else (0.4 if a.smoke else 1.5)
    ncpu = os.cpu_count() or 1
    pin = not a.no_pin and shutil.which("taskset") is not None and ncpu >= 2
    if not pin and not a.no_pin:
        print("warning: cannot pin (needs taskset and 2 CPUs): server and client share the CPUs", file=sys.stderr)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it: 5k idle connections
    work = Path(tempfile.mkdtemp(prefix="trioecho-bench-"))
    pem, ca = make_certs(work)
    ctx = Ctx(pem=pem, ca=ca, tickets=a.tickets, duration=duration, warmup=warmup, procs=a.client_procs,
              pin_server="0" if pin else None, pin_client="1" if pin else None, logdir=work)
    info = machine()
    info.update({"smoke": a.smoke, "repeats": repeats, "duration_s": duration, "warmup_s": warmup,
                 "pinned": pin, "client_procs": a.client_procs, "tickets": a.tickets,
                 "certificate": "ECDSA P-256 (trustme)", "logs": str(work)})
    print(f"# trioecho benchmark {info['date']}: {info['cpu']} x{info['cpus']}, Python {info['python']}, "
          f"{info['openssl']}, trio {info['trio']}; load {info['loadavg_start']}", file=sys.stderr)

    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    t0 = time.monotonic()
    for rep in range(repeats):
        for sc in scs:
            k = rep % len(targets)
            order = targets[k:] + targets[:k]  # interleave: a different target goes first each time
            for target in order:
                try:
                    m = run_one(ctx, target, sc)
                except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                    print(f"  {sc.name} {target}: FAILED: {exc}", file=sys.stderr)
                    m = {"failed": str(exc)}
                m["rep"] = rep
                results.setdefault(sc.name, {}).setdefault(target, []).append(m)
                brief = {k2: (round(v, 1) if isinstance(v, float) else v) for k2, v in m.items()
                         if k2 in ("ops_per_s", "cpu_us_per_op", "p50_us", "rss_kib_per_conn", "errors")}
                print(f"  [{time.monotonic() - t0:6.1f}s] rep {rep + 1}/{repeats} {sc.name:13} {target:12} {brief}",
                      file=sys.stderr, flush=True)
    info["loadavg_end"] = loadavg()
    info["elapsed_s"] = round(time.monotonic() - t0, 1)

    md = table(results, scs, targets, repeats)
    header = (f"trioecho benchmark, {info['date'][:10]}, {info['cpu']} x{info['cpus']}, Python {info['python']}, "
              f"{info['openssl']}, trio {info['trio']}; {repeats} run(s) x {duration:g}s, "
              f"{'server on CPU 0, client on CPU 1' if pin else 'unpinned'}; load average "
              f"{info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}. Cells: median [min–max]; "
              "↑ higher is better, ↓ lower is better; ✗ marks a ratio on the wrong side of 1.")
    print(header)
    print()
    print(md)
    summary = {sc.name: {t: {key: summarize([s.get(key) for s in results.get(sc.name, {}).get(t, [])])
                             for _, key, _, _ in METRICS}
                         for t in targets} for sc in scs}
    doc = {"machine": info, "targets": targets, "scenarios": [sc.__dict__ for sc in scs],
           "samples": results, "summary": summary, "table_markdown": md}
    out = a.json
    if out is None:
        out = HERE / "results" / f"{'smoke-' if a.smoke else ''}{info['date'][:19].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nJSON: {out}", file=sys.stderr)
    failed = [f"{sc}/{t}" for sc, d in results.items() for t, ss in d.items() if any("failed" in s for s in ss)]
    if failed:
        print(f"failed runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
