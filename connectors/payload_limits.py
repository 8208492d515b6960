"""The limits a payload must meet before it is parsed (LimitsConfig.max_payload_bytes
and max_json_depth), so a hostile payload costs a few byte scans, never a deep or huge
parse. Pure code on the decoder's hot path."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson

from connectors.reject import Reject


def size_reason(size: int, max_bytes: int) -> str:
    """Why a payload of `size` bytes is refused, for a size outside 1..max_bytes; the
    caller compares, so an accepted payload costs no call."""
    if size == 0:
        return "empty payload"
    return f"payload of {size} bytes exceeds max_payload_bytes {max_bytes}"


_NON_STRUCTURAL = bytes(b for b in range(256) if b not in b'[]{}"')
# openers become int8 1, closers -1; quotes stay for stripping strings
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_STRING = re.compile(rb'"[^"]*"')


def json_depth_over(payload: bytes, limit: int) -> int:
    """The nesting depth of JSON text if it exceeds `limit`, else 0, without parsing.
    Brackets inside strings do not count. Costs two byte counts when there are at most
    `limit` brackets, else a few C passes over the bytes and one numpy cumsum."""
    if payload.count(b"[") + payload.count(b"{") <= limit:
        return 0
    if b"\\" in payload:  # drop escapes that could hide or fake a quote
        payload = payload.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = payload.translate(_DEPTH_STEP, _NON_STRUCTURAL).replace(b'""', b"")
    if b'"' in skeleton:  # some strings hold brackets
        skeleton = _STRING.sub(b"", skeleton)
    if not skeleton:
        return 0
    depth = int(np.frombuffer(skeleton, np.int8).cumsum(dtype=np.int64).max())
    return depth if depth > limit else 0


def load_json(payload: bytes, max_depth: int) -> Any:
    """orjson.loads after the depth check; raises Reject with the parser's message."""
    depth = json_depth_over(payload, max_depth)
    if depth:
        raise Reject(f"JSON nesting depth {depth} exceeds max_json_depth {max_depth}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Reject(f"malformed JSON: {exc}") from None
