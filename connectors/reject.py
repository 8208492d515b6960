"""Why part of an MQTT payload cannot be kept: the Reject exception raised by the
decoding functions, and how a quarantine reason names the JSON value it found.

Reject is control flow: PayloadDecoder.decode catches every one and turns it into a
QuarantineRecord, so it never reaches the MQTT source."""

from __future__ import annotations


class Reject(Exception):  # noqa: N818 - control flow, caught by PayloadDecoder.decode
    """The message or item cannot be kept; `reason` says what was wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(raw: object) -> str:
    """A JSON value's type, and its text when short, for quarantine reasons."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return f"bool {'true' if raw else 'false'}"
    if isinstance(raw, str):
        return f"string {clip(raw)!r}"
    if isinstance(raw, dict | list):
        return "object" if isinstance(raw, dict) else "array"
    return f"number {raw!r}"


def clip(text: str) -> str:
    """`text` cut to 40 characters, so a reason stays one short line."""
    return text if len(text) <= 40 else text[:40] + "..."
