"""OPC UA client set-up: its message limits, and its security: the gateway's own
certificate, the server trust list, and the secure channel and user identity, all
under <data_dir>/pki:

    own/cert.der, own/private/key.pem   the client certificate, made on first use
    trusted/                            server certificates the user trusts (DER or PEM)
    rejected/<source>.der               the last untrusted certificate each source saw

Trust is by exact certificate: a server is trusted when the certificate it presents
is one of the files in trusted/. An untrusted one fails closed before any session
or password is sent; `ombre trust CONFIG SOURCE` (or moving the file) trusts it, and
the source's next reconnect picks it up without a restart. Each distinct certificate
a source refuses is handed once to an `OnRejected` callback, which the composition
root points at the audit log (this layer cannot reach the shadow's tables).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asyncua import ua
from asyncua.client.client import Client, _first_cert_from_chain
from asyncua.crypto import cert_gen, security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from connectors.opcua_config import OpcUaSourceConfig

APP_URI = "urn:ombre:gateway"
APP_NAME = "Ombre gateway"
CERT_DAYS = 5 * 365
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_CHUNKS = 512
_POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "Basic128Rsa15": security_policies.SecurityPolicyBasic128Rsa15,
    "Basic256": security_policies.SecurityPolicyBasic256,
}
MAX_REMEMBERED = 64  # refused certificates remembered per source as already recorded
_own_lock = threading.Lock()  # two sources starting at once make one certificate
log = logging.getLogger(__name__)
# Records that a source (1st) refused a server certificate at an endpoint (2nd), with
# its details (3rd: subject, sha256, file). Blocking: called in a worker thread.
OnRejected = Callable[[str, str, dict[str, str]], None]


def new_client(endpoint: str, timeout_s: float) -> Client:
    """A client with bounded messages: the server is told (in Hello) to send none larger
    than MAX_MESSAGE_BYTES in at most MAX_CHUNKS chunks, and to fail the request instead.
    asyncua's connection supervisor probes the server every `watchdog_intervall` and
    gives up after as long: `timeout_s`, so a busy server is not taken for a dead one."""
    client = Client(endpoint, timeout=timeout_s, watchdog_intervall=timeout_s)
    client.max_messagesize, client.max_chunkcount = MAX_MESSAGE_BYTES, MAX_CHUNKS
    return client


class SecurityError(ConnectionError):
    """The server cannot be connected to safely or is refused; the message says what
    the user has to do. The runtime retries with backoff, as for any lost link."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A server certificate the trust list refused, as the audit log records it."""

    subject: str  # RFC 4514
    sha256: str  # the whole fingerprint, colon-separated upper-case hex
    file: Path  # where it was saved for `ombre trust`

    def details(self) -> dict[str, str]:
        return {"subject": self.subject, "sha256": self.sha256, "file": str(self.file)}


class UntrustedError(SecurityError):
    """The server presented a certificate that is not in the trust list."""

    def __init__(self, message: str, rejected: Rejected) -> None:
        super().__init__(message)
        self.rejected = rejected


