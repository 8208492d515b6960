"""InfluxDB line protocol from Ombre's batches and events: the series layout, the
escaping, and the lines. Pure code, no I/O; the InfluxSink calls it from its thread.

The layout (keys of the influxdb sink, defaults in brackets):

- A reading is one line. Its measurement is the machine's `type`, or the site id for a
  machine without one [`measurement: machine_type`]; with `measurement: site`, always
  the site id. Its tags are those of `tags` [site, line, machine, signal, unit] that
  have a value (a signal without unit has no unit tag). Its one float field is
  `value_field` [value], and its timestamp is in nanoseconds.
- Quality is an integer field `quality` holding the Quality flags, written only when
  the reading is not GOOD (0): a field, not a tag, so a quality change never starts
  another series.
- Line protocol has no NaN nor infinity (an OPC UA reading with BAD status arrives as
  NaN): such a reading is written without its value field, with `quality` only, so the
  fact that it was bad at that time is kept; the sink counts it as valueless.
- An event (a state, an order) is one line in `event_measurement` [events], with the
  tags of its signal (machine and signal only for the gateway's own events) and its
  value as a string field `value_field`, whatever its type, so the field never changes
  type (InfluxDB refuses that). An event without a value has `quality` only.

Escaping follows the line protocol reference: commas and spaces in the measurement,
commas, equals signs and spaces in tag keys, tag values and the field key, a backslash
everywhere as two; a measurement that would start with '#' (a comment line) starts with
'\\#' instead. String values escape double quotes and backslashes, and a line break as
the two characters '\\n', since some servers (VictoriaMetrics) split lines before
reading quotes. Names cannot hold line breaks: the config refuses them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from connectors.influx_config import InfluxSinkConfig
from gateway.config import Plant
from gateway.types import Batch, Event, EventValue, Quality, SignalRegistry

_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ "})
_KEY = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})


def escape_measurement(name: str) -> str:
    escaped = name.translate(_MEASUREMENT)
    return "\\" + escaped if escaped.startswith("#") else escaped


def escape_key(text: str) -> str:
    """A tag key, tag value or field key."""
    return text.translate(_KEY)


def string_field(value: str) -> str:
    return '"' + value.translate(_STRING) + '"'


class LineLayout:
    """The escaped series key of every signal, built once; then lines for batches and
    events. Read-only after construction, so any thread may use it."""

    def __init__(self, config: InfluxSinkConfig, plant: Plant,
                 registry: SignalRegistry) -> None:
        where = plant.places()
        self._field = escape_key(config.value_field)
        self._event_measurement = escape_measurement(config.event_measurement)
        self._tags: list[str] = []  # signal id -> ",k=v,..." in the configured order
        self._series: list[str] = []  # signal id -> "measurement,k=v,..."
        for info in registry:
            place = where[info.machine]
            values = {"site": place.site, "area": place.area, "line": place.line,
                      "machine": info.machine, "signal": info.signal, "unit": info.unit}
            tags = "".join(f",{key}={escape_key(value)}" for key in config.tags
                           if (value := values[key]))
            measurement = place.type if config.measurement == "machine_type" else None
            self._tags.append(tags)
            self._series.append(escape_measurement(measurement or place.site) + tags)
        self._value_prefix = [f"{series} {self._field}=" for series in self._series]
        self._registry = registry

    def reading_lines(self, batch: Batch) -> tuple[list[str], int]:
        """One line per reading, in batch order, and how many are valueless."""
        prefix = self._value_prefix
        lines = [f"{prefix[s]}{v!r} {t}" for s, v, t in
                 zip(batch.signal_id.tolist(), batch.value.tolist(), batch.ts_ns.tolist(),
                     strict=True)]
        finite = np.isfinite(batch.value)
        for i in np.flatnonzero((batch.quality != Quality.GOOD) | ~finite).tolist():
            sid, ts, quality = int(batch.signal_id[i]), int(batch.ts_ns[i]), int(batch.quality[i])
            if finite[i]:
                lines[i] = f"{prefix[sid]}{float(batch.value[i])!r},quality={quality}i {ts}"
            else:
                lines[i] = f"{self._series[sid]} quality={quality}i {ts}"
        return lines, int(len(finite) - np.count_nonzero(finite))

    def event_lines(self, events: Sequence[Event]) -> tuple[list[str], int]:
        """One line per event, in order, and how many are valueless."""
        lines, valueless = [], 0
        for event in events:
            sid = self._registry.id_of(event.machine, event.name)
            tags = (self._tags[sid] if sid is not None else
                    f",machine={escape_key(event.machine)},signal={escape_key(event.name)}")
            text = _event_text(event.value)
            fields = [] if text is None else [f"{self._field}={string_field(text)}"]
            if event.quality != Quality.GOOD or text is None:
                fields.append(f"quality={int(event.quality)}i")
            valueless += text is None
            lines.append(f"{self._event_measurement}{tags} {','.join(fields)} {event.ts_ns}")
        return lines, valueless


def _event_text(value: EventValue) -> str | None:
    """The event's value as the text of a string field; None when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)
