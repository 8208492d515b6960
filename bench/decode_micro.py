"""Micro-benchmark of PayloadDecoder.decode on one core: µs per reading for the array
and object formats, µs per message for the single-reading formats. Not a test.

    .venv/bin/python bench/decode_micro.py [--repeat 7]

Each case decodes one chunk of pre-built messages several times and reports the median.
The first line re-measures the floor the array path builds on (orjson.loads plus two
np.asarray per message), so figures from different machines can be compared. The last
lines time the object format with its values nested (`values_path`, `ts_path`: the
ThingsBoard shape) against the flat object, interleaved round by round, and print the
ratio's median and spread over the rounds."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import orjson

from connectors.mqtt_config import SubscriptionConfig
from connectors.mqtt_decode import PayloadDecoder
from ombre.config import validate_config

PER_ARRAY = 100
NOW_NS = time.time_ns()
TS_MS = NOW_NS // 10**6 - 60_000


def build_decoder(fmt: str, **paths: str) -> PayloadDecoder:
    machines = [{"id": f"m{i}", "signals": [{"name": f"s{j}"} for j in range(10)]}
                for i in range(50)]
    config = validate_config(
        {"sites": [{"id": "site", "lines": [{"id": "l1", "machines": machines}]}]})
    topic = "plant/{machine}" if fmt == "object" else "plant/{machine}/{signal}"
    sub = SubscriptionConfig.model_validate({"topic": topic, "format": fmt, **paths})
    return PayloadDecoder("bench", [sub], config, config.registry())


def topics(n: int, fmt: str = "") -> list[str]:
    if fmt == "object":
        return [f"plant/m{i % 50}" for i in range(n)]
    return [f"plant/m{i % 50}/s{i % 10}" for i in range(n)]


def object_values(i: int) -> dict[str, float]:
    return {f"s{j}": 20.0 + ((i + j) % 17) * 0.25 for j in range(10)}


def flat_object(i: int) -> bytes:
    return orjson.dumps({"ts": TS_MS + i, **object_values(i)})


def nested_object(i: int) -> bytes:
    return orjson.dumps({"ts": TS_MS + i, "values": object_values(i)})


def columnar(i: int) -> bytes:
    base = TS_MS + i * PER_ARRAY
    return orjson.dumps({"ts": list(range(base, base + PER_ARRAY)),
                         "value": [20.0 + (k % 17) * 0.25 for k in range(PER_ARRAY)]})


def row_layout(i: int) -> bytes:
    base = TS_MS + i * PER_ARRAY
    return orjson.dumps([{"ts": base + k, "value": 20.0 + (k % 17) * 0.25}
                         for k in range(PER_ARRAY)])


def value_msg(i: int) -> bytes:
    return orjson.dumps({"value": 20.0 + (i % 17) * 0.25, "ts": TS_MS + i})


def median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm the topic cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_decode(fmt: str, make: Callable[[int], bytes], n_msgs: int, repeat: int) -> float:
    decoder = build_decoder(fmt)
    tops, payloads = topics(n_msgs), [make(i) for i in range(n_msgs)]
    received = [NOW_NS] * n_msgs
    batch, _, quarantined = decoder.decode(tops, payloads, received)
    assert not quarantined, quarantined[0].reason
    return median_s(lambda: decoder.decode(tops, payloads, received), repeat) / len(batch)


def bench_object_paths(n_msgs: int, repeat: int) -> tuple[list[float], list[float]]:
    """µs per reading of the flat and the nested object format, one pair per round."""
    runs = []
    for paths, make in (({}, flat_object),
                        ({"values_path": "values", "ts_path": "ts"}, nested_object)):
        decoder = build_decoder("object", **paths)
        tops, payloads = topics(n_msgs, "object"), [make(i) for i in range(n_msgs)]
        received = [NOW_NS] * n_msgs
        batch, _, quarantined = decoder.decode(tops, payloads, received)
        assert not quarantined, quarantined[0].reason
        runs.append((decoder, tops, payloads, received, len(batch)))
    flat: list[float] = []
    nested: list[float] = []
    for _ in range(repeat):
        for out, (decoder, tops, payloads, received, n) in zip((flat, nested), runs,
                                                                strict=True):
            start = time.perf_counter()
            decoder.decode(tops, payloads, received)
            out.append((time.perf_counter() - start) / n * 1e6)
    return flat, nested


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):6.3f} [{min(values):.3f}-{max(values):.3f}]"


def bench_floor(payloads: Sequence[bytes], repeat: int) -> float:
    def parse() -> None:
        for payload in payloads:
            doc = orjson.loads(payload)
            np.asarray(doc["ts"])
            np.asarray(doc["value"], dtype=np.float64)
    return median_s(parse, repeat) / (len(payloads) * PER_ARRAY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat
    n_arrays, n_single = 1_000, 5_000
    floor = bench_floor([columnar(i) for i in range(n_arrays)], repeat)
    cases = [
        ("floor: orjson.loads + 2x np.asarray, columnar", floor, "reading"),
        ("array, columnar {ts: [...], value: [...]}",
         bench_decode("array", columnar, n_arrays, repeat), "reading"),
        ("array, list of {ts, value} rows", bench_decode("array", row_layout, n_arrays, repeat),
         "reading"),
        ("value {value, ts}", bench_decode("value", value_msg, n_single, repeat), "message"),
        ("number (bare text)", bench_decode("number", lambda i: b"%d.5" % i, n_single, repeat),
         "message"),
    ]
    print(f"{PER_ARRAY} readings per array message; {n_arrays} array / {n_single} single "
          f"messages per chunk; median of {repeat}")
    for name, seconds, per in cases:
        print(f"  {name:<50} {seconds * 1e6:6.3f} µs/{per}")
    flat, nested = bench_object_paths(n_single, repeat)
    ratios = [b / a for a, b in zip(flat, nested, strict=True)]
    print(f"object format, 10 signals per message, {repeat} interleaved rounds: "
          "median [min-max]")
    print(f"  {'object, flat {ts, s0..s9}':<50} {spread(flat)} µs/reading")
    print(f"  {'object, nested {ts, values: {s0..s9}} (paths)':<50} {spread(nested)} "
          "µs/reading")
    print(f"  {'ratio nested / flat':<50} {spread(ratios)}")


if __name__ == "__main__":
    main()
