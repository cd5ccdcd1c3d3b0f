"""The interop matrix: trioecho against TLS stacks no one here wrote, one cell at a time.

Rows are peers, columns are cells (TLS version x certificate key type x
resumption x mTLS).  ``serve`` rows run an in-process trioecho server (the code
behind ``trioecho serve``, via ``trioecho.testing.open_loopback_echo_server``)
and drive a foreign client; ``ping`` rows run a foreign server and drive
trioecho's public client API (``Pinger``, what ``trioecho ping`` runs).

With ``cli=True`` the same cells run through the real command-line processes
instead: ``python -m trioecho serve`` (default ``intermediate`` profile, pinned
with ``--min-version``/``--max-version``; its log lines are parsed) and
``python -m trioecho ping --json``.

Every cell checks *both* ends: the foreign peer's own report (version, resumed,
the echoed bytes) and trioecho's (``ConnectionInfo`` / ``PingReport``), and
returns the negotiated cipher as trioecho saw it.  A cell a peer cannot do is
``n/a`` with the upstream reason, never a silent pass.

Used by tests/test_interop_*.py (one test per cell) and scripts/interop_matrix.py
(prints the table).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import json
import os
import re
import secrets
import ssl
import struct
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import trio

with warnings.catch_warnings():
    # tlslite-ng imports asyncore, deprecated since Python 3.10 (https://github.com/tlsfuzzer/tlslite-ng/issues/501).
    warnings.simplefilter("ignore", DeprecationWarning)
    import tlslite

from trioecho import Pinger, PingOptions, Policy
from trioecho.testing import TestPKI, open_loopback_echo_server

from .conftest import CLI, cli_env
from .peers import Proc, run

#: Generous: a cell is a few handshakes on loopback; CI machines are slow and shared.
CELL_TIMEOUT = 60


@dataclass(frozen=True)
class Cell:
    """One column of the matrix."""

    version: str  # "1.2" or "1.3"
    key: str  # "ecdsa" or "rsa"
    resume: bool
    mtls: bool

    def __str__(self) -> str:
        return f"{self.version}-{self.key}-{'resume' if self.resume else 'full'}-{'mtls' if self.mtls else 'noauth'}"

    @property
    def label(self) -> str:
        return f"{self.version} {self.key.upper()}{' res' if self.resume else ''}{' mTLS' if self.mtls else ''}"


CELLS = [Cell(v, k, r, m) for v in ("1.2", "1.3") for k in ("ecdsa", "rsa") for r in (False, True) for m in (False, True)]


@dataclass
class Outcome:
    """What one cell showed."""

    status: str  # "pass", "fail" or "n/a"
    cipher: str | None = None
    detail: str = ""


class CellFailed(AssertionError):
    """A check inside a cell failed (the message says which and what was seen)."""


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CellFailed(msg)


def need(tool: str) -> str:
    """The path of a peer's program; a cell whose program is missing fails, saying what to install."""
    import shutil

    path = shutil.which(tool)
    if path is None:
        package = "openssl" if tool == "openssl" else "gnutls-bin"
        raise CellFailed(f"{tool} is not installed: apt-get install {package} (scripts/setup.sh does)")
    return path


@dataclass
class Seen:
    """One connection as the foreign peer reported it."""

    version: str | None
    resumed: bool | None
    cipher: str | None = None


def _frame(tag: str) -> tuple[bytes, bytes]:
    # Printable, ends in a newline (gnutls-cli --inline-commands reads lines), no '^'.
    body = f"interop {tag} {secrets.token_hex(8)}\n".encode()
    return body, struct.pack(">I", len(body)) + body


