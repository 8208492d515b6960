"""The `notifications:` part of the config file: which incidents are worth a message
(rules), where the messages go (an e-mail over SMTP, a webhook), how they are throttled
and grouped, and the bounds of the durable queue that holds them until delivered.
shadow/notify_rules.py interprets the rules; shadow/notifier.py runs them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from gateway.config_base import (
    ConfigModel,
    ConfigPath,
    InvalidKeyError,
    Name,
    Secret,
    require_unique,
)
from shadow.timeline import Category

Language = Literal["en", "fr"]
Channel = Literal["email", "webhook"]


class RuleBase(ConfigModel):
    """What every rule has: a `name` (default: its type), the `machines` it watches
    (none: all), whether the end of an incident is sent too (`notify_clear`), the
    least time between two messages of this rule, and the channels it uses (none: every
    configured channel)."""

    name: Name | None = None
    notify_clear: bool = True
    min_interval_s: float | None = Field(default=None, ge=0)  # None: notifications'
    channels: list[Channel] = Field(default_factory=list)


class MachineStoppedRule(RuleBase):
    """A machine in one of `categories` (not planned downtime) for `minutes` or longer."""

    type: Literal["machine_stopped"]
    minutes: float = Field(gt=0)
    machines: list[Name] = Field(default_factory=list)
    categories: list[Category] = Field(default_factory=lambda: [Category.ADET],
                                       min_length=1)


class DriftAlertRule(RuleBase):
    """A drift alert opened (shadow/drift.py); it ends when the alert is closed."""

    type: Literal["drift_alert"]
    machines: list[Name] = Field(default_factory=list)


class OeeBelowRule(RuleBase):
    """At mid-shift, a machine's OEE since the shift began below `target` (0 to 1); the
    incident ends with the shift. Needs shifts in `shadow.calendar`."""

    type: Literal["oee_below"]
    target: float = Field(gt=0, le=1)
    machines: list[Name] = Field(default_factory=list)
    notify_clear: bool = False


class ConnectorDownRule(RuleBase):
    """A source, sink or store of the gateway down for `minutes` or longer (as /readyz
    reports it). `connectors`: their names (none: all)."""

    type: Literal["connector_down"]
    minutes: float = Field(default=5, gt=0)
    connectors: list[Name] = Field(default_factory=list)


Rule = MachineStoppedRule | DriftAlertRule | OeeBelowRule | ConnectorDownRule
RuleConfig = Annotated[Rule, Field(discriminator="type")]


def rule_key(rule: Rule) -> str:
    """The rule's name in incidents and messages: its `name`, else its type."""
    return rule.name or rule.type


class EmailConfig(ConfigModel):
    """An SMTP server. `security`: `starttls` (port 587, the default), `tls` (port 465)
    or `none` (a relay on the local network only). `username` and `password` log in
    when given; the password comes from `${ENV_NAME}` or `${file:/path}`. `cafile`
    trusts a private certificate authority (or a self-signed server)."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    cafile: ConfigPath | None = None
    sender: str = Field(min_length=3, pattern=r"^[^\s@]+@[^\s@]+$")
    to: list[Annotated[str, Field(pattern=r"^[^\s@]+@[^\s@]+$")]] = Field(min_length=1)
    timeout_s: float = Field(default=20, gt=0)

    @model_validator(mode="after")
    def _both_credentials(self) -> EmailConfig:
        if (self.username is None) != (self.password is None):
            raise InvalidKeyError(("password" if self.password is None else "username",),
                                  "expected `username` and `password` together, found one")
        return self


class WebhookConfig(ConfigModel):
    """An HTTP(S) URL that receives each message as a JSON POST; `token`, when given
    (from `${ENV_NAME}` or `${file:/path}`), goes as `Authorization: Bearer <token>`."""

    url: str = Field(pattern=r"^https?://\S+$")
    token: Secret | None = None
    cafile: ConfigPath | None = None
    timeout_s: float = Field(default=10, gt=0)


class QueueConfig(ConfigModel):
    """The durable queue of messages not yet delivered (a table of the shadow's
    database). Beyond `max_pending` messages waiting, the oldest is dropped, counted and
    logged; `max_history` delivered, failed or dropped messages are kept for the
    dashboard. A failed delivery is retried after `retry_initial_s`, doubling up to
    `retry_max_s`, until `give_up_after_s` after the message was queued."""

    max_pending: int = Field(default=1000, ge=1, le=1_000_000)
    max_history: int = Field(default=1000, ge=0, le=1_000_000)
    retry_initial_s: float = Field(default=10, gt=0)
    retry_max_s: float = Field(default=600, gt=0)
    give_up_after_s: float = Field(default=86_400, gt=0)


class NotificationsConfig(ConfigModel):
    """Rules, channels, the plant's `language` (en or fr) and the throttling: the
    first change of a burst waits `group_window_s` for the others, which go out in the
    same message; a rule sends at most one message every `min_interval_s`."""

    language: Language = "en"
    rules: list[RuleConfig] = Field(default_factory=list)
    email: EmailConfig | None = None
    webhook: WebhookConfig | None = None
    group_window_s: float = Field(default=60, ge=0)
    min_interval_s: float = Field(default=300, ge=0)
    check_interval_s: float = Field(default=10, gt=0)
    max_items: int = Field(default=50, ge=1, le=1000)  # listed in one message; then "N more"
    queue: QueueConfig = Field(default_factory=QueueConfig)

    @model_validator(mode="after")
    def _rules_and_channels(self) -> NotificationsConfig:
        require_unique(((rule_key(r), ("rules", i, "name")) for i, r in enumerate(self.rules)),
                       "rule name")
        configured = self.channels()
        if self.rules and not configured:
            raise InvalidKeyError(("rules",), "expected `email` or `webhook` to send the "
                                  "rules' messages to, found neither")
        for i, rule in enumerate(self.rules):
            for j, channel in enumerate(rule.channels):
                if channel not in configured:
                    raise InvalidKeyError(("rules", i, "channels", j), f"expected a configured "
                                          f"channel ({', '.join(configured)}), found {channel!r}")
        return self

    def channels(self) -> list[Channel]:
        """The configured channels."""
        found: list[Channel] = []
        if self.email is not None:
            found.append("email")
        if self.webhook is not None:
            found.append("webhook")
        return found

    def rule_channels(self, rule: RuleBase) -> list[Channel]:
        return list(rule.channels) or self.channels()

    def rule_interval_s(self, rule: RuleBase) -> float:
        return self.min_interval_s if rule.min_interval_s is None else rule.min_interval_s
