"""Deal and person write bodies in the sandbox follow the v2 request schemas key by key, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sync_job.sandbox import Sandbox, SandboxOptions
from sync_job.sandbox.bodies import DEAL_KEYS, DEAL_READ_ONLY, PERSON_KEYS, PERSON_READ_ONLY
from tests.openapi import OpenApiV2

TOKEN = "bodies-token"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    options = SandboxOptions(token=TOKEN, burst=10_000, search_burst=10_000)
    with Sandbox(options) as sandbox, httpx.Client(base_url=sandbox.url, headers={"x-api-token": TOKEN}) as c:
        yield c


def _refused(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 400, response.text
    error = str(response.json()["error"])
    for word in words:
        assert word in error, error
    return error


def _deal(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v2/deals", json={"title": "T", **body})
    assert response.status_code == 200, response.text
    return dict(response.json()["data"])


# -- read-only and unknown keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["id", "add_time", "update_time", "creator_user_id", "stage_change_time", "origin", "acv"]
)
def test_a_read_only_deal_field_is_refused_by_name(client: httpx.Client, key: str) -> None:
    value = "2024-01-01T00:00:00Z" if key.endswith("_time") else 1
    _refused(client.post("/api/v2/deals", json={"title": "T", key: value}), f"'{key}'", "read-only")
    deal = _deal(client)
    _refused(client.patch(f"/api/v2/deals/{deal['id']}", json={key: value}), f"'{key}'", "read-only")


def test_a_read_only_person_field_is_refused_by_name(client: httpx.Client) -> None:
    for key, value in (("update_time", "2024-01-01T00:00:00Z"), ("is_deleted", False), ("picture_id", 1)):
        _refused(client.post("/api/v2/persons", json={"name": "A B", key: value}), f"'{key}'", "read-only")
    person = client.post("/api/v2/persons", json={"name": "A B", "add_time": "2024-01-01T00:00:00Z"}).json()["data"]
    assert person["add_time"].startswith("2024-01-01T00:00:00")  # POST may set add_time; PATCH may not
    patch = client.patch(f"/api/v2/persons/{person['id']}", json={"add_time": "2024-02-01T00:00:00Z"})
    _refused(patch, "'add_time'", "read-only")


def test_an_unknown_key_is_still_unknown_not_read_only(client: httpx.Client) -> None:
    _refused(client.post("/api/v2/deals", json={"title": "T", "colour": "red"}), "Unknown field 'colour'")


# -- types and nullability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [({"expected_close_date": None}, ("expected_close_date", "null")), ({"person_id": None}, ("person_id", "null")),
     ({"org_id": None}, ("org_id", "null")), ({"won_time": None}, ("won_time", "null")),
     ({"expected_close_date": "2024-02-30"}, ("expected_close_date", "calendar")),
     ({"probability": "50"}, ("probability", "number")), ({"status": "closed"}, ("status", "open, won, lost")),
     ({"label_ids": [1, "2"]}, ("label_ids",)), ({"archive_time": "2024-01-01T00:00:00Z"}, ("archive_time",)),
     ({"owner_id": 1.0}, ("owner_id", "integer")), ({"title": ""}, ("title",))],
)  # fmt: skip
def test_a_deal_value_outside_its_schema_is_refused(
    client: httpx.Client, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    _refused(client.post("/api/v2/deals", json={"title": "T", **body}), *words)


def test_nullable_deal_fields_accept_null(client: httpx.Client) -> None:
    deal = _deal(client, probability=None, lost_reason=None, close_time=None, expected_close_date="2026-10-31")
    assert deal["expected_close_date"] == "2026-10-31"
    assert deal["probability"] is None


def test_a_person_postal_address_holds_only_the_spec_parts(client: httpx.Client) -> None:
    ok = client.post("/api/v2/persons", json={"name": "A B", "postal_address": {"value": "Main St 1", "country": "EE"}})
    assert ok.status_code == 200, ok.text
    bad = client.post("/api/v2/persons", json={"name": "A B", "postal_address": {"town": "Tartu"}})
    _refused(bad, "postal_address", "town")
    _refused(client.post("/api/v2/persons", json={"name": "A B", "marketing_status": "maybe"}), "marketing_status")


# -- users, pipelines, stages ----------------------------------------------------------------------------


def test_owner_must_be_a_user_of_the_account(client: httpx.Client) -> None:
    assert _deal(client, owner_id=2)["owner_id"] == 2
    _refused(client.post("/api/v2/deals", json={"title": "T", "owner_id": 3}), "'owner_id'", "user 3")
    _refused(client.post("/api/v2/persons", json={"name": "A B", "owner_id": 99}), "'owner_id'", "user 99")
    person = client.post("/api/v2/persons", json={"name": "A B", "owner_id": 2}).json()["data"]
    assert person["owner_id"] == 2


def test_unknown_pipeline_or_stage_is_refused_by_name(client: httpx.Client) -> None:
    _refused(client.post("/api/v2/deals", json={"title": "T", "pipeline_id": 3}), "'pipeline_id'", "pipeline 3")
    _refused(client.post("/api/v2/deals", json={"title": "T", "stage_id": 7}), "'stage_id'", "stage 7")
    deal = _deal(client)
    _refused(client.patch(f"/api/v2/deals/{deal['id']}", json={"stage_id": 70}), "'stage_id'")


def test_a_stage_outside_the_given_pipeline_is_refused(client: httpx.Client) -> None:
    refused = client.post("/api/v2/deals", json={"title": "T", "pipeline_id": 1, "stage_id": 5})
    _refused(refused, "'stage_id'", "stage 5 belongs to pipeline 2, not 1")
    deal = _deal(client, pipeline_id=2, stage_id=6)
    assert (deal["pipeline_id"], deal["stage_id"]) == (2, 6)
    _refused(client.patch(f"/api/v2/deals/{deal['id']}", json={"pipeline_id": 2, "stage_id": 1}), "'stage_id'")


def test_the_pipeline_follows_the_stage_and_a_pipeline_alone_means_its_first_stage(client: httpx.Client) -> None:
    default = _deal(client)
    assert (default["pipeline_id"], default["stage_id"]) == (1, 1)
    assert (lambda d: (d["pipeline_id"], d["stage_id"]))(_deal(client, stage_id=6)) == (2, 6)
    assert (lambda d: (d["pipeline_id"], d["stage_id"]))(_deal(client, pipeline_id=2)) == (2, 5)
    deal = _deal(client, stage_id=3)
    moved = client.patch(f"/api/v2/deals/{deal['id']}", json={"stage_id": 6}).json()["data"]
    assert (moved["pipeline_id"], moved["stage_id"]) == (2, 6)
    assert moved["stage_change_time"] is not None
    same = client.patch(f"/api/v2/deals/{deal['id']}", json={"pipeline_id": 2}).json()["data"]
    assert same["stage_id"] == 6  # already in pipeline 2: the stage stays
    back = client.patch(f"/api/v2/deals/{deal['id']}", json={"pipeline_id": 1}).json()["data"]
    assert (back["pipeline_id"], back["stage_id"]) == (1, 1)


# -- status and archive rules ----------------------------------------------------------------------------


def test_status_times_only_with_their_status(client: httpx.Client) -> None:
    _refused(client.post("/api/v2/deals", json={"title": "T", "won_time": "2024-01-01T00:00:00Z"}), "won_time")
    _refused(client.post("/api/v2/deals", json={"title": "T", "status": "won", "lost_time": "2024-01-01T00:00:00Z"}))
    _refused(client.post("/api/v2/deals", json={"title": "T", "status": "open", "close_time": "2024-01-01T00:00:00Z"}))
    won = _deal(client, status="won", won_time="2024-03-01T10:00:00+02:00")
    assert won["won_time"] == won["close_time"] == "2024-03-01T08:00:00.000000Z"
    lost = client.patch(f"/api/v2/deals/{won['id']}", json={"status": "lost", "lost_reason": "price"}).json()["data"]
    assert lost["lost_reason"] == "price"
    assert "won_time" not in lost  # a lost deal carries no won time
    assert lost["lost_time"] == lost["close_time"]


def test_archiving_sets_archive_time_in_the_spec_format(client: httpx.Client) -> None:
    _refused(client.post("/api/v2/deals", json={"title": "T", "archive_time": "2024-01-01 00:00:00"}), "archive_time")
    given = _deal(client, is_archived=True, archive_time="2024-01-01 12:30:00")
    assert given["archive_time"] == "2024-01-01 12:30:00"
    deal = _deal(client)
    archived = client.patch(f"/api/v2/deals/{deal['id']}", json={"is_archived": True}).json()["data"]
    assert len(archived["archive_time"]) == len("YYYY-MM-DD HH:MM:SS")
    restored = client.patch(f"/api/v2/deals/{deal['id']}", json={"is_archived": False}).json()["data"]
    assert restored["archive_time"] is None


# -- the tables themselves match the spec ------------------------------------------------------------------


def _body_keys(spec: OpenApiV2, method: str, path: str) -> set[str]:
    schema = spec.operation(method, path).spec["requestBody"]["content"]["application/json"]["schema"]
    return set(schema["properties"])


def test_sandbox_key_tables_are_the_spec_request_schemas(openapi_validator: OpenApiV2) -> None:
    """The sandbox knows every request key of POST/PATCH deals and persons, and no others but documented extras."""
    for method, path in (("POST", "/api/v2/deals"), ("PATCH", "/api/v2/deals/1")):
        assert set(DEAL_KEYS) | {"custom_fields"} == _body_keys(openapi_validator, method, path)
    extras = {"first_name", "last_name"}  # accepted per the migration guide (reference §5.3), absent from the schema
    assert set(PERSON_KEYS) | {"custom_fields"} == _body_keys(openapi_validator, "POST", "/api/v2/persons") | extras
    patch_keys = _body_keys(openapi_validator, "PATCH", "/api/v2/persons/1")
    assert set(PERSON_KEYS) - {"add_time"} | {"custom_fields"} == patch_keys | extras
    components = openapi_validator.spec["components"]["schemas"]
    assert set(components["Deal"]["properties"]) - set(DEAL_KEYS) - {"custom_fields"} <= DEAL_READ_ONLY
    assert set(components["Person"]["properties"]) - set(PERSON_KEYS) - {"custom_fields"} <= PERSON_READ_ONLY
