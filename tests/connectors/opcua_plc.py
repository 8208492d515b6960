"""Real asyncua servers for the OPC UA tests: a PLC in its own thread and event loop,
optionally with security policies, its own certificate and password users, and the
helpers that build a config for it and count what reached the SQLite sink."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import Server, ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.sqlite_ts import StoreError, open_store
from gateway.config_load import ConfigError
from gateway.runtime import Gateway
from ombre.config import OmbreConfig, load_config, validate_config
from tests.conftest import wait_until

ALL = (-(2**63), 2**63 - 1)
NS_URI = "urn:ombre:test"
BASE_TS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # within retention
STEP = timedelta(milliseconds=100)
T = TypeVar("T")


def ns(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


SERVER_URI = "urn:ombre:test:plc"
Build = Callable[[Server], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class ServerCert:
    """A server's self-signed certificate (DER) and key (PEM) files."""

    cert: Path
    key: Path


def make_server_cert(directory: Path, name: str = "server",
                     usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.SERVER_AUTH
                     ) -> ServerCert:
    """A self-signed certificate for the test server (or, with CLIENT_AUTH, a user)."""
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, f"test {name}", {}, [x509.UniformResourceIdentifier(SERVER_URI),
                                  x509.DNSName("127.0.0.1")],
        extended=[usage], days=30)
    directory.mkdir(parents=True, exist_ok=True)
    files = ServerCert(directory / f"{name}.der", directory / f"{name}-key.pem")
    files.cert.write_bytes(cert.public_bytes(Encoding.DER))
    files.key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return files


@dataclass
class Security:
    """A server's secure endpoints and users (none: anyone may connect); `attempts`
    counts session activations."""

    cert: ServerCert
    policies: list[ua.SecurityPolicyType]
    users: dict[str, str]
    user_certs: list[bytes] = field(default_factory=list)  # DER of X.509 users
    attempts: int = 0

    def get_user(self, iserver: InternalServer, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> User | None:
        self.attempts += 1
        if self.user_certs:
            known = certificate in self.user_certs
        else:
            known = not self.users or (username is not None and
                                       self.users.get(username) == password)
        return User(role=UserRole.User, name=username) if known else None


class Plc:
    """An asyncua server in a thread of its own, with its own event loop (so the
    server's tasks never mix with the gateway's), whose variables are `ns=2;s=<name>`.
    `write` sets a value with an explicit source timestamp, so expected counts are exact."""

    def __init__(self, port: int, security: Security | None = None,
                 build: Build | None = None) -> None:
        self.port = port
        self.security = security
        self.build = build
        self._relay: asyncio.Server | None = None
        self.server = Server(user_manager=security)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"plc:{port}",
                                        daemon=True)

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def start(self, variables: dict[str, Any]) -> None:
        self._thread.start()
        await self._call(self._setup(variables))

    async def _setup(self, variables: dict[str, Any]) -> None:
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/ombre/")
        if self.security is not None:
            await self.server.set_application_uri(SERVER_URI)
            await self.server.load_certificate(self.security.cert.cert)
            await self.server.load_private_key(self.security.cert.key)
            self.server.set_security_policy(self.security.policies)
            if self.security.users:
                self.server.set_identity_tokens([ua.UserNameIdentityToken])
            elif self.security.user_certs:
                self.server.set_identity_tokens([ua.X509IdentityToken])
        assert await self.server.register_namespace(NS_URI) == 2
        folder = await self.server.nodes.objects.add_folder(2, "Plant")
        for name, initial in variables.items():
            await folder.add_variable(ua.NodeId(name, 2), name, initial)
            await self._write(name, initial, BASE_TS - timedelta(days=1))
        if self.build is not None:
            await self.build(self.server)
        await self.server.start()

    async def write(self, name: str, value: Any, ts: datetime | None,
                    status: int = ua.StatusCodes.Good, server_ts: datetime | None = None
                    ) -> None:
        """Set a value stamped `ts` (source) and `server_ts` (server; default: ts)."""
        await self._call(self._write(name, value, ts, status, server_ts))

    async def write_many(self, values: dict[str, Any], ts: datetime) -> None:
        """Set many values stamped `ts`, in one hop to the server's thread."""
        await self._call(self._write_many(values, ts))

    async def _write_many(self, values: dict[str, Any], ts: datetime) -> None:
        for name, value in values.items():
            await self._write(name, value, ts)

    async def _write(self, name: str, value: Any, ts: datetime | None,
                     status: int = ua.StatusCodes.Good, server_ts: datetime | None = None
                     ) -> None:
        await self.server.write_attribute_value(
            ua.NodeId(name, 2),
            ua.DataValue(ua.Variant(value), StatusCode=ua.StatusCode(status),
                         SourceTimestamp=ts, ServerTimestamp=server_ts or ts))

    async def start_relay(self, port: int) -> None:
        """Relay TCP from `port` to the server, so a test can cut the links as a network
        fault would, while the server and its sessions live on."""
        await self._call(self._start_relay(port))

    async def rebind_transfers(self) -> None:
        """Let a transferred subscription publish on its new session (see below)."""
        await self._call(self._rebind_transfers())

    async def _rebind_transfers(self) -> None:
        service = self.server.iserver.subscription_service
        transfer = service.transfer_subscriptions

        async def transfer_and_rebind(params: ua.TransferSubscriptionsParameters,
                                      session_id: ua.NodeId, callback: Any
                                      ) -> list[ua.TransferResult]:
            """asyncua's server moves only the result callback of a transferred
            subscription, so it would keep asking the dead connection for publish
            requests and never publish again; move the request callback too, as its
            ActivateSession on a new channel does."""
            results = await transfer(params, session_id, callback)
            for sub_id, result in zip(params.SubscriptionIds, results, strict=True):
                if result.StatusCode.is_good():
                    service.subscriptions[sub_id].pub_request_callback = \
                        callback.__self__.get_publish_request
            return results

        service.transfer_subscriptions = transfer_and_rebind  # type: ignore[method-assign]

    async def _start_relay(self, port: int) -> None:
        await self._rebind_transfers()
        self._links: set[asyncio.StreamWriter] = set()
        self._paused = False
        self._relay = await asyncio.start_server(self._link, "127.0.0.1", port)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._paused:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._links |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()
                self._links.discard(sink)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut_links(self, paused: bool) -> None:
        """Abort every relayed connection; while `paused`, refuse new ones."""
        await self._call(self._cut_links(paused))

    async def _cut_links(self, paused: bool) -> None:
        self._paused = paused
        for writer in list(self._links):
            writer.transport.abort()

    async def stop(self) -> None:
        await self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._relay is not None:
            self._relay.close()
            await self._cut_links(paused=True)
            await self._relay.wait_closed()
        await self.server.stop()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in left:  # asyncua leaves its sessions' timeout loops running
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


