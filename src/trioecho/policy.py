"""The TLS policy: one frozen value that builds every SSLContext trioecho uses.

Theory of operation
-------------------
A :class:`Policy` is plain data (versions, cipher lists, ALPN, verification,
certificates, resumption, timeouts).  It is validated once, in
``__post_init__``, and varied with :func:`dataclasses.replace` (or
:meth:`Policy.replace`).  :meth:`Policy.server_context` and
:meth:`Policy.client_context` build a *fresh* :class:`ssl.SSLContext` on every
call: never a module-level singleton, never a context a caller passed in.

The server must build its context once and share it across connections: TLS
session tickets are encrypted with keys that live in the ``SSL_CTX``, so a
ticket only resumes on the context that issued it.

Where Python's ``ssl`` cannot enforce a setting (TLS 1.3 cipher suites and
group lists before Python 3.15), the policy fails closed: it reads back what the
built context enforces and raises :class:`ConfigError` if that differs from
what was asked.  The CLI arranges an ``OPENSSL_CONF`` for its own process so the
restriction *is* in force (see :mod:`trioecho._opensslconf`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

log = logging.getLogger("trioecho.policy")

__all__ = [
    "ALPN_CLIENT_DEFAULT",
    "ALPN_SERVER_DEFAULT",
    "PROFILES",
    "CertSpec",
    "Policy",
    "effective_settings",
]

#: The chapter's ALPN: our protocol first, then the two the chapter uses as examples.
ALPN_CLIENT_DEFAULT: tuple[str, ...] = ("echo/1", "h2", "http/1.1")
#: The server speaks only the echo protocol.
ALPN_SERVER_DEFAULT: tuple[str, ...] = ("echo/1",)

#: Mozilla intermediate (5.7 minus DHE, as in 5.8/6.0): ECDHE with AEAD only.
INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
#: The chapter's TLS 1.2 list (section 14.3.2).
CHAPTER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
#: OpenSSL's default TLS 1.3 suites, which Mozilla's profiles keep as they are.
DEFAULT_TLS13_SUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
)
#: The chapter's TLS 1.3 suites (section 14.3.2).
CHAPTER_TLS13_SUITES: tuple[str, ...] = ("TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256")
#: Every TLS 1.3 suite OpenSSL 3 implements (RFC 8446 appendix B.4); anything else is a typo.
KNOWN_TLS13_SUITES: tuple[str, ...] = (
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
    "TLS_AES_128_CCM_8_SHA256",
)
#: Mozilla 5.7 intermediate/modern groups.
MOZILLA_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")

Version = Literal["1.2", "1.3"]
ClientAuth = Literal["none", "optional", "required"]

_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_VERSION_ALIASES = {
    "1.2": "1.2", "tls1.2": "1.2", "tlsv1.2": "1.2", "tls12": "1.2", "tls1_2": "1.2",
    "1.3": "1.3", "tls1.3": "1.3", "tlsv1.3": "1.3", "tls13": "1.3", "tls1_3": "1.3",
}
#: How OpenSSL names the groups we accept under friendlier spellings.
_GROUP_ALIASES = {
    "x25519": "X25519", "x448": "X448",
    "p-256": "P-256", "prime256v1": "P-256", "secp256r1": "P-256",
    "p-384": "P-384", "secp384r1": "P-384",
    "p-521": "P-521", "secp521r1": "P-521",
}
#: set_ecdh_curve() wants OpenSSL's short names.
_GROUP_CURVE_NAME = {
    "X25519": "X25519", "X448": "X448",
    "P-256": "prime256v1", "P-384": "secp384r1", "P-521": "secp521r1",
}


def parse_version(text: str) -> Version:
    """Parse ``1.2``, ``TLSv1.3``, ``tls13``... into ``"1.2"`` or ``"1.3"``.

    Raises:
        ConfigError: anything else (TLS 1.0/1.1 are refused on purpose).
    """
    v = _VERSION_ALIASES.get(text.strip().lower())
    if v is None:
        raise ConfigError(
            f"unknown TLS version {text!r}: use 1.2 or 1.3 "
            "(TLS 1.0 and 1.1 are deprecated and never allowed)"
        )
    return v  # type: ignore[return-value]


def parse_list(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """Split a comma-separated option (or pass a sequence through) into a tuple."""
    if text is None:
        return ()
    if isinstance(text, str):
        return tuple(p.strip() for p in text.split(",") if p.strip())
    return tuple(text)


def normalize_group(name: str) -> str:
    """Return the canonical spelling of a key-exchange group, or raise ConfigError."""
    g = _GROUP_ALIASES.get(name.strip().lower())
    if g is None:
        raise ConfigError(
            f"unknown key-exchange group {name!r}: use X25519, P-256, P-384, P-521 or X448"
        )
    return g


@dataclass(frozen=True)
class CertSpec:
    """A certificate chain and its key, optionally bound to SNI names.

    Args:
        cert: PEM file with the certificate chain (leaf first); may hold the key too.
        key: PEM file with the private key; ``None`` when ``cert`` holds it.
        names: SNI names this certificate serves (empty: the default certificate).
    """

    cert: Path
    key: Path | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Everything about TLS that trioecho configures, as one frozen value.

    Build contexts with :meth:`server_context` / :meth:`client_context`; vary it
    with :meth:`replace`; start from a named profile with :meth:`from_profile`.
    All fields are keyword-only.
    """

    # -- protocol ---------------------------------------------------------------
    profile: str = "baseline"
    min_version: Version = "1.2"
    max_version: Version = "1.3"
    #: TLS 1.2 cipher string (OpenSSL syntax); never affects TLS 1.3.
    ciphers: str = CHAPTER_CIPHERS
    #: TLS 1.3 suites; ``None`` keeps OpenSSL's default set.
    ciphersuites: tuple[str, ...] | None = None
    #: Key-exchange groups; ``None`` keeps OpenSSL's default list.
    groups: tuple[str, ...] | None = None
    #: ALPN offered; ``None`` means the role's default (server: echo/1; client: echo/1,h2,http/1.1).
    alpn: tuple[str, ...] | None = None
    #: Server: close connections whose client offered no protocol we accept.
    alpn_strict: bool = False
    #: Server picks the suite by its own order (Python's default).  Mozilla's
    #: profiles say no: every allowed suite is strong, and clients without AES
    #: hardware know to put ChaCha20 first.
    server_cipher_preference: bool = True
    # -- server identity and client authentication ----------------------------------
    certs: tuple[CertSpec, ...] = ()
    key_password_file: Path | None = None
    client_auth: ClientAuth = "none"
    client_ca: Path | None = None
    # -- client verification and identity ---------------------------------------------
    #: Trust anchors; ``None`` uses the system store.
    cafile: Path | None = None
    #: Turn off certificate and hostname verification (loudly reported).
    insecure: bool = False
    client_cert: CertSpec | None = None
    # -- resumption ------------------------------------------------------------------
    #: TLS 1.3 tickets per full handshake; 0 turns tickets (and resumption) off.
    #: One ticket, not OpenSSL's two: each costs ~20 us of server CPU per handshake.
    num_tickets: int = 1
    # -- debugging --------------------------------------------------------------------
    keylog: Path | None = None
    # -- timeouts ---------------------------------------------------------------------
    #: One overall deadline for the TCP connect + TLS handshake, in seconds.
    handshake_timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("min_version", "max_version"):
            object.__setattr__(self, name, parse_version(getattr(self, name)))
        if _VERSIONS[self.min_version] > _VERSIONS[self.max_version]:
            raise ConfigError(
                f"--min-version {self.min_version} is above --max-version {self.max_version}: "
                "swap them or drop one"
            )
        if self.alpn is not None:
            alpn = parse_list(self.alpn)
            for proto in alpn:
                if not 1 <= len(proto.encode()) <= 255:
                    raise ConfigError(f"ALPN protocol {proto!r} must be 1-255 bytes long")
            object.__setattr__(self, "alpn", alpn)
        if self.groups is not None:
            groups = tuple(dict.fromkeys(normalize_group(g) for g in parse_list(self.groups)))
            if not groups:
                raise ConfigError("--groups is empty: name at least one group (e.g. X25519) or drop the flag")
            object.__setattr__(self, "groups", groups)
        if self.ciphersuites is not None:
            suites = tuple(dict.fromkeys(parse_list(self.ciphersuites)))
            if not suites:
                raise ConfigError(
                    "--ciphersuites is empty: name at least one TLS 1.3 suite, "
                    "or turn TLS 1.3 off with --max-version 1.2"
                )
            for suite in suites:
                if suite not in KNOWN_TLS13_SUITES:
                    raise ConfigError(
                        f"unknown TLS 1.3 suite {suite!r}: use {', '.join(KNOWN_TLS13_SUITES[:3])} "
                        "(TLS 1.2 ciphers go in --ciphers)"
                    )
            object.__setattr__(self, "ciphersuites", suites)
        object.__setattr__(self, "certs", tuple(self.certs))
        if self.client_auth not in ("none", "optional", "required"):
            raise ConfigError(
                f"--client-auth must be none, optional or required, not {self.client_auth!r}"
            )
        if self.client_auth != "none" and self.client_ca is None:
            raise ConfigError(
                f"--client-auth {self.client_auth} needs --client-ca PEM: "
                "the CA whose client certificates the server accepts"
            )
        if not 0 <= self.num_tickets <= 16:
            raise ConfigError(f"--tickets must be between 0 and 16, not {self.num_tickets}")
        if not self.handshake_timeout > 0:
            raise ConfigError(
                f"--handshake-timeout must be a positive number of seconds, not {self.handshake_timeout}"
            )
        if self.ciphers:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(self.ciphers)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"--ciphers {self.ciphers!r} selects no TLS 1.2 cipher OpenSSL knows: "
                    "use OpenSSL names such as ECDHE-ECDSA-AES128-GCM-SHA256 "
                    "(TLS 1.3 suites go in --ciphersuites)"
                ) from exc

    # -- named constructors ---------------------------------------------------------------

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> Policy:
        """Start from a named profile (see :data:`PROFILES`) and override fields.

        Raises:
            ConfigError: unknown profile name, or a bad override.
        """
        try:
            base = PROFILES[name]
        except KeyError:
            raise ConfigError(
                f"unknown profile {name!r}: choose one of {', '.join(sorted(PROFILES))}"
            ) from None
        return dataclasses.replace(base, **overrides)

    def replace(self, **changes: Any) -> Policy:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- derived values -----------------------------------------------------------------------

    def server_alpn(self) -> tuple[str, ...]:
        return self.alpn if self.alpn is not None else ALPN_SERVER_DEFAULT

    def client_alpn(self) -> tuple[str, ...]:
        return self.alpn if self.alpn is not None else ALPN_CLIENT_DEFAULT

    # -- building contexts ------------------------------------------------------------------

    def _base(self, purpose: int, *, check: bool = True) -> ssl.SSLContext:
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = _VERSIONS[self.min_version]
        ctx.maximum_version = _VERSIONS[self.max_version]
        # Compression (CRIME) and renegotiation are off; truncation stays
        # detectable: Python 3.11.0-3.11.2 set OP_IGNORE_UNEXPECTED_EOF by
        # default (https://github.com/python/cpython/issues/95494).  0-RTT needs
        # no switch: stdlib ssl never calls SSL_CTX_set_max_early_data, so
        # OpenSSL's default of 0 holds and tickets never allow early data.
        ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        if self.ciphers:
            ctx.set_ciphers(self.ciphers)
        if purpose == ssl.PROTOCOL_TLS_SERVER and not self.server_cipher_preference:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        self._apply_tls13(ctx)
        if check:
            from . import _opensslconf

            role = "server" if purpose == ssl.PROTOCOL_TLS_SERVER else "client"
            _opensslconf.check_enforced(self, ctx, role)
        if self.keylog is not None:
            _warn_once(("keylog", str(self.keylog)),
                       "--keylog %s: TLS secrets are written to this file; anyone who has it can decrypt "
                       "the captured traffic (debugging only)", self.keylog)
            _open_keylog(self.keylog)
            ctx.keylog_filename = str(self.keylog)
        return ctx

    def _apply_tls13(self, ctx: ssl.SSLContext) -> None:
        """TLS 1.3 suites and groups, with the API where this Python has one (3.15+)."""
        if self.ciphersuites is not None:
            setter = getattr(ctx, "set_ciphersuites", None)
            if setter is not None:  # Python >= 3.15 (python/cpython#137197)
                setter(":".join(self.ciphersuites))
        if self.groups is not None:
            set_groups = getattr(ctx, "set_groups", None)
            if set_groups is not None:  # Python >= 3.15 (python/cpython#136306)
                set_groups(":".join(self.groups))
            elif len(self.groups) == 1:
                # One group: on OpenSSL 3 set_ecdh_curve is SSL_CTX_set1_groups
                # with one entry, so it restricts TLS 1.3 key shares as well.
                ctx.set_ecdh_curve(_GROUP_CURVE_NAME[self.groups[0]])

    def server_context(self) -> ssl.SSLContext:
        """Build a fresh server context: certificates, ALPN, tickets, client auth, SNI.

        Raises:
            ConfigError: no certificate, unreadable or mismatched files, a setting
                this process cannot enforce.
        """
        if not self.certs:
            raise ConfigError("the server needs a certificate: pass --cert server.pem")
        ctx = self._base(ssl.PROTOCOL_TLS_SERVER)
        self._server_identity(ctx, self.certs[0])
        if len(self.certs) > 1 or self.certs[0].names:
            _install_sni(ctx, self)
        return ctx

    def _server_identity(self, ctx: ssl.SSLContext, spec: CertSpec) -> None:
        _load_chain(ctx, spec, self.key_password_file)
        ctx.set_alpn_protocols(list(self.server_alpn()))
        ctx.num_tickets = self.num_tickets
        if self.num_tickets == 0:
            # No TLS 1.3 tickets, and no TLS 1.2 tickets either.  OpenSSL 3 does
            # not resume TLS 1.2 by session ID for Python's server contexts (sslyze
            # sees none; tests/test_sslyze.py), so resumption is off.
            ctx.options |= ssl.OP_NO_TICKET
        if self.client_auth != "none":
            assert self.client_ca is not None
            _load_verify(ctx, self.client_ca, "--client-ca")
            ctx.verify_mode = (
                ssl.CERT_REQUIRED if self.client_auth == "required" else ssl.CERT_OPTIONAL
            )

    def client_context(self) -> ssl.SSLContext:
        """Build a fresh client context: trust anchors, hostname check, ALPN, client cert.

        Raises:
            ConfigError: unreadable CA or client certificate files, a setting this
                process cannot enforce.
        """
        ctx = self._base(ssl.PROTOCOL_TLS_CLIENT)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.cafile is not None:
            _load_verify(ctx, self.cafile, "--cafile")
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        alpn = self.client_alpn()
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        if self.client_cert is not None:
            _load_chain(ctx, self.client_cert, self.key_password_file)
        return ctx

    def probe_context(self, role: str) -> ssl.SSLContext:
        """A context with this policy's protocol settings only (versions, ciphers, groups).

        No certificates, no verification, no checks, no key log: for the
        enforcement probes in :mod:`trioecho._opensslconf`, which pair it with a
        throwaway peer in memory.
        """
        clean = dataclasses.replace(self, keylog=None)
        ctx = clean._base(ssl.PROTOCOL_TLS_SERVER if role == "server" else ssl.PROTOCOL_TLS_CLIENT, check=False)
        if role == "client":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


