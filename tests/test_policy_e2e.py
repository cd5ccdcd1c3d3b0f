"""The policy end to end through the CLI: mTLS, strict ALPN, SNI, keys, key log, --insecure.

Every negative test checks both sides: ping's classified error (and exit code),
and a good ping right after it, which proves the server still serves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from .conftest import CLI, cli_env
from .policy_helpers import ping_argv, serve, strict_pki


class Ping:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    @property
    def doc(self) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(self.stdout)
        return d

    def kinds(self) -> list[str | None]:
        return [p["error_kind"] for p in self.doc["probes"]]


#: Most tests here do not depend on the profile: baseline needs no OPENSSL_CONF re-exec,
#: which saves a Python start per command.  The mTLS test keeps the CLI default (intermediate).
FAST = ("--profile", "baseline")


async def ping(port: int, *args: str, profile: tuple[str, ...] = FAST) -> Ping:
    with trio.fail_after(60):
        done = await trio.run_process(list(ping_argv(port, *profile, *args)), capture_stdout=True, capture_stderr=True,
                                      check=False, env=cli_env())
    res = Ping(done.returncode, done.stdout.decode(), done.stderr.decode())
    assert "Traceback" not in res.stderr, res.stderr
    return res


@pytest.fixture(scope="module")
def spki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("e2e-pki")
    pki = strict_pki(d / "good")
    stranger = strict_pki(d / "stranger")
    files: dict[str, Path] = {"ca": pki.ca_pem}
    files["crt"], files["key"] = pki.leaf("localhost", "localhost", "127.0.0.1")
    files["client_crt"], files["client_key"] = pki.leaf("trioecho-client", client=True)
    files["stranger_crt"], files["stranger_key"] = stranger.leaf("trioecho-client", client=True)
    files["api_crt"], files["api_key"] = pki.leaf("api.example")
    files["other_crt"], files["other_key"] = pki.leaf("other.example")
    for name in ("api", "other"):  # one PEM with key and chain, the form --sni and extra --cert take
        pem = d / f"{name}.pem"
        pem.write_bytes(files[f"{name}_key"].read_bytes() + files[f"{name}_crt"].read_bytes())
        pem.chmod(0o600)
        files[f"{name}_pem"] = pem
    files["enc_crt"], files["enc_key"] = pki.leaf("enc.localhost", "localhost", encrypt_with=b"hunter2")
    return files


def server_args(f: dict[str, Path], *extra: str, profile: tuple[str, ...] = FAST) -> list[str]:
    return ["--cert", str(f["crt"]), "--key", str(f["key"]), *profile, *extra]


# -- mTLS ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_mtls_required(spki: dict[str, Path], version: str) -> None:
    f = spki
    good = ["--cert", str(f["client_crt"]), "--key", str(f["client_key"])]
    stranger = ["--cert", str(f["stranger_crt"]), "--key", str(f["stranger_key"])]
    common = ["--cafile", str(f["ca"]), "--max-version", version, "--json"]
    async with serve(*server_args(f, "--client-auth", "required", "--client-ca", str(f["ca"]), profile=())) as (
            proc, port):
        ok = await ping(port, *common, *good, "-c", "2", profile=())
        assert ok.code == 0, ok.stdout
        assert [p["resumed"] for p in ok.doc["probes"]] == [False, True]
        await proc.read_until(rb"client=commonName=trioecho-client frames=1")  # the peer's subject is logged

        none = await ping(port, *common, "-c", "1", profile=())
        assert none.code == 1
        # TLS 1.2: the server aborts the handshake with a bare handshake_failure, which ping
        # explains from the CertificateRequest it saw; TLS 1.3: the client's handshake
        # "succeeds" and the rejection (certificate_required alert) arrives with the first read.
        assert none.kinds() == ["client_cert_required"]
        assert "--cert client.pem" in none.doc["probes"][0]["hint"]  # both versions point at the fix
        assert (none.doc["probes"][0]["tls_ms"] is None) is (version == "1.2")
        await proc.read_until(rb"outcome=client_cert_required")

        wrong = await ping(port, *common, *stranger, "-c", "1", profile=())
        assert wrong.code == 1 and wrong.kinds() == ["client_cert_rejected"], wrong.stdout
        assert "--client-ca" in wrong.doc["probes"][0]["hint"]
        assert (wrong.doc["probes"][0]["tls_ms"] is None) is (version == "1.2")
        await proc.read_until(rb"outcome=unknown_ca")

        again = await ping(port, *common, *good, "-c", "1", profile=())
        assert again.code == 0  # still serving


async def test_mtls_optional(spki: dict[str, Path]) -> None:
    f = spki
    async with serve(*server_args(f, "--client-auth", "optional", "--client-ca", str(f["ca"]))) as (proc, port):
        anon = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--json")
        assert anon.code == 0
        await proc.read_until(rb"outcome=clean close=\S+ tls=TLSv1.3 cipher=\S+ alpn=echo/1 resumed=False sni=localhost frames=1")
        ident = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--json",
                           "--cert", str(f["client_crt"]), "--key", str(f["client_key"]))
        assert ident.code == 0
        await proc.read_until(rb"client=commonName=trioecho-client")
        wrong = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--json",
                           "--cert", str(f["stranger_crt"]), "--key", str(f["stranger_key"]))
        assert wrong.code == 1 and wrong.kinds() == ["client_cert_rejected"]


# -- strict ALPN ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_strict_alpn(spki: dict[str, Path], version: str) -> None:
    f = spki
    async with serve(*server_args(f, "--alpn-strict")) as (proc, port):
        for offer in ("h2", ""):
            res = await ping(port, "--cafile", str(f["ca"]), "--alpn", offer, "--max-version", version,
                             "-c", "1", "--json")
            assert res.code == 1 and res.kinds() == ["alpn_mismatch"], res.stdout
            assert "--alpn echo/1" in res.doc["probes"][0]["hint"]
            await proc.read_until(rb"outcome=alpn_mismatch")
        ok = await ping(port, "--cafile", str(f["ca"]), "--max-version", version, "-c", "1", "--json")
        assert ok.code == 0 and ok.doc["tls"]["alpn"] == "echo/1"


async def test_without_strict_alpn_no_overlap_still_echoes(spki: dict[str, Path]) -> None:
    """OpenSSL alone lets a handshake with no common protocol through: that is why --alpn-strict exists."""
    async with serve(*server_args(spki)) as (_proc, port):
        res = await ping(port, "--cafile", str(spki["ca"]), "--alpn", "h2", "-c", "1", "--json")
        assert res.code == 0 and res.doc["tls"]["alpn"] is None


# -- SNI ----------------------------------------------------------------------------------------------------

async def test_sni_and_repeated_cert(spki: dict[str, Path]) -> None:
    f = spki
    args = server_args(f, "--cert", str(f["other_pem"]), "--sni", f"api.example,*.api.example={f['api_pem']}")
    async with serve(*args) as (_proc, port):
        for name, san in (("api.example", "DNS:api.example"), ("other.example", "DNS:other.example"),
                          ("localhost", "DNS:localhost")):
            res = await _ping_host(port, f, name)
            assert res.code == 0, res.stdout
            assert res.doc["tls"]["peer"]["san"][0] == san
            assert [p["resumed"] for p in res.doc["probes"]] == [False, True]


async def _ping_host(port: int, f: dict[str, Path], name: str) -> Ping:
    argv = [*CLI, "ping", f"127.0.0.1:{port}", "-i", "0", *FAST, "--cafile", str(f["ca"]), "--servername", name,
            "-c", "2", "--json"]
    with trio.fail_after(60):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False, env=cli_env())
    return Ping(done.returncode, done.stdout.decode(), done.stderr.decode())


def test_bad_sni_flag_is_a_usage_error(spki: dict[str, Path]) -> None:
    res = subprocess.run([*CLI, "serve", "--port", "0", "--sni", "no-equals-sign"], capture_output=True,
                         text=True, env=cli_env(), timeout=60)
    assert res.returncode == 2 and "NAME=PEM" in res.stderr


# -- keys ------------------------------------------------------------------------------------------------------

async def test_encrypted_key_with_password_file(spki: dict[str, Path], tmp_path: Path) -> None:
    f = spki
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    pw.chmod(0o600)
    async with serve("--cert", str(f["enc_crt"]), "--key", str(f["enc_key"]), "--key-password-file", str(pw),
                     *FAST) as (
            _proc, port):
        res = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--json")
        assert res.code == 0


def run_serve(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *CLI, "serve", "--host", "127.0.0.1", "--port", "0", *FAST, *args],
                          capture_output=True, text=True, env=cli_env(), timeout=60)


def test_key_refusals_exit_2(spki: dict[str, Path], tmp_path: Path) -> None:
    f = spki
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    cases = [
        (["--cert", str(f["enc_crt"]), "--key", str(f["enc_key"])], "is encrypted: pass --key-password-file"),
        (["--cert", str(f["enc_crt"]), "--key", str(f["enc_key"]), "--key-password-file", str(pw)],
         "cannot decrypt it"),
        (["--cert", str(f["crt"]), "--key", str(f["api_key"])], "do not match"),
        (["--cert", str(f["crt"]), "--key", str(tmp_path / "missing.key")], "no such file"),
        (["--cert", str(f["crt"]), "--key", str(f["crt"])], "holds no PEM private key"),
    ]
    for args, needle in cases:
        res = run_serve(*args)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


def test_unreadable_key_exit_2(spki: dict[str, Path], tmp_path: Path) -> None:
    """A key this user cannot read.  Root reads every file, so as root (CI containers) the
    command runs with CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped (util-linux setpriv)."""
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    crt.write_bytes(spki["crt"].read_bytes())
    key.write_bytes(spki["key"].read_bytes())
    key.chmod(0)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without util-linux setpriv: root reads every file")
        prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search")
    res = run_serve("--cert", str(crt), "--key", str(key), prefix=prefix)
    assert res.returncode == 2, res.stderr
    assert f"key {key} is not readable by this user" in res.stderr and "chmod 600" in res.stderr


async def test_key_permission_warning_both_sides(spki: dict[str, Path], tmp_path: Path) -> None:
    f = spki
    loose_key = tmp_path / "loose.key"
    loose_key.write_bytes(f["key"].read_bytes())
    loose_key.chmod(0o644)
    loose_client = tmp_path / "client-loose.key"
    loose_client.write_bytes(f["client_key"].read_bytes())
    loose_client.chmod(0o640)
    async with serve("--cert", str(f["crt"]), "--key", str(loose_key), *FAST) as (proc, port):
        await proc.read_until(f"private key {loose_key} is readable by group or others: chmod 600".encode())
        res = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--cert", str(f["client_crt"]),
                         "--key", str(loose_client))
        assert res.code == 0
        assert f"private key {loose_client} is readable by group or others" in res.stderr


# -- key log, --insecure ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_keylog_both_sides(spki: dict[str, Path], tmp_path: Path, version: str) -> None:
    f = spki
    skl, ckl = tmp_path / "server.keys", tmp_path / "client.keys"
    async with serve(*server_args(f, "--keylog", str(skl))) as (proc, port):
        await proc.read_until(f"--keylog {skl}: TLS secrets are written".encode())
        res = await ping(port, "--cafile", str(f["ca"]), "-c", "1", "--keylog", str(ckl), "--max-version", version)
        assert res.code == 0
        assert f"--keylog {ckl}: TLS secrets are written" in res.stderr
    label = "CLIENT_RANDOM" if version == "1.2" else "CLIENT_TRAFFIC_SECRET_0"
    server_lines = {ln for ln in skl.read_text().splitlines() if ln.startswith(label)}
    client_lines = {ln for ln in ckl.read_text().splitlines() if ln.startswith(label)}
    assert server_lines and server_lines == client_lines  # the same secrets, as Wireshark needs them


async def test_insecure_warns_and_is_in_json(spki: dict[str, Path]) -> None:
    async with serve(*server_args(spki)) as (_proc, port):
        trusted = await ping(port, "-c", "1", "--json")  # system trust: our CA is unknown
        assert trusted.code == 1 and trusted.kinds() == ["unknown_ca"]
        res = await ping(port, "--insecure", "-c", "1", "--json")
        assert res.code == 0
        assert "WARNING: --insecure" in res.stderr and "NOT verified" in res.stderr
        assert res.doc["insecure"] is True and res.doc["tls"]["verified"] is False
        text = await ping(port, "--insecure", "-c", "1")
        assert "WARNING: --insecure" in text.stderr and "verify   OFF (--insecure)" in text.stdout


@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_handshake_only_clients_resume(spki: dict[str, Path], version: str) -> None:
    """A client that never writes still gets its TLS 1.3 ticket (sent right after the handshake)."""
    async with serve(*server_args(spki)) as (proc, port):
        res = await ping(port, "--cafile", str(spki["ca"]), "--handshake-only", "-c", "3", "--json",
                         "--max-version", version)
        assert res.code == 0, res.stdout
        assert [p["resumed"] for p in res.doc["probes"]] == [False, True, True]
        await proc.read_until(rb"resumed=True")
