"""Validate requests and responses against Pipedrive's official v2 OpenAPI document (../shared/pipedrive).

Use through the `openapi_validator` fixture (tests/conftest.py), which loads the 1 MB spec once per session
and skips when ../shared is absent:

    def test_x(openapi_validator):
        openapi_validator.validate_request("POST", "/api/v2/persons", body={"name": "Ann"})
        openapi_validator.validate_response("GET", "/api/v2/persons", 200, response.json())

Each call raises jsonschema.ValidationError (an AssertionError-like failure in pytest) naming the offending path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import ValidationError
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC_PATH = SHARED / "pipedrive" / "openapi-v2.yaml"
API_PREFIX = "/api/v2"


def _patch_known_gaps(spec: dict[str, Any]) -> None:
    """One documented gap: list/search `next_cursor` "will be null" at the end, yet some schemas omit nullable."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            cursor = node.get("properties", {}).get("next_cursor") if isinstance(node.get("properties"), dict) else None
            if isinstance(cursor, dict):
                cursor["nullable"] = True
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)


@dataclass
class _Operation:
    template: str
    pattern: re.Pattern[str]
    method: str
    spec: dict[str, Any]


class OpenApiV2:
    """Operations of the v2 spec, matched by method and concrete path (with or without /api/v2)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        _patch_known_gaps(spec)
        self.spec = spec
        self._ops: list[_Operation] = []
        for template, item in spec["paths"].items():
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", r"[^/]+", re.escape(template)) + "$"
            for method, op in item.items():
                if isinstance(op, dict) and "responses" in op:
                    self._ops.append(_Operation(template, re.compile(regex), method.upper(), op))
        # literal paths ("/persons/search") before templated ones ("/persons/{id}")
        self._ops.sort(key=lambda o: o.template.count("{"))

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> OpenApiV2:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        with path.open(encoding="utf-8") as handle:
            return cls(yaml.load(handle, Loader=loader))  # noqa: S506 -- a safe loader

    def operation(self, method: str, path: str) -> _Operation:
        path = path.split("?", 1)[0]
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX) :]
        for op in self._ops:
            if op.method == method.upper() and op.pattern.match(path):
                return op
        raise ValidationError(f"{method} {path}: no such operation in the Pipedrive v2 spec")

    def validate_request(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None
    ) -> None:
        """Query parameters must be declared (and typed) by the operation; the JSON body must fit its schema."""
        op = self.operation(method, path)
        declared = {p["name"]: p for p in op.spec.get("parameters", []) if p.get("in") == "query"}
        for name, raw in (query or {}).items():
            if name not in declared:
                raise ValidationError(f"{method} {op.template}: query parameter {name!r} is not in the spec")
            schema = declared[name].get("schema", {})
            _validator(schema).validate(
                _coerce(raw, schema),
            )
        for name, param in declared.items():
            if param.get("required") and name not in (query or {}):
                raise ValidationError(f"{method} {op.template}: required query parameter {name!r} missing")
        content = op.spec.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            if body is not None:
                raise ValidationError(f"{method} {op.template}: the spec declares no request body")
            return
        _validator(content["schema"]).validate(body)

    def validate_response(self, method: str, path: str, status: int, body: Any) -> None:
        op = self.operation(method, path)
        response = op.spec["responses"].get(str(status))
        if response is None:
            raise ValidationError(f"{method} {op.template}: status {status} not documented")
        schema = response.get("content", {}).get("application/json", {}).get("schema")
        if schema is not None:
            _validator(schema).validate(body)


def _validator(schema: dict[str, Any]) -> OAS30Validator:
    return OAS30Validator(schema, format_checker=oas30_format_checker)


def _coerce(raw: Any, schema: dict[str, Any]) -> Any:
    """Query strings are text; coerce to the declared type so the schema check is meaningful."""
    if not isinstance(raw, str):
        raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
    except ValueError:
        return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw, raw)
    return raw
