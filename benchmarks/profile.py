#!/usr/bin/env python3
"""Where does trioecho's server time go?  py-spy on a pinned server under the neutral load.

Usage::

    pip install py-spy
    python benchmarks/profile.py --size 64 --connections 50 --seconds 6
    python benchmarks/profile.py --mode conn          # full handshakes instead of echoes

Starts ``trioecho serve`` on CPU 0, records it with ``py-spy record --format raw``
while ``benchmarks/loadgen.py`` (CPU 1) drives it, then prints the busy time
grouped by leaf frame (syscalls, run loop, cancel scopes, SSLStream, OpenSSL,
trioecho) and the top leaf lines.  The raw profile is kept for flame graphs.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import env, free_port, make_certs, wait_listening  # noqa: E402

GROUPS = [
    ("OpenSSL (SSLObject read/write/handshake)", ("SSLObject.read", "SSLObject.write", "do_handshake (ssl.py")),
    ("socket syscalls", ("_transport.py", "_nonblocking_helper", "socket.py")),
    ("epoll", ("_io_epoll",)),
    ("SSLStream machinery", ("trio/_ssl.py", "trio/_sync.py", "trio/_util.py")),
    ("cancel scopes", ("CancelScope", "CancelStatus", "contextlib", "_timeouts")),
    ("trio run loop", ("trio/_core", "outcome", "attrs generated")),
    ("trioecho", ("trioecho/",)),
]


def summarize(raw: Path, top: int) -> str:
    groups: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, n_text = line.rsplit(" ", 1)
        frames = stack.split(";")
        if not any("trio/_core/_run.py" in f or "trioecho" in f for f in frames):
            continue  # idle or start-up
        n = int(n_text)
        total += n
        leaf = frames[-1]
        leaves[leaf] += n
        groups[next((g for g, keys in GROUPS if any(k in leaf for k in keys)), "other")] += n
    if not total:
        return "no samples (was py-spy allowed to attach? try as root or with CAP_SYS_PTRACE)"
    out = [f"{total} busy samples", ""]
    out += [f"{100 * v / total:5.1f}%  {k}" for k, v in groups.most_common()]
    out += ["", f"top {top} leaf lines:"]
    out += [f"{100 * v / total:5.1f}%  {k[:140]}" for k, v in leaves.most_common(top)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["echo", "conn"], default="echo")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--out", type=Path, default=None, help="keep the raw profile here")
    a = p.parse_args()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="trioecho-profile-"))
    pem, ca = make_certs(work)
    port = free_port()
    srv = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "trioecho", "--log-level", "warning", "serve",
                            "--cert", str(pem), "--host", "127.0.0.1", "--port", str(port)], env=env())
    raw = a.out or work / "profile.raw"
    try:
        wait_listening(port, srv)
        t_start = time.monotonic() + 1.0
        t_end = t_start + a.seconds
        lg = subprocess.Popen(["taskset", "-c", "1", sys.executable, str(HERE / "loadgen.py"), "--port", str(port),
                               "--cafile", str(ca), "--mode", a.mode, "--connections", str(a.connections),
                               "--size", str(a.size), "--t-start", repr(t_start), "--t-end", repr(t_end)],
                              stdout=subprocess.PIPE)
        time.sleep(max(0.0, t_start - time.monotonic()))
        subprocess.run([pyspy, "record", "-r", str(a.rate), "-p", str(srv.pid), "-d", str(int(a.seconds)),
                        "-f", "raw", "-o", str(raw), "--nonblocking"], check=True, capture_output=True)
        out, _ = lg.communicate(timeout=a.seconds + 60)
        print(f"load: {out.decode().strip()[:200]}")
    finally:
        srv.terminate()
        srv.wait(timeout=15)
    print(summarize(raw, a.top))
    print(f"\nraw profile: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
