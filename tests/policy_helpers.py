"""Helpers for the policy tests: RFC 5280-strict certificates, trioecho serve/ping as subprocesses.

trustme marks subjectAltName critical while also filling the subject (O/OU), which
RFC 5280 section 4.2.1.6 forbids; strict verifiers (sslyze through cryptography's
X.509 verifier) refuse such a leaf.  An outside scanner must see a chain a real
deployment would have, so these tests issue the leaves with scripts/gen_certs.py's
own builder (the one users get), signed by a trustme CA: ECDSA P-256, 90 days,
SAN not critical, CN set.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization

from .conftest import CLI, cli_env
from .peers import Proc, run


@dataclass
class StrictPKI:
    """A CA and leaves that pass strict path validation, as PEM files."""

    dir: Path
    ca: trustme.CA

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    def leaf(self, name: str, *sans: str, client: bool = False, days: int = 90,
             encrypt_with: bytes | None = None) -> tuple[Path, Path]:
        """Issue a leaf with scripts/gen_certs.py's own builder; returns (chain.pem, key.pem), key mode 600."""
        not_before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
        key_pem, cert_pem = _gen_certs_module()._leaf(
            self.ca, name, list(sans or (name,)), client=client, key_type="ecdsa",
            not_before=not_before, not_after=not_before + datetime.timedelta(days=days))
        if encrypt_with:
            key = serialization.load_pem_private_key(key_pem, password=None)
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(encrypt_with))
        stem = re.sub(r"[^A-Za-z0-9.-]", "_", name) + ("-client" if client else "")
        chain = self.dir / f"{stem}.crt"
        chain.write_bytes(cert_pem)
        keyfile = self.dir / f"{stem}.key"
        keyfile.write_bytes(key_pem)
        os.chmod(keyfile, 0o600)
        return chain, keyfile


def _gen_certs_module() -> Any:
    """scripts/gen_certs.py as a module: the tests issue leaves exactly as users get them."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "gen_certs.py"
    spec = importlib.util.spec_from_file_location("trioecho_gen_certs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gen_certs(out: Path, *args: str) -> dict[str, Path]:
    """Run scripts/gen_certs.py (the script users run) into ``out``; return its files by name."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "gen_certs.py"
    res = subprocess.run([sys.executable, str(script), "--out", str(out), *args], capture_output=True, text=True,
                         env=cli_env(), timeout=60)
    assert res.returncode == 0, res.stderr
    return {p.name: p for p in out.iterdir()}


def strict_pki(directory: Path) -> StrictPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return StrictPKI(directory, ca)


LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)\n")


@asynccontextmanager
async def serve(*args: str, env: dict[str, str] | None = None,
                log_level: str = "info") -> AsyncIterator[tuple[Proc, int]]:
    """``trioecho serve --host 127.0.0.1 --port 0 ARGS``; yields (process, port) once listening.

    stdout and stderr share one pipe that is read only when a test asks: keep
    ``log_level`` at "warning" for anything that makes many connections, or the
    server blocks on a full pipe.
    """
    argv = [*CLI, "--log-level", log_level, "serve", "--host", "127.0.0.1", "--port", "0", *args]
    async with run(argv, env=env or cli_env()) as proc:
        port = int((await proc.read_until(LISTENING, timeout=30)).group(1))
        yield proc, port


def ping_argv(port: int, *args: str, host: str = "localhost") -> Sequence[str]:
    return [*CLI, "ping", f"{host}:{port}", "-i", "0", *args]
