"""The import rule of docs/DESIGN (imports run downward only), checked on the source:
every `import` and `from ... import` in a package's files, at the top or inside a
function, must name no package of a floor above it. The floors, ground up: gateway/
(the runtime core), connectors/, shadow/, api/ and sim/, then the composition root
ombre/. The simulator talks to the rest over the wire only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("gateway", "connectors", "shadow", "api", "sim", "ombre")
FORBIDDEN = {
    "gateway": {"connectors", "shadow", "api", "sim", "ombre"},
    "connectors": {"shadow", "api", "sim", "ombre"},
    "shadow": {"api", "sim", "ombre"},
    "api": {"sim", "ombre"},
    "sim": {"gateway", "connectors", "shadow", "api", "ombre"},
    "ombre": set(),
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports(package: str) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line}: imports {name}"
            for path in sorted((ROOT / package).rglob("*.py"))
            for line, name in imported_packages(path) if name in FORBIDDEN[package]]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_runs_back_up(package: str) -> None:
    assert (ROOT / package / "__init__.py").exists()
    assert upward_imports(package) == []


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom shadow.config import X\n\ndef f():\n"
                      "    import api.app\n    from . import sibling\n")
    assert imported_packages(module) == [(1, "os"), (2, "shadow"), (5, "api")]
