"""Rows of a CSV file made into validated models, for the imports a person runs
(production orders, reason codes): every bad row is reported with its line and column,
and the good ones are kept."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

MAX_ROWS = 100_000
M = TypeVar("M", bound=BaseModel)


class CsvError(Exception):
    """The file cannot be read as such a CSV at all."""


def read_csv(path: Path, parse: Callable[[Iterable[str], str], tuple[list[M], list[str]]]
             ) -> tuple[list[M], list[str]]:
    """`parse` applied to the CSV file `path`; CsvError if it cannot be read."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return parse(f, str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise CsvError(f"{path}: {exc}") from None


def parse_rows(lines: Iterable[str], source: str, model: type[M], required: str,
               header: str) -> tuple[list[M], list[str]]:
    """The valid rows of a CSV text whose header has the column `required` (else
    CsvError saying it expects `header`), in file order, and one
    `source:line: column: problem` message per bad row. Empty cells are left out."""
    try:
        reader = csv.DictReader(lines)
        if not reader.fieldnames or required not in reader.fieldnames:
            raise CsvError(f"{source}: expected a header row with {header}, "
                           f"found {reader.fieldnames}")
        rows: list[M] = []
        problems: list[str] = []
        for record in reader:
            line = reader.line_num
            if len(rows) + len(problems) >= MAX_ROWS:
                problems.append(f"{source}:{line}: more than {MAX_ROWS} rows; the rest "
                                "was not read")
                break
            data = {k: v for k, v in record.items() if k is not None and v not in ("", None)}
            if None in record:
                problems.append(f"{source}:{line}: more fields than the header has")
                continue
            try:
                rows.append(model.model_validate(data))
            except ValidationError as exc:
                problems += [f"{source}:{line}: {'.'.join(map(str, e['loc'])) or 'row'}: "
                             f"{e['msg']}, found {e.get('input')!r}"[:300]
                             for e in exc.errors()]
    except csv.Error as exc:
        raise CsvError(f"{source}: {exc}") from None
    return rows, problems
