"""The documentation can be followed: every relative link and #anchor resolves, every repository path it names
exists, the README stays short, and nothing points outside the repository or at issue numbers readers cannot see."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 220

LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
ISSUE_REFERENCE = re.compile(r"\b(?:issues?|PR|pull request)\s*#?\d+\b|(?<![\w&/#`])#\d+\b", re.IGNORECASE)


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (where `#` starts a comment, not a heading, and links are not links)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces become hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").lower()
    kept = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for the file's headings, repeated ones numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [target for line in prose(path.read_text(encoding="utf-8")) for target in LINK.findall(line)]


def test_the_slugs_are_github_s() -> None:
    state = "State (Azure Table Storage, tables `<STATE_TABLE_PREFIX>orgs|ledger|syncstate`; two blob containers)"
    assert slug(state) == "state-azure-table-storage-tables-state_table_prefixorgsledgersyncstate-two-blob-containers"
    assert slug("Long operations: 202 and the operation resource") == "long-operations-202-and-the-operation-resource"
    assert slug("ON24 ⇄ Dynamics 365 event management") == "on24--dynamics-365-event-management"


def test_the_link_check_sees_a_broken_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Björn's part\n\n[ok](#björns-part) [broken](#nowhere)\n```\n# not a heading\n```\n")
    assert anchors(page) == {"title", "björns-part"}
    assert [t for t in links(page) if t[1:] not in anchors(page)] == ["#nowhere"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # https:, mailto: …: outside the repository by intent, never by relative path
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if ROOT not in linked.parents and linked != ROOT:
            broken.append(f"{target}: outside the repository")
        elif not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no such anchor")
    assert not broken, f"{doc.name}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_points_outside_the_repository_or_at_issue_numbers(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{doc.name} refers to ../shared, which is not part of the repository"
    cited = [m.group(0) for line in prose(text) for m in ISSUE_REFERENCE.finditer(line)]
    assert not cited, f"{doc.name} cites issue numbers readers cannot see: {cited}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    """`shared/retry.py`, `tests/unit/…` and the like: a module renamed or removed leaves no stale pointer."""
    roots = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"node_modules"}
    missing = []
    for code in re.findall(r"`([^`\s]+)`", doc.read_text(encoding="utf-8")):
        path = code.split("::")[0].rstrip(",.:;")
        if "/" not in path or any(ch in path for ch in "<>*{}$…|") or path.split("/")[0] not in roots:
            continue
        if "acme" in path:
            continue  # the example second provider in development.md: files it would add
        if not (ROOT / path).exists():
            missing.append(path)
    text = doc.read_text(encoding="utf-8")
    for dotted in re.findall(r"\b((?:shared|tools|sandbox|benchmarks)(?:\.[a-z_][a-z0-9_]*)+)", text):
        module = ROOT / dotted.replace(".", "/")
        if module.with_suffix(".py").exists() or module.is_dir():
            continue
        # else a name its parent module defines or imports (shared.metrics.pull_webinar)
        parent = [module.parent.with_suffix(".py"), module.parent / "__init__.py"]
        if not any(f.exists() and re.search(rf"\b{module.name}\b", f.read_text(encoding="utf-8")) for f in parent):
            missing.append(dotted)
    assert not missing, f"{doc.name} names paths or modules that do not exist: {missing}"


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first_block and readme.index(first_block.group(0)) < readme.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).strip().splitlines()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]


def test_the_issue_check_would_see_an_issue_number() -> None:
    for cited in ("rows kept before issue 18", "fixed in #8", "(Issue 14)", "see PR 31"):
        assert ISSUE_REFERENCE.search(cited), cited
    for fine in ("`#8`", "https://example.com/#8", "RFC 9457", "alert 4", "crm4", "&#8212;"):
        assert not ISSUE_REFERENCE.search(fine), fine
