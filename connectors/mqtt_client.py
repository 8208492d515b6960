"""The paho-mqtt client of a broker config (connectors/mqtt_config.py MqttBrokerConfig),
shared by the MQTT source and the MQTT sink: protocol version, credentials, TLS, the
CONNECT's session properties, and the kernel's watch over a silent link."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from connectors.mqtt_config import MqttBrokerConfig

CONNECT_TIMEOUT_S = 10.0


def new_client(config: MqttBrokerConfig, *, persistent: bool,
               manual_ack: bool = False) -> mqtt.Client:
    """A paho client for `config`, not connected, that never reconnects by itself (the
    runtime does, with backoff). `persistent`: the broker keeps the session (3.1.1's
    clean session off; 5's clean start off is set by `connect_options`)."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=config.client_id,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        clean_session=None if v5 else not persistent, reconnect_on_failure=False,
        manual_ack=manual_ack,
    )
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if tls.insecure_skip_verify else ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(tls.insecure_skip_verify)
    return client


def connect_options(config: MqttBrokerConfig, *, persistent: bool,
                    receive_maximum: int | None = None) -> dict[str, Any]:
    """The keyword arguments of `client.connect` beyond host, port and keep-alive: for
    MQTT 5, clean start and the session's expiry (and the receive maximum if given)."""
    if config.protocol != "5":
        return {}
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = config.session_expiry_s if persistent else 0
    if receive_maximum is not None:
        properties.ReceiveMaximum = receive_maximum
    return {"clean_start": not persistent, "properties": properties}


def watch_link(sock: object, keepalive_s: int) -> None:
    """Make the kernel abort a link that stopped answering within 3/4 of its keep-alive.

    paho alone notices a silent broker only two keep-alives after its last packet (one
    keep-alive to send PINGREQ, one more to give up), so a partition (packets dropped,
    nothing refused) would go unseen for that long. TCP keep-alive probes an idle link
    after half a keep-alive, and the user timeout aborts a link whose probes or data
    stay unacknowledged that long: the kernel answers for a live broker host, so this
    costs no MQTT traffic. A frozen broker behind a live kernel is still paho's to see."""
    if not isinstance(sock, socket.socket):  # not connected, or a websocket wrapper
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, keepalive_s // 2))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, keepalive_s // 4))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, keepalive_s * 750)


async def open_link(client: mqtt.Client, config: MqttBrokerConfig, connected: asyncio.Future[None],
                    stop: Callable[[], Awaitable[None]], **options: Any) -> None:
    """Connects `client` (`options`: connect_options), starts its network thread and
    waits for the CONNACK, which the client's on_connect reports by settling
    `connected` (`settle`); when the connection fails, is refused or gets no answer,
    awaits `stop` and raises ConnectionError."""
    where = f"{config.host}:{config.port}"
    try:
        await asyncio.to_thread(client.connect, config.host, config.port, config.keepalive_s,
                                **options)
    except (OSError, ValueError) as exc:
        await stop()  # the caller's client is gone with its link, as below
        raise ConnectionError(f"cannot connect to {where}: {exc}") from None
    watch_link(client.socket(), config.keepalive_s)
    # paho's loop_start opens a new wake-up socket pair without closing the last
    # link's one (paho-mqtt 2.2); close it here, the last thread has been joined.
    client._reset_sockets(sockpair_only=True)
    client.loop_start()
    try:
        await asyncio.wait_for(connected, CONNECT_TIMEOUT_S)
    except TimeoutError:
        await stop()
        raise ConnectionError(f"no answer from {where} within {CONNECT_TIMEOUT_S:.0f} s"
                              ) from None
    except ConnectionError:
        await stop()
        raise


def settle(loop: asyncio.AbstractEventLoop | None, future: asyncio.Future[None] | None,
           error: Exception | None) -> None:
    """From paho's thread: resolve `future` in `loop` (or fail it with `error`), unless
    it is settled already or the loop is gone."""
    if future is None or loop is None or loop.is_closed():
        return

    def done() -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    loop.call_soon_threadsafe(done)
