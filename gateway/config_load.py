"""Reading the YAML config file into a config model, with errors a person can act on.

`load_file(path, environ, model, check)` reads the file, substitutes `${ENV_NAME}`
(from `environ`) and `${file:/path}` (the file's content, trailing newline stripped) in
string values, validates it as `model`, runs `check` on the result, and raises
ConfigError listing every problem found, each with its key path and line. Relative
paths, in `${file:...}` and in path keys (`data_dir`, `sinks[].path`,
`sources[].tls.*_file`), are relative to the config file's directory. The composition
root (ombre/config.py) passes the model it assembled from the plug-ins."""

from __future__ import annotations

import difflib
import enum
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from gateway.config_base import REFERENCE, Loc, Reference, format_loc

C = TypeVar("C", bound=BaseModel)
# Problems with a validated config, found by the caller: (key path, message) each.
Check = Callable[[C], Iterable[tuple[Loc, str]]]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_MAX_DEPTH = 20
_KINDS: dict[Any, str] = {int: "an integer", float: "a number", bool: "true or false",
                          str: "a string", Path: "a path"}
_BOUNDS = {("ge", "le"): "from {} to {}", ("gt", "le"): "greater than {} and at most {}",
           ("ge",): "of at least {}", ("gt",): "greater than {}",
           ("le",): "of at most {}", ("lt",): "less than {}"}


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file. `path` is the key path (`sources[0].port`),
    empty for the file as a whole; `line` is 1-based, None when unknown."""

    path: str
    line: int | None
    message: str


class ConfigError(Exception):
    """A config file that cannot be used; str() gives one `file:line: path: message`
    line per problem, in file order. No message contains a secret's value."""

    def __init__(self, file: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(format_problem(self.file, p) for p in self.problems)


def format_problem(file: str, problem: ConfigProblem) -> str:
    """`file:line: key.path: message`, as `ombre check` prints problems and warnings."""
    return ((f"{file}:{problem.line}: " if problem.line else f"{file}: ")
            + (f"{problem.path}: " if problem.path else "") + problem.message)


def located(path: Path, loc: Loc, message: str) -> ConfigProblem:
    """A problem (or warning) about the key `loc` of the config file `path` that
    load_config accepted, with the line of that key (or of its deepest parent the file
    has)."""
    reader = _Reader(path.absolute().parent, {}, yaml.SafeLoader(_read_text(path)))
    node = reader.loader.get_single_node()
    if node is not None:
        reader.read(node, ())
    return ConfigProblem(format_loc(loc), reader.line(loc) if reader.lines else None, message)


def load_file(path: Path, environ: Mapping[str, str], model: type[C],
              check: Check[C] | None = None) -> C:
    """The config in `path`, validated as `model` and by `check`; raises ConfigError
    naming every problem found. Reads no environment but `environ`."""
    file = str(path)
    try:
        text = _read_text(path)
    except LookupError as exc:
        raise ConfigError(file, [ConfigProblem("", None, str(exc))]) from None
    base_dir = path.absolute().parent
    reader = _Reader(base_dir, environ, yaml.SafeLoader(text))
    try:
        node = reader.loader.get_single_node()
        data = None if node is None else reader.read(node, ())
    except yaml.MarkedYAMLError as exc:
        mark, context = exc.problem_mark, f" ({exc.context})" if exc.context else ""
        where = f"at column {mark.column + 1}: " if mark else ""
        problem = ConfigProblem("", mark.line + 1 if mark else None,
                                f"invalid YAML {where}{exc.problem}{context}")
        raise ConfigError(file, [problem]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, [ConfigProblem("", None, f"invalid YAML: {exc}")]) from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else _show(data)
        problem = ConfigProblem("", 1, f"expected a mapping of keys, found {found}")
        raise ConfigError(file, [problem])
    try:
        config = model.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        for error in exc.errors():
            reader.report(error, model)
        raise ConfigError(file, reader.problems) from None  # never empty: see report()
    if not reader.problems and check is not None:
        for loc, message in check(config):
            reader.problem(loc, message)
    if reader.problems:
        raise ConfigError(file, reader.problems)
    return config


@dataclass
class _Reader:
    """Turns a composed YAML node tree into plain data, substituting references and
    noting the line of every key path; then turns validation errors into problems."""

    base_dir: Path
    environ: Mapping[str, str]
    loader: yaml.SafeLoader
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[ConfigProblem] = field(default_factory=list)
    bad: set[Loc] = field(default_factory=set)  # paths holding a placeholder, not the value

    def line(self, loc: Loc) -> int:
        """The line of the deepest key on `loc` that the file has."""
        return next(self.lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in self.lines)

    def problem(self, loc: Loc, message: str, line: int | None = None) -> None:
        self.problems.append(ConfigProblem(format_loc(loc), line or self.line(loc), message))

    def read(self, node: yaml.Node, loc: Loc) -> object:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if len(loc) > _MAX_DEPTH:
            self.problem(loc, f"expected at most {_MAX_DEPTH} levels, found more "
                              "(a recursive alias?)")
            self.bad.add(loc)
            return None
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, (*loc, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            return self._read_mapping(node, loc)
        if node.tag == _TIMESTAMP_TAG:  # a timestamp stays the string the user wrote
            return node.value
        if node.tag in _NUMBER_TAGS and ":" in node.value:
            return node.value  # YAML 1.1 base 60: `14:00` is a time of day, not 840
        try:
            value = self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError):
            self.problem(loc, f"expected a value that its tag {node.tag} accepts, found one "
                              "it refuses")  # the value itself may be a secret
            self.bad.add(loc)
            return None
        return self._substitute(value, loc) if isinstance(value, str) else value

    def _read_mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, object]:
        self.loader.flatten_mapping(node)
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(loc, "expected a plain key, found a mapping or list", line)
                continue
            key = str(key_node.value)
            if key in out:
                self.problem((*loc, key), f"expected each key once, found {key!r} again "
                                          f"(first at line {self.lines[(*loc, key)]})", line)
                continue
            self.lines[(*loc, key)] = line
            out[key] = self.read(value_node, (*loc, key))
        return out

    def _substitute(self, text: str, loc: Loc) -> str:
        if "${" not in text:
            return text
        try:
            return Reference(REFERENCE.sub(self._resolve, text), text)
        except LookupError as exc:
            self.problem(loc, str(exc.args[0]))
            self.bad.add(loc)
            return Reference("", text)

    def _resolve(self, match: re.Match[str]) -> str:
        ref = match.group(1)
        if ref.startswith("file:"):
            text = _read_text(self.base_dir / ref.removeprefix("file:"))
            return text.removesuffix("\n").removesuffix("\r")
        if not _ENV_NAME.fullmatch(ref):
            raise LookupError(f"expected ${{ENV_NAME}} or ${{file:/path}}, found {match[0]!r}")
        if ref not in self.environ:
            raise LookupError(f"expected environment variable {ref!r} to be set, found it unset")
        return self.environ[ref]

    def report(self, error: ErrorDetails, model: type[BaseModel]) -> None:
        """Adds the problem a pydantic error of `model` stands for, unless its key
        already has one."""
        loc, annotation, metadata, keys = _locate(error["loc"], model)
        kind, ctx = error["type"], error.get("ctx", {})
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            tags = ", ".join(repr(t) for m in _models_in(annotation) for t in _tags(m))
            loc, message = (*loc, "type"), (
                f"expected one of {tags}, found {_show(ctx.get('tag'))}"
                if kind == "union_tag_invalid" else f"missing required key (one of {tags})")
        elif kind == "missing":
            message = "missing required key"
        elif kind == "extra_forbidden":
            message = f"unknown key {loc[-1]!r}" + _suggest(str(loc[-1]), keys)
        elif kind in ("value_error", "assertion_error"):
            exc, message = ctx.get("error"), str(ctx.get("error"))
            if first := getattr(exc, "first", None):
                message += f" (first at line {self.line((*loc, *first))})"
            loc = (*loc, *getattr(exc, "loc", ()))
        else:
            message = f"expected {_describe(annotation, metadata)}, found {_show(error['input'])}"
        if not any(loc[:i] in self.bad for i in range(len(loc) + 1)):
            self.problem(loc, message)


