"""The building blocks of every config model: the frozen, strict base model, the name
type, and the errors a validator raises about one key. gateway/config.py and
shadow/config.py build on them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^/#+\s]([^/#+]*[^/#+\s])?$")]
Loc = tuple[str | int, ...]


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


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
