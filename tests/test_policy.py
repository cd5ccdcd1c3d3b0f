"""Policy: built contexts enforce what the policy says; bad settings are ConfigErrors with a fix."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from trioecho import CertSpec, ConfigError, Policy
from trioecho.policy import PROFILES, effective_settings
from trioecho.testing import TestPKI


def test_defaults_are_the_chapter_policy(pki: TestPKI) -> None:
    for ctx in (pki.server_policy().server_context(), pki.client_policy().client_context()):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.options & ssl.OP_NO_COMPRESSION
        assert ctx.options & ssl.OP_NO_RENEGOTIATION
        # truncation must stay detectable (python/cpython#95494)
        assert not ctx.options & ssl.OP_IGNORE_UNEXPECTED_EOF
        tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert tls12, "TLS 1.2 suites expected"
        for c in tls12:
            assert c["name"].startswith("ECDHE-"), c["name"]
            assert "GCM" in c["name"] or "CHACHA20" in c["name"], c["name"]


def test_client_verifies_by_default(pki: TestPKI) -> None:
    ctx = pki.client_policy().client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert Policy().client_context().verify_mode == ssl.CERT_REQUIRED  # system trust


def test_alpn_defaults() -> None:
    p = Policy()
    assert p.server_alpn() == ("echo/1",)
    assert p.client_alpn() == ("echo/1", "h2", "http/1.1")


def test_fresh_context_each_call(pki: TestPKI) -> None:
    p = pki.server_policy()
    assert p.server_context() is not p.server_context()


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        Policy().min_version = "1.3"  # type: ignore[misc]


def test_intermediate_tls12_list_is_exact(pki: TestPKI) -> None:
    ctx = PROFILES["intermediate"].replace(groups=None, certs=(CertSpec(pki.server_pem),)).server_context()
    names = {c["name"] for c in effective_settings(ctx) and ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    }


def test_modern_is_tls13_only(pki: TestPKI) -> None:
    ctx = PROFILES["modern"].replace(groups=None).client_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3


@pytest.mark.parametrize("text", ["1.0", "1.1", "ssl3", "bogus"])
def test_old_versions_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="use 1.2 or 1.3"):
        Policy(min_version=text)  # type: ignore[arg-type]


def test_min_above_max_refused() -> None:
    with pytest.raises(ConfigError, match="above"):
        Policy(min_version="1.3", max_version="1.2")


def test_bad_cipher_string_refused() -> None:
    with pytest.raises(ConfigError, match="--ciphers"):
        Policy(ciphers="NOT-A-CIPHER")


def test_client_auth_needs_ca() -> None:
    with pytest.raises(ConfigError, match="--client-ca"):
        Policy(client_auth="required")


def test_server_needs_cert() -> None:
    with pytest.raises(ConfigError, match="--cert"):
        Policy().server_context()


def test_missing_cert_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file") as ei:
        Policy(certs=(CertSpec(tmp_path / "nope.pem"),)).server_context()
    assert "nope.pem" in str(ei.value) and "gen_certs" in str(ei.value)


def test_cert_and_key_mismatch(pki: TestPKI, tmp_path: Path) -> None:
    from trioecho.testing import make_pki

    other = make_pki(tmp_path / "other")
    crt = tmp_path / "server.crt"
    crt.write_bytes(pki.server.cert_chain_pems[0].bytes())
    key = tmp_path / "other.key"
    key.write_bytes(other.server.private_key_pem.bytes())
    with pytest.raises(ConfigError, match="do not match") as ei:
        Policy(certs=(CertSpec(crt, key),)).server_context()
    assert str(crt) in str(ei.value)


def test_cert_without_key(pki: TestPKI, tmp_path: Path) -> None:
    crt = tmp_path / "only.crt"
    crt.write_bytes(pki.server.cert_chain_pems[0].bytes())
    with pytest.raises(ConfigError, match="no private key"):
        Policy(certs=(CertSpec(crt),)).server_context()


def test_unreadable_key(pki: TestPKI, tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        # root reads any file: prove the check instead on a directory path
        with pytest.raises(ConfigError, match="is a directory"):
            Policy(certs=(CertSpec(tmp_path),)).server_context()
        return
    key = tmp_path / "k.pem"
    key.write_bytes(pki.server.private_key_pem.bytes())
    key.chmod(0)
    with pytest.raises(ConfigError, match="not readable"):
        Policy(certs=(CertSpec(pki.server_pem, key),)).server_context()


def test_bad_cafile(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="--cafile"):
        Policy(cafile=bad).client_context()


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        Policy.from_profile("nope")


def test_tls13_suites_not_claimed_when_not_enforced() -> None:
    """Python 3.11 cannot set TLS 1.3 suites: building must refuse, not pretend."""
    p = Policy(ciphersuites=("TLS_AES_128_GCM_SHA256",))
    if hasattr(ssl.SSLContext, "set_ciphersuites"):
        ctx = p.client_context()
        assert {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"} == {"TLS_AES_128_GCM_SHA256"}
    else:
        with pytest.raises(ConfigError, match="not in force"):
            p.client_context()


def test_single_group_is_enforced_in_process(pki: TestPKI) -> None:
    ctx = pki.server_policy(groups=("P-256",)).server_context()
    assert ctx is not None


def test_group_list_refused_in_process_without_conf(pki: TestPKI) -> None:
    if hasattr(ssl.SSLContext, "set_groups"):
        pytest.skip("this Python can set group lists directly (3.15+)")
    with pytest.raises(ConfigError, match="not in force"):
        pki.server_policy(groups=("X25519", "P-256")).server_context()