def _server_checks(ended: list[Any], cell: Cell, n: int) -> str:
    """Check trioecho's server-side view of the n connections; return the cipher."""
    check(len(ended) == n, f"server saw {len(ended)} connections, expected {n}")
    for info in ended:
        check(info.outcome == "clean", f"server outcome {info.outcome}: {info.detail}")
        check(info.version == f"TLSv{cell.version}", f"server negotiated {info.version}")
        check(info.frames >= 1, "server echoed no frame")
        if cell.mtls:
            check(info.client_subject is not None, "server saw no client certificate")
    want = [False, True] if cell.resume else [False] * n
    check([i.resumed for i in ended] == want, f"server resumed {[i.resumed for i in ended]}, expected {want}")
    return str(ended[0].cipher)


def _peer_checks(seen: list[Seen], cell: Cell) -> None:
    for s in seen:
        if s.version is not None:
            check(s.version == f"TLSv{cell.version}", f"peer reports {s.version}")
    want = [False, True] if cell.resume else [False] * len(seen)
    got = [s.resumed for s in seen]
    if all(r is not None for r in got):
        check(got == want, f"peer reports resumed {got}, expected {want}")


# -- asyncio in a thread (asyncio, anyio) ---------------------------------------------------------------


class AsyncioThread:
    """An asyncio event loop in its own thread, for peers that run on asyncio."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="interop-asyncio", daemon=True)

    async def __aenter__(self) -> AsyncioThread:
        self._thread.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Cancel what is left (server connection handlers) before stopping the loop,
        # so no task is destroyed while pending.
        await self.run(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self._thread.join, 10)
        self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, Any], timeout: float = CELL_TIMEOUT) -> Any:
        fut: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await trio.to_thread.run_sync(functools.partial(fut.result, timeout))


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ResumingContext(ssl.SSLContext):
    """An SSLContext that offers ``next_session`` on the next connection.

    asyncio's and anyio's TLS clients take no session argument (they call
    ``wrap_bio`` themselves, https://github.com/python/cpython/issues/79152), so this is how a
    user of either resumes a session: hand it to the context they already pass.
    """

    next_session: ssl.SSLSession | None = None

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                session=session or self.next_session)


def _stdlib_client_context(pki: TestPKI, cell: Cell) -> ResumingContext:
    """Configured with the stdlib only, as an asyncio/anyio user would."""
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(pki.ca_pem))
    ctx.minimum_version = ctx.maximum_version = _TLS[cell.version]
    ctx.set_alpn_protocols(["echo/1"])
    if cell.mtls:
        ctx.load_cert_chain(str(pki.client_pem))
    return ctx


def _stdlib_server_context(pki: TestPKI, cell: Cell) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_pem))
    ctx.minimum_version = ctx.maximum_version = _TLS[cell.version]
    ctx.set_alpn_protocols(["echo/1"])
    if cell.mtls:
        ctx.load_verify_locations(cafile=str(pki.ca_pem))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


_TLS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


# -- clients against `trioecho serve` ---------------------------------------------------------------------

ClientDriver = Callable[[TestPKI, Cell, int, Path], Awaitable[list[Seen]]]


async def _s_client(pki: TestPKI, cell: Cell, port: int, tmp: Path) -> list[Seen]:
    openssl = need("openssl")
    seen = []
    sess = tmp / "s_client.session"
    for i in range(2 if cell.resume else 1):
        argv = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                "-verify_hostname", "localhost", "-CAfile", str(pki.ca_pem), "-verify_return_error",
                "-alpn", "echo/1", f"-tls{cell.version.replace('.', '_')}"]
        if cell.mtls:
            argv += ["-cert", str(pki.client_crt), "-key", str(pki.client_key)]
        if cell.resume:
            argv += ["-sess_out", str(sess)] if i == 0 else ["-sess_in", str(sess)]
        _, frame = _frame(f"s_client {i}")
        async with run(argv, merge_stderr=False) as p:
            await p.send(frame)
            await p.read_until(re.escape(frame), timeout=CELL_TIMEOUT)
            assert p.proc.stdin is not None
            await p.proc.stdin.aclose()  # EOF on stdin: s_client sends close_notify and exits
            await _wait_exit(p)
        m = re.search(rb"(New|Reused), (TLSv1\.[23]), Cipher is (\S+)", p.buf)
        check(m is not None, f"s_client printed no session line: {p.buf[-500:]!r}")
        assert m is not None
        seen.append(Seen(m.group(2).decode(), m.group(1) == b"Reused", m.group(3).decode()))
    return seen


async def _wait_exit(p: Proc) -> None:
    with trio.fail_after(CELL_TIMEOUT):
        assert p.proc.stdout is not None
        while chunk := await p.proc.stdout.receive_some():
            p.buf += chunk
        await p.proc.wait()


async def _gnutls_cli(pki: TestPKI, cell: Cell, port: int, tmp: Path) -> list[Seen]:
    gnutls = need("gnutls-cli")
    argv = [gnutls, "-p", str(port), "--x509cafile", str(pki.ca_pem), "--verify-hostname", "localhost",
            "--alpn", "echo/1", "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{cell.version}", "--inline-commands"]
    if cell.mtls:
        argv += ["--x509certfile", str(pki.client_crt), "--x509keyfile", str(pki.client_key)]
    argv.append("127.0.0.1")
    seen = []
    async with run(argv) as p:
        for i in range(2 if cell.resume else 1):
            start = len(p.buf)
            if i == 1:
                # gnutls-cli -r would wait for a ticket before any data flows, but trio sends
                # TLS 1.3 tickets with its first write (python-trio/trio#819): resume after an echo.
                await p.send(b"^resume^\n")
                await p.read_until(re.compile(rb"\*\*\* This is a resumed session|- Description", re.S), timeout=CELL_TIMEOUT)
            _, frame = _frame(f"gnutls-cli {i}")
            await p.send(frame)
            await p.read_until(re.escape(frame), timeout=CELL_TIMEOUT)
            chunk = p.buf[start:]
            v = re.search(rb"\(TLS(1\.[23])-X\.509\)", chunk)
            seen.append(Seen(f"TLSv{v.group(1).decode()}" if v else None, b"This is a resumed session" in chunk))
        assert p.proc.stdin is not None
        await p.proc.stdin.aclose()
        await _wait_exit(p)
    check(seen[0].version is not None, f"gnutls-cli printed no Description line: {p.buf[-500:]!r}")
    return seen


async def _asyncio_client(pki: TestPKI, cell: Cell, port: int, tmp: Path) -> list[Seen]:
    ctx = _stdlib_client_context(pki, cell)

    async def one(i: int) -> Seen:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), CELL_TIMEOUT)
        _, frame = _frame(f"asyncio {i}")
        writer.write(frame)
        echoed = await asyncio.wait_for(reader.readexactly(len(frame)), CELL_TIMEOUT)
        check(echoed == frame, "asyncio client got a different echo")
        obj = writer.get_extra_info("ssl_object")
        s = Seen(obj.version(), obj.session_reused, obj.cipher()[0])
        ctx.next_session = obj.session  # holds the TLS 1.3 ticket now that data has flowed
        writer.close()
        await writer.wait_closed()
        return s

    async def main() -> list[Seen]:
        return [await one(i) for i in range(2 if cell.resume else 1)]

    async with AsyncioThread() as loop:
        result: list[Seen] = await loop.run(main())
    return result


async def _anyio_client(pki: TestPKI, cell: Cell, port: int, tmp: Path) -> list[Seen]:
    import anyio
    from anyio.streams.tls import TLSAttribute

    ctx = _stdlib_client_context(pki, cell)

    async def one(i: int) -> Seen:
        with anyio.fail_after(CELL_TIMEOUT):
            stream = await anyio.connect_tcp("127.0.0.1", port, tls=True, ssl_context=ctx, tls_hostname="localhost")
            async with stream:
                _, frame = _frame(f"anyio {i}")
                await stream.send(frame)
                got = b""
                while len(got) < len(frame):
                    got += await stream.receive()
                check(got == frame, "anyio client got a different echo")
                obj = stream.extra(TLSAttribute.ssl_object)
                ctx.next_session = obj.session
                return Seen(obj.version(), obj.session_reused, obj.cipher()[0])

    def main() -> list[Seen]:
        async def all_() -> list[Seen]:
            return [await one(i) for i in range(2 if cell.resume else 1)]

        return anyio.run(all_, backend="asyncio")

    result: list[Seen] = await trio.to_thread.run_sync(main)
    return result


async def _tlslite_client(pki: TestPKI, cell: Cell, port: int, tmp: Path) -> list[Seen]:
    def main() -> list[Seen]:
        import socket

        from tlslite import Checker, HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

        assert tlslite  # imported above, with its DeprecationWarning silenced

        settings = HandshakeSettings()
        settings.minVersion = settings.maxVersion = (3, 4) if cell.version == "1.3" else (3, 3)
        # tlslite-ng does no X.509 path validation: pin the server certificate instead.
        der = ssl.PEM_cert_to_DER_cert(pki.server.cert_chain_pems[0].bytes().decode())
        checker = Checker(x509Fingerprint=hashlib.sha1(der).hexdigest())
        kw: dict[str, Any] = {}
        if cell.mtls:
            chain = X509CertChain()
            chain.parsePemList(pki.client_crt.read_text())
            kw = {"certChain": chain, "privateKey": parsePEMKey(pki.client_key.read_text(), private=True)}
        session = None
        out = []
        for i in range(2 if cell.resume else 1):
            sock = socket.create_connection(("127.0.0.1", port), timeout=CELL_TIMEOUT)
            conn = TLSConnection(sock)
            try:
                conn.handshakeClientCert(settings=settings, serverName="localhost", alpn=[bytearray(b"echo/1")],
                                         session=session, checker=checker, **kw)
                _, frame = _frame(f"tlslite {i}")
                conn.write(frame)
                got = b""
                while len(got) < len(frame):
                    got += bytes(conn.read())
                check(got == frame, "tlslite client got a different echo")
                out.append(Seen({(3, 3): "TLSv1.2", (3, 4): "TLSv1.3"}.get(conn.version), bool(conn.resumed)))
                session = conn.session
            finally:
                conn.close()
        return out

    result: list[Seen] = await trio.to_thread.run_sync(main)
    return result


def _tlslite_na(cell: Cell) -> str | None:
    if cell.version == "1.3" and cell.mtls:
        return ("tlslite-ng 0.8 cannot answer a TLS 1.3 in-handshake CertificateRequest "
                "(https://github.com/tlsfuzzer/tlslite-ng/issues/207, open); it fails against "
                "`openssl s_server -Verify 1` the same way")
    return None


# -- servers that `trioecho ping` talks to ---------------------------------------------------------------

ServerDriver = Callable[[TestPKI, Cell, Callable[[int, bool], Awaitable[Any]], Path], Awaitable[None]]


async def _s_server(pki: TestPKI, cell: Cell, ping: Callable[[int, bool], Awaitable[Any]], tmp: Path) -> None:
    openssl = need("openssl")
    argv = [openssl, "s_server", "-accept", "127.0.0.1:0", "-cert", str(pki.server_crt), "-key", str(pki.server_key),
            f"-tls{cell.version.replace('.', '_')}", "-alpn", "echo/1", "-naccept", "2"]
    if cell.mtls:
        argv += ["-Verify", "1", "-CAfile", str(pki.ca_pem), "-verify_return_error"]
    async with run(argv) as p:
        port = int((await p.read_until(rb"ACCEPT 127\.0\.0\.1:(\d+)", timeout=CELL_TIMEOUT)).group(1))
        await ping(port, True)  # s_server does not echo (-rev reverses text)


def _listening_port(pid: int) -> int | None:
    """The IPv4 TCP port a process listens on (gnutls-serv -p 0 does not print it)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
            return int(f[1].rsplit(":", 1)[1], 16)
    return None


async def _gnutls_serv(pki: TestPKI, cell: Cell, ping: Callable[[int, bool], Awaitable[Any]], tmp: Path) -> None:
    gnutls = need("gnutls-serv")
    argv = [gnutls, "-p", "0", "--x509certfile", str(pki.server_crt), "--x509keyfile", str(pki.server_key),
            "--priority", f"NORMAL:-VERS-ALL:+VERS-TLS{cell.version}", "--alpn", "echo/1"]
    if cell.mtls:
        argv += ["--require-client-cert", "--verify-client-cert", "--x509cafile", str(pki.ca_pem)]
    async with run(argv) as p:
        await p.read_until(rb"listening on IPv4 .*done", timeout=CELL_TIMEOUT)
        port = _listening_port(p.proc.pid)
        check(port is not None, "gnutls-serv listens on no IPv4 port")
        assert port is not None
        # gnutls-serv --echo is a text line echo (it rewrites CRLF); our binary frames never came back.
        await ping(port, True)


async def _asyncio_server(pki: TestPKI, cell: Cell, ping: Callable[[int, bool], Awaitable[Any]], tmp: Path) -> None:
    ctx = _stdlib_server_context(pki, cell)
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            # The client went away mid-echo; ping reports that on its side.
            print(f"asyncio echo server: {exc!r}", file=sys.stderr)
        finally:
            writer.close()

    async def start() -> asyncio.Server:
        return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)

    async def finish(server: asyncio.Server) -> None:
        server.close()
        # Clients closed with close_notify: let each handler see its EOF and end by itself.
        pending = [t for t in handlers if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CELL_TIMEOUT / 2)

    async with AsyncioThread() as loop:
        server = await loop.run(start())
        try:
            await ping(server.sockets[0].getsockname()[1], False)
        finally:
            await loop.run(finish(server))


