"""The load generator, a process of its own: publishes W1 (one JSON reading per
message) or W2 (100 readings per message) at QoS 1, as fast as it can or paced.

    python -m bench.loadgen --port P --workload w1 --count N [--rate R]
prints {"published": N, "seconds": S} when the broker has acked every message."""

from __future__ import annotations

import argparse
import json
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DEVICES = 50
W2_SIGNALS = 20  # per device: 1,000 signals in all
W2_READINGS = 100


def w1_message(i: int, now_ms: int) -> tuple[str, bytes]:
    topic = f"bench/line-1/dev-{i % DEVICES:02d}/value"
    return topic, b'{"value": %.3f, "ts": %d}' % ((i % 1000) * 0.25, now_ms)


def w2_message(i: int, now_ms: int) -> tuple[str, bytes]:
    signal = i % (DEVICES * W2_SIGNALS)
    topic = f"bench/line-1/dev-{signal // W2_SIGNALS:02d}/s{signal % W2_SIGNALS:02d}"
    base = now_ms * 1000 + (i // (DEVICES * W2_SIGNALS)) * W2_READINGS  # µs, unique per signal
    items = ",".join(
        f'{{"ts":{base + j},"value":{(j % 50) * 0.5:.2f}}}' for j in range(W2_READINGS)
    )
    return topic, f"[{items}]".encode()


def prepare_session(port: int, client_id: str, topic_filter: str | None) -> None:
    """Create a persistent session with a QoS 1 subscription, so that messages
    published while the subscriber is away queue at the broker; with no filter,
    end the session instead, so it stops collecting the next workloads' messages."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600 if topic_filter else 0
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    if topic_filter:
        client.subscribe(topic_filter, qos=1)
    time.sleep(0.3)
    client.disconnect()
    client.loop_stop()


def publish(port: int, workload: str, count: int, rate: float | None) -> float:
    make = w1_message if workload == "w1" else w2_message
    done = threading.Event()
    # paho numbers messages with 16-bit ids: more than 65,535 unacked at once collide.
    window = threading.Semaphore(20_000)
    acked = 0

    def on_publish(*_: object) -> None:
        nonlocal acked
        acked += 1
        window.release()
        if acked == count:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"loadgen-{time.time_ns()}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        topic, payload = make(i, time.time_ns() // 1_000_000)
        window.acquire()
        client.publish(topic, payload, qos=1)
    done.wait()
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workload", choices=["w1", "w2"], required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float)
    args = parser.parse_args()
    seconds = publish(args.port, args.workload, args.count, args.rate)
    print(json.dumps({"published": args.count, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
