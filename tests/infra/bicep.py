"""The repository's Bicep files as data, read with pycep-parser (the parser checkov uses; no Bicep CLI here).

pycep turns a template into JSON: parameters, variables, resources (a condition or a loop wraps the body in
``config.config``), modules and outputs, with expressions as nested ``function``/``operator`` objects. This module
adds only what the checks need on top: the body of a resource whatever wraps it, its app settings, the comment
above a declaration (pycep drops comments), a rendering of an expression back to Bicep-like text for readable
assertions, and ``evaluate``, which turns the few expression shapes the app settings use into plausible runtime
values so that the settings can be fed to ``Settings.from_environ``.

One limit of pycep's JSON: a string literal and a bare identifier both arrive as a Python ``str``. A ``str`` equal
to a declared parameter, variable, resource or loop variable is taken as a reference; the templates use no
literal that equals a declared name (``test_no_literal_string_shadows_a_declared_name`` keeps it so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FAKE_CLIENT_ID = "0f3c2b1a-9d8e-4c7b-a6f5-e4d3c2b1a0f9"
LOOP_VARIABLES = {"rule", "suffix"}
"""The names the templates' ``for`` loops bind (references inside a loop body)."""

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


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]
    """The resource's own properties (name, location, properties, ...), unwrapped from a condition or a loop."""
    condition: Any
    loop: dict[str, Any] | None
    comments: list[str]
    """The ``//`` comment lines directly above the declaration (pycep drops comments; read from the text)."""
    head: str
    """The declaration line, as written."""

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.body.get("properties") or {})


@dataclass(frozen=True)
class Template:
    path: Path
    text: str
    data: dict[str, Any]

    @cached_property
    def names(self) -> set[str]:
        """Every declared name an identifier can refer to."""
        groups = ("parameters", "variables", "resources", "modules")
        return {name for group in groups for name in self.data.get(group, {})} | LOOP_VARIABLES

    @property
    def params(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("parameters", {}))

    @property
    def variables(self) -> dict[str, Any]:
        return {name: entry["value"] for name, entry in self.data.get("variables", {}).items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return {name: entry["value"] for name, entry in self.data.get("outputs", {}).items()}

    @cached_property
    def resources(self) -> dict[str, Resource]:
        lines = self.text.split("\n")
        found = {}
        for symbol, entry in self.data.get("resources", {}).items():
            config = entry["config"]
            wrapped = "config" in config and ("condition" in config or "loop_type" in config)
            at = next(i for i, line in enumerate(lines) if re.match(rf"resource {symbol}\s", line))
            comments = []
            for line in reversed(lines[:at]):
                if not line.startswith("//"):
                    break
                comments.insert(0, line[2:].strip())
            found[symbol] = Resource(
                symbol=symbol,
                type=entry["type"],
                api_version=entry["api_version"],
                existing=bool(entry["existing"]),
                body=config["config"] if wrapped else config,
                condition=config.get("condition") if wrapped else None,
                loop=config.get("loop_type") if wrapped else None,
                comments=comments,
                head=lines[at],
            )
        return found

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type == resource_type]

    def decorator(self, param: str, kind: str) -> Any:
        """The argument of a parameter's decorator (``min_value``, ``max_value``, ``allowed``, ...), or None."""
        return next((d["argument"] for d in self.params[param]["decorators"] if d["type"] == kind), None)

    def render(self, value: Any) -> str:
        """A pycep value as Bicep-like text: references bare, literals quoted (for assertions and messages)."""
        return render(value, self.names)


def parse(path: Path) -> Template:
    text = path.read_text(encoding="utf-8")
    return Template(path, text, BicepParser().parse(text=text))


