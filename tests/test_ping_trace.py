"""The handshake trace (trioecho._trace): the group and signature scheme the server chose, on any Python."""

from __future__ import annotations

from typing import Any

import pytest

from trioecho import Pinger, PingOptions
from trioecho import _trace
from trioecho.testing import TestPKI


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize(("group", "pki_name"), [("P-256", "pki"), ("X25519", "rsa_pki")])
async def test_group_and_signature_read_from_the_handshake(request: Any, start_server: Any, version: str,
                                                           group: str, pki_name: str) -> None:
    pki: TestPKI = request.getfixturevalue(pki_name)
    # one group: set_ecdh_curve restricts TLS 1.2 curves and TLS 1.3 key shares on any Python
    srv = await start_server(policy=pki.server_policy(groups=(group,), min_version=version, max_version=version))
    report = await Pinger(PingOptions(host="localhost", port=srv.port, count=1, interval=0), pki.client_policy()).run()
    assert report.tls is not None, report.probes[0].error
    assert report.tls.group == group
    want = "ecdsa_secp256r1_sha256" if pki_name == "pki" else ("rsa_pss_rsae_sha256", "rsa_pkcs1_sha256")
    assert report.tls.signature_scheme in (want if isinstance(want, tuple) else (want,))
    assert report.tls.client_cert_requested is False


def test_malformed_messages_never_raise() -> None:
    class Conn:
        pass

    conn = Conn()
    for msg_type, data in [(2, b""), (2, b"\x02\x00\x00\x05\x03"), (12, b"\x0c\x00\x00\x01"), (15, b"\x0f"),
                           (12, b"\x0c\x00\x00\x04\x01\x00\x17\x00")]:
        _trace._callback(conn, "read", 771, 22, msg_type, data)  # must not raise
    t = _trace.trace_of(conn)
    assert t is not None and t.server_hello and t.group is None
