"""Enforce TLS 1.3 suites and group lists on Pythons whose ssl module cannot set them.

Theory of operation
-------------------
Python < 3.15 has no ``SSLContext.set_ciphersuites`` or ``set_groups``
(https://github.com/python/cpython/issues/137197,
https://github.com/python/cpython/issues/136306).  OpenSSL can still apply
them process-wide from its configuration file (``Ciphersuites =`` and
``Groups =`` in the ``system_default`` section), but only if ``OPENSSL_CONF``
is in the environment before libcrypto initialises, i.e. before ``import ssl``
(and before ``hashlib``).  So the CLI, after parsing its arguments, calls
:func:`reexec_if_needed`: if a policy needs settings the running process lacks,
it writes a configuration file that *includes* the system one (providers and
its own ``system_default`` keys are kept) and re-executes itself with
``OPENSSL_CONF`` pointing at it.

Whatever the route, :func:`check_enforced` reads the result back from the built
context (``get_ciphers()`` for suites; an in-memory handshake probe for
groups) and raises :class:`ConfigError` if it differs from the request: we
never claim a restriction that is not in force.
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["check_enforced", "conf_lines_needed", "probe_groups", "reexec_if_needed", "render_conf"]

#: Set in the re-executed process, so it never re-executes twice.
MARK_ENV = "TRIOECHO_OPENSSL_CONF_FOR"
#: OpenSSL's spelling of each group in a ``Groups =`` line.
_CONF_GROUP = {"X25519": "X25519", "X448": "X448", "P-256": "P-256", "P-384": "P-384", "P-521": "P-521"}
#: Groups we can offer one at a time from a client to probe a server context.
_PROBE_CURVES = {"X25519": "X25519", "X448": "X448", "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1"}


def _default_tls13_suites() -> tuple[str, ...]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return tuple(c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3")


def conf_lines_needed(policy: Policy) -> dict[str, str]:
    """The ``system_default`` lines this process needs and the ssl module cannot set."""
    lines: dict[str, str] = {}
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if policy.ciphersuites is not None and not hasattr(probe, "set_ciphersuites"):
        if set(policy.ciphersuites) != set(_default_tls13_suites()):
            lines["Ciphersuites"] = ":".join(policy.ciphersuites)
    if policy.groups is not None and len(policy.groups) > 1 and not hasattr(probe, "set_groups"):
        lines["Groups"] = ":".join(_CONF_GROUP[g] for g in policy.groups)
    return lines


def _system_conf() -> Path | None:
    env = os.environ.get("OPENSSL_CONF")
    if env and Path(env).is_file():
        return Path(env)
    capath = ssl.get_default_verify_paths().openssl_capath
    cand = Path(capath).parent / "openssl.cnf"
    return cand if cand.is_file() else None


_SECTION = re.compile(r"^\s*\[\s*([^\]\s]+)\s*\]")
_KV = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*=\s*(.*?)\s*$")


def _sections(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"default": {}}
    cur = out["default"]
    for raw in text.splitlines():
        line = raw.split("#", 1)[0]
        if m := _SECTION.match(line):
            cur = out.setdefault(m.group(1), {})
        elif m := _KV.match(line):
            cur[m.group(1)] = m.group(2)
    return out


def render_conf(lines: dict[str, str], system_conf: Path | None) -> str:
    """An OpenSSL configuration: the system one, plus our ``system_default`` lines."""
    init: dict[str, str] = {}
    sysdef: dict[str, str] = {}
    head = ["# Written by trioecho: the system configuration plus the TLS policy's lines."]
    if system_conf is not None:
        secs = _sections(system_conf.read_text(errors="replace"))
        init_name = secs["default"].get("openssl_conf")
        if init_name and init_name in secs:
            init = {k: v for k, v in secs[init_name].items() if k != "ssl_conf"}
            ssl_sec = secs.get(secs[init_name].get("ssl_conf", ""), {})
            sysdef = dict(secs.get(ssl_sec.get("system_default", ""), {}))
        head.append(f".include {system_conf}")
    sysdef.update(lines)
    out = head + ["[default]", "openssl_conf = trioecho_init", "", "[trioecho_init]"]
    out += [f"{k} = {v}" for k, v in init.items()]
    out += ["ssl_conf = trioecho_ssl", "", "[trioecho_ssl]", "system_default = trioecho_tls", "", "[trioecho_tls]"]
    out += [f"{k} = {v}" for k, v in sysdef.items()]
    return "\n".join(out) + "\n"


def reexec_if_needed(policies: Sequence[Policy], argv: Sequence[str]) -> None:
    """Re-execute this process under an ``OPENSSL_CONF`` that enforces the policies.

    Returns without doing anything when nothing is needed or when this process
    already is the re-executed one (then :func:`check_enforced` verifies).

    Raises:
        ConfigError: two policies need different process-wide settings.
    """
    needed: dict[str, str] = {}
    for p in policies:
        for k, v in conf_lines_needed(p).items():
            if needed.get(k, v) != v:
                raise ConfigError(
                    f"the server and client policies need different {k} lists in one process; "
                    "run them as separate commands"
                )
            needed[k] = v
    if not needed:
        return
    sig = hashlib.sha256(repr(sorted(needed.items())).encode()).hexdigest()[:16]
    if os.environ.get(MARK_ENV) == sig:
        return
    conf = render_conf(needed, _system_conf())
    fd, path = tempfile.mkstemp(prefix="trioecho-openssl-", suffix=".cnf")
    with os.fdopen(fd, "w") as f:
        f.write(conf)
    env = dict(os.environ, OPENSSL_CONF=path, **{MARK_ENV: sig})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "trioecho", *argv], env)


def probe_groups(server_ctx: ssl.SSLContext, candidates: Sequence[str]) -> set[str]:
    """Which of ``candidates`` a server context accepts, by in-memory TLS 1.3 handshakes."""
    accepted = set()
    for g in candidates:
        cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cli.check_hostname = False
        cli.verify_mode = ssl.CERT_NONE
        cli.minimum_version = ssl.TLSVersion.TLSv1_3
        try:
            cli.set_ecdh_curve(_PROBE_CURVES[g])
        except (ValueError, ssl.SSLError):
            continue
        if _handshake_ok(server_ctx, cli):
            accepted.add(g)
    return accepted


def _handshake_ok(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bool:
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    cli = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    done = {id(srv): False, id(cli): False}
    for _ in range(8):
        for obj in (cli, srv):
            if done[id(obj)]:
                continue
            try:
                obj.do_handshake()
                done[id(obj)] = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return True
    return False


def check_enforced(policy: Policy, ctx: ssl.SSLContext) -> None:
    """Raise ConfigError unless ``ctx`` enforces the policy's TLS 1.3 suites and groups."""
    if policy.ciphersuites is not None and policy.max_version == "1.3":
        got = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"}
        if got != set(policy.ciphersuites):
            raise ConfigError(
                f"TLS 1.3 suites {','.join(policy.ciphersuites)} are not in force "
                f"(this process allows {','.join(sorted(got))}): Python {sys.version_info.major}."
                f"{sys.version_info.minor} cannot set them; run through the trioecho command, "
                "which applies them with OPENSSL_CONF, or set OPENSSL_CONF before Python starts"
            )
    if (
        policy.groups is not None
        and len(policy.groups) > 1
        and not hasattr(ctx, "set_groups")
        and ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    ):
        _check_groups_by_probe(policy, ctx)


_probe_cache: dict[tuple[str, ...], set[str]] = {}


def _check_groups_by_probe(policy: Policy, ctx: ssl.SSLContext) -> None:
    """Handshake-probe a throwaway server context built the same way (it has no cert yet)."""
    assert policy.groups is not None
    key = tuple(policy.groups)
    if key not in _probe_cache:
        _probe_cache[key] = _probe_with_throwaway_cert(policy)
    got = _probe_cache[key]
    if got != set(policy.groups):
        raise ConfigError(
            f"key-exchange groups {','.join(policy.groups)} are not in force "
            f"(this process accepts {','.join(sorted(got))}): Python "
            f"{sys.version_info.major}.{sys.version_info.minor} cannot set a group list; "
            "run through the trioecho command, which applies it with OPENSSL_CONF, set OPENSSL_CONF "
            "before Python starts, or use a single group (--groups X25519)"
        )


def _probe_with_throwaway_cert(policy: Policy) -> set[str]:
    import trustme

    ca = trustme.CA()
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.minimum_version = ssl.TLSVersion.TLSv1_3
    ca.issue_cert("probe.invalid").configure_cert(srv)
    return probe_groups(srv, list(_PROBE_CURVES))
