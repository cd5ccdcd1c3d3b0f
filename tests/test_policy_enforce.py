"""Policy, in process: validation, group/suite read-back, SNI, keys, key log, resumption switches."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from trioecho import CertSpec, ConfigError, Policy
from trioecho import _opensslconf
from trioecho.policy import KNOWN_TLS13_SUITES, PROFILES, effective_settings, sni_matches
from trioecho.testing import TestPKI, tls_stream_pair

ALL_GROUPS = {"X25519", "X448", "P-256", "P-384", "P-521"}


# -- validation: typos are refused before anything is built -------------------------------------

@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"ciphersuites": ("TLS_AES_128_GCM_SHA256", "TLS_FOO")}, "unknown TLS 1.3 suite 'TLS_FOO'"),
        ({"ciphersuites": ("ECDHE-RSA-AES128-GCM-SHA256",)}, "TLS 1.2 ciphers go in --ciphers"),
        ({"ciphersuites": ()}, "--max-version 1.2"),
        ({"groups": ("X25519MLKEM768",)}, "unknown key-exchange group"),
        ({"groups": ()}, "--groups is empty"),
        ({"num_tickets": 17}, "--tickets"),
        ({"alpn": ("x" * 256,)}, "1-255 bytes"),
    ],
)
def test_bad_settings_are_config_errors(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as ei:
        Policy(**changes)  # type: ignore[arg-type]
    assert needle in str(ei.value)


def test_group_spellings_are_normalized_and_deduplicated() -> None:
    assert Policy(groups=("x25519", "secp256r1", "prime256v1", "P-384")).groups == ("X25519", "P-256", "P-384")


def test_profiles_are_what_the_issue_says() -> None:
    inter, modern, chapter = PROFILES["intermediate"], PROFILES["modern"], PROFILES["chapter"]
    assert (inter.min_version, inter.max_version) == ("1.2", "1.3")
    assert inter.groups == ("X25519", "P-256", "P-384") and modern.groups == inter.groups
    assert (modern.min_version, modern.max_version) == ("1.3", "1.3")
    assert chapter.ciphersuites == ("TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256")
    assert chapter.ciphers == "ECDHE+AESGCM:ECDHE+CHACHA20"
    # Mozilla: the client picks among equally strong suites; the chapter keeps Python's default.
    assert not inter.server_cipher_preference and not modern.server_cipher_preference
    assert chapter.server_cipher_preference


# -- enforcement read-back, in process -------------------------------------------------------------

@pytest.mark.parametrize("role", ["server", "client"])
def test_default_groups_read_back(role: str) -> None:
    assert _opensslconf.enforced_groups(Policy(), role) == ALL_GROUPS


@pytest.mark.parametrize("role", ["server", "client"])
@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_single_group_is_enforced_in_process(role: str, group: str) -> None:
    """One group needs no OPENSSL_CONF: set_ecdh_curve is SSL_CTX_set1_groups on OpenSSL 3."""
    assert _opensslconf.enforced_groups(Policy(groups=(group,)), role) == {group}


def test_group_list_refused_in_process_for_both_roles(pki: TestPKI) -> None:
    if hasattr(ssl.SSLContext, "set_groups"):
        pytest.skip("this Python sets group lists itself (3.15+): nothing to refuse")
    policy = pki.server_policy(PROFILES["intermediate"])
    for build in (policy.server_context, policy.client_context):
        with pytest.raises(ConfigError) as ei:
            build()
        msg = str(ei.value)
        assert "not in force" in msg and "X25519,P-256,P-384" in msg and "OPENSSL_CONF" in msg


def test_chapter_suites_refused_in_process(pki: TestPKI) -> None:
    """Python 3.11 cannot set TLS 1.3 suites: building must refuse, never pretend."""
    if hasattr(ssl.SSLContext, "set_ciphersuites"):
        pytest.skip("this Python sets TLS 1.3 suites itself (3.15+): nothing to refuse")
    with pytest.raises(ConfigError, match="TLS 1.3 suites .* are not in force"):
        pki.server_policy(PROFILES["chapter"]).server_context()


def test_tls12_only_policy_does_not_check_tls13_suites(pki: TestPKI) -> None:
    ctx = pki.server_policy(PROFILES["chapter"], max_version="1.2").server_context()
    assert effective_settings(ctx)["tls13_suites"] == []


def test_intermediate_tls12_list_is_exact(pki: TestPKI) -> None:
    ctx = pki.server_policy(PROFILES["intermediate"], groups=None).server_context()
    eff = effective_settings(ctx)
    assert set(eff["tls12_ciphers"]) == {
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    }
    assert set(eff["tls13_suites"]) <= set(KNOWN_TLS13_SUITES)
    assert eff["server_cipher_preference"] is False
    assert eff["compression"] is False and eff["renegotiation"] is False


def test_single_group_decides_the_handshake(pki: TestPKI) -> None:
    """A P-384-only server talks to a default client, and refuses a client that offers only X25519."""
    sctx = pki.server_policy(groups=("P-384",)).server_context()
    ok = pki.client_policy().client_context()
    x25519_only = pki.client_policy(groups=("X25519",)).client_context()
    for c in (ok, x25519_only):
        c.check_hostname = False  # the probe name is not on the test certificate; the chain is still verified
    assert _opensslconf.loopback(sctx, ok) is not None
    assert _opensslconf.loopback(sctx, x25519_only) is None


# -- resumption switches ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(("tickets", "resumes"), [(1, True), (0, False)])
def test_tickets_switch_resumption(pki: TestPKI, version: str, tickets: int, resumes: bool) -> None:
    """--no-tickets turns resumption off on both versions (OpenSSL does not resume Python
    server contexts by session ID), and one shared server context resumes across connections."""
    sctx = pki.server_policy(num_tickets=tickets).server_context()
    cctx = pki.client_policy(min_version=version, max_version=version).client_context()
    cctx.check_hostname = False  # the probe name is not on the test certificate; the chain is still verified
    first = _opensslconf.loopback(sctx, cctx)
    assert first is not None and first.version() == f"TLSv{version}"
    again = _opensslconf.loopback(sctx, cctx, session=first.session)
    assert again is not None and again.session_reused is resumes
    assert effective_settings(sctx)["tickets"] is bool(tickets)


# -- SNI: several certificates ------------------------------------------------------------------------

def _write_leaf(ca: trustme.CA, d: Path, *names: str) -> Path:
    leaf = ca.issue_cert(*names)
    path = d / f"{names[0].replace('*', 'star')}.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("sni", "expected"),
    [("localhost", "localhost"), ("api.example", "api.example"), ("a.wild.example", "*.wild.example"),
     ("API.EXAMPLE", "api.example"), ("other.example", "localhost")],
)
async def test_sni_picks_the_certificate(pki: TestPKI, tmp_path: Path, sni: str, expected: str) -> None:
    api = _write_leaf(pki.ca, tmp_path, "api.example")
    wild = _write_leaf(pki.ca, tmp_path, "*.wild.example")
    other = _write_leaf(pki.ca, tmp_path, "other.example")
    policy = pki.server_policy().replace(certs=(
        CertSpec(pki.server_pem),                          # default
        CertSpec(api),                                     # names from its SAN (repeated --cert)
        CertSpec(wild),
        CertSpec(other, names=("not-other.example",)),     # --sni NAME=PEM: the name given wins
    ))
    cctx = pki.client_policy().client_context()
    cctx.check_hostname = False  # the default certificate does not hold every name; we check which one came
    client, _server = await tls_stream_pair(server_policy=policy, client_context=cctx, server_hostname=sni)
    cert = client.getpeercert()
    sans = [v for t, v in cert["subjectAltName"]]
    assert expected in sans


def test_sni_matching_rules() -> None:
    assert sni_matches("*.example.com", "a.example.com")
    assert not sni_matches("*.example.com", "a.b.example.com")
    assert not sni_matches("*.example.com", "example.com")
    assert sni_matches("Example.COM.", "example.com")


def test_extra_certificate_without_names_is_refused(pki: TestPKI, tmp_path: Path) -> None:
    leaf = pki.ca.issue_cert(common_name="x", organization_name="o")  # no SAN, a CN that is no host
    path = tmp_path / "ip.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
    policy = pki.server_policy().replace(certs=(CertSpec(pki.server_pem), CertSpec(path)))
    # a CN counts as a name: accepted
    policy.server_context()
    only_ip = pki.ca.issue_cert("10.9.8.7")
    path2 = tmp_path / "only-ip.pem"
    only_ip.private_key_and_cert_chain_pem.write_to_path(str(path2))
    with pytest.raises(ConfigError, match="--sni NAME=PEM"):
        pki.server_policy().replace(certs=(CertSpec(pki.server_pem), CertSpec(path2))).server_context()


# -- keys: permissions, encryption, mismatch ---------------------------------------------------------------

def _split_key(pki: TestPKI, d: Path, password: bytes | None = None) -> tuple[Path, Path]:
    crt = d / "server.crt"
    crt.write_bytes(b"".join(b.bytes() for b in pki.server.cert_chain_pems))
    key_obj = serialization.load_pem_private_key(pki.server.private_key_pem.bytes(), password=None)
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    key = d / "server.key"
    key.write_bytes(key_obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    key.chmod(0o600)
    return crt, key


def test_key_readable_by_others_warns(pki: TestPKI, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    crt, key = _split_key(pki, tmp_path)
    with caplog.at_level(logging.WARNING, logger="trioecho.policy"):
        Policy(certs=(CertSpec(crt, key),)).server_context()
    assert not [r for r in caplog.records if "readable by group or others" in r.getMessage()]
    key.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="trioecho.policy"):
        Policy(certs=(CertSpec(crt, key),)).server_context()
    msgs = [r.getMessage() for r in caplog.records if "readable by group or others" in r.getMessage()]
    assert msgs == [f"private key {key} is readable by group or others: chmod 600 {key}"]


def test_encrypted_key(pki: TestPKI, tmp_path: Path) -> None:
    crt, key = _split_key(pki, tmp_path, password=b"s3cret")
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")  # a trailing newline, as editors write it
    ctx = Policy(certs=(CertSpec(crt, key),), key_password_file=pw).server_context()
    assert ctx is not None
    with pytest.raises(ConfigError, match="is encrypted: pass --key-password-file"):
        Policy(certs=(CertSpec(crt, key),)).server_context()
    pw.write_text("wrong\n")
    with pytest.raises(ConfigError, match="cannot decrypt it; wrong password"):
        Policy(certs=(CertSpec(crt, key),), key_password_file=pw).server_context()


def test_key_cert_mismatch(pki: TestPKI, tmp_path: Path) -> None:
    crt, _key = _split_key(pki, tmp_path)
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(trustme.CA().issue_cert("x.example").private_key_pem.bytes())
    with pytest.raises(ConfigError) as ei:
        Policy(certs=(CertSpec(crt, stranger),)).server_context()
    assert "do not match" in str(ei.value) and str(crt) in str(ei.value) and str(stranger) in str(ei.value)


# -- key log -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_keylog_both_sides(pki: TestPKI, tmp_path: Path, version: str,
                                 caplog: pytest.LogCaptureFixture) -> None:
    skl, ckl = tmp_path / f"server-{version}.keys", tmp_path / f"client-{version}.keys"
    with caplog.at_level(logging.WARNING, logger="trioecho.policy"):
        await tls_stream_pair(server_policy=pki.server_policy(keylog=skl),
                              client_policy=pki.client_policy(keylog=ckl), version=version)
    needle = "CLIENT_RANDOM " if version == "1.2" else "CLIENT_HANDSHAKE_TRAFFIC_SECRET "
    for f in (skl, ckl):
        assert needle in f.read_text()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert f"--keylog {skl}" in warned and f"--keylog {ckl}" in warned and "decrypt" in warned


def test_keylog_off_by_default(pki: TestPKI) -> None:
    assert pki.server_policy().server_context().keylog_filename is None
    assert pki.client_policy().client_context().keylog_filename is None
