"""The shape of ``shared/`` over its import graph: no cycles, no module over 400 lines, and ON24's names only in the
ON24 adapter and the composition root (a second provider is a new adapter, not edits across the layers)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
MAX_LINES = 400
# Where ON24 may be named: its adapter, the composition root that builds it, and the settings the root reads
# (setting names such as ON24_BASE_URL are the deployed contract).
ON24_ALLOWED = ("shared.on24", "shared.app", "shared.settings")
# ON24's own vocabulary (its API's field names): a module that uses one as a name speaks ON24, not the seam.
ON24_WORDS = frozenset(
    {
        "eventuserid", "exteventusercd", "firstname", "lastname", "livestart", "liveend", "archivestart",
        "archiveend", "goodafter", "goodtill", "cumulativeliveminutes", "cumulativearchiveminutes",
        "liveminutes", "archiveminutes", "askedquestions", "answeredpolls", "eventid", "client_id",
    }
)  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SHARED.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The ``shared`` modules ``name`` imports (at any depth of its code, lazy imports included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imports(name) for name in MODULES}


def identifiers(name: str) -> set[str]:
    """Every name the module's code uses or defines (not its strings: texts, log keys and stored column names are
    behaviour and keep naming ON24 where they always did)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[-1])
            names.add(node.name)
    return names


def cycles() -> list[list[str]]:
    """Every import cycle, found by depth-first search (each reported once, from its smallest module)."""
    found: list[list[str]] = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(GRAPH[node]):
            if nxt == start:
                found.append([*path, start])
            elif nxt > start and nxt not in path:
                visit(start, nxt, [*path, nxt])

    for start in sorted(GRAPH):
        visit(start, start, [start])
    return found


def test_the_graph_covers_the_package() -> None:
    assert "shared.app" in GRAPH and "shared.on24.provider" in GRAPH
    assert "shared.webinars" in GRAPH["shared.on24.provider"], "the adapter implements the seam"


def test_there_are_no_import_cycles() -> None:
    assert cycles() == []


def test_a_cycle_would_be_found() -> None:
    """The search itself: a two-module cycle added to the graph is reported."""
    GRAPH["shared.ids"].add("shared.errors")
    GRAPH["shared.errors"].add("shared.ids")
    try:
        assert ["shared.errors", "shared.ids", "shared.errors"] in cycles()
    finally:
        GRAPH["shared.ids"].discard("shared.errors")
        GRAPH["shared.errors"].discard("shared.ids")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by concept"


def _on24_allowed(name: str) -> bool:
    return any(name == allowed or name.startswith(allowed + ".") for allowed in ON24_ALLOWED)


@pytest.mark.parametrize("name", sorted(name for name in MODULES if not _on24_allowed(name)))
def test_only_the_adapter_and_the_composition_root_name_on24(name: str) -> None:
    imported = {module for module in GRAPH[name] if module == "shared.on24" or module.startswith("shared.on24.")}
    assert not imported, f"{name} imports {sorted(imported)}: use shared.webinars"
    named = {word for word in identifiers(name) if re.search("on24", word, re.IGNORECASE) or word in ON24_WORDS}
    assert not named, f"{name} uses ON24's names {sorted(named)}: speak the seam (docs/architecture.md, glossary)"


def test_the_name_check_would_see_an_on24_name() -> None:
    tree = ast.parse("def pull(on24_client):\n    return on24_client.livestart\n")
    seen = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    seen |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert {"on24_client", "livestart"} <= seen and "livestart" in ON24_WORDS


def test_only_the_composition_root_and_the_entry_points_import_the_app() -> None:
    importers = {name for name, imported in GRAPH.items() if "shared.app" in imported}
    assert importers <= {name for name in MODULES if name.startswith("shared.entrypoints")}, sorted(importers)
