"""The whole config file: the plant and runtime (gateway/), the shadow's keys
(shadow/), the API's (api/), and each source and sink in the model of its plug-in.

`load_config(path, environ)` is how a file becomes an OmbreConfig: it validates the
file against `config_model()`, then checks each connector block against the plant
and that its plug-in's extra is installed, and raises ConfigError naming the file,
line and key path of every problem."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, create_model, model_validator

from api.config import ServedConfig
from connectors.fleet_config import FleetConfig
from gateway.config_base import InvalidKeyError, Loc
from gateway.config_load import load_file
from gateway.plugins import BuildContext, Plugin
from ombre.plugins import install_hint, missing_modules, registry


class OmbreConfig(ServedConfig):
    """The config file. Validate one with `config_model()` (or `load_config`), whose
    `sources` and `sinks` take the installed plug-ins' configs; this class itself
    knows only their common keys. `fleet`: this process is a central member of a fleet
    (docs/fleet.md)."""

    fleet: FleetConfig | None = None

    @model_validator(mode="after")
    def _fleet_keeps_a_shadow(self) -> OmbreConfig:
        if self.fleet is not None and not self.shadow.enabled:
            raise InvalidKeyError(("fleet",), "expected the shadow enabled in a fleet (its "
                                  "members share the shadow's sites), found shadow.enabled "
                                  "false")
        return self


@functools.cache
def config_model() -> type[OmbreConfig]:
    """OmbreConfig with `sources` and `sinks` as the discriminated unions (on `type`)
    of the installed plug-ins' config models; built once per process."""
    plugins = registry()
    sources: Any = list[_union(plugins.sources)]  # type: ignore[misc]
    sinks: Any = list[_union(plugins.sinks)]  # type: ignore[misc]
    model: type[OmbreConfig] = create_model(
        "OmbreConfig", __base__=OmbreConfig, __module__=__name__,
        sources=(sources, Field(default_factory=list)), sinks=(sinks, Field(default_factory=list)))
    return model


def _union(plugins: Mapping[str, Plugin[Any, Any]]) -> Any:
    models = tuple(plugin.config for plugin in plugins.values())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


def validate_config(data: object) -> OmbreConfig:
    """`data` (as a YAML file holds it) validated as the config file, its paths as
    given. For code and tests; a file goes through load_config."""
    return config_model().model_validate(data)


def load_config(path: Path, environ: Mapping[str, str]) -> OmbreConfig:
    """The validated config in `path`; raises ConfigError naming every problem found.
    Reads no environment but `environ`; called once at start-up and by every command."""
    return load_file(path, environ, config_model(), _setup_problems)


def _setup_problems(config: OmbreConfig) -> Iterator[tuple[Loc, str]]:
    """Each connector block whose plug-in's modules are missing, or that does not fit
    the plant (its plug-in's `check`); a PostgreSQL shadow database without psycopg."""
    if (config.shadow.database or "").startswith("postgresql") and find_spec("psycopg") is None:
        yield ("shadow", "database"), ("PostgreSQL needs psycopg, which is not installed: "
                                       "pip install 'ombre[postgres]'")
    context = BuildContext(config, config.registry())
    if config.fleet is not None:
        from connectors.mqtt_config import SubscriptionConfig  # noqa: PLC0415
        from connectors.topics import TopicRouter  # noqa: PLC0415

        for site in config.sites:
            try:
                TopicRouter([SubscriptionConfig(topic=config.fleet.site_topic(site.id))],
                            config, context.registry)
            except ValueError as exc:
                yield ("fleet", "topic"), str(exc)
    blocks = [*((("sources", i), c) for i, c in enumerate(config.sources)),
              *((("sinks", i), c) for i, c in enumerate(config.sinks))]
    for loc, block in blocks:
        plugin = registry().of(block)
        if missing := missing_modules(plugin):
            yield (*loc, "type"), (f"the {block.type} connector needs {', '.join(missing)}, "
                                   f"which is not installed: {install_hint(plugin)}")
        elif plugin.check is not None:
            try:
                plugin.check(block, context)
            except InvalidKeyError as exc:
                yield (*loc, *exc.loc), str(exc)
            except ValueError as exc:
                yield loc, str(exc)
