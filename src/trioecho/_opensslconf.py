"""Enforce TLS 1.3 suites and group lists on Pythons whose ssl module cannot set them.

Theory of operation
-------------------
Python < 3.15 has no ``SSLContext.set_ciphersuites`` or ``set_groups``
(https://github.com/python/cpython/issues/137197,
https://github.com/python/cpython/issues/136306).  OpenSSL can still apply
them process-wide from its configuration file (``Ciphersuites =`` and
``Groups =`` in the ``system_default`` section), but only if ``OPENSSL_CONF``
is in the environment before OpenSSL reads its configuration (at the first
context).  So the CLI, after parsing its arguments, calls
:func:`reexec_if_needed`: if a policy needs settings the running process lacks,
it writes a configuration file that *includes* the system one (providers and
its own ``system_default`` keys are kept) and re-executes itself once with
``OPENSSL_CONF`` pointing at it.  The new process (:func:`settle`) makes
OpenSSL read the file, deletes it, and restores the caller's ``OPENSSL_CONF``
so child processes do not inherit ours.

Whatever the route, :func:`check_enforced` reads the result back from the built
context (``get_ciphers()`` for suites; for groups, in-memory TLS 1.3
handshakes between a context with the policy's settings and peers limited to
one group each, :func:`enforced_groups`) and raises :class:`ConfigError` if it
differs from the request: we never claim a restriction that is not in force.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import re
import shutil
import ssl
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

log = logging.getLogger("trioecho.opensslconf")

if TYPE_CHECKING:
    from .policy import Policy

__all__ = ["check_enforced", "conf_lines_needed", "enforced_groups", "enforced_suites", "reexec_if_needed",
           "render_conf", "settle"]

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
    already is the re-executed one (then :func:`check_enforced` verifies, and
    :func:`settle` removes the temporary file once OpenSSL has read it).

    Raises:
        ConfigError: two policies need different process-wide settings, or the
            temporary configuration cannot be written.
    """
    if MARK_ENV in os.environ:
        # We are the re-executed process (or someone set the mark by hand): never
        # re-execute again; check_enforced() says whether the settings took.
        settle()
        return
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
    conf = render_conf(needed, _system_conf())
    try:
        fd, path = tempfile.mkstemp(prefix="trioecho-openssl-", suffix=".cnf")
        with os.fdopen(fd, "w") as f:
            f.write(conf)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the OpenSSL configuration that enforces {', '.join(needed)} "
            f"({exc.strerror or exc}): set TMPDIR to a writable directory"
        ) from exc
    env = dict(os.environ, OPENSSL_CONF=path, **{MARK_ENV: sig, _ORIG_ENV: os.environ.get("OPENSSL_CONF", "")})
    log.debug("re-executing under OPENSSL_CONF=%s to enforce %s", path, needed)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "trioecho", *argv], env)


#: True in a process that was re-executed under our OPENSSL_CONF.
reexecuted = False
#: The caller's own OPENSSL_CONF (empty: none), restored for child processes.
_ORIG_ENV = "TRIOECHO_ORIGINAL_OPENSSL_CONF"


def settle() -> None:
    """In the re-executed process: make OpenSSL read our file, then remove it.

    OpenSSL reads ``OPENSSL_CONF`` once, when the first context is created;
    after that the file is not needed.  Deleting it keeps /tmp clean, and
    restoring the caller's ``OPENSSL_CONF`` keeps our settings out of any
    child process.
    """
    global reexecuted
    path = os.environ.get("OPENSSL_CONF", "")
    os.environ.pop(MARK_ENV, None)
    if _ORIG_ENV not in os.environ or not Path(path).name.startswith("trioecho-openssl-"):
        return
    reexecuted = True
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # loads the configuration now
    try:
        os.unlink(path)
    except OSError as exc:
        log.debug("could not remove %s: %s", path, exc)
    orig = os.environ.pop(_ORIG_ENV)
    if orig:
        os.environ["OPENSSL_CONF"] = orig
    else:
        os.environ.pop("OPENSSL_CONF", None)


def loopback(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
             session: ssl.SSLSession | None = None) -> ssl.SSLObject | None:
    """An in-memory handshake between two contexts.

    Returns the client's SSLObject if the handshake completed on both ends
    (None otherwise), after letting it read any TLS 1.3 session ticket, so
    ``.session`` can resume a second handshake.
    """
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    srv = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    cli = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=_PROBE_NAME, session=session)
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
                return None
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            try:
                cli.read(1)  # process the NewSessionTicket, if any
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return None
            return cli
    return None


