"""Payload values to what a signal stores: a finite float for a numeric signal, the
string, number or bool itself for an event. Anything else raises Reject naming what
was found. Pure code on the decoder's hot path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from connectors.reject import Reject, clip, describe
from gateway.types import EventValue, Float64Array

_BOOLS = {b"true": 1.0, b"false": 0.0}
_EVENT_TYPES = (str, int, float)  # built once: `str | int | float` builds a union per call


def number_value(raw: object) -> float:
    """A JSON number or bool as a finite float; raises Reject for anything else."""
    if isinstance(raw, float):
        value = raw
    elif isinstance(raw, int):  # bools too: true is 1.0
        try:
            value = float(raw)
        except OverflowError:
            raise Reject("value is not finite") from None
    else:
        raise Reject(f"expected a number, found {describe(raw)}")
    if not math.isfinite(value):
        raise Reject("value is not finite")
    return value


def event_value(raw: object) -> EventValue:
    """A JSON string, number or bool kept as is for an event; raises Reject otherwise."""
    if isinstance(raw, _EVENT_TYPES):
        return raw
    raise Reject(f"expected a string, number or bool, found {describe(raw)}")


def bare_number(payload: bytes) -> float:
    """A bare text payload (`21.5`, `true`) as a finite float; raises Reject otherwise."""
    try:
        value = float(payload)
    except ValueError:
        flag = _BOOLS.get(payload.strip())
        if flag is None:
            text = clip(payload.decode(errors="replace"))
            raise Reject(f"expected a number, found {text!r}") from None
        return flag
    if not math.isfinite(value):
        raise Reject("value is not finite")
    return value


def number_column(values: Sequence[Any]) -> Float64Array | None:
    """A list of JSON numbers and bools from orjson as float64, or None if any item is
    not one. orjson refuses NaN and infinities, so the result is finite."""
    try:
        arr = np.asarray(values)  # no dtype: it would turn "1.5" and null into numbers
    except (ValueError, TypeError, OverflowError):
        return None
    if arr.ndim != 1 or arr.dtype.kind not in "biuf":
        return None
    floats: Float64Array = arr.astype(np.float64, copy=False)
    return floats
