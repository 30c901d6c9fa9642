"""A small reader for the repository's Bicep files (no Bicep CLI here): params, vars, resources, app settings.

It understands the subset infra/ uses: ``param``/``var``/``resource``/``output`` declarations at column 0, blocks
delimited by braces (strings, ``'''`` strings and ``//`` comments skipped), ``name: value`` properties, and arrays of
``{ name: 'X' value: <expr> }`` objects. Expressions are kept as text; ``evaluate`` turns the few shapes the app
settings use into plausible runtime values, so the settings can be fed to ``Settings.from_environ``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

_DECL = re.compile(r"^(param|var|resource|output|module)\s+(\w+)\s*(.*)$")
_RESOURCE_HEAD = re.compile(r"^'([^'@]+)@([^']+)'\s*(existing)?\s*=\s*(.*)$")


@dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: str
    """The text between the resource's outer braces."""
    comments: list[str] = field(default_factory=list)
    """The ``//`` comment lines directly above the declaration."""
    line: int = 0

    def prop(self, name: str) -> str | None:
        """The expression of a top-level property of the body (``name: value`` on one line), or None."""
        return top_level_props(self.body).get(name)


@dataclass
class Param:
    name: str
    type: str
    default: str | None
    decorators: list[str]


@dataclass
class BicepFile:
    path: Path
    text: str
    params: dict[str, Param]
    variables: dict[str, str]
    resources: dict[str, Resource]
    outputs: dict[str, str]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type == resource_type]


def _skip_string(text: str, i: int) -> int:
    """Index just past the string starting at ``i`` (``'...'`` with ``\\'`` escapes, or ``'''...'''``)."""
    if text.startswith("'''", i):
        end = text.index("'''", i + 3)
        return end + 3
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "'":
            return j + 1
        j += 1
    raise ValueError(f"unterminated string at {i}")


def _code_positions(text: str, start: int, stop: int | None = None) -> Iterator[int]:
    """Indices of the characters from ``start`` that are outside strings and ``//`` comments."""
    i, end = start, len(text) if stop is None else stop
    while i < end:
        if text[i] == "'":
            i = _skip_string(text, i)
        elif text.startswith("//", i):
            i = text.index("\n", i)
        else:
            yield i
            i += 1


def matching(text: str, start: int) -> int:
    """Index of the bracket closing the one at ``start`` (``{``/``[``/``(``), skipping strings and comments."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack: list[str] = []
    for i in _code_positions(text, start):
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}])":
            if ch != stack.pop():
                raise ValueError(f"unbalanced {ch!r} at {i}")
            if not stack:
                return i
    raise ValueError(f"unclosed bracket at {start}")


def top_level_props(body: str) -> dict[str, str]:
    """``name: value`` pairs at nesting depth 0 of a block body; a value opening a bracket spans to its close."""
    found: dict[str, str] = {}
    i = 0
    while i < len(body):
        m = re.compile(r"\s*(?://[^\n]*\n\s*)*([A-Za-z_][\w]*|'[^']*')\s*:\s*").match(body, i)
        if not m:
            nl = body.find("\n", i)
            if nl == -1:
                break
            i = nl + 1
            continue
        key = m.group(1).strip("'")
        j = m.end()
        end = _value_end(body, j)
        found[key] = body[j:end].strip()
        i = end
    return found


def _value_end(text: str, j: int) -> int:
    """End of the expression starting at ``j``: the end of its line, extended over brackets and strings."""
    i = j
    while i < len(text) and text[i] != "\n":
        ch = text[i]
        if ch == "'":
            i = _skip_string(text, i)
            continue
        if text.startswith("//", i):
            break
        if ch in "{[(":
            i = matching(text, i) + 1
            continue
        i += 1
    return i


def parse(path: Path) -> BicepFile:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    params: dict[str, Param] = {}
    variables: dict[str, str] = {}
    resources: dict[str, Resource] = {}
    outputs: dict[str, str] = {}
    decorators: list[str] = []
    comments: list[str] = []
    n = 0
    while n < len(lines):
        line = lines[n]
        if line.startswith("@"):
            start = offsets[n]
            end = _value_end(text, start)
            decorators.append(text[start:end])
            n = text.count("\n", 0, end) + 1
            continue
        if line.startswith("//"):
            comments.append(line[2:].strip())
            n += 1
            continue
        m = _DECL.match(line)
        if not m:
            if not line.strip():
                comments = []
            n += 1
            continue
        kind, name, rest = m.groups()
        start = offsets[n] + len(line) - len(rest)
        if kind == "param":
            pm = re.match(r"(\w+)(?:\s*=\s*)?", rest)
            assert pm, line
            default_start = start + pm.end()
            has_default = "=" in rest.split("//")[0]
            default = text[default_start : _value_end(text, default_start)].strip() if has_default else None
            params[name] = Param(name, pm.group(1), default, decorators)
            end = _value_end(text, start)
        elif kind == "var":
            eq = text.index("=", start) + 1
            end = _value_end(text, eq)
            variables[name] = text[eq:end].strip()
        elif kind == "output":
            eq = text.index("=", start) + 1
            end = _value_end(text, eq)
            outputs[name] = text[eq:end].strip()
        elif kind == "resource":
            rm = _RESOURCE_HEAD.match(rest)
            assert rm, line
            brace = text.index("{", start + rm.start(4))
            end = matching(text, brace)
            resources[name] = Resource(
                name, rm.group(1), rm.group(2), bool(rm.group(3)), text[brace + 1 : end], list(comments), n + 1
            )
            end += 1
        else:  # module
            brace = text.index("{", start)
            end = matching(text, brace) + 1
        decorators = []
        comments = []
        n = text.count("\n", 0, end) + 1
    return BicepFile(path, text, params, variables, resources, outputs)


def objects_in_array(array_text: str) -> list[dict[str, str]]:
    """The ``{ ... }`` objects of an array expression, each as its top-level properties."""
    assert array_text.startswith("["), array_text[:40]
    found: list[dict[str, str]] = []
    depth = start = 0
    for i in _code_positions(array_text, 1, len(array_text) - 1):
        ch = array_text[i]
        if ch in "{[(":
            start = i if depth == 0 else start
            depth += 1
        elif ch in "}])":
            depth -= 1
            if depth == 0 and ch == "}":
                found.append(top_level_props(array_text[start + 1 : i]))
    return found


def unquote(expr: str) -> str | None:
    """The value of a plain string literal (no interpolation), else None."""
    if len(expr) >= 2 and expr[0] == expr[-1] == "'" and "${" not in expr:
        return expr[1:-1].replace("\\'", "'")
    return None


def app_settings(bicep: BicepFile, site_symbol: str = "functionApp") -> dict[str, str]:
    """The function app's ``siteConfig.appSettings`` as name -> expression text."""
    site = bicep.resources[site_symbol]
    site_config = top_level_props(props(site)["siteConfig"][1:-1])
    settings: dict[str, str] = {}
    for entry in objects_in_array(site_config["appSettings"]):
        name = unquote(entry["name"])
        assert name, f"app setting names must be literals: {entry}"
        assert name not in settings, f"app setting {name} is set twice"
        settings[name] = entry["value"]
    return settings