# -- helpers ------------------------------------------------------------------------------


def _readable(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path}: no such file (generate one with scripts/gen_certs.py --out DIR)")
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory: pass the PEM file inside it")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{what} {path} is not readable by this user: fix its permissions (chmod 600, owned by you)")
    return path


def key_is_exposed(path: Path) -> bool:
    """True when a private key file is readable by group or others (the chapter asks for 600)."""
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


#: Warnings already logged in this process (a policy builds several contexts).
_warned: set[tuple[str, str]] = set()


def _warn_once(key: tuple[str, str], msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def _read_password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    _readable(path, "--key-password-file")
    return Path(path).read_bytes().rstrip(b"\r\n")


def _load_chain(ctx: ssl.SSLContext, spec: CertSpec, password_file: Path | None) -> None:
    cert = _readable(spec.cert, "certificate")
    key = _readable(spec.key, "key") if spec.key is not None else None
    key_file = key or cert
    key_pem = key_file.read_bytes()
    if key_is_exposed(key_file) and b"PRIVATE KEY" in key_pem:
        _warn_once(("key-mode", str(key_file)),
                   "private key %s is readable by group or others: chmod 600 %s", key_file, key_file)
    if b"PRIVATE KEY" not in key_pem:
        if key is None:
            raise ConfigError(
                f"certificate {cert} holds no private key: pass --key KEY.pem, "
                "or a PEM file with the key and the chain (e.g. server.pem from gen_certs.py)"
            )
        raise ConfigError(f"key {key} holds no PEM private key: pass the key file (e.g. server.key)")
    if b"CERTIFICATE" not in cert.read_bytes():
        raise ConfigError(f"certificate {cert} holds no PEM certificate: pass the certificate chain (e.g. server.crt)")
    password = _read_password(password_file)
    encrypted = b"ENCRYPTED" in key_pem
    if encrypted and password is None:
        raise ConfigError(f"key {key_file} is encrypted: pass --key-password-file FILE")
    try:
        ctx.load_cert_chain(str(cert), str(key) if key else None, password=password if encrypted else None)
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"certificate {cert} and key {key_file} do not match: "
                "pass the key that was generated with this certificate"
            ) from exc
        if encrypted:
            raise ConfigError(f"key {key_file}: cannot decrypt it; wrong password in --key-password-file?") from exc
        raise ConfigError(
            f"cannot load certificate {cert} / key {key_file} ({reason}): "
            "check both are PEM files and belong together"
        ) from exc


