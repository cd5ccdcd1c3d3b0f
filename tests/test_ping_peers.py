"""`trioecho ping --handshake-only` against TLS servers no one here wrote: openssl s_server, gnutls-serv.

Each case runs the real CLI (exit code and the JSON ``error_kind``), on loopback, TLS 1.2 and 1.3,
with and without resumption, a certificate for another name, an expired certificate, and a server
that requires a client certificate.  Every negative case then shows the server still serves a
client that does the right thing (both sides of a failure).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

from .conftest import CLI, cli_env
from .peers import Proc, need, run

pytestmark = pytest.mark.interop


@dataclass
class PeerPKI:
    dir: Path
    ca: Path
    client: Path

    def leaf(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def peer_pki(tmp_path_factory: pytest.TempPathFactory) -> PeerPKI:
    d = tmp_path_factory.mktemp("peer-pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaves = {
        "good": ca.issue_cert("localhost", "127.0.0.1"),
        "other": ca.issue_cert("other.example"),
        "expired": ca.issue_cert("localhost", not_before=datetime.datetime(2020, 1, 1),
                                 not_after=datetime.datetime(2021, 1, 1)),
    }
    for name, leaf in leaves.items():
        leaf.private_key_pem.write_to_path(str(d / f"{name}.key"))
        (d / f"{name}.crt").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    ca.issue_cert("client@example.invalid").private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    return PeerPKI(d, d / "ca.pem", d / "client.pem")


def _listening_port(pid: int) -> int | None:
    """The IPv4 TCP port process ``pid`` listens on (gnutls-serv -p 0 does not print it)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                return int(cols[1].split(":")[1], 16)
    return None


@asynccontextmanager
async def tls_peer(kind: str, version: str, pki: PeerPKI, cert: str, *, mtls: bool = False) -> AsyncIterator[int]:
    """Start ``openssl s_server`` or ``gnutls-serv`` on loopback, port 0; yield its port."""
    crt, key = pki.leaf(cert)
    if kind == "openssl":
        argv = [need("openssl"), "s_server", "-accept", "127.0.0.1:0", "-cert", str(crt), "-key", str(key),
                f"-tls{version.replace('.', '_')}"]
        if mtls:
            argv += ["-Verify", "1", "-CAfile", str(pki.ca)]
    else:
        prio = f"NORMAL:-VERS-ALL:+VERS-TLS{version}"
        # gnutls-serv has no bind-address option: it listens on all interfaces, port 0.
        argv = [need("gnutls-serv"), "-p", "0", "--x509certfile", str(crt), "--x509keyfile", str(key),
                "--priority", prio]
        argv += ["-r", "--verify-client-cert", "--x509cafile", str(pki.ca)] if mtls else ["-a"]
    async with run(argv) as proc:
        yield await _port_of(kind, proc)


async def _port_of(kind: str, proc: Proc) -> int:
    if kind == "openssl":
        return int((await proc.read_until(rb"ACCEPT 127\.0\.0\.1:(\d+)")).group(1))
    await proc.read_until(rb"IPv4 .*\.\.\.done")  # printed after listen()
    port = _listening_port(proc.proc.pid)
    assert port, "gnutls-serv listens on no IPv4 port"
    return port


async def ping(port: int, pki: PeerPKI, *extra: str, count: int = 2,
               profile: str | None = "baseline") -> tuple[int, dict]:  # type: ignore[type-arg]
    """Run the CLI.  The baseline profile spares the OPENSSL_CONF re-exec (half the start-up);
    profile=None runs the CLI default (intermediate), as users do."""
    argv = [*CLI, "ping", f"localhost:{port}", "--cafile", str(pki.ca), "--handshake-only", "-c", str(count),
            "-i", "0", "-W", "10", "--json", *extra]
    if profile is not None:
        argv += ["--profile", profile]
    res = await trio.to_thread.run_sync(
        lambda: subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=60))
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def kinds(doc: dict) -> list[str | None]:  # type: ignore[type-arg]
    return [p["error_kind"] for p in doc["probes"]]


