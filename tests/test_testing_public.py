"""trioecho.testing and the pytest plugin, used the way a user would: public API only.

Nothing here imports a private name or this suite's conftest fixtures: it is what a
project that depends on trioecho would write in its own tests.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

from trioecho import CertSpec, ConnectionFailed, ServerLimits, SessionCache
from trioecho.testing import (
    lockstep_tls_stream_pair,
    make_pki,
    open_loopback_echo_server,
    open_memory_echo_server,
    tls_stream_pair,
)

SRC = Path(__file__).resolve().parent.parent / "src"


# -- the stream pairs ---------------------------------------------------------------------------

async def test_one_line_pair() -> None:
    client, server = await tls_stream_pair()
    assert client.version() == "TLSv1.3"
    await client.send_all(b"hello")
    assert await server.receive_some() == b"hello"


@pytest.mark.parametrize("mtls", [False, True], ids=["server-auth", "mtls"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
async def test_check_two_way_stream_over_the_pairs(version: str, mtls: bool, key_type: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path, key_type=key_type)
    make = functools.partial(tls_stream_pair, pki=pki, version=version, mtls=mtls)
    make_lockstep = functools.partial(lockstep_tls_stream_pair, pki=pki, version=version, mtls=mtls)
    with trio.fail_after(60):
        await trio.testing.check_two_way_stream(make, make_lockstep)
    client, server = await make()
    assert client.version() == server.version() == f"TLSv{version}"
    if mtls:
        assert server.getpeercert() is not None


async def test_pair_without_handshake_lets_the_test_drive_it() -> None:
    client, server = await tls_stream_pair(handshake=False)
    with pytest.raises(trio.NeedHandshakeError):
        client.version()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)
    assert client.selected_alpn_protocol() == "echo/1"


async def test_pair_pinned_to_tls12() -> None:
    client, _ = await lockstep_tls_stream_pair(version="1.2")
    assert client.version() == "TLSv1.2"
    assert client.cipher()[0].startswith("ECDHE-")


async def test_pki_files_work_with_tools_that_want_key_and_chain_apart(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    assert b"PRIVATE KEY" in pki.server_key.read_bytes()
    assert b"PRIVATE KEY" not in pki.server_crt.read_bytes()
    assert pki.server_key.stat().st_mode & 0o077 == 0  # keys are 0600
    assert pki.ca_pem.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")


# -- the echo servers ---------------------------------------------------------------------------

async def test_memory_echo_server_with_no_arguments() -> None:
    async with open_memory_echo_server() as srv:
        async with await srv.connect() as conn:
            await conn.echo(b"ping")
            assert conn.tls is not None and conn.tls.alpn == "echo/1"
        (info,) = await srv.wait_ended(1)
    assert info.outcome == "clean" and info.frames == 1


@pytest.mark.parametrize("lockstep", [False, True], ids=["memory", "lockstep"])
@pytest.mark.parametrize("version", ["1.2", "1.3"])
async def test_memory_echo_server_resumes_and_does_mtls(version: str, lockstep: bool) -> None:
    async with open_memory_echo_server(version=version, mtls=True, lockstep=lockstep) as srv:
        cache = SessionCache()
        for _ in range(2):
            async with await srv.connect(sessions=cache) as conn:
                await conn.echo(b"x" * 20000)  # more than one TLS record
        first, second = await srv.wait_ended(2)
    assert (first.resumed, second.resumed) == (False, True)
    assert first.version == f"TLSv{version}"
    assert first.client_subject is not None


async def test_memory_echo_server_rejects_an_untrusted_client_and_keeps_serving(tmp_path: Path) -> None:
    other = make_pki(tmp_path)  # a CA the server does not trust
    async with open_memory_echo_server(mtls=True, version="1.2") as srv:
        stranger = srv.client_policy(client_cert=CertSpec(other.client_pem))
        with pytest.raises(ConnectionFailed) as err:
            conn = await srv.connect(client_policy=stranger)
            await conn.echo(b"never")
        assert err.value.kind in ("cert_rejected_by_peer", "client_cert_rejected", "unknown_ca")
        async with await srv.connect() as conn:
            await conn.echo(b"still serving")
        infos = await srv.wait_ended(2)
    assert infos[0].outcome in ("unknown_ca", "cert_invalid", "client_cert_rejected")
    assert infos[1].outcome == "clean"


@pytest.mark.parametrize("opener", [open_memory_echo_server, open_loopback_echo_server], ids=["memory", "loopback"])
async def test_errors_in_the_block_come_out_as_themselves(opener) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AssertionError, match="my test failed"):
        async with opener():
            raise AssertionError("my test failed")
    with pytest.raises(ConnectionFailed) as err:
        async with opener(mtls=True) as srv:
            conn = await srv.connect(client_policy=srv.client_policy(client_cert=None))
            await conn.echo(b"no certificate")
    # TLS 1.3: the server rejects us after our handshake finished; whether the echo meets the
    # alert or the closed stream first is a race, and ping classifies both (with an mTLS hint).
    assert err.value.kind in ("client_cert_required", "reset")


async def test_loopback_echo_server_with_no_arguments() -> None:
    async with open_loopback_echo_server() as srv:
        assert srv.host == "127.0.0.1" and srv.port > 0
        async with await srv.connect() as conn:
            await conn.echo(b"over TCP")
        (info,) = await srv.wait_ended(1)
    assert info.outcome == "clean" and info.peer.startswith("127.0.0.1:")


async def test_loopback_echo_server_plaintext_and_ipv6() -> None:
    async with open_loopback_echo_server(plaintext=True) as srv:
        async with await srv.connect() as conn:
            assert conn.tls is None
            await conn.echo(b"no TLS")
        (info,) = await srv.wait_ended(1)
    assert info.outcome == "clean" and not info.tls
    async with open_loopback_echo_server(host="::1") as srv6:
        assert srv6.address == f"[::1]:{srv6.port}"
        async with await srv6.connect() as conn:
            await conn.echo(b"over IPv6")


async def test_memory_echo_server_limits_apply(autojump_clock: trio.testing.MockClock) -> None:
    # Memory streams, not loopback: with real sockets the autojump clock would also jump
    # while bytes are in flight in the kernel.
    async with open_memory_echo_server(limits=ServerLimits(idle_timeout=300)) as srv:
        conn = await srv.connect()
        await conn.echo(b"then silence")
        (info,) = await srv.wait_ended(1, timeout=600)
        await conn.aclose()
    assert info.outcome == "idle_timeout"
    assert trio.current_time() >= 300


# -- the pytest plugin, in a project of its own ---------------------------------------------------

USER_TESTS = '''
import trio, trio.testing

async def test_pair(trioecho_tls_pair):
    client, server = trioecho_tls_pair
    await client.send_all(b"hi")
    assert await server.receive_some() == b"hi"

async def test_memory_server(trioecho_memory_echo_server):
    async with await trioecho_memory_echo_server.connect() as conn:
        await conn.echo(b"hi")

async def test_loopback_server(trioecho_echo_server, trioecho_pki):
    assert trioecho_echo_server.pki is trioecho_pki
    async with await trioecho_echo_server.connect() as conn:
        await conn.echo(b"hi")

def test_policies(trioecho_server_policy, trioecho_client_policy, trioecho_pki):
    assert trioecho_client_policy.cafile == trioecho_pki.ca_pem
    assert trioecho_server_policy.server_context() is not None
'''


def _fake_install(site: Path) -> None:
    """What installing trioecho does for pytest: a dist-info with the pytest11 entry point."""
    dist = site / "trioecho_entry_for_tests-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: trioecho-entry-for-tests\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\ntrioecho = trioecho._pytest_entry\n")


def _run_pytest(project: Path, *args: str, site: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = [str(SRC)] + ([str(site)] if site else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "test_user.py").write_text(USER_TESTS)
    (proj / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    return proj


# (`pytest_plugins = [...]` is the route test_plugin_key_type_can_be_overridden takes.)
@pytest.mark.parametrize("how", ["-p", "--trioecho", "ini", "import"])
async def test_plugin_fixtures_once_enabled(user_project: Path, how: str) -> None:
    site = user_project.parent / "site"
    _fake_install(site)
    args: list[str] = []
    if how == "-p":
        args = ["-p", "trioecho.pytest_plugin"]
    elif how == "--trioecho":
        args = ["--trioecho"]
    elif how == "ini":
        (user_project / "pytest.ini").write_text("[pytest]\ntrio_mode = true\ntrioecho = true\n")
    else:
        (user_project / "conftest.py").write_text("from trioecho.pytest_plugin import *  # noqa: F403\n")
    res = await trio.to_thread.run_sync(functools.partial(_run_pytest, user_project, *args, site=site))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 passed" in res.stdout


async def test_plugin_is_off_unless_enabled(user_project: Path) -> None:
    site = user_project.parent / "site"
    _fake_install(site)
    res = await trio.to_thread.run_sync(functools.partial(_run_pytest, user_project, site=site))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "fixture 'trioecho_tls_pair' not found" in res.stdout
    # (That the entry point was loaded and offers --trioecho is what the "--trioecho" case shows:
    # pytest would refuse an unknown option.)


async def test_plugin_key_type_can_be_overridden(user_project: Path) -> None:
    (user_project / "conftest.py").write_text(textwrap.dedent('''
        import pytest
        pytest_plugins = ["trioecho.pytest_plugin"]

        @pytest.fixture(scope="session", params=["ecdsa", "rsa"])
        def trioecho_key_type(request):
            return request.param
    '''))
    (user_project / "test_user.py").write_text(textwrap.dedent('''
        async def test_key(trioecho_tls_pair, trioecho_key_type):
            client, _ = trioecho_tls_pair
            der = client.getpeercert(binary_form=True)
            assert der is not None
            from cryptography import x509
            key = x509.load_der_x509_certificate(der).public_key()
            assert type(key).__name__.lower().startswith(trioecho_key_type[:2])
    '''))
    res = await trio.to_thread.run_sync(functools.partial(_run_pytest, user_project))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout


async def test_readme_worked_example_runs(tmp_path: Path) -> None:
    """The README's testing example is a real test file: run it as a user would."""
    readme = (SRC.parent / "README.md").read_text()
    marker = "<!-- readme-example: testing -->\n```python\n"
    assert marker in readme, "the README lost its testing example"
    code = readme.split(marker, 1)[1].split("```", 1)[0]
    proj = tmp_path / "readme"
    proj.mkdir()
    (proj / "test_my_protocol.py").write_text(code)
    (proj / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    res = await trio.to_thread.run_sync(functools.partial(_run_pytest, proj))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout
