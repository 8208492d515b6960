"""What the printed reports (maturity, shift) share: their languages, their words
(a JSON file of the dashboard's, one object per language), and how a figure reads."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

Lang = Literal["en", "fr"]
STATIC = Path(__file__).with_name("static")
NONE = "\N{EN DASH}"  # a figure there is none of


@cache
def words_of(file_name: str, lang: Lang) -> dict[str, Any]:
    """The words of `lang` in the static file `file_name`, read once."""
    found: dict[str, Any] = json.loads((STATIC / file_name).read_text(encoding="utf-8"))[lang]
    return found


def pct(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.1f} %"
