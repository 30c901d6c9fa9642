"""The admin API's descriptions: valid, current in the repository, complete, and one status per error code."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from shared.app import App
from shared.entrypoints.http_errors import ERROR_CODES
from shared.openapi import ROUTES, openapi_document
from tools import openapi as tool

ROOT = Path(__file__).resolve().parents[2]


def document() -> dict:
    return openapi_document(App.credentials_fields)


def test_the_openapi_31_document_is_valid() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_connector_export_is_valid_swagger_20_without_json_schema_only_constructs() -> None:
    swagger = tool.to_swagger2(document())
    validate(swagger)
    text = json.dumps(swagger)
    assert '"anyOf"' not in text and '"null"' not in text and "#/components/" not in text
    assert "/openapi.json" not in swagger["paths"], "the description is no connector action"
    properties = tool.api_properties()["properties"]["connectionParameters"]["api_key"]
    assert properties["type"] == "securestring"
    assert swagger["securityDefinitions"]["api_key"] == {"type": "apiKey", "in": "header", "name": "x-functions-key"}


def test_the_files_in_the_repository_are_what_the_code_generates() -> None:
    for path, content in tool.generated().items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run python -m tools.openapi"
        assert path.read_text() == content, f"{path.relative_to(ROOT)} is out of date: run python -m tools.openapi"
    assert tool.main(["--check"]) == 0


def test_every_http_function_is_described_and_nothing_else() -> None:
    served = set()
    for spec_file in ROOT.glob("*/function.json"):
        for binding in json.loads(spec_file.read_text())["bindings"]:
            if binding["type"] == "httpTrigger" and "admin" not in binding["route"]:  # the page's own
                served |= {("/" + binding["route"], method) for method in binding["methods"]}
    described = {(path, method) for path, methods in document()["paths"].items() for method in methods}
    assert described == served
    names = {op["operationId"] for methods in document()["paths"].values() for op in methods.values()}
    assert names == set(ROUTES) | {"OpenApi"}, "operation ids are the function names"


def test_every_202_and_every_503_or_429_documents_its_headers() -> None:
    for methods in document()["paths"].values():
        for operation in methods.values():
            for status, response in operation["responses"].items():
                headers = response.get("headers", {})
                if status == "202":
                    assert {"Location", "Retry-After"} <= set(headers)
                if status in ("429", "503"):
                    assert "Retry-After" in headers


def test_error_codes_are_snake_case_and_every_raise_uses_the_tables_status() -> None:
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in ERROR_CODES)
    raised: list[tuple[str, int, str]] = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApiError" and len(node.args) >= 2:
                status, code = node.args[0], node.args[1]
                if isinstance(status, ast.Constant) and isinstance(code, ast.Constant):
                    raised.append((path.name, status.value, code.value))
    assert len(raised) > 20, "the scan finds the routes' errors"
    wrong = [(name, status, code) for name, status, code in raised if ERROR_CODES.get(code, (None,))[0] != status]
    assert not wrong, f"a code answered with another status than the table's (or not in the table): {wrong}"


@pytest.mark.parametrize("code", sorted(ERROR_CODES))
def test_the_docs_list_every_error_code_with_its_status(code: str) -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    text = "\n".join(path.read_text(encoding="utf-8") for path in docs)
    assert f"| `{code}` | {ERROR_CODES[code][0]} |" in text, "the admin API docs' table of error codes"