def _open_keylog(path: Path) -> None:
    """Create the key log file owner-only (it holds secrets), or raise a ConfigError with the fix."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"--keylog {path}: cannot write it ({exc.strerror or exc}): pass a file in a directory that exists "
            "and that you can write to"
        ) from exc


def _load_verify(ctx: ssl.SSLContext, path: Path, flag: str) -> None:
    path = _readable(path, flag)
    try:
        ctx.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"{flag} {path} holds no usable CA certificate ({getattr(exc, 'reason', exc)}): "
            "pass a PEM file such as ca.pem from gen_certs.py"
        ) from exc


def cert_names(path: Path) -> tuple[str, ...]:
    """The DNS names (subjectAltName, else commonName) of the first certificate in a PEM file.

    Raises:
        ConfigError: the file holds no readable certificate.
    """
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    data = _readable(path, "certificate").read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"certificate {path} holds no PEM certificate: pass the certificate chain") from exc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    if not names:
        names = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return names


#: Warn when a server certificate expires within this many days.
EXPIRY_WARNING_DAYS = 14


def cert_expiry_problem(path: Path) -> str | None:
    """A warning if the first certificate in ``path`` is expired, not yet valid, or expires soon."""
    import datetime

    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return None
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert.not_valid_after_utc < now:
        return (f"certificate {path} EXPIRED on {cert.not_valid_after_utc:%Y-%m-%d}: every client will refuse "
                "it (cert_expired); renew it (python scripts/gen_certs.py --out DIR)")
    if cert.not_valid_before_utc > now:
        return (f"certificate {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: "
                "clients will refuse it (cert_not_yet_valid); check this machine's clock")
    left = (cert.not_valid_after_utc - now).days
    if left < EXPIRY_WARNING_DAYS:
        return f"certificate {path} expires in {left} days ({cert.not_valid_after_utc:%Y-%m-%d}): renew it soon"
    return None


def sni_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching: exact, or a leading ``*.`` standing for exactly one label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _install_sni(ctx: ssl.SSLContext, policy: Policy) -> None:
    """Serve several certificates, chosen by the SNI name the client sends.

    Each extra certificate gets its own context built from the same policy
    (same versions, ciphers, client auth, tickets).  Switching contexts in the
    callback keeps the *first* context's session cache and ticket keys
    (OpenSSL's ``session_ctx``), so resumption works across certificates.  A
    name that matches nothing gets the first (default) certificate.
    """
    table: list[tuple[str, ssl.SSLContext | None]] = []
    for i, spec in enumerate(policy.certs):
        sub_ctx: ssl.SSLContext | None = None
        if i > 0:
            sub_ctx = policy._base(ssl.PROTOCOL_TLS_SERVER, check=False)
            policy._server_identity(sub_ctx, spec)
        names = spec.names or (cert_names(spec.cert) if i > 0 else ())
        if i > 0 and not names:
            raise ConfigError(
                f"certificate {spec.cert} names no host (no DNS subjectAltName or commonName), so no SNI "
                "name can select it: use --sni NAME=PEM"
            )
        table += [(n, sub_ctx) for n in names]

    def pick(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        if name is None:
            return
        for pattern, chosen in table:
            if sni_matches(pattern, name):
                if chosen is not None:
                    sslobj.context = chosen
                return

    ctx.sni_callback = pick


def effective_settings(ctx: ssl.SSLContext) -> dict[str, Any]:
    """Read back what a built context enforces (not what was asked for)."""
    ciphers = ctx.get_ciphers()
    tls12_on = ctx.minimum_version <= ssl.TLSVersion.TLSv1_2
    tls13_on = ctx.maximum_version >= ssl.TLSVersion.TLSv1_3
    server = ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    return {
        "minimum_version": ctx.minimum_version.name,
        "maximum_version": ctx.maximum_version.name,
        "tls13_suites": [c["name"] for c in ciphers if c["protocol"] == "TLSv1.3"] if tls13_on else [],
        "tls12_ciphers": [c["name"] for c in ciphers if c["protocol"] != "TLSv1.3"] if tls12_on else [],
        "compression": not bool(ctx.options & ssl.OP_NO_COMPRESSION),
        "renegotiation": not bool(ctx.options & ssl.OP_NO_RENEGOTIATION),
        "ignore_unexpected_eof": bool(ctx.options & ssl.OP_IGNORE_UNEXPECTED_EOF),
        "verify_mode": ctx.verify_mode.name,
        "check_hostname": ctx.check_hostname,
        "num_tickets": ctx.num_tickets if server else None,
        "tickets": (not bool(ctx.options & ssl.OP_NO_TICKET)) if server else None,
        "server_cipher_preference": bool(ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE) if server else None,
        "keylog": ctx.keylog_filename,
    }


def _iter_profiles() -> Iterable[Policy]:
    yield Policy(profile="baseline")
    yield Policy(
        profile="intermediate",
        ciphers=INTERMEDIATE_CIPHERS,
        server_cipher_preference=False,
        ciphersuites=DEFAULT_TLS13_SUITES,
        groups=MOZILLA_GROUPS,
    )
    yield Policy(
        profile="modern",
        min_version="1.3",
        ciphers=INTERMEDIATE_CIPHERS,
        server_cipher_preference=False,
        ciphersuites=DEFAULT_TLS13_SUITES,
        groups=MOZILLA_GROUPS,
    )
    yield Policy(
        profile="chapter",
        ciphers=CHAPTER_CIPHERS,
        ciphersuites=CHAPTER_TLS13_SUITES,
    )


#: Named profiles.  ``baseline`` is what the library builds by default and is
#: enforceable on any Python; ``intermediate`` (the CLI default) and ``modern``
#: follow Mozilla's server-side TLS guidelines 5.7; ``chapter`` is the design
#: chapter's own policy (section 14.3.2).
PROFILES: dict[str, Policy] = {p.profile: p for p in _iter_profiles()}