def _read_text(file: Path) -> str:
    """The file's text; raises LookupError naming the file and why it cannot be read."""
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LookupError(f"cannot read file '{file}': {reason}") from None


def _locate(raw: tuple[int | str, ...], model: type[BaseModel]
            ) -> tuple[Loc, Any, list[Any], list[str]]:
    """Where a pydantic error location points in `model`'s tree: the key path as
    written in YAML (union tags removed), the annotation and constraints expected
    there, and the keys valid beside it."""
    loc: list[str | int] = []
    annotation: Any = model
    metadata: list[Any] = []
    keys: list[str] = []
    for part in raw:
        models = _models_in(annotation)
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        tagged = [m for m in models if part in _tags(m)]
        container = _unwrap(annotation)[0]
        if isinstance(part, int):
            annotation, metadata = next(iter(get_args(container)), None), []
        elif get_origin(container) is dict:  # a key of a mapping such as a state table
            annotation, metadata = get_args(container)[1], []
        elif part in fields:
            annotation, metadata, keys = fields[part].annotation, fields[part].metadata, [*fields]
        elif tagged:
            annotation = tagged[0]
            continue
        else:
            annotation, metadata, keys = None, [], [*fields]
        loc.append(part)
    return tuple(loc), annotation, metadata, keys


def _describe(annotation: Any, metadata: list[Any]) -> str:
    """What a key expects: `an integer from 1 to 65535`, `one of 'block', 'drop_oldest'`."""
    tp, inner = _unwrap(annotation)
    constraints = {name: getattr(c, name) for c in [*metadata, *inner]
                   for name in ("ge", "gt", "le", "lt", "min_length", "pattern")
                   if getattr(c, name, None) is not None}
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(map(repr, get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(member.value) for member in tp)
    if "pattern" in constraints:
        return "a name without '/', '#', '+', line breaks or spaces at either end"
    if get_origin(tp) is list:
        return "a list" + (" with at least one item" if constraints.get("min_length") else "")
    if _models_in(tp):
        return "a mapping of keys"
    if tp is str and constraints.get("min_length"):
        return "a non-empty string"
    text = _KINDS.get(tp, "a valid value")
    for names, template in _BOUNDS.items():
        if set(names) <= constraints.keys():
            return f"{text} {template.format(*(constraints[n] for n in names))}"
    return text


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """`tp` without Annotated and `| None`, with the constraints found on the way."""
    metadata: list[Any] = []
    while True:
        if get_origin(tp) is Annotated:
            tp, *extra = get_args(tp)
            metadata += [m for e in extra
                         for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        elif get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp, metadata


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in get_args(tp) for m in _models_in(arg)]


def _tags(model: type[BaseModel]) -> tuple[object, ...]:
    tag = model.model_fields.get("type")
    return get_args(tag.annotation) if tag and get_origin(tag.annotation) is Literal else ()


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f", did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(valid)}"


def _show(value: object) -> str:
    """The found value for a message: never a secret, a substituted value or a whole
    mapping, and at most about 60 characters."""
    if isinstance(value, Reference):
        return f"{value.source!r} (substituted value not shown)"
    if isinstance(value, SecretStr):
        return "<secret>"
    if isinstance(value, dict | list):
        kind = "mapping" if isinstance(value, dict) else "list"
        return f"a {kind}" if value else f"an empty {kind}"
    text = "nothing" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