def load() -> BicepFile:
    return parse(INFRA / "resources.bicep")


FAKE_CLIENT_ID = "0f3c2b1a-9d8e-4c7b-a6f5-e4d3c2b1a0f9"


def evaluate(expr: str, bicep: BicepFile, depth: int = 0) -> str:
    """A plausible runtime value for an app-setting expression (the shapes infra/ uses), for feeding the app."""
    if depth > 8:
        raise ValueError(f"expression too deep: {expr}")
    expr = expr.strip()
    literal = unquote(expr)
    if literal is not None:
        return literal
    if re.fullmatch(r"-?[0-9]+", expr):  # an int literal (a parameter's default), interpolated into a string
        return expr
    if expr.startswith("'") and expr.endswith("'"):
        return re.sub(r"\$\{([^}]*)\}", lambda m: evaluate(m.group(1), bicep, depth + 1), expr[1:-1])
    if expr in bicep.params:
        default = bicep.params[expr].default
        if default is None:
            return f"{expr}-value"
        return evaluate(default, bicep, depth + 1)
    if expr in bicep.variables:
        return evaluate(bicep.variables[expr], bicep, depth + 1)
    if re.fullmatch(r"toLower\((.*)\)", expr):
        return evaluate(expr[len("toLower(") : -1], bicep, depth + 1).lower()
    if re.fullmatch(r"toLower\(uniqueString\(.*\)\)|uniqueString\(.*\)", expr):
        return "abc123def456g"
    m = re.fullmatch(r"(\w+)\.(name|properties\.(\w+))", expr)
    if m and m.group(1) in bicep.resources:
        resource = bicep.resources[m.group(1)]
        name_expr = resource.prop("name")
        name = evaluate(name_expr, bicep, depth + 1) if name_expr else m.group(1)
        attribute = m.group(3)
        if attribute is None:
            return name
        if attribute == "clientId":
            return FAKE_CLIENT_ID
        if attribute == "vaultUri":
            return f"https://{name}.vault.azure.net/"
        if attribute == "ConnectionString":
            return "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
        return f"{name}-{attribute}"
    raise ValueError(f"cannot evaluate Bicep expression {expr!r}")


# Built-in role ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def props(resource: Resource) -> dict[str, str]:
    """The top-level properties of a resource's ``properties`` object."""
    return top_level_props(top_level_props(resource.body)["properties"][1:-1])


def role_assignments() -> list[tuple[Resource, str, str, str]]:
    """(resource, role name, scope symbol, principal symbol) of every role assignment."""
    bicep = load()
    roles = top_level_props(bicep.variables["roles"][1:-1])
    found = []
    for assignment in bicep.of_type("Microsoft.Authorization/roleAssignments"):
        values = props(assignment)
        key = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)",
            values["roleDefinitionId"],
        )
        assert key, f"{assignment.symbol}: role ids come from the roles variable"
        guid = unquote(roles[key.group(1)])
        assert guid in BUILT_IN_ROLES, f"{assignment.symbol}: unknown role id {guid}"
        principal = re.fullmatch(r"(\w+)\.properties\.principalId", values["principalId"])
        assert principal, assignment.symbol
        assert values["principalType"] == "'ServicePrincipal'"
        found.append((assignment, BUILT_IN_ROLES[guid], assignment.prop("scope") or "", principal.group(1)))
    return found
