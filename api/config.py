"""The API's part of the config file (`api:`), and the config the API serves from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config_base import ConfigModel
from shadow.config import ShadowedConfig

DocsMode = Literal["public", "auth", "off"]  # see api/docs.py


class RateLimitConfig(ConfigModel):
    """Token buckets: a client may send `burst` requests at once, then `per_s` a second.
    Each token has its bucket and each client address one; /healthz is not counted. Of
    the requests let in, at most `per_client_in_flight` of one client (token, else
    address) are worked on at once; the others wait their turn. One address holds at most
    `per_address_connections` connections open, unless it is a trusted proxy."""

    per_token_per_s: float = Field(default=20, gt=0)
    per_token_burst: int = Field(default=60, ge=1)
    per_address_per_s: float = Field(default=50, gt=0)
    per_address_burst: int = Field(default=150, ge=1)
    max_clients: int = Field(default=4096, ge=16, le=1_000_000)  # buckets kept per kind
    per_client_in_flight: int = Field(default=4, ge=1)  # requests worked on at once
    per_address_connections: int = Field(default=32, ge=1)  # open at once (not a proxy's)


class ApiConfig(ConfigModel):
    """Where the API and dashboard listen, and the bounds every request is held to."""

    host: str = "127.0.0.1"  # 0.0.0.0 to serve the whole network
    port: int = Field(default=8080, ge=1, le=65535)
    cors_origins: list[str] = Field(default_factory=list)  # none: CORS off
    max_range_days: float = Field(default=400, gt=0)  # longest time range one query covers
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # request bodies, CSV uploads
    docs: DocsMode = "auth"  # who may read /docs, /redoc and /openapi.json
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)



class ServedConfig(ShadowedConfig):
    """The shadow's config with the API's section: what the API and its commands read."""

    api: ApiConfig = Field(default_factory=ApiConfig)