async def _trioecho_server(pki: TestPKI, cell: Cell, ping: Callable[[int, bool], Awaitable[Any]], tmp: Path,
                           *, cli: bool = False) -> None:
    if cli:
        async with cli_server(pki, cell) as srv:
            await ping(srv.port, False)
            await srv.wait_ended(2)
        _server_checks(srv.ended, cell, 2)
        return
    async with open_loopback_echo_server(pki=pki, version=cell.version, mtls=cell.mtls) as lsrv:
        await ping(lsrv.port, False)
        ended = await lsrv.wait_ended(2, timeout=CELL_TIMEOUT)
    _server_checks(ended, cell, 2)


# -- the real processes: `trioecho serve` and `trioecho ping` ---------------------------------------------


class CliServer:
    """A running ``python -m trioecho serve``; ``ended`` is filled from its log when it stops."""

    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.ended: list[Any] = []

    async def wait_ended(self, n: int) -> None:
        """Wait until the server has logged ``n`` ended connections (before stopping it)."""
        await self.proc.read_until(re.compile(rb"(?:.*?connection end ){%d}" % n, re.S), timeout=CELL_TIMEOUT)


_KV = re.compile(r'(\w+)=("(?:[^"]*)"|\S+)')


def _parse_log(text: str) -> list[Any]:
    """``connection end k=v ...`` log lines -> objects shaped like ConnectionInfo."""
    out = []
    for line in text.splitlines():
        if "connection end " not in line:
            continue
        kv = {k: v.strip('"') for k, v in _KV.findall(line.split("connection end ", 1)[1])}
        out.append(SimpleNamespace(
            outcome=kv.get("outcome"), version=kv.get("tls"), cipher=kv.get("cipher"),
            resumed={"True": True, "False": False}.get(kv.get("resumed", "")), client_subject=kv.get("client"),
            frames=int(kv.get("frames", "0")), detail=kv.get("detail", ""),
        ))
    return out


