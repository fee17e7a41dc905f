"""The standard-field table a mapping is checked against agrees with Pipedrive's v2 OpenAPI request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from sync_job.pipedrive import kinds
from sync_job.pipedrive.entities import ENTITIES, ENTITY_PLURAL, Entity
from sync_job.pipedrive.standard_fields import READ_ONLY, STANDARD, UNMAPPABLE
from tests.openapi import OpenApiV2

# The JSON type each kind's values take in a request body (kinds.to_api).
JSON_TYPES: dict[str, str] = {
    "text": "string", "varchar": "string", "money": "number", "currency": "string", "number": "number",
    "integer": "integer", "user": "integer", "date": "string", "deal_status": "string", "visibility": "integer",
    "marketing_status": "string", "person": "integer", "contact": "array",
}  # fmt: skip


def _properties(spec: OpenApiV2, entity: Entity, method: str) -> dict[str, Any]:
    path = f"/{ENTITY_PLURAL[entity]}" if method == "post" else f"/{ENTITY_PLURAL[entity]}/{{id}}"
    schema = spec.spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(spec.spec, schema)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].split("/")[-1]]
    out: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        out.update(_resolve(document, part))
    out.update(schema.get("properties", {}))
    return out


@pytest.mark.parametrize("entity", ENTITIES)
@pytest.mark.parametrize("method", ["post", "patch"])
def test_every_mappable_standard_key_is_in_the_specs_request_body_with_the_kinds_json_type(
    openapi_validator: OpenApiV2, entity: Entity, method: str
) -> None:
    properties = _properties(openapi_validator, entity, method)
    for key, field in STANDARD[entity].items():
        assert key in properties, f"{entity}.{key} is not in the {method.upper()} body"
        assert properties[key].get("type") == JSON_TYPES[field.kind], (entity, key, properties[key].get("type"))
        choices = kinds.CHOICES.get(field.kind)
        if choices is not None and "enum" in properties[key]:
            assert tuple(properties[key]["enum"]) == choices


@pytest.mark.parametrize("entity", ENTITIES)
def test_read_only_keys_are_not_writable_and_every_writable_key_is_mappable_or_says_why_not(
    openapi_validator: OpenApiV2, entity: Entity
) -> None:
    writable = set(_properties(openapi_validator, entity, "post")) | set(
        _properties(openapi_validator, entity, "patch")
    )
    assert not READ_ONLY[entity] & writable
    assert writable <= set(STANDARD[entity]) | set(UNMAPPABLE[entity])
    assert set(UNMAPPABLE[entity]) <= writable
