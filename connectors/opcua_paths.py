"""Browse-path patterns, the OPC UA counterpart of the MQTT topic templates in
connectors/topics.py: `Objects/Machines/{machine}/Counters/{signal}`.

A pattern is browse names separated by `/`, starting at `Objects`. A level is a literal
browse name, a glob within one level (`*`, `Press?`, `Temp*`), `**` for any number of
levels, or `{machine}` / `{signal}`, which match one level and name the plant machine
or signal. No I/O; `match` never raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PLACEHOLDERS = ("machine", "signal")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_GLOB = {"*": "[^/]*", "?": "[^/]"}


@dataclass(frozen=True, slots=True)
class PathPattern:
    text: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> PathPattern:
        """ValueError naming the problem for an empty level or an unknown placeholder."""
        regex, seen = "", set()
        for i, level in enumerate(text.split("/")):
            sep = "/" if i else ""
            if not level:
                raise ValueError(f"expected browse names separated by single '/', found {text!r}")
            found = _PLACEHOLDER.fullmatch(level)
            if level == "**":
                regex += f"(?:{sep}[^/]+)*" if i else "(?:[^/]+(?:/[^/]+)*)?"
                continue
            if found is not None and found.group(1) in PLACEHOLDERS and level not in seen:
                seen.add(level)
                part = f"(?P<{found.group(1)}>[^/]+)"
            elif "{" in level or "}" in level:
                raise ValueError(f"expected at most one each of {{machine}} and {{signal}}, "
                                 f"each a whole level, found {level!r} in {text!r}")
            else:
                part = "".join(_GLOB.get(c, re.escape(c)) for c in level)
            regex += sep + part
        return cls(text, re.compile(regex))

    def match(self, path: str) -> dict[str, str] | None:
        """The placeholders' values if the whole of `path` matches, else None."""
        found = self.regex.fullmatch(path)
        return None if found is None else found.groupdict()