@asynccontextmanager
async def cli_server(pki: TestPKI, cell: Cell) -> AsyncIterator[CliServer]:
    """``trioecho serve`` on 127.0.0.1 port 0 with the default profile, pinned to the cell's version."""
    argv = [*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--cert", str(pki.server_pem),
            "--min-version", cell.version, "--max-version", cell.version]
    if cell.mtls:
        argv += ["--client-auth", "required", "--client-ca", str(pki.ca_pem)]
    async with run(argv, env=cli_env()) as p:
        port = int((await p.read_until(rb"listening on 127\.0\.0\.1:(\d+)", timeout=CELL_TIMEOUT)).group(1))
        srv = CliServer(p, port)
        yield srv
        p.proc.terminate()  # SIGTERM: drain, log the summary, exit 0
        await p.read_until(rb"stopped: ", timeout=CELL_TIMEOUT)
        await _wait_exit(p)
        check(p.proc.returncode == 0, f"trioecho serve exited {p.proc.returncode}")
        srv.ended = _parse_log(p.buf.decode(errors="replace"))


async def cli_ping(pki: TestPKI, cell: Cell, port: int, handshake_only: bool) -> Any:
    """``trioecho ping --json`` against 127.0.0.1:port; returns a PingReport-shaped object."""
    argv = [*CLI, "ping", f"127.0.0.1:{port}", "--servername", "localhost", "--cafile", str(pki.ca_pem),
            "--min-version", cell.version, "--max-version", cell.version, "-c", "2", "-i", "0", "--size", "100",
            "-W", str(CELL_TIMEOUT / 4), "--json"]
    if handshake_only:
        argv.append("--handshake-only")
    if not cell.resume:
        argv.append("--no-resume")
    if cell.mtls:
        argv += ["--cert", str(pki.client_pem)]
    res = await trio.run_process(argv, env=cli_env(), capture_stdout=True, capture_stderr=True, check=False)
    check(res.returncode in (0, 1), f"trioecho ping exited {res.returncode}: {res.stderr.decode()[-500:]}")
    doc = json.loads(res.stdout)
    probes = [SimpleNamespace(ok=p["ok"], resumed=p["resumed"], error_kind=p["error_kind"], error=p["error"])
              for p in doc["probes"]]
    tls = None if doc["tls"] is None else SimpleNamespace(version=doc["tls"]["version"], cipher=doc["tls"]["cipher"])
    return SimpleNamespace(probes=probes, tls=tls)


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    name: str  # row label
    role: str  # "serve": trioecho serves, the peer is the client; "ping": the other way round
    driver: Any
    na: Callable[[Cell], str | None] = field(default=lambda cell: None)
    group: str = ""  # which tests/test_interop_*.py runs it


