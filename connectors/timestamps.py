"""Payload timestamps to int64 nanoseconds since the epoch, within the accepted range.

Pure code on the decoder's hot path. A timestamp out of range is rejected with a
reason that names the date it stands for and, when another `ts_unit` would put it in
range, that unit ("it looks like seconds, set ts_unit: s")."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from connectors.reject import Reject, clip, describe
from gateway.config import LimitsConfig
from gateway.types import Int64Array, Quality

_FACTOR = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
_UNIT_NAME = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                      r"(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# built once: `int | float` in isinstance builds a union on every call, and in Python
# 3.11 reading an enum member (Quality.GOOD) calls a descriptor
_NUMBER = (int, float)
_GOOD, _TS_RECEIVED = Quality.GOOD, Quality.TS_RECEIVED


def parse_rfc3339(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 timestamp with an offset, exact to the
    nanosecond; raises ValueError if `text` is not one, TypeError if it is no string."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"{clip(text)!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"{text!r} has no such time of day")
    try:
        days = date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError as exc:
        raise ValueError(f"{text!r} has no such date: {exc}") from None
    offset = 0 if m[8] is None else (int(m[9]) * 60 + int(m[10])) * (-60 if m[8] == "-" else 60)
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
    return seconds * 10**9 + int((m[7] or "0")[:9].ljust(9, "0"))


@dataclass(frozen=True, slots=True)
class TsLimits:
    """LimitsConfig's timestamp limits, converted once when a decoder is built."""

    oldest_ns: int
    oldest_text: str  # the oldest_ts date as reasons print it, e.g. "2000-01-01"
    max_future_s: float

    @classmethod
    def from_config(cls, limits: LimitsConfig) -> TsLimits:
        oldest = datetime.fromisoformat(limits.oldest_ts)  # validated aware by the config
        oldest_ns = (oldest - _EPOCH) // timedelta(microseconds=1) * 1000
        return cls(oldest_ns, _iso(oldest_ns).removesuffix("T00:00:00Z"), limits.max_future_s)

    def window(self, now_ns: int) -> TsWindow:
        """The window for one chunk decoded at `now_ns`."""
        return TsWindow(self.oldest_ns, now_ns + round(self.max_future_s * 1e9),
                        self.oldest_text, self.max_future_s)


@dataclass(frozen=True, slots=True)
class TsWindow:
    """The timestamps accepted in one chunk: from `lo_ns` (LimitsConfig.oldest_ts) to
    `hi_ns` (now + max_future_s), both inclusive."""

    lo_ns: int
    hi_ns: int
    oldest_text: str
    max_future_s: float

    def reading_time(self, raw: object, unit: str, rx_ns: int) -> tuple[int, int]:
        """A reading's time and quality: `raw`, the payload's timestamp, as int ns and
        GOOD; or `rx_ns` and TS_RECEIVED if the payload has none (`raw` is None). Raises
        Reject saying what is wrong with `raw`."""
        if raw is None:
            return rx_ns, _TS_RECEIVED
        if unit == "rfc3339":
            if not isinstance(raw, str):
                raise Reject(f"expected an RFC 3339 timestamp string, found {describe(raw)}")
            try:
                ns = parse_rfc3339(raw)
            except ValueError as exc:
                raise Reject(f"bad timestamp: {exc}") from None
            if not self.lo_ns <= ns <= self.hi_ns:
                raise Reject(self._range_reason(raw, unit))
            return ns, _GOOD
        if isinstance(raw, bool) or not isinstance(raw, _NUMBER):
            raise Reject(f"expected a timestamp number, found {describe(raw)}{_rfc_hint(raw)}")
        factor = _FACTOR[unit]
        scaled = raw * factor
        if not self.lo_ns <= scaled <= self.hi_ns:
            raise Reject(self._range_reason(raw, unit))
        if isinstance(scaled, int):  # raw is an int
            return scaled, _GOOD
        whole = math.floor(raw)  # scale the fraction alone: no rounding of the whole
        return whole * factor + round((raw - whole) * factor), _GOOD

    def column(self, raw: Sequence[Any], unit: str) -> Int64Array | None:
        """A non-empty list of timestamps as int64 ns, or None unless every one is a
        number (an RFC 3339 string for `rfc3339`) inside the window. One range check
        per array; on None the caller converts item by item to find the bad ones."""
        try:
            if unit == "rfc3339":
                arr = np.fromiter(map(parse_rfc3339, raw), np.int64, len(raw))
            else:
                arr = np.asarray(raw)
        except (ValueError, TypeError, OverflowError):
            return None
        factor = _FACTOR.get(unit, 1)
        if arr.ndim != 1 or arr.dtype.kind not in "iuf":
            return None
        if arr.dtype.kind == "f":
            if not (arr.min() >= self.lo_ns / factor and arr.max() <= self.hi_ns / factor):
                return None
            whole = np.floor(arr)
            return (whole.astype(np.int64) * factor
                    + np.rint((arr - whole) * factor).astype(np.int64))
        # int bounds: comparing an int array with a float costs more than the check
        if not (arr.min() >= -(-self.lo_ns // factor) and arr.max() <= self.hi_ns // factor):
            return None
        ns: Int64Array = arr.astype(np.int64, copy=False)
        return ns * factor if factor != 1 else ns

    def _range_reason(self, raw: float | str, unit: str) -> str:
        ns = parse_rfc3339(raw) if isinstance(raw, str) else raw * _FACTOR[unit]
        where = (f"before {self.oldest_text}" if ns < self.lo_ns
                 else f"more than {self.max_future_s:g} s in the future")
        if isinstance(raw, str):
            return f"timestamp {raw!r} is {where}"
        reason = f"timestamp {raw!r} in {unit} is {_iso(ns)}, {where}"
        for other, factor in _FACTOR.items():
            if other != unit and self.lo_ns <= raw * factor <= self.hi_ns:
                return f"{reason}; it looks like {_UNIT_NAME[other]}, set ts_unit: {other}"
        return reason


def _iso(ns: float) -> str:
    try:
        return (_EPOCH + timedelta(microseconds=ns // 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError):
        return f"about year {1970 + ns / 31_556_952e9:.0f}"


def _rfc_hint(raw: object) -> str:
    try:
        parse_rfc3339(raw)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return ""
    return "; it looks like RFC 3339, set ts_unit: rfc3339"