PEERS = ["openssl", "gnutls"]
VERSIONS = ["1.2", "1.3"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer", PEERS)
async def test_handshake_only_with_and_without_resumption(peer_pki: PeerPKI, peer: str, version: str) -> None:
    async with tls_peer(peer, version, peer_pki, "good") as port:
        code, doc = await ping(port, peer_pki, "--expect", f"version={version}", "--expect", "resumed=yes", count=3,
                               profile=None)
        assert code == 0, doc["probes"]
        assert kinds(doc) == [None] * 3
        assert [p["resumed"] for p in doc["probes"]] == [False, True, True]
        assert doc["tls"]["version"] == f"TLSv{version}"
        assert doc["tls"]["group"] == "X25519"  # both servers' first choice, read from the handshake
        assert doc["tls"]["client_cert_requested"] is False
        assert all(r["ok"] for r in doc["expectations"])
        assert doc["summary"]["tls_resumed_ms"]["n"] == 2

        code, doc = await ping(port, peer_pki, "--no-resume", "--expect", "resumed=no")
        assert code == 0, doc["probes"]
        assert [p["resumed"] for p in doc["probes"]] == [False, False]
        # A failed expectation is exit 1, reported with what was seen.
        code, doc = await ping(port, peer_pki, "--no-resume", "--expect", "resumed=yes")
        assert code == 1 and kinds(doc) == [None, None]
        (r,) = doc["expectations"]
        assert not r["ok"] and r["actual"].startswith("no")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer", PEERS)
async def test_certificate_for_another_name(peer_pki: PeerPKI, peer: str, version: str) -> None:
    async with tls_peer(peer, version, peer_pki, "other") as port:
        code, doc = await ping(port, peer_pki, count=1)
        assert code == 1
        assert kinds(doc) == ["hostname_mismatch"]
        p = doc["probes"][0]
        assert "DNS:other.example" in p["error"] and "--servername other.example" in p["hint"]
        # the server still serves a client that asks for the name it holds
        argv_fix = ["--servername", "other.example"]
        code, doc = await ping(port, peer_pki, *argv_fix, count=1)
        assert code == 0 and kinds(doc) == [None]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer", PEERS)
async def test_expired_certificate(peer_pki: PeerPKI, peer: str, version: str) -> None:
    async with tls_peer(peer, version, peer_pki, "expired") as port:
        code, doc = await ping(port, peer_pki, count=1)
        assert code == 1 and kinds(doc) == ["cert_expired"]
        assert "renew" in doc["probes"][0]["hint"]
        # the server still serves (unverified, to read what it presents): the header shows how long ago
        code, doc = await ping(port, peer_pki, "--insecure", count=1)
        assert code == 0 and doc["insecure"] is True
        assert doc["tls"]["peer"]["days_left"] < -365


#: What the client sees when the server requires a certificate and gets none.  TLS 1.3: the
#: rejection comes after our handshake "succeeded", as the certificate_required alert (RFC 8446)
#: from both servers.  TLS 1.2 has no such alert: both send a generic handshake_failure, and ping
#: tells it apart because it saw the server's CertificateRequest (trioecho._trace).
MTLS_KINDS = {
    ("openssl", "1.2"): "client_cert_required",
    ("openssl", "1.3"): "client_cert_required",
    ("gnutls", "1.2"): "client_cert_required",
    ("gnutls", "1.3"): "client_cert_required",
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("peer", PEERS)
async def test_server_requires_a_client_certificate(peer_pki: PeerPKI, peer: str, version: str) -> None:
    async with tls_peer(peer, version, peer_pki, "good", mtls=True) as port:
        code, doc = await ping(port, peer_pki, count=1)
        assert code == 1
        assert kinds(doc) == [MTLS_KINDS[peer, version]], doc["probes"]
        assert "--cert" in doc["probes"][0]["hint"]
        # with a certificate from the CA it trusts, the same server accepts us
        code, doc = await ping(port, peer_pki, "--cert", str(peer_pki.client), count=1)
        assert code == 0, doc["probes"]
        assert doc["tls"]["client_cert_requested"] is True and doc["tls"]["client_cert_sent"] is True
