"""The OPC UA source's config (`type: opcua`). Documented in docs/connectors/opcua.md."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.config import SourceConfig
from gateway.config_base import (
    ConfigModel,
    ConfigPath,
    InvalidKeyError,
    Name,
    Secret,
    matching,
    require_unique,
)


class DeadbandConfig(ConfigModel):
    """A monitored item's DataChangeFilter: changes within `value` of the last reported
    value are not sent. `percent` is of the node's EURange (the server must support it)."""

    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(ge=0)

    @model_validator(mode="after")
    def _percent_range(self) -> DeadbandConfig:
        if self.type == "percent" and self.value > 100:
            raise InvalidKeyError(("value",), f"expected a percentage 0-100, found {self.value}")
        return self


_NODE_ID = re.compile(r"((ns=\d+|nsu=[^;]+);)?[isgb]=.+")
_ENDPOINT = re.compile(r"opc\.tcp://[^\s/:]+(:\d{1,5})?(/\S*)?")


class OpcUaNodeConfig(ConfigModel):
    """OPC UA variables mapped to plant signals: one `node_id` for one machine and
    signal, or a `browse_path` pattern resolved at each connect, whose {machine} and
    {signal} levels name them (connectors/opcua_paths.py); a fixed `machine` or
    `signal` serves a pattern without that placeholder. Unset settings take the
    source's."""

    machine: Name | None = None
    signal: Name | None = None
    node_id: str | None = None  # e.g. ns=2;s=Press1.Temp
    browse_path: str | None = None  # e.g. Objects/Machines/{machine}/Counters/{signal}
    sampling_interval_ms: float | None = Field(default=None, ge=0)
    queue_size: int | None = Field(default=None, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None

    @field_validator("node_id")
    @classmethod
    def _node_id_form(cls, value: str) -> str:
        return matching(_NODE_ID, value, "a node id such as 'ns=2;s=Press1.Temp' or 'i=2258'")

    @model_validator(mode="after")
    def _node_or_path(self) -> OpcUaNodeConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise InvalidKeyError(("node_id",), "expected exactly one of node_id and "
                                  f"browse_path, found {'both' if self.node_id else 'neither'}")
        for key in ("machine", "signal"):
            given = getattr(self, key) is not None
            if self.browse_path is not None and f"{{{key}}}" in self.browse_path:
                if given:
                    raise InvalidKeyError((key,), f"expected no {key} when browse_path has "
                                          f"{{{key}}}, found {getattr(self, key)!r}")
            elif not given:
                raise InvalidKeyError((key,), "missing required key" if self.node_id else
                                      f"expected {key}, or {{{key}}} in browse_path")
        return self


OpcUaPolicy = Literal["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss",
                      "Basic128Rsa15", "Basic256"]
DEPRECATED_OPCUA_POLICIES = ("Basic128Rsa15", "Basic256")


class OpcUaSecurityConfig(ConfigModel):
    """The secure channel. Required in the config, so `mode: None` (no signing, no
    encryption) is always a written choice, never a fallback. The client certificate
    lives in <data_dir>/pki/own; the server's must be in <data_dir>/pki/trusted."""

    mode: Literal["None", "Sign", "SignAndEncrypt"]
    policy: OpcUaPolicy | None = None  # required unless mode is None
    allow_deprecated: bool = False  # permit Basic128Rsa15 and Basic256 (broken SHA-1)

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSecurityConfig:
        if self.mode == "None":
            if self.policy not in (None, "None"):
                raise InvalidKeyError(("policy",), f"expected None (or no policy) with mode "
                                      f"None, found {self.policy}")
        elif self.policy in (None, "None"):
            raise InvalidKeyError(("policy",), f"expected a security policy for mode "
                                  f"{self.mode} (Basic256Sha256, Aes128_Sha256_RsaOaep or "
                                  f"Aes256_Sha256_RsaPss), found {self.policy}")
        if self.policy in DEPRECATED_OPCUA_POLICIES and not self.allow_deprecated:
            raise InvalidKeyError(("policy",), f"expected a current policy (Basic256Sha256, "
                                  f"Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss), found the "
                                  f"deprecated {self.policy}; set allow_deprecated: true "
                                  f"to use it anyway")
        return self


class OpcUaSourceConfig(SourceConfig):
    """An OPC UA server, read through one subscription of monitored items (polled only
    when `read_interval_ms` is set, for servers without subscriptions). The server
    sends a keep-alive after `keepalive_count` empty publishing intervals; no publish
    response within 3 keep-alive periods counts as a lost connection. Nodes are listed
    in `nodes`, found by the `companion` specifications, or both."""

    type: Literal["opcua"]
    endpoint: str  # opc.tcp://host[:port][/path]
    publishing_interval_ms: float = Field(default=100, gt=0, le=3_600_000)
    keepalive_count: int = Field(default=10, ge=1, le=1000)
    sampling_interval_ms: float = Field(default=100, ge=0)  # 0: the server's fastest
    queue_size: int = Field(default=10, ge=1, le=10_000)
    deadband: DeadbandConfig | None = None
    connect_timeout_s: float = Field(default=10, gt=0, le=300)
    security: OpcUaSecurityConfig
    username: str | None = None  # user identity: a username and password ...
    password: Secret | None = None
    user_certificate: ConfigPath | None = None  # ... or an X.509 certificate and its key
    user_key: ConfigPath | None = None
    nodes: list[OpcUaNodeConfig] = Field(default_factory=list)
    companion: list[Literal["machinery", "packml"]] = Field(default_factory=list)
    browse_depth: int = Field(default=8, ge=1, le=32)  # levels walked for browse paths
    # Only for a server without subscriptions: read every node this often instead.
    read_interval_ms: float | None = Field(default=None, ge=10, le=3_600_000)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_form(cls, value: str) -> str:
        return matching(_ENDPOINT, value, "an endpoint such as 'opc.tcp://192.168.0.10:4840'")

    @model_validator(mode="after")
    def _identity(self) -> OpcUaSourceConfig:
        if self.password is not None and self.username is None:
            raise InvalidKeyError(("password",), "expected a username with the password, "
                                  "found none")
        if (self.user_certificate is None) != (self.user_key is None):
            key = "user_key" if self.user_key is None else "user_certificate"
            raise InvalidKeyError((key,), "expected user_certificate and user_key together, "
                                  f"found no {key}")
        if self.username is not None and self.user_certificate is not None:
            raise InvalidKeyError(("user_certificate",), "expected one user identity, "
                                  "username or user_certificate, found both")
        return self

    @model_validator(mode="after")
    def _unique_nodes(self) -> OpcUaSourceConfig:
        if not self.nodes and not self.companion:
            raise InvalidKeyError(("nodes",), "expected at least one node, or a companion "
                                  "specification (machinery, packml), found neither")
        require_unique(((f"{n.machine}/{n.signal}", ("nodes", i, "signal"))
                         for i, n in enumerate(self.nodes)
                         if n.machine is not None and n.signal is not None), "machine/signal")
        return self

    def fed_machines(self) -> frozenset[str] | None:
        if self.companion or any(n.machine is None for n in self.nodes):
            return None
        return frozenset(n.machine for n in self.nodes if n.machine is not None)
