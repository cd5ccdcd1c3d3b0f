"""Handshake cost in round trips, proven over a 50 ms-per-direction path (the chapter's formula, live).

A :class:`~trioecho._proxy.LatencyProxy` delays each direction by D = 50 ms (RTT = 100 ms) between
``Pinger`` and a real ``EchoServer`` on loopback; the client's TCP connect pays the emulated SYN round
trip.  The clock is a ``MockClock`` that jumps when every task waits, so the run takes well under a
second and the virtual times are exact: crypto costs no virtual time, so each handshake is a whole
number of round trips.  The autojump threshold is not 0 so that the clock never jumps while the kernel
still holds loopback bytes in flight (that would fire the 10 s timeouts instead).
"""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from trioecho import EchoServer, Pinger, PingOptions
from trioecho._proxy import LatencyProxy
from trioecho.testing import TestPKI

D = 0.050  # one-way delay: RTT = 100 ms

#: Real seconds of idleness before the mock clock jumps (see the module docstring).
AUTOJUMP_THRESHOLD = 0.05


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=AUTOJUMP_THRESHOLD)


async def ping_through_proxy(pki: TestPKI, version: str, *, count: int = 3, **opts: object):  # type: ignore[no-untyped-def]
    policy = pki.server_policy(min_version=version, max_version=version)
    server = EchoServer(policy=policy)
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(functools.partial(server.serve, host="127.0.0.1", port=0))
        proxy = LatencyProxy("127.0.0.1", addrs[0][1], delay=D)
        host, port = await nursery.start(proxy.serve)
        options = PingOptions(host=host, port=port, servername="localhost", count=count, interval=0,
                              timeout=30, **opts)  # type: ignore[arg-type]
        report = await Pinger(options, pki.client_policy(), open_stream=proxy.open_stream).run()
        nursery.cancel_scope.cancel()
    return report


def near(value: float | None, want: float, tol: float = 0.2) -> bool:
    return value is not None and abs(value - want) <= tol


@pytest.mark.parametrize(("version", "full_rtts"), [("1.2", 2.0), ("1.3", 1.0)])
async def test_handshake_costs_the_chapters_round_trips(pki: TestPKI, mock_clock: trio.testing.MockClock,
                                                        version: str, full_rtts: float) -> None:
    report = await ping_through_proxy(pki, version, count=3)
    probes = report.probes
    assert [p.ok for p in probes] == [True] * 3, [p.error for p in probes]
    assert [p.resumed for p in probes] == [False, True, True]
    for p in probes:
        assert near(p.tcp, 2 * D, 0.01), p.tcp  # the connect is one RTT
        # the first echo of a small frame is one more RTT
        assert near(p.echo, 2 * D, 0.02), p.echo
    # full: TLS 1.2 ~2 RTT, TLS 1.3 ~1 RTT; resumed (no 0-RTT): ~1 RTT for both
    assert near(probes[0].handshake_rtts, full_rtts), probes[0].handshake_rtts
    for p in probes[1:]:
        assert near(p.handshake_rtts, 1.0), p.handshake_rtts
    s = report.summary()
    assert near(s["handshake_rtts_full"]["median"], full_rtts)
    assert near(s["handshake_rtts_resumed"]["median"], 1.0)
    assert report.tls is not None and report.tls.version == f"TLSv{version}"


async def test_no_resume_pays_the_full_handshake_every_time(pki: TestPKI, mock_clock: trio.testing.MockClock) -> None:
    report = await ping_through_proxy(pki, "1.2", count=2, resume=False)
    assert [p.resumed for p in report.probes] == [False, False]
    assert all(near(p.handshake_rtts, 2.0) for p in report.probes)


async def test_keepalive_and_echoes_first_vs_steady(pki: TestPKI, mock_clock: trio.testing.MockClock) -> None:
    """--keepalive: one connection; --echoes: first echo apart from steady ones; both ~1 RTT here."""
    report = await ping_through_proxy(pki, "1.3", count=3, keepalive=True, echoes=4)
    probes = report.probes
    assert [p.ok for p in probes] == [True] * 3
    assert [p.fresh for p in probes] == [True, False, False]
    assert probes[0].tcp is not None and probes[1].tcp is None and probes[1].tls is None
    assert all(len(p.steady) == 3 for p in probes)
    s = report.summary()
    assert s["connections"] == 1 and s["first_echo"]["n"] == 1 and s["steady_echo"]["n"] == 3 + 4 + 4
    assert near(s["steady_echo"]["median"], 2 * D, 0.02)


async def test_size_sweep_large_frames_through_the_delay(pki: TestPKI, mock_clock: trio.testing.MockClock) -> None:
    """1 MiB echoes stream through the proxy (a pipe, not stop-and-wait) and are checked byte for byte."""
    report = await ping_through_proxy(pki, "1.3", count=2, sizes=(64, 1 << 20))
    assert [p.ok for p in report.probes] == [True, True], [p.error for p in report.probes]
    sizes = report.summary()["sizes"]
    assert set(sizes) == {64, 1 << 20}
    assert sizes[1 << 20]["first_echo"]["n"] == 1



@pytest.mark.parametrize(("version", "resumed"), [("1.2", [False, True, True]), ("1.3", [False, True, True])])
async def test_handshake_only_against_a_trio_server(pki: TestPKI, mock_clock: trio.testing.MockClock,
                                                    version: str, resumed: list[bool]) -> None:
    """--handshake-only costs the same RTTs, and resumes on both versions.  On TLS 1.3 that needs
    the server to send its NewSessionTicket without waiting for a first write: trio holds it back
    (https://github.com/python-trio/trio/pull/1171), so trioecho serve flushes it right after the
    handshake on TCP (_compat.send_tickets_now), as OpenSSL and GnuTLS servers do."""
    report = await ping_through_proxy(pki, version, count=3, handshake_only=True)
    probes = report.probes
    assert [p.ok for p in probes] == [True] * 3, [p.error for p in probes]
    assert [p.resumed for p in probes] == resumed
    assert near(probes[0].handshake_rtts, 2.0 if version == "1.2" else 1.0)
    assert all(near(p.handshake_rtts, 1.0) for p in probes[1:] if p.resumed)
