"""`trioecho policy show` and the OPENSSL_CONF re-exec, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from trioecho import _opensslconf
from trioecho.policy import PROFILES, Policy

from .conftest import CLI, cli_env

INTERMEDIATE_TLS12 = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
}
MOZILLA_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def show(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "policy", "show", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=60)


def show_json(*args: str, tmpdir: Path | None = None) -> dict[str, Any]:
    env = cli_env()
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    res = show("--json", *args, env=env)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def test_chapter_suites_are_read_back_through_the_reexec(tmp_path: Path) -> None:
    """Python 3.11 cannot set TLS 1.3 suites; the CLI re-execs under OPENSSL_CONF and the
    contexts it then builds allow exactly the chapter's two suites, read back with get_ciphers()."""
    doc = show_json("--profile", "chapter", tmpdir=tmp_path)
    chapter = {"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
    for role in ("server", "client"):
        assert set(doc["enforced"][role]["tls13_suites"]) == chapter
    if not hasattr(__import__("ssl").SSLContext, "set_ciphersuites"):
        assert "OPENSSL_CONF" in doc["enforced_via"]
    tls13 = [row for row in doc["loopback"] if row["version"] == "TLSv1.3"][0]
    assert tls13["ok"] and tls13["cipher"] in chapter and tls13["alpn"] == "echo/1" and tls13["resumed"]
    # the temporary configuration is gone once OpenSSL has read it
    assert not list(tmp_path.glob("trioecho-openssl-*.cnf"))


@pytest.mark.parametrize(
    ("groups", "asked"),
    [("X25519", ["X25519"]), ("P-384", ["P-384"]), ("X25519,P-384", ["X25519", "P-384"]),
     ("secp521r1,x448", ["P-521", "X448"])],
)
def test_groups_are_read_back_by_handshakes(groups: str, asked: list[str]) -> None:
    """One group is set in process; a list goes through OPENSSL_CONF; both are read back."""
    doc = show_json("--profile", "baseline", "--groups", groups)
    assert doc["asked"]["groups"] == asked
    for role in ("server", "client"):
        assert doc["enforced"][role]["groups"] == sorted(asked)


def test_intermediate_is_mozilla_intermediate() -> None:
    doc = show_json()  # the CLI default profile
    assert doc["profile"] == "intermediate"
    for role in ("server", "client"):
        eff = doc["enforced"][role]
        assert (eff["minimum_version"], eff["maximum_version"]) == ("TLSv1_2", "TLSv1_3")
        assert set(eff["tls12_ciphers"]) == INTERMEDIATE_TLS12
        assert set(eff["tls13_suites"]) == MOZILLA_TLS13
        assert eff["groups"] == ["P-256", "P-384", "X25519"]
        assert eff["compression"] is False and eff["renegotiation"] is False
    assert doc["enforced"]["server"]["server_cipher_preference"] is False
    assert doc["enforced"]["client"]["verify_mode"] == "CERT_REQUIRED"
    assert doc["enforced"]["client"]["check_hostname"] is True
    assert [r["version"] for r in doc["loopback"]] == ["TLSv1.2", "TLSv1.3"]
    assert all(r["ok"] and r["resumed"] and r["alpn"] == "echo/1" for r in doc["loopback"])
    assert doc["fixed"]["early_data_0rtt"].startswith("refused")


def test_modern_is_tls13_only() -> None:
    doc = show_json("--profile", "modern")
    for role in ("server", "client"):
        assert doc["enforced"][role]["minimum_version"] == "TLSv1_3"
        assert doc["enforced"][role]["tls12_ciphers"] == []
    assert [r["version"] for r in doc["loopback"]] == ["TLSv1.3"]


def test_overrides_and_no_tickets() -> None:
    doc = show_json("--profile", "chapter", "--max-version", "1.2", "--no-tickets", "--alpn", "x/1")
    srv = doc["enforced"]["server"]
    assert srv["maximum_version"] == "TLSv1_2" and srv["tls13_suites"] == []
    assert srv["tickets"] is False and srv["num_tickets"] == 0 and srv["alpn"] == ["x/1"]
    (row,) = doc["loopback"]
    assert row["ok"] and row["resumed"] is False  # resumption really is off


def test_text_output_states_the_refusals() -> None:
    res = show("--profile", "chapter")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "enforced (read back from built contexts" in out
    assert "early_data_0rtt  refused" in out and "ocsp_stapling    n/a" in out
    assert "TLSv1.3: TLS_AES_128_GCM_SHA256" in out or "TLSv1.3: TLS_CHACHA20_POLY1305_SHA256" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--ciphersuites", "TLS_AES_128_GCM_SHA256,TLS_NOPE"], "unknown TLS 1.3 suite 'TLS_NOPE'"),
        (["--groups", "X25519MLKEM768"], "unknown key-exchange group"),
        (["--profile", "paranoid"], "choose one of"),
        (["--min-version", "1.0"], "never allowed"),
    ],
)
def test_unsupported_options_exit_2(args: list[str], needle: str) -> None:
    res = show(*args)
    assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.skipif(hasattr(__import__("ssl").SSLContext, "set_ciphersuites"),
                    reason="Python 3.15+ sets TLS 1.3 suites itself; no configuration file can be missing")
