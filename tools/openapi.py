"""``python -m tools.openapi``: write the admin API's descriptions into the repository.

    python -m tools.openapi           # write docs/openapi.json and docs/connector/*
    python -m tools.openapi --check   # exit 1 when a file differs from what the code generates

- ``docs/openapi.json``: the OpenAPI 3.1 document ``GET /api/openapi.json`` serves (``shared.openapi``);
- ``docs/connector/apiDefinition.swagger.json``: the same API as Swagger 2.0, the format a Power Platform custom
  connector imports (``to_swagger2``: nullable types as ``x-nullable``, no ``anyOf``/``const``), with the
  connector's hints (``x-ms-summary``, ``x-ms-visibility``); the host is a placeholder to change at import;
- ``docs/connector/apiProperties.json``: the connection's one parameter, the app's admin key (a secure string).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

from shared.app import App
from shared.openapi import openapi_document

ROOT = Path(__file__).resolve().parents[1]
CONNECTOR_HOST = "contoso-webinar.azurewebsites.net"
_DROPPED = ("writeOnly", "readOnly", "deprecated", "examples", "const", "contentMediaType", "$schema")


def to_swagger2(document: dict[str, Any], host: str = CONNECTOR_HOST) -> dict[str, Any]:
    """The OpenAPI 3.1 document as Swagger 2.0 for a Power Platform custom connector."""
    definitions = {name: _schema(schema) for name, schema in document["components"]["schemas"].items()}
    paths: dict[str, Any] = {}
    for path, methods in document["paths"].items():
        if path == "/openapi.json":
            continue  # the description itself is no connector action
        paths[path] = {method: _operation(op) for method, op in methods.items()}
    return {
        "swagger": "2.0",
        "info": {
            "title": "ON24 webinar integration (admin)",
            "version": document["info"]["version"],
            "description": document["info"]["description"][:1000],
        },
        "host": host,
        "basePath": "/api",
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
        "security": [{"api_key": []}],
        "paths": paths,
        "definitions": definitions,
    }


def api_properties() -> dict[str, Any]:
    """The connector's ``apiProperties.json``: the admin key as the connection's secure parameter (a deployment
    with App Service authentication switches the connector's security to OAuth 2.0 instead: docs/admin-api.md)."""
    return {
        "properties": {
            "connectionParameters": {
                "api_key": {
                    "type": "securestring",
                    "uiDefinition": {
                        "displayName": "Admin key",
                        "description": "The integration's admin key: the Function App's ADMIN_API_KEY setting",
                        "tooltip": "Azure portal: Function App > Settings > Environment variables > ADMIN_API_KEY",
                        "constraints": {"tabIndex": 2, "clearText": False, "required": "true"},
                    },
                }
            },
            "iconBrandColor": "#0078d4",
            "capabilities": [],
            "publisher": "ON24 webinar integration",
            "stackOwner": "ON24 webinar integration",
        }
    }


def _operation(operation: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "operationId": operation["operationId"],
        "summary": operation["summary"][:80],
        "description": operation["summary"],
        "parameters": [_parameter(p) for p in operation.get("parameters", [])],
        "responses": {},
    }
    body = operation.get("requestBody")
    if body is not None:
        schema = _schema(body["content"]["application/json"]["schema"])
        result["parameters"].append({"name": "body", "in": "body", "required": True, "schema": schema})
    for status, response in operation["responses"].items():
        out: dict[str, Any] = {"description": response["description"][:1000]}
        content = response.get("content", {}).get("application/json")
        if content is not None and content.get("schema"):
            out["schema"] = _schema(content["schema"])
        if "headers" in response:
            out["headers"] = {name: {"type": h["schema"]["type"], "description": h["description"]}
                              for name, h in response["headers"].items()}  # fmt: skip
        result["responses"][status] = out
    return result


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    schema = parameter["schema"]
    out = {
        "name": parameter["name"],
        "in": parameter["in"],
        "required": parameter["required"],
        "type": schema["type"],
        "description": parameter["description"],
        "x-ms-summary": parameter["name"],
    }
    if "default" in schema:
        out["default"] = schema["default"]
        out["x-ms-visibility"] = "advanced"
    return out


def _schema(schema: Any) -> Any:
    """A JSON Schema 2020-12 fragment as Swagger 2.0's subset: refs to ``definitions``, nullable as ``x-nullable``."""
    if isinstance(schema, list):
        return [_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = copy.deepcopy(schema)
    for key in _DROPPED:
        if key == "const" and key in schema:
            schema["enum"] = [schema["const"]]
        schema.pop(key, None)
    options = schema.pop("anyOf", None)
    if options is not None:
        kept = [option for option in options if option.get("type") != "null"]
        merged = kept[0] if len(kept) == 1 else {}  # a union of several types: any value
        schema = {**{k: v for k, v in schema.items() if k != "default" or v is not None}, **merged}
        if len(kept) < len(options):
            schema["x-nullable"] = True
    if "$ref" in schema:
        return {"$ref": schema["$ref"].replace("#/components/schemas/", "#/definitions/")}
    return {key: _schema(value) if key not in ("enum", "required") else value for key, value in schema.items()}


def generated() -> dict[Path, str]:
    """Every file this tool writes, with its content."""
    document = openapi_document(App.credentials_fields)

    def text(data: dict[str, Any]) -> str:
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    return {
        ROOT / "docs" / "openapi.json": text(document),
        ROOT / "docs" / "connector" / "apiDefinition.swagger.json": text(to_swagger2(document)),
        ROOT / "docs" / "connector" / "apiProperties.json": text(api_properties()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a written file differs from the code")
    args = parser.parse_args(argv)
    stale = [path for path, content in generated().items() if not path.exists() or path.read_text() != content]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python -m tools.openapi", file=sys.stderr)
        return 1 if stale else 0
    for path, content in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
