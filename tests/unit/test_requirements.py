"""The deployed requirements.txt holds what the function code imports, and nothing else.

Flex Consumption installs requirements.txt into every instance: a package only a tool uses (azure-servicebus for
tools/replay.py was one) costs install time and attack surface there. Function code is shared/ and the function
folders (those with a function.json); every import is found in their syntax trees, lazy ones included, and mapped
to the installed distribution that owns the imported module's file.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from functools import cache
from importlib.metadata import Distribution, PackageNotFoundError, distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(_normal(re.split(r"[=<>!~\[; ]", line)[0]))
    return names


def _function_code() -> list[Path]:
    folders = [path.parent for path in ROOT.glob("*/function.json")]
    return sorted(ROOT.joinpath("shared").rglob("*.py")) + [p for folder in folders for p in folder.glob("*.py")]


def _imported_modules() -> set[str]:
    found: set[str] = set()
    for path in _function_code():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "shared"}


@cache
def _owners() -> dict[str, str]:
    """Installed file (resolved) -> the distribution that owns it."""
    owners: dict[str, str] = {}
    for dist in distributions():
        for file in dist.files or ():
            if str(file).endswith(".py"):
                owners[str(Path(str(dist.locate_file(file))).resolve())] = _normal(dist.metadata["Name"])
    return owners


def _distribution_of(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec and spec.origin, f"{module} is imported by function code but not installed"
    owner = _owners().get(str(Path(spec.origin).resolve()))
    assert owner, f"no installed distribution owns {module} ({spec.origin})"
    return owner


def _closure(names: set[str]) -> set[str]:
    """The distributions and everything they require (markers ignored: a superset is fine here)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            needed = requires(name) or []
        except PackageNotFoundError:  # required only on other Python versions (a marker), so not installed here
            continue
        for requirement in needed:
            if "extra ==" not in requirement:
                todo.append(_normal(re.split(r"[=<>!~\[; (]", requirement)[0]))
    return seen


def test_every_deployed_requirement_is_imported_by_function_code() -> None:
    deployed = _pinned(ROOT / "requirements.txt")
    imported = {_distribution_of(module) for module in _imported_modules()}
    unused = deployed - imported
    assert not unused, f"deployed but never imported by function code (move to tools/ or dev requirements): {unused}"


def test_every_import_of_function_code_is_deployed() -> None:
    deployed = _pinned(ROOT / "requirements.txt")
    imported = {_distribution_of(module) for module in _imported_modules()}
    missing = imported - _closure(deployed)
    assert not missing, f"imported by function code but not installed by requirements.txt: {missing}"


def test_tool_requirements_are_installed_by_the_dev_requirements_and_never_deployed() -> None:
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert "-r tools/requirements.txt" in dev
    assert "azure-servicebus" in _pinned(ROOT / "tools" / "requirements.txt")
    assert "tools" in (ROOT / ".funcignore").read_text(encoding="utf-8").split()
    assert Distribution.from_name("azure-servicebus")  # installed for the tool and its tests