PEERS = [
    Peer("openssl s_client", "serve", _s_client, group="openssl"),
    Peer("gnutls-cli", "serve", _gnutls_cli, group="gnutls"),
    Peer("asyncio ssl client", "serve", _asyncio_client, group="asyncio"),
    Peer("anyio TLS client (asyncio backend)", "serve", _anyio_client, group="asyncio"),
    Peer("tlslite-ng client", "serve", _tlslite_client, na=_tlslite_na, group="tlslite"),
    Peer("openssl s_server", "ping", _s_server, group="openssl"),
    Peer("gnutls-serv", "ping", _gnutls_serv, group="gnutls"),
    Peer("asyncio ssl echo server", "ping", _asyncio_server, group="asyncio"),
    Peer("trioecho serve", "ping", _trioecho_server, group="trioecho"),
]


def peers(group: str) -> list[Peer]:
    return [p for p in PEERS if p.group == group]


#: The cells the test suite also runs through the real processes (each costs a Python start-up);
#: ``scripts/interop_matrix.py --cli`` runs them all.
CLI_CELLS = [Cell("1.3", "ecdsa", True, True), Cell("1.2", "rsa", True, False)]


def params(group: str, cells: list[Cell] = CELLS) -> list[Any]:
    """``(peer, cell)`` parameters for one test file; n/a cells are skipped with their reason."""
    import pytest

    out = []
    for peer in peers(group):
        for cell in cells:
            reason = peer.na(cell)
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            out.append(pytest.param(peer, cell, id=f"{peer.name.split(' (')[0].replace(' ', '_')}-{cell}",
                                    marks=marks))
    return out


