"""Helpers to run real TLS peers that no one here wrote (openssl, gnutls) as subprocesses."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: .ci/run installs it (apt-get install openssl gnutls-bin)")
    return path


class Proc:
    """A subprocess whose stdout we read line by line (and raw)."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.buf = b""

    async def read_until(self, pattern: bytes | re.Pattern[bytes], timeout: float = 10) -> re.Match[bytes]:
        rx = re.compile(pattern) if isinstance(pattern, bytes) else pattern
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            while (m := rx.search(self.buf)) is None:
                chunk = await self.proc.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"process ended before {rx.pattern!r}; output: {self.buf[-2000:]!r}")
                self.buf += chunk
        return m

    async def read_exactly(self, n: int, start: int = 0, timeout: float = 10) -> bytes:
        assert self.proc.stdout is not None
        with trio.fail_after(timeout):
            while len(self.buf) - start < n:
                chunk = await self.proc.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"process ended early; output: {self.buf[-2000:]!r}")
                self.buf += chunk
        return self.buf[start:start + n]

    async def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(data)


@asynccontextmanager
async def run(argv: Sequence[str], *, env: dict[str, str] | None = None, merge_stderr: bool = True) -> AsyncIterator[Proc]:
    proc = await trio.lowlevel.open_process(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, env=env or dict(os.environ),
    )
    p = Proc(proc)
    try:
        yield p
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        with trio.move_on_after(5):
            await proc.wait()
        for s in (proc.stdin, proc.stdout, proc.stderr):
            if s is not None:
                await s.aclose()
