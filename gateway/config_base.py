"""The building blocks of every config model: the frozen, strict base model, the name,
secret and path types, and the errors a validator raises about one key. The plant
(gateway/config.py), the shadow's and the API's sections and every connector's config
build on them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
)

# No '/', '#', '+' (MQTT topic levels), no line break (line protocol, CSV, logs), no
# space at either end.
Name = Annotated[str, Field(min_length=1, max_length=128,
                            pattern=r"^[^/#+\s]([^/#+\n\r]*[^/#+\s])?$")]
Loc = tuple[str | int, ...]
REFERENCE = re.compile(r"\$\{([^}]*)\}")  # ${ENV_NAME} or ${file:/path}


def format_loc(loc: Loc) -> str:
    """A key path as the user writes it: `sites[0].lines[1].machines[2].id`."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


class InvalidKeyError(ValueError):
    """Raised by a model validator about one key; `loc` is that key's path relative to
    the model being validated, so the loader can point at it, and `first`, for a
    duplicate, the path of the first use."""

    def __init__(self, loc: Loc, message: str, first: Loc | None = None) -> None:
        super().__init__(message)
        self.loc = loc
        self.first = first


def require_unique(items: Iterable[tuple[str, Loc]], what: str) -> None:
    first: dict[str, Loc] = {}
    for name, loc in items:
        if name in first:
            raise InvalidKeyError(loc, f"expected a unique {what}, found {name!r} again",
                                  first[name])
        first[name] = loc


def matching(pattern: re.Pattern[str], value: str, expected: str) -> str:
    """`value` if the whole of it matches; else a ValueError saying what was expected."""
    if not pattern.fullmatch(value):
        raise ValueError(f"expected {expected}, found {value[:80]!r}")
    return value


def _one_line(value: str) -> str:
    return matching(re.compile(r"[^\n\r]*"), value, "no line break")


# A free text that ends up in series names and exports (a machine type, a unit).
Label = Annotated[str, AfterValidator(_one_line)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(str):
    """A YAML string in which the loader substituted `${...}` references; `source` is
    the text as written. Its repr shows only `source`, so a resolved secret cannot leak
    through a repr of the raw data."""

    source: str

    def __new__(cls, value: str, source: str) -> Reference:
        self = super().__new__(cls, value)
        self.source = source
        return self

    def __repr__(self) -> str:
        return f"Reference({self.source!r})"


def _require_reference(value: object) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, Reference) and REFERENCE.fullmatch(value.source):
        return SecretStr(str(value))
    raise ValueError(
        "write the secret as ${ENV_NAME} or ${file:/path}, not in the file; found <secret>"
    )


# A secret must come from the environment or a file: in YAML it is exactly one
# `${ENV_NAME}` or `${file:/path}` reference; in code, a SecretStr.
Secret = Annotated[SecretStr, BeforeValidator(_require_reference)]


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    return value if base is None or value.is_absolute() else Path(base) / value


# A path that, when validated with context {"base_dir": dir} (as the loader does), is
# resolved relative to dir, the config file's directory.
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
