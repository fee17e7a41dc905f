"""The sandbox's responses validate against Pipedrive's official v2 OpenAPI schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import ValidationError

from sync_job.sandbox import Sandbox, SandboxOptions
from tests.openapi import OpenApiV2

TOKEN = "conformance-token"


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[httpx.Client, str, str]]:
    """A sandbox with a person field, a deal field, one person and one won deal."""
    options = SandboxOptions(token=TOKEN, burst=10_000, search_burst=10_000)
    with Sandbox(options) as sandbox, httpx.Client(base_url=sandbox.url, headers={"x-api-token": TOKEN}) as client:
        person_code = client.post("/api/v2/personFields", json={"field_name": "CustomerID", "field_type": "varchar"})
        deal_code = client.post("/api/v2/dealFields", json={"field_name": "OrderID", "field_type": "varchar"})
        pcode, dcode = person_code.json()["data"]["field_code"], deal_code.json()["data"]["field_code"]
        person = client.post(
            "/api/v2/persons",
            json={"name": "Ann Lee", "emails": [{"value": "ann@example.com"}], "custom_fields": {pcode: "C-1"}},
        ).json()["data"]
        client.post(
            "/api/v2/deals",
            json={"title": "Lee Ann", "value": 120, "currency": "EUR", "person_id": person["id"],
                  "status": "won", "custom_fields": {dcode: "O-1"}},
        )  # fmt: skip
        yield client, pcode, dcode


CALLS: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("GET", "/api/v2/persons", {"limit": 1}, None),
    ("GET", "/api/v2/persons/1", None, None),
    ("POST", "/api/v2/persons", None, {"first_name": "Bo", "last_name": "Ek", "phones": [{"value": "123"}]}),
    ("PATCH", "/api/v2/persons/1", None, {"name": "Ann Lee-Smith"}),
    ("GET", "/api/v2/persons/search", {"term": "C-1", "exact_match": "true", "fields": "custom_fields"}, None),
    ("GET", "/api/v2/deals", {"limit": 500, "sort_by": "update_time"}, None),
    ("GET", "/api/v2/deals/1", None, None),
    ("POST", "/api/v2/deals", None, {"title": "Second", "value": 10.5, "currency": "USD", "person_id": 1}),
    ("PATCH", "/api/v2/deals/1", None, {"value": 99, "status": "lost", "lost_reason": "price"}),
    ("GET", "/api/v2/deals/search", {"term": "Lee"}, None),
    ("GET", "/api/v2/personFields", {"limit": 3}, None),
    ("GET", "/api/v2/dealFields", None, None),
    ("POST", "/api/v2/dealFields", None, {"field_name": "Size", "field_type": "enum", "options": [{"label": "S"}]}),
    ("DELETE", "/api/v2/deals/2", None, None),
]


@pytest.mark.parametrize(("method", "path", "query", "body"), CALLS, ids=[f"{m} {p}" for m, p, _, _ in CALLS])
def test_response_matches_the_v2_schema(
    api: tuple[httpx.Client, str, str],
    openapi_validator: OpenApiV2,
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: dict[str, Any] | None,
) -> None:
    """Each operation the job uses answers 200 with a body the official schema accepts."""
    client = api[0]
    openapi_validator.validate_request(method, path, query=query, body=body)  # the test's own request is valid too
    response = client.request(method, path, params=query, json=body)
    assert response.status_code == 200, response.text
    openapi_validator.validate_response(method, path, 200, response.json())


def test_records_carry_custom_fields_by_code(api: tuple[httpx.Client, str, str]) -> None:
    """Custom values are nested in custom_fields under 40-hex codes, the v2 way."""
    client, pcode, _ = api
    person = client.get("/api/v2/persons/1").json()["data"]
    assert person["custom_fields"][pcode] == "C-1"
    assert pcode not in person


def test_validator_rejects_a_wrong_response(openapi_validator: OpenApiV2) -> None:
    """The helper really checks: a string id fails the persons list schema."""
    with pytest.raises(ValidationError):
        openapi_validator.validate_response(
            "GET", "/api/v2/persons", 200, {"success": True, "data": [{"id": "1"}], "additional_data": {}}
        )


def test_validator_rejects_bad_requests(openapi_validator: OpenApiV2) -> None:
    """Unknown query parameters, missing required body fields and mistyped values are reported."""
    with pytest.raises(ValidationError, match="start"):
        openapi_validator.validate_request("GET", "/api/v2/persons", query={"start": 0})
    with pytest.raises(ValidationError):
        openapi_validator.validate_request("POST", "/api/v2/deals", body={"value": 3})
    with pytest.raises(ValidationError):
        openapi_validator.validate_request("PATCH", "/api/v2/deals/7", body={"value": "3"})
    with pytest.raises(ValidationError):
        openapi_validator.validate_request("GET", "/api/v2/deals", query={"limit": "many"})