@asynccontextmanager
async def plc(port: int, variables: dict[str, Any], security: Security | None = None,
              build: Build | None = None) -> AsyncIterator[Plc]:
    """A server on `port` with one variable per name, holding its initial value stamped
    a day before BASE_TS (so counts from BASE_TS on exclude it); `build` adds more
    nodes in namespace 2 before the server starts."""
    server = Plc(port, security, build)
    await server.start(variables)
    try:
        yield server
    finally:
        await server.stop()


def config(port: int, data_dir: Path, nodes: list[dict[str, Any]],
           machines: dict[str, list[dict[str, Any]]], **source: Any) -> OmbreConfig:
    return validate_config({
        "data_dir": str(data_dir),
        "sites": [{"id": "site", "lines": [{"id": "l1", "machines": [
            {"id": m, "signals": signals} for m, signals in machines.items()]}]}],
        "sources": [{"type": "opcua", "name": "plc", "endpoint": f"opc.tcp://127.0.0.1:{port}/ombre/",
                     "publishing_interval_ms": 50, "keepalive_count": 5,
                     "sampling_interval_ms": 0, "queue_size": 100, "connect_timeout_s": 5,
                     "security": {"mode": "None"},
                     "nodes": nodes, **source}],
        "sinks": [{"type": "sqlite", "name": "timeseries"}],
        "runtime": {"flush_interval_ms": 20, "backoff_initial_s": 0.1, "backoff_max_s": 1},
    })


def raw(cfg: OmbreConfig) -> dict[str, Any]:
    """A config as the dict a YAML file would hold."""
    return cfg.model_dump(mode="json", exclude_defaults=True)


def only_problem(tmp_path: Path, data: dict[str, Any]) -> str:
    """The one problem load_config finds in `data` written as a file: 'key: message'."""
    path = tmp_path / "plant.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    [problem] = info.value.problems
    return f"{problem.path}: {problem.message}"


def counter(store_path: Path, machine: str, signal: str, from_ns: int = ns(BASE_TS)
            ) -> Callable[[], int]:
    def count() -> int:
        try:
            with open_store(store_path) as store:
                return store.count(machine, signal, from_ns, ALL[1])
        except (StoreError, KeyError):  # not created yet, or no such series yet
            return 0
    return count


def quarantine(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "gateway.sqlite") as db:
        return list(db.execute("SELECT topic, reason FROM quarantine ORDER BY ts_ns"))


async def subscribed(gateway: Gateway, initial: int) -> None:
    """Wait for the `initial` values a new subscription reports first, so what the test
    writes next is not folded into them."""
    source = gateway.counters.connector("plc", "source")
    await wait_until(lambda: source.readings + source.events + source.quarantined >= initial,
                     what=f"{initial} initial values")
