"""The config of a Modbus TCP source: one device (host, port, unit id) and its register
map, each item an address (connectors/modbus_address.py) mapped to a plant signal.
docs/connectors/modbus.md explains every key with a worked example."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.modbus_address import ByteOrder, parse_address
from gateway.config import SourceConfig
from gateway.config_base import ConfigModel, InvalidKeyError, Name, require_unique

MAX_REGISTERS_PER_READ = 125  # the protocol's limit for function codes 3 and 4
MAX_BITS_PER_READ = 2000  # and for 1 and 2


class ModbusItemConfig(ConfigModel):
    """One value of the device, mapped to a plant signal: the number read, times
    `scale`, plus `offset`. Unset settings take the source's."""

    machine: Name
    signal: Name
    address: str  # e.g. hr:100:float32, hr:3.1, co:0, 40101
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    scale: float = 1.0
    offset: float = 0.0
    poll_interval_ms: float | None = Field(default=None, ge=10, le=3_600_000)
    deadband: float | None = Field(default=None, ge=0)

    @field_validator("address")
    @classmethod
    def _address_form(cls, value: str) -> str:
        return str(parse_address(value))

    @model_validator(mode="after")
    def _string_unscaled(self) -> ModbusItemConfig:
        if parse_address(self.address).type == "string":
            for key, default in (("scale", 1.0), ("offset", 0.0)):
                if getattr(self, key) != default:
                    raise InvalidKeyError((key,), f"expected no {key} for a string, found "
                                          f"{getattr(self, key)}")
        return self


class ModbusSourceConfig(SourceConfig):
    """A Modbus TCP device, polled: each item every `poll_interval_ms`, neighbouring
    addresses of the same table and interval read together, at most
    `max_registers_per_read` registers (or `max_bits_per_read` bits) per request and
    bridging at most `max_gap` unmapped ones. A request unanswered after `timeout_s`
    and `retries` more tries means the device is gone: the runtime reconnects with
    backoff. A `deadband` sends a value only when it moved by more than that (0: on
    any change)."""

    type: Literal["modbus"]
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=255)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    poll_interval_ms: float = Field(default=1000, ge=10, le=3_600_000)
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"
    max_registers_per_read: int = Field(default=MAX_REGISTERS_PER_READ, ge=1,
                                        le=MAX_REGISTERS_PER_READ)
    max_bits_per_read: int = Field(default=MAX_BITS_PER_READ, ge=1, le=MAX_BITS_PER_READ)
    max_gap: int = Field(default=0, ge=0, le=MAX_BITS_PER_READ)
    deadband: float | None = Field(default=None, ge=0)
    items: list[ModbusItemConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _items_fit(self) -> ModbusSourceConfig:
        require_unique(((f"{item.machine}/{item.signal}", ("items", i, "signal"))
                        for i, item in enumerate(self.items)), "machine/signal")
        for i, item in enumerate(self.items):
            count = parse_address(item.address).count
            if count > self.max_registers_per_read:
                raise InvalidKeyError(("items", i, "address"), f"expected at most "
                                      f"max_registers_per_read ({self.max_registers_per_read})"
                                      f" registers, found {item.address} ({count})")
        return self

    def fed_machines(self) -> frozenset[str] | None:
        return frozenset(item.machine for item in self.items)

    def polled_periods_s(self) -> dict[tuple[str, str], float]:
        return {(i.machine, i.signal): (i.poll_interval_ms or self.poll_interval_ms) / 1000
                for i in self.items if i.deadband is None and self.deadband is None}