async def run_cell(peer: Peer, cell: Cell, pkis: dict[str, TestPKI], tmp: Path, *, cli: bool = False) -> Outcome:
    """Run one cell; never raises for a failed check (returns status "fail" with the reason).

    Args:
        cli: run trioecho as the real ``serve`` / ``ping`` processes instead of in-process.
    """
    reason = peer.na(cell)
    if reason:
        return Outcome("n/a", detail=reason)
    pki = pkis[cell.key]
    try:
        with trio.fail_after(CELL_TIMEOUT):
            if peer.role == "serve":
                cipher = await _serve_cell(peer, cell, pki, tmp, cli)
            else:
                cipher = await _ping_cell(peer, cell, pki, tmp, cli)
    except (CellFailed, trio.TooSlowError, OSError) as exc:
        return Outcome("fail", detail=f"{type(exc).__name__}: {exc}")
    return Outcome("pass", cipher=cipher)


async def _serve_cell(peer: Peer, cell: Cell, pki: TestPKI, tmp: Path, cli: bool) -> str:
    n = 2 if cell.resume else 1
    if cli:
        async with cli_server(pki, cell) as csrv:
            seen = await peer.driver(pki, cell, csrv.port, tmp)
            await csrv.wait_ended(n)
        ended = csrv.ended
    else:
        async with open_loopback_echo_server(pki=pki, version=cell.version, mtls=cell.mtls) as srv:
            seen = await peer.driver(pki, cell, srv.port, tmp)
            ended = await srv.wait_ended(n, timeout=CELL_TIMEOUT)
    cipher = _server_checks(ended, cell, n)
    _peer_checks(seen, cell)
    for s in seen:
        if s.cipher is not None:
            check(s.cipher == cipher, f"peer reports cipher {s.cipher}, server {cipher}")
    return cipher


