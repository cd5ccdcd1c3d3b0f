"""sslyze, a scanner no one here wrote, against `trioecho serve` with each profile.

What is pinned: sslyze's Mozilla checker reads the guidelines file it bundles; sslyze
6.3 (and every 6.x so far) bundles version 5.7, which is what the intermediate and
modern profiles follow (minus the DHE suites 5.7 still allowed, as 5.8/6.0 do).  The
first test fails, on purpose, if a future sslyze bundles another version: re-check
the profiles against it, then add it to PINNED_MOZILLA_VERSIONS.

What the checker cannot see, and why: OCSP stapling (Python's ssl has no API to
staple; sslyze 6's checker does not check it either) and HSTS (not HTTP; the checker
has it switched off).  TLS 1.3 early data is checked with gnutls-cli instead
(tests/test_gnutls_policy.py): sslyze's early-data probe speaks HTTP first, which
the echo framing rightly rejects.  sslyze's resumption probe is TLS 1.2 only; for
TLS 1.3 resumption see the gnutls and ping tests.

The certificates are what ``scripts/gen_certs.py`` writes (the CA is the trust anchor),
so a user who follows the README gets the same result.  The scans run only the plugins
the checker needs plus resumption: ~0.5 s each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from .policy_helpers import gen_certs, serve

sslyze = pytest.importorskip("sslyze", reason="sslyze is a test dependency: pip install -e '.[test]'")
from sslyze import (  # noqa: E402
    CertificateInfoExtraArgument,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
    TlsResumptionSupportEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (  # noqa: E402
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)

pytestmark = [
    pytest.mark.interop,
    # sslyze's bundled trust stores hold old roots with negative serial numbers
    pytest.mark.filterwarnings("ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"),
]

PINNED_MOZILLA_VERSIONS = {5.7}
MOZILLA_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
CHAPTER_TLS13 = {"TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}
#: Our test certificate is ECDSA, so only the ECDSA half of each TLS 1.2 list can be accepted.
ECDSA_AEAD_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
}
MOZILLA_CURVES = {"X25519", "secp256r1", "secp384r1"}
ALL_CURVES = MOZILLA_CURVES | {"X448", "secp521r1"}


@pytest.fixture(scope="module")
def spki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """What a user gets from scripts/gen_certs.py: the CA, and the server's chain and key (ECDSA, 90 days)."""
    files = gen_certs(tmp_path_factory.mktemp("sslyze-pki"))
    return files["ca.pem"], files["server.crt"], files["server.key"]


def test_pinned_mozilla_guidelines_version() -> None:
    path = MozillaTlsConfiguration._JSON_PROFILE_PATH
    version = json.loads(Path(path).read_text())["version"]
    assert version in PINNED_MOZILLA_VERSIONS, (
        f"sslyze now bundles Mozilla guidelines {version} ({path}); compare the profiles in "
        "src/trioecho/policy.py with it, then pin it here"
    )


def _scan(port: int, ca: Path) -> ServerScanResult:
    location = ServerNetworkLocation("localhost", port, ip_address="127.0.0.1")
    commands = set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER) | {ScanCommand.SESSION_RESUMPTION}
    request = ServerScanRequest(
        server_location=location,
        scan_commands=commands,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca)),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    return result


async def scan_serve(spki: tuple[Path, Path, Path], *args: str) -> ServerScanResult:
    ca, crt, key = spki
    async with serve("--cert", str(crt), "--key", str(key), *args, log_level="warning") as (_proc, port):
        with trio.fail_after(120):
            result = await trio.to_thread.run_sync(_scan, port, ca)
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    assert result.scan_result is not None
    for cmd in SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER | {ScanCommand.SESSION_RESUMPTION}:
        attempt = getattr(result.scan_result, cmd.value)
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (cmd, attempt.error_trace)
    return result


def accepted(sr: Any, field: str) -> set[str]:
    return {c.cipher_suite.name for c in getattr(sr, field).result.accepted_cipher_suites}


def assert_hardened(sr: Any) -> None:
    """What every profile guarantees, as the scanner sees it."""
    for old in ("ssl_2_0_cipher_suites", "ssl_3_0_cipher_suites", "tls_1_0_cipher_suites", "tls_1_1_cipher_suites"):
        assert not getattr(sr, old).result.is_tls_version_supported, old
    for suite in accepted(sr, "tls_1_2_cipher_suites"):
        assert suite.startswith("TLS_ECDHE_"), f"{suite}: no forward secrecy"
        assert "_GCM_" in suite or "CHACHA20_POLY1305" in suite, f"{suite}: not an AEAD suite"
    assert sr.tls_compression.result.supports_compression is False
    reneg = sr.session_renegotiation.result
    assert reneg.supports_secure_renegotiation is True
    assert reneg.is_vulnerable_to_client_renegotiation_dos is False
    assert reneg.client_renegotiations_success_count == 0
    assert sr.heartbleed.result.is_vulnerable_to_heartbleed is False
    assert sr.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection is False
    assert sr.tls_fallback_scsv.result.supports_fallback_scsv is True
    assert sr.tls_extended_master_secret.result.supports_ems_extension is True
    for deployment in sr.certificate_info.result.certificate_deployments:
        assert deployment.verified_certificate_chain is not None  # trusted through our CA