@dataclass(frozen=True, slots=True)
class Pki:
    """The certificate directories under one data directory."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path) -> Pki:
        return cls(data_dir / "pki")

    @property
    def own_cert(self) -> Path:
        return self.root / "own" / "cert.der"

    @property
    def own_key(self) -> Path:
        return self.root / "own" / "private" / "key.pem"

    @property
    def trusted(self) -> Path:
        return self.root / "trusted"

    def rejected(self, source: str) -> Path:
        return self.root / "rejected" / f"{source}.der"


def ensure_own_certificate(pki: Pki) -> None:
    """Make the client's key (mode 0600) and self-signed certificate if either is
    missing. Blocking (RSA key generation): call it in a worker thread."""
    with _own_lock:
        if pki.own_cert.is_file() and pki.own_key.is_file():
            return
        pki.own_key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = cert_gen.generate_private_key()
        cert = cert_gen.generate_self_signed_app_certificate(
            key, APP_NAME, {"organizationName": "Ombre"},
            [x509.UniformResourceIdentifier(APP_URI), x509.DNSName(socket.gethostname())],
            extended=[ExtendedKeyUsageOID.CLIENT_AUTH], days=CERT_DAYS)
        _write_new(pki.own_key, cert_gen.dump_private_key_as_pem(key), 0o600)
        _write_new(pki.own_cert, cert.public_bytes(Encoding.DER), 0o644)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to a new file created with `mode`, then move it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint, colon-separated upper-case hex (as openssl prints it)."""
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def describe(cert: x509.Certificate) -> str:
    """The subject's common name and the SHA-256 fingerprint, as a person compares them."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    return f"CN={name}, SHA-256 {fingerprint(cert)[:23]}..."


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def is_trusted(pki: Pki, der: bytes) -> bool:
    """Whether a certificate in trusted/ is exactly `der`. Unreadable files are skipped."""
    if not pki.trusted.is_dir():
        return False
    for path in pki.trusted.iterdir():
        if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
            continue
        try:
            if load_certificate(path).public_bytes(Encoding.DER) == der:
                return True
        except ValueError:
            continue
    return False


def check_server(pki: Pki, source: str, endpoint: str, der: bytes) -> None:
    """Return if the server certificate is trusted; else save it to rejected/ and raise
    UntrustedError saying how to trust it."""
    if is_trusted(pki, der):
        return
    rejected = pki.rejected(source)
    rejected.parent.mkdir(parents=True, exist_ok=True)
    rejected.write_bytes(der)
    cert = x509.load_der_x509_certificate(der)
    raise UntrustedError(
        f"the server certificate of {endpoint} ({describe(cert)}) "
        f"is not trusted, so the connection was refused. It was saved as {rejected}. "
        f"If it is your server's, trust it: run `ombre trust CONFIG {source}`, or move "
        f"{rejected} into {pki.trusted}/",
        Rejected(cert.subject.rfc4514_string(), fingerprint(cert), rejected))


class RejectionAudit:
    """Hands each distinct certificate one source refuses to `on_rejected` once, so a
    server refused at every reconnect (every few seconds) is one audit row, not one
    per attempt. It remembers the last MAX_REMEMBERED fingerprints (a server showing
    ever new certificates cannot grow it); one whose recording failed (the database
    down) is tried again at the next refusal."""

    def __init__(self, source: str, endpoint: str, on_rejected: OnRejected | None) -> None:
        self._source, self._endpoint, self._on_rejected = source, endpoint, on_rejected
        self._recorded: dict[str, None] = {}  # fingerprints, oldest first
        self._failing = False

    async def record(self, rejected: Rejected) -> None:
        if self._on_rejected is None or rejected.sha256 in self._recorded:
            return
        try:
            await asyncio.to_thread(self._on_rejected, self._source, self._endpoint,
                                    rejected.details())
        except Exception as exc:  # noqa: BLE001 - retried at the next refusal
            if not self._failing:
                log.warning("opcua %s: cannot record the refused certificate in the audit "
                            "log (%s: %s); trying again at each reconnect", self._source,
                            type(exc).__name__, exc)
            self._failing = True
            return
        if self._failing:
            log.info("opcua %s: the refused certificate is recorded in the audit log",
                     self._source)
        self._failing = False
        if len(self._recorded) >= MAX_REMEMBERED:
            del self._recorded[next(iter(self._recorded))]
        self._recorded[rejected.sha256] = None


def trust_rejected(pki: Pki, source: str) -> Path:
    """Move the source's rejected certificate into trusted/; the new path.
    FileNotFoundError when there is none."""
    rejected = pki.rejected(source)
    if not rejected.is_file():
        raise FileNotFoundError(f"no rejected certificate for source {source!r} at {rejected}: "
                                f"run the gateway so it meets the server first")
    pki.trusted.mkdir(parents=True, exist_ok=True)
    trusted = pki.trusted / rejected.name
    os.replace(rejected, trusted)
    return trusted


async def secure(client: Client, config: OpcUaSourceConfig, data_dir: Path) -> None:
    """Set the client's secure channel and user identity from the config, before
    `client.connect()`. With a policy, fetches the server's endpoints over an
    unsecured channel (as OPC UA discovery does) and checks the certificate of the
    endpoint matching the configured policy and mode against the trust list."""
    security = config.security
    if config.username is not None:
        client.set_user(config.username)
        if config.password is not None:
            client.set_password(config.password.get_secret_value())
    if security.policy in (None, "None"):
        if config.user_certificate is not None:
            raise SecurityError("an X.509 user identity needs a secure channel: set "
                                "security.mode Sign or SignAndEncrypt and a policy")
        return
    pki = Pki.of(data_dir)
    await asyncio.to_thread(ensure_own_certificate, pki)
    client.application_uri = APP_URI
    client.name = client.description = APP_NAME
    mode = getattr(ua.MessageSecurityMode, security.mode)
    policy = _POLICIES[security.policy]
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = next((e for e in endpoints
                     if e.SecurityMode == mode and e.SecurityPolicyUri == policy.URI), None)
    if endpoint is None:
        offered = sorted({f"{e.SecurityPolicyUri.rpartition('#')[2]}/{e.SecurityMode.name}"
                          for e in endpoints})
        raise SecurityError(f"{config.endpoint} offers no endpoint with policy "
                            f"{security.policy} and mode {security.mode}; it offers "
                            f"{', '.join(offered)}")
    der = _first_cert_from_chain(endpoint.ServerCertificate)
    await asyncio.to_thread(check_server, pki, config.name, config.endpoint, der)
    await client.set_security(policy, pki.own_cert, pki.own_key, server_certificate=der,
                              mode=mode)
    if config.user_certificate is not None and config.user_key is not None:
        await client.load_client_certificate(str(config.user_certificate))
        await client.load_private_key(config.user_key)