async def _ping_cell(peer: Peer, cell: Cell, pki: TestPKI, tmp: Path, cli: bool) -> str:
    report: list[Any] = []

    async def ping(port: int, handshake_only: bool) -> None:
        if cli:
            report.append(await cli_ping(pki, cell, port, handshake_only))
            return
        policy: Policy = pki.client_policy(min_version=cell.version, max_version=cell.version)
        if cell.mtls:
            from trioecho import CertSpec

            policy = policy.replace(client_cert=CertSpec(pki.client_pem))
        opts = PingOptions(host="127.0.0.1", port=port, servername="localhost", count=2, interval=0,
                           timeout=CELL_TIMEOUT / 4, handshake_only=handshake_only, resume=cell.resume, sizes=(100,))
        report.append(await Pinger(opts, policy).run())

    if peer.driver is _trioecho_server:
        await _trioecho_server(pki, cell, ping, tmp, cli=cli)
    else:
        await peer.driver(pki, cell, ping, tmp)
    (r,) = report
    errors = [f"{p.error_kind}: {p.error}" for p in r.probes if not p.ok]
    check(not errors, f"ping failed: {errors}")
    check(r.tls is not None and r.tls.version == f"TLSv{cell.version}", f"ping negotiated {r.tls and r.tls.version}")
    want = [False, True] if cell.resume else [False, False]
    check([p.resumed for p in r.probes] == want, f"ping resumed {[p.resumed for p in r.probes]}, expected {want}")
    return str(r.tls.cipher)