def assert_mozilla(result: ServerScanResult, which: str) -> None:
    config = MozillaTlsConfiguration.get(TlsConfigurationEnum(which))
    check_server_against_tls_configuration(result, config)  # raises with the list of issues


async def test_intermediate_passes_mozilla_intermediate(spki: tuple[Path, Path, Path]) -> None:
    result = await scan_serve(spki, "--profile", "intermediate")
    sr = result.scan_result
    assert_hardened(sr)
    assert_mozilla(result, "intermediate")
    assert accepted(sr, "tls_1_2_cipher_suites") == ECDSA_AEAD_TLS12
    assert accepted(sr, "tls_1_3_cipher_suites") == MOZILLA_TLS13
    assert {c.name for c in sr.elliptic_curves.result.supported_curves} == MOZILLA_CURVES
    resumption = sr.session_resumption.result
    assert resumption.tls_ticket_resumption_result == TlsResumptionSupportEnum.FULLY_SUPPORTED


async def test_modern_passes_mozilla_modern(spki: tuple[Path, Path, Path]) -> None:
    result = await scan_serve(spki, "--profile", "modern")
    sr = result.scan_result
    assert_hardened(sr)
    assert_mozilla(result, "modern")
    assert_mozilla(result, "intermediate")  # modern is a subset
    assert not sr.tls_1_2_cipher_suites.result.is_tls_version_supported
    assert accepted(sr, "tls_1_3_cipher_suites") == MOZILLA_TLS13
    assert {c.name for c in sr.elliptic_curves.result.supported_curves} == MOZILLA_CURVES
    # sslyze resumes over TLS 1.2 only; TLS 1.3 resumption: tests/test_gnutls_policy.py
    assert sr.session_resumption.result.tls_ticket_resumption_result == TlsResumptionSupportEnum.SERVER_IS_TLS_1_3_ONLY


async def test_chapter_profile(spki: tuple[Path, Path, Path]) -> None:
    """The chapter's two TLS 1.3 suites, as an outside scanner sees them: the OPENSSL_CONF route works."""
    result = await scan_serve(spki, "--profile", "chapter")
    sr = result.scan_result
    assert_hardened(sr)
    assert accepted(sr, "tls_1_3_cipher_suites") == CHAPTER_TLS13
    assert accepted(sr, "tls_1_2_cipher_suites") == ECDSA_AEAD_TLS12
    assert {c.name for c in sr.elliptic_curves.result.supported_curves} == ALL_CURVES  # the chapter names none
    assert sr.session_resumption.result.tls_ticket_resumption_result == TlsResumptionSupportEnum.FULLY_SUPPORTED


async def test_baseline_profile_and_overrides(spki: tuple[Path, Path, Path]) -> None:
    result = await scan_serve(spki, "--profile", "baseline", "--groups", "X25519,P-256")
    sr = result.scan_result
    assert_hardened(sr)
    assert accepted(sr, "tls_1_3_cipher_suites") == MOZILLA_TLS13
    assert {c.name for c in sr.elliptic_curves.result.supported_curves} == {"X25519", "secp256r1"}


async def test_no_tickets_means_no_resumption(spki: tuple[Path, Path, Path]) -> None:
    result = await scan_serve(spki, "--profile", "intermediate", "--no-tickets")
    r = result.scan_result.session_resumption.result
    assert r.tls_ticket_resumption_result == TlsResumptionSupportEnum.NOT_SUPPORTED
    assert r.session_id_resumption_result == TlsResumptionSupportEnum.NOT_SUPPORTED
    assert r.session_id_successful_resumptions_count == 0


async def test_intermediate_with_an_rsa_certificate(tmp_path: Path) -> None:
    """gen_certs.py --key-type rsa: RSA-2048 passes intermediate too, with the ECDHE-RSA half of the list."""
    files = gen_certs(tmp_path / "rsa", "--key-type", "rsa")
    result = await scan_serve((files["ca.pem"], files["server.crt"], files["server.key"]), "--profile", "intermediate")
    sr = result.scan_result
    assert_hardened(sr)
    assert_mozilla(result, "intermediate")
    assert accepted(sr, "tls_1_2_cipher_suites") == {s.replace("_ECDSA_", "_RSA_") for s in ECDSA_AEAD_TLS12}