_handshake_ok = loopback


#: The name on the throwaway certificate the probes use.
_PROBE_NAME = "probe.trioecho.invalid"
_probe_cert: tuple[str, str] | None = None


def _throwaway_cert() -> tuple[str, str]:
    """A self-made certificate and key (PEM file paths) for in-memory probes; one per process."""
    global _probe_cert
    if _probe_cert is None:
        import trustme

        d = tempfile.mkdtemp(prefix="trioecho-probe-")  # mode 700
        atexit.register(shutil.rmtree, d, True)
        leaf = trustme.CA().issue_cert(_PROBE_NAME)
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        leaf.cert_chain_pems[0].write_to_path(cert)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(leaf.private_key_pem.bytes())
        _probe_cert = (cert, key)
    return _probe_cert


def probe_server(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Give a probe server context the throwaway certificate."""
    cert, key = _throwaway_cert()
    ctx.load_cert_chain(cert, key)
    return ctx


def _peer(role_of_peer: str, group: str) -> ssl.SSLContext | None:
    """A TLS 1.3 peer that offers (or accepts) only ``group``; None if OpenSSL lacks it."""
    purpose = ssl.PROTOCOL_TLS_SERVER if role_of_peer == "server" else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    if role_of_peer == "client":
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.set_ecdh_curve(_PROBE_CURVES[group])
    except (ValueError, ssl.SSLError):
        return None
    return probe_server(ctx) if role_of_peer == "server" else ctx


_groups_cache: dict[tuple[str, tuple[str, ...] | None], frozenset[str]] = {}


def enforced_groups(policy: Policy, role: str) -> frozenset[str]:
    """The key-exchange groups a ``role`` context built from ``policy`` accepts.

    Read back by handshakes, in memory: for each group OpenSSL knows, a peer
    that offers (or accepts) only that group tries a TLS 1.3 handshake with a
    context carrying the policy's protocol settings.  The group list is one
    setting for TLS 1.2 and 1.3 alike, so probing with TLS 1.3 is enough.
    Cached per role and requested list (the process-wide configuration cannot
    change after start).
    """
    key = (role, policy.groups)
    if key not in _groups_cache:
        probe_policy = policy.replace(min_version="1.3", max_version="1.3")
        got = set()
        for g in _PROBE_CURVES:
            peer = _peer("client" if role == "server" else "server", g)
            if peer is None:
                continue
            mine = probe_policy.probe_context(role)
            if role == "server":
                probe_server(mine)
                ok = _handshake_ok(mine, peer)
            else:
                ok = _handshake_ok(peer, mine)
            if ok is not None:
                got.add(g)
        _groups_cache[key] = frozenset(got)
    return _groups_cache[key]


def enforced_suites(ctx: ssl.SSLContext) -> frozenset[str]:
    """The TLS 1.3 suites a built context allows (``get_ciphers()`` read-back)."""
    return frozenset(c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3")


def check_enforced(policy: Policy, ctx: ssl.SSLContext, role: str) -> None:
    """Raise ConfigError unless ``ctx`` enforces the policy's TLS 1.3 suites and groups.

    Args:
        policy: what was asked.
        ctx: the context built from it.
        role: ``server`` or ``client`` (the groups probe needs to know).
    """
    py = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    if policy.ciphersuites is not None and policy.max_version == "1.3":
        got = enforced_suites(ctx)
        if got != set(policy.ciphersuites):
            raise ConfigError(
                f"TLS 1.3 suites {','.join(policy.ciphersuites)} are not in force "
                f"(this process allows {','.join(sorted(got))}): {py} cannot set them; run through "
                "the trioecho command, which applies them with OPENSSL_CONF, or set OPENSSL_CONF "
                "before Python starts (see docs/policy.md)"
            )
    if policy.groups is not None:
        got_groups = enforced_groups(policy, role)
        if got_groups != set(policy.groups):
            raise ConfigError(
                f"key-exchange groups {','.join(policy.groups)} are not in force "
                f"(this process accepts {','.join(sorted(got_groups)) or 'none of them'}): {py} cannot "
                "set a group list; run through the trioecho command, which applies it with OPENSSL_CONF, "
                "set OPENSSL_CONF before Python starts, or use a single group (--groups X25519)"
            )
