"""The alerts of docs/queries.kql are deployed: one log search alert per query, the same text, the right data, an
e-mail through one action group. Read with pycep-parser (the parser checkov uses), no Bicep CLI needed."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from pycep import BicepParser

from tests.infra.bicep import INFRA, ROOT

KQL = (ROOT / "docs" / "queries.kql").read_text(encoding="utf-8")
TEMPLATE: dict[str, Any] = BicepParser().parse(file_path=INFRA / "resources.bicep")
MAIN: dict[str, Any] = BicepParser().parse(file_path=INFRA / "main.bicep")


def documented_queries() -> dict[str, tuple[str, str]]:
    """Section number -> (kind "alert" or "dashboard", the query without its comment lines)."""
    found = {}
    for section in re.split(r"\n(?=// ---- )", KQL):
        head = re.match(r"// ---- (\w+)\. .*? \((alert|dashboard)", section)
        if head:
            body = "\n".join(line for line in section.splitlines() if not line.startswith("//"))
            found[head.group(1)] = (head.group(2), body.strip("\n"))
    return found


def deployed_rules() -> list[dict[str, Any]]:
    return list(TEMPLATE["variables"]["alertRules"]["value"])


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", text)
    assert m and any(m.groups()), text
    days, hours, minutes = (int(g or 0) for g in m.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def _ago(query: str) -> timedelta:
    """The longest ago(...) a query looks back (windows named in a let are included)."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    spans = [timedelta(**{units[u]: int(n)}) for n, u in re.findall(r"ago\((\d+)([mhd])\)", query)]
    spans += [timedelta(**{units[u]: int(n)}) for n, u in re.findall(r"let window = (\d+)([mhd]);", query)]
    return max(spans)


def test_every_documented_alert_is_deployed_with_the_same_query_text() -> None:
    documented = {n: q for n, (kind, q) in documented_queries().items() if kind == "alert"}
    assert set(documented) == {"1", "2", "3", "4", "5"}
    rules = deployed_rules()
    assert len(rules) == len(documented), "one rule per documented alert, no dashboard query"
    deployed = {}
    comments = re.findall(r"// docs/queries\.kql query (\w+);", (INFRA / "resources.bicep").read_text())
    for number, rule in zip(comments, rules, strict=True):
        deployed[number] = rule["query"].strip("\n")
    assert deployed == documented, "a rule's query and docs/queries.kql differ: change both"


def test_each_rule_reads_the_right_data_over_its_query_s_window_and_fires_on_any_row() -> None:
    for rule in deployed_rules():
        query = rule["query"]
        expected_scope = "workspace" if query.lstrip().startswith("AzureMetrics") else "insights"
        assert rule["scope"] == expected_scope, rule["name"]
        assert _duration(rule["windowSize"]) >= _ago(query), f"{rule['name']}: the window cuts the query short"
        assert timedelta(minutes=5) <= _duration(rule["evaluationFrequency"]) <= timedelta(days=1)
        assert 0 <= rule["severity"] <= 4 and rule["title"] and len(rule["description"]) > 40
    resource = TEMPLATE["resources"]["alerts"]
    assert resource["type"] == "Microsoft.Insights/scheduledQueryRules" and resource["api_version"] == "2023-12-01"
    assert resource["config"]["loop_type"]["detail"]["array_name"] == "alertRules"
    properties = resource["config"]["config"]["properties"]
    (condition,) = properties["criteria"]["allOf"]
    assert (condition["timeAggregation"], condition["operator"], condition["threshold"]) == ("Count", "GreaterThan", 0)
    scope = json.dumps(properties["scopes"])
    assert "logAnalytics" in scope and "appInsights" in scope
    assert "alertActionGroup" in json.dumps(properties["actions"])


def test_alerts_e_mail_the_address_given_at_deployment() -> None:
    group = TEMPLATE["resources"]["alertActionGroup"]
    assert group["type"] == "Microsoft.Insights/actionGroups" and "preview" not in group["api_version"]
    (receiver,) = group["config"]["config"]["properties"]["emailReceivers"]
    assert receiver["emailAddress"] == "alertEmail" and receiver["useCommonAlertSchema"] is True
    assert TEMPLATE["parameters"]["alertEmail"]["default"] == ""
    assert "alertEmail" in MAIN["parameters"]
    assert MAIN["modules"]["resources"]["config"]["params"]["alertEmail"] == "alertEmail"
    azd = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert azd["alertEmail"]["value"] == "${ALERT_EMAIL=}"