def load() -> Template:
    return parse(INFRA / "resources.bicep")


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def render(value: Any, names: set[str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value in names else "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(render(v, names) for v in value) + "]"
    if "function" in value:
        function = value["function"]
        args = ", ".join(render(v, names) for v in function["parameters"].values() if v is not None)
        text = f"{_camel(function['type'])}({args})"
        return f"{text}.{function['property_name']}" if function.get("property_name") else text
    if "operator" in value:
        operator, operands = value["operator"]["type"], value["operator"]["operands"]
        if operator == "property_accessor":
            return f"{render(operands['operand_1'], names)}.{_member(operands['operand_2'], names)}"
        if operator == "conditional":
            parts = (operands["condition"], operands["true_value"], operands["false_value"])
            return "{} ? {} : {}".format(*(render(p, names) for p in parts))
        if operator == "not":
            return "!" + render(operands["bool_value"], names)
        if operator == "equals":
            return f"{render(operands['operand_1'], names)} == {render(operands['operand_2'], names)}"
        return f"{operator}({', '.join(render(v, names) for v in operands.values())})"
    return "{" + ", ".join(f"{k}: {render(v, names)}" for k, v in value.items()) + "}"


def _member(value: Any, names: set[str]) -> str:
    """The member part of ``a.b.c`` (pycep nests it as accessors): names as written, never quoted."""
    if isinstance(value, str):
        return value
    if "operator" in value and value["operator"]["type"] == "property_accessor":
        operands = value["operator"]["operands"]
        return f"{_member(operands['operand_1'], names)}.{_member(operands['operand_2'], names)}"
    return render(value, names)


def app_settings(template: Template, site_symbol: str = "functionApp") -> dict[str, Any]:
    """The function app's ``siteConfig.appSettings`` as name -> pycep value."""
    settings: dict[str, Any] = {}
    for entry in template.resources[site_symbol].properties["siteConfig"]["appSettings"]:
        name = entry["name"]
        assert isinstance(name, str) and name not in template.names, f"app setting names must be literals: {entry}"
        assert name not in settings, f"app setting {name} is set twice"
        settings[name] = entry["value"]
    return settings


def evaluate(value: Any, template: Template, depth: int = 0) -> str:
    """A plausible runtime value for an app-setting expression (the shapes infra/ uses), for feeding the app."""
    if depth > 8:
        raise ValueError(f"expression too deep: {value}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value in template.params:
            default = template.params[value].get("default")
            return f"{value}-value" if default is None else evaluate(default, template, depth + 1)
        if value in template.variables:
            return evaluate(template.variables[value], template, depth + 1)
        return re.sub(r"\$\{([^}]*)\}", lambda m: evaluate(_reference(m.group(1)), template, depth + 1), value)
    if "function" in value:
        function = value["function"]
        if function["type"] == "to_lower":
            return evaluate(function["parameters"]["string_to_change"], template, depth + 1).lower()
        if function["type"] == "unique_string":
            return "abc123def456g"
    if "operator" in value and value["operator"]["type"] == "property_accessor":
        return _attribute(render(value, template.names), template, depth)
    raise ValueError(f"cannot evaluate Bicep expression {render(value, template.names)}")


def _reference(text: str) -> Any:
    """An interpolated ``${...}`` reference as pycep would give it (a name or a dotted accessor)."""
    head, *rest = text.strip().split(".")
    if not rest:
        return head
    return {"operator": {"type": "property_accessor", "operands": {"operand_1": head, "operand_2": ".".join(rest)}}}


def _attribute(dotted: str, template: Template, depth: int) -> str:
    symbol, _, attribute = dotted.partition(".")
    resource = template.resources.get(symbol)
    if resource is None:
        raise ValueError(f"cannot evaluate {dotted}")
    name = evaluate(resource.body.get("name", symbol), template, depth + 1)
    if attribute == "name":
        return name
    leaf = attribute.rsplit(".", 1)[-1]
    return {
        "clientId": FAKE_CLIENT_ID,
        "vaultUri": f"https://{name}.vault.azure.net/",
        "ConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/",
    }.get(leaf, f"{name}-{leaf}")


def role_assignments() -> list[tuple[Resource, str, str, str]]:
    """(resource, role name, scope symbol, principal symbol) of every role assignment."""
    template = load()
    roles = template.variables["roles"]
    found = []
    for assignment in template.of_type("Microsoft.Authorization/roleAssignments"):
        values = assignment.properties
        definition = render(values["roleDefinitionId"], template.names)
        key = re.fullmatch(
            r"subscriptionResourceId\('Microsoft\.Authorization/roleDefinitions', roles\.(\w+)\)", definition
        )
        assert key, f"{assignment.symbol}: role ids come from the roles variable, not {definition}"
        guid = roles[key.group(1)]
        assert guid in BUILT_IN_ROLES, f"{assignment.symbol}: unknown role id {guid}"
        principal = re.fullmatch(r"(\w+)\.properties\.principalId", render(values["principalId"], template.names))
        assert principal, assignment.symbol
        assert values["principalType"] == "ServicePrincipal"
        scope = assignment.body.get("scope", "")
        found.append((assignment, BUILT_IN_ROLES[guid], scope if isinstance(scope, str) else "", principal.group(1)))
    return found
