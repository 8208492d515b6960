"""The `type: s7` source's config: a Siemens S7 PLC (S7-300/400/1200/1500, or anything
that speaks S7 over ISO-on-TCP) and the addresses read from it, each mapped to a plant
machine and signal. Addresses are checked here, so `ombre check` names a bad one
with its file, line and key path (connectors/s7_address.py has the notation).
Documented in docs/connectors/s7.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.s7_address import Address, AddressError, parse_address
from gateway.config import SourceConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Name, require_unique

_TSAP = re.compile(r"([0-9A-Fa-f]{1,2})\.([0-9A-Fa-f]{1,2})")


def _tsap(value: object) -> object:
    """A TSAP as TIA Portal and LOGO! show it, `"03.01"` (two hex bytes), or an
    integer (`0x0301` in YAML)."""
    if isinstance(value, str):
        match = _TSAP.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"expected a TSAP such as '03.01' or 0x0301, found {value!r}")
        return int(match[1], 16) << 8 | int(match[2], 16)
    return value


class S7ItemConfig(ConfigModel):
    """One address read from the PLC into one plant signal: `raw * scale + offset` for
    numbers. With `deadband`, a value goes on only when it moved more than that since
    the last one sent (0: on any change); without, every poll sends it."""

    machine: Name
    signal: Name
    address: str  # DB10.DBD4, DB10.DBX0.1, MW100, I0.0 ...
    type: str | None = None  # default from the width: X BOOL, B BYTE, W INT, D REAL
    length: int | None = None  # STRING only: the declared length n of STRING[n]
    scale: float = 1.0
    offset: float = 0.0
    deadband: float | None = Field(default=None, ge=0)
    poll_interval_ms: float | None = Field(default=None, ge=10, le=3_600_000)

    @model_validator(mode="after")
    def _address_form(self) -> S7ItemConfig:
        try:
            self.parsed()
        except AddressError as exc:
            raise InvalidKeyError((exc.key,), str(exc)) from None
        return self

    def parsed(self) -> Address:
        return parse_address(self.address, self.type, self.length)


class S7SourceConfig(SourceConfig):
    """A PLC reached by `rack` and `slot` (S7-300: 0/2; S7-1200/1500: 0/1), or by
    `remote_tsap` (and `local_tsap`), polled every `poll_interval_ms` (an item may set
    its own). Each request waits at most `timeout_s`. `max_gap_bytes` unread bytes may
    lie between two addresses read in one range. The CPU's RUN/STOP state is read every
    `cpu_state_interval_s` (null: never, for a device that does not report it)."""

    type: Literal["s7"]
    host: str = Field(min_length=1)
    port: int = Field(default=102, ge=1, le=65535)
    rack: int = Field(default=0, ge=0, le=7)
    slot: int | None = Field(default=None, ge=0, le=31)
    local_tsap: int = Field(default=0x0100, ge=0, le=0xFFFF)
    remote_tsap: int | None = Field(default=None, ge=0, le=0xFFFF)
    pdu_size: int = Field(default=960, ge=240, le=960)  # asked for; the PLC may give less
    poll_interval_ms: float = Field(default=1000, ge=10, le=3_600_000)
    timeout_s: float = Field(default=5, gt=0, le=60)
    max_gap_bytes: int = Field(default=16, ge=0, le=256)
    cpu_state_interval_s: float | None = Field(default=5, gt=0)
    items: list[S7ItemConfig] = Field(min_length=1)

    @field_validator("local_tsap", "remote_tsap", mode="before")
    @classmethod
    def _tsap_form(cls, value: object) -> object:
        return _tsap(value)

    @model_validator(mode="after")
    def _reached_one_way(self) -> S7SourceConfig:
        if (self.slot is None) == (self.remote_tsap is None):
            raise InvalidKeyError(("slot",), "expected either rack and slot, or remote_tsap, "
                                  f"found {'both' if self.slot is not None else 'neither'}")
        require_unique(((f"{i.machine}/{i.signal}", ("items", n, "signal"))
                        for n, i in enumerate(self.items)), "machine/signal")
        return self

    def fed_machines(self) -> frozenset[str] | None:
        return frozenset(item.machine for item in self.items)

    def polled_periods_s(self) -> dict[tuple[str, str], float]:
        return {(i.machine, i.signal): (i.poll_interval_ms or self.poll_interval_ms) / 1000
                for i in self.items if i.deadband is None}