@pytest.mark.parametrize("command", ["policy", "serve", "ping"])
def test_never_claims_what_is_not_in_force(command: str, tmp_path: Path) -> None:
    """If the OpenSSL configuration did not take effect (here: the process believes it was
    already re-executed, but OPENSSL_CONF is absent), every command refuses to start."""
    policy = PROFILES["chapter"]
    sig = __import__("hashlib").sha256(
        repr(sorted(_opensslconf.conf_lines_needed(policy).items())).encode()).hexdigest()[:16]
    env = cli_env()
    env[_opensslconf.MARK_ENV] = sig
    argv = {"policy": ["policy", "show"], "serve": ["serve", "--port", "0", "--cert", str(tmp_path / "x.pem")],
            "ping": ["ping", "localhost:1"]}[command]
    if command == "serve":
        from trioecho.testing import make_pki

        argv[-1] = str(make_pki(tmp_path).server_pem)
    res = subprocess.run([*CLI, *argv, "--profile", "chapter"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "TLS 1.3 suites TLS_AES_128_GCM_SHA256,TLS_CHACHA20_POLY1305_SHA256 are not in force" in res.stderr
    assert "Traceback" not in res.stderr


def test_reexec_includes_the_system_configuration(tmp_path: Path) -> None:
    """The written configuration keeps the system file (.include) and its system_default keys."""
    system = tmp_path / "system.cnf"
    system.write_text(
        "openssl_conf = init\n[init]\nssl_conf = ssl_sect\n[ssl_sect]\nsystem_default = sd\n"
        "[sd]\nCipherString = DEFAULT:@SECLEVEL=2\nMinProtocol = TLSv1.2\n"
    )
    conf = _opensslconf.render_conf({"Ciphersuites": "TLS_AES_128_GCM_SHA256"}, system)
    assert f".include {system}" in conf
    assert "CipherString = DEFAULT:@SECLEVEL=2" in conf and "MinProtocol = TLSv1.2" in conf
    assert "Ciphersuites = TLS_AES_128_GCM_SHA256" in conf
    # and OpenSSL accepts it: a child Python under it allows just that suite
    path = tmp_path / "t.cnf"
    path.write_text(conf)
    env = dict(os.environ, OPENSSL_CONF=str(path))
    out = subprocess.run(
        [CLI[0], "-c", "import ssl; print(sorted(c['name'] for c in ssl.create_default_context().get_ciphers() "
                       "if c['protocol'] == 'TLSv1.3'))"],
        capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout.strip() == "['TLS_AES_128_GCM_SHA256']", out.stderr


def test_conf_lines_only_when_python_cannot() -> None:
    assert _opensslconf.conf_lines_needed(Policy()) == {}
    assert _opensslconf.conf_lines_needed(Policy(groups=("X25519",))) == {}  # in-process
    lines = _opensslconf.conf_lines_needed(PROFILES["intermediate"])
    if not hasattr(__import__("ssl").SSLContext, "set_groups"):
        assert lines == {"Groups": "X25519:P-256:P-384"}  # the suites are OpenSSL's default set
