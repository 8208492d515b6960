"""The ceiling: a bare paho-mqtt subscriber that does nothing with its messages. It
resumes a prepared persistent session (MQTT 5, or 3.1.1 with `--protocol 3.1.1`),
drains the backlog, and prints {"msgs_per_s": R, "peak_rss_mb": M}, timed from the
first to the last message."""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    args = parser.parse_args()
    done = threading.Event()
    received = 0
    first = last = 0.0

    def on_message(*_: object) -> None:
        nonlocal received, first, last
        received += 1
        if received == 1:
            first = time.perf_counter()
        if received == args.count:
            last = time.perf_counter()
            done.set()

    if args.protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id,
                             protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 10_000
        client.on_message = on_message
        client.connect("127.0.0.1", args.port, clean_start=False, properties=props)
    else:  # 3.1.1 has no receive maximum: the broker's max_inflight_messages applies
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)
        client.on_message = on_message
        client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not done.wait(300):
        raise SystemExit(f"ceiling: only {received} of {args.count} messages arrived")
    client.disconnect()
    client.loop_stop()
    print(json.dumps({
        "msgs_per_s": (args.count - 1) / (last - first),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }), flush=True)


if __name__ == "__main__":
    main()
