"""Options of enum and set custom fields in the sandbox: /…Fields/{field_code}/options over real HTTP, per the spec."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_job.sandbox import Sandbox, SandboxOptions
from tests.openapi import OpenApiV2

TOKEN = "options-token"
HEADERS = {"x-api-token": TOKEN}


def make(**options: Any) -> Sandbox:
    return Sandbox(SandboxOptions(**{"token": TOKEN, "burst": 10_000, "search_burst": 10_000, **options}))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with make() as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=HEADERS) as c:
        yield c


def enum_field(client: httpx.Client, plural: str, labels: list[str], field_type: str = "enum") -> str:
    """Create an enum (or set) custom field with these option labels; returns its field_code."""
    body = {"field_name": "Tier", "field_type": field_type, "options": [{"label": label} for label in labels]}
    response = client.post(f"/api/v2/{plural}", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["field_code"])


def options(client: httpx.Client, plural: str, code: str) -> list[tuple[int, str]]:
    """The field's options as GET of the field shows them, as (id, label)."""
    data = client.get(f"/api/v2/{plural}/{code}").json()["data"]
    return [(o["id"], o["label"]) for o in data["options"]]


def _refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    for word in words:
        assert word in response.json()["error"], response.json()["error"]


@pytest.mark.parametrize("plural", ["dealFields", "personFields"])
def test_options_add_update_delete_round_trip(client: httpx.Client, plural: str) -> None:
    code = enum_field(client, plural, ["Bronze"])
    [(bronze, _)] = options(client, plural, code)
    added = client.post(f"/api/v2/{plural}/{code}/options", json=[{"label": "Silver"}, {"label": "Gold"}])
    assert added.status_code == 200, added.text
    body = added.json()
    assert (body["success"], body["additional_data"]) == (True, None)
    silver, gold = (o["id"] for o in body["data"])
    assert body["data"] == [{"id": silver, "label": "Silver"}, {"id": gold, "label": "Gold"}]
    assert len({bronze, silver, gold}) == 3
    assert options(client, plural, code) == [(bronze, "Bronze"), (silver, "Silver"), (gold, "Gold")]

    renamed = client.patch(f"/api/v2/{plural}/{code}/options", json=[{"id": gold, "label": "Gold+"}])
    assert renamed.json()["data"] == [{"id": gold, "label": "Gold+"}]
    listed = client.get(f"/api/v2/{plural}", params={"limit": 500}).json()["data"]
    field = next(f for f in listed if f["field_code"] == code)
    assert [(o["id"], o["label"]) for o in field["options"]] == [
        (bronze, "Bronze"),
        (silver, "Silver"),
        (gold, "Gold+"),
    ]

    deleted = client.request("DELETE", f"/api/v2/{plural}/{code}/options", json=[{"id": silver}])
    assert deleted.json()["data"] == [{"id": silver, "label": "Silver"}]
    assert options(client, plural, code) == [(bronze, "Bronze"), (gold, "Gold+")]
    again = client.post(f"/api/v2/{plural}/{code}/options", json=[{"label": "Silver"}]).json()["data"]
    assert again[0]["id"] not in (bronze, silver, gold)  # a deleted option's id is not handed out again


def test_option_writes_cost_5_5_3_tokens_and_count_as_field_writes() -> None:
    with make(daily_budget=1000) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        code = enum_field(c, "dealFields", ["A"])
        used = sb.stats()["tokens_used"]
        c.post(f"/api/v2/dealFields/{code}/options", json=[{"label": "B"}]).raise_for_status()
        c.patch(f"/api/v2/dealFields/{code}/options", json=[{"id": 2, "label": "C"}]).raise_for_status()
        c.request("DELETE", f"/api/v2/dealFields/{code}/options", json=[{"id": 2}]).raise_for_status()
        stats = sb.stats()
        assert stats["tokens_used"] - used == 5 + 5 + 3
        writes = stats["writes"]
        assert (writes["dealFields.options_create"], writes["dealFields.options_update"]) == (1, 1)
        assert writes["dealFields.options_delete"] == 1


def test_a_duplicate_label_is_refused(client: httpx.Client) -> None:
    code = enum_field(client, "dealFields", ["Gold", "Silver"])
    _refused(client.post(f"/api/v2/dealFields/{code}/options", json=[{"label": "Gold"}]), "'Gold'", "unique")
    _refused(client.post(f"/api/v2/dealFields/{code}/options", json=[{"label": "X"}, {"label": "X"}]), "'X'")
    _refused(client.patch(f"/api/v2/dealFields/{code}/options", json=[{"id": 2, "label": "Gold"}]), "'Gold'")
    body = {"field_name": "Twice", "field_type": "set", "options": [{"label": "a"}, {"label": "a"}]}
    _refused(client.post("/api/v2/personFields", json=body), "'a'")
    assert options(client, "dealFields", code) == [(1, "Gold"), (2, "Silver")]  # nothing half-applied
    swapped = client.patch(f"/api/v2/dealFields/{code}/options", json=[{"id": 1, "label": "Silver"},
                                                                        {"id": 2, "label": "Gold"}])  # fmt: skip
    assert swapped.status_code == 200  # labels are unique once the whole request is applied


def test_options_on_a_varchar_field_are_refused(client: httpx.Client) -> None:
    code = client.post("/api/v2/dealFields", json={"field_name": "Note", "field_type": "varchar"}).json()["data"]
    path = f"/api/v2/dealFields/{code['field_code']}/options"
    _refused(client.post(path, json=[{"label": "x"}]), "varchar", "enum and set")
    _refused(client.patch(path, json=[{"id": 1, "label": "x"}]), "varchar")
    _refused(client.request("DELETE", path, json=[{"id": 1}]), "varchar")
    _refused(client.post("/api/v2/dealFields/status/options", json=[{"label": "x"}]), "status")  # a built-in field
    assert client.post(f"/api/v2/dealFields/{'0' * 40}/options", json=[{"label": "x"}]).status_code == 404
    with_options = {"field_name": "N", "field_type": "varchar", "options": [{"label": "x"}]}
    _refused(client.post("/api/v2/dealFields", json=with_options), "options", "varchar")


@pytest.mark.parametrize(
    ("method", "body", "words"),
    [("POST", [], ("non-empty",)), ("POST", {"label": "x"}, ("non-empty",)), ("POST", [{"label": ""}], ("label",)),
     ("POST", [{"label": "x" * 256}], ("255",)), ("POST", [{"label": "x", "id": 9}], ("keys",)),
     ("PATCH", [{"id": 99, "label": "x"}], ("99", "nothing was changed")), ("PATCH", [{"label": "x"}], ("id, label",)),
     ("DELETE", [{"id": 1}, {"id": 99}], ("[99]",)), ("DELETE", [{"id": 1}, {"id": 1}], ("twice",)),
     ("DELETE", [{"id": "1"}], ("integer",))],
)  # fmt: skip
def test_a_malformed_options_body_is_refused_and_changes_nothing(
    client: httpx.Client, method: str, body: object, words: tuple[str, ...]
) -> None:
    code = enum_field(client, "personFields", ["One"])
    _refused(client.request(method, f"/api/v2/personFields/{code}/options", json=body), *words)
    assert options(client, "personFields", code) == [(1, "One")]


def test_an_enum_value_with_a_deleted_option_is_refused(client: httpx.Client) -> None:
    code = enum_field(client, "dealFields", ["Keep", "Drop"])
    keep, drop = (oid for oid, _ in options(client, "dealFields", code))
    deal = client.post("/api/v2/deals", json={"title": "T", "custom_fields": {code: drop}}).json()["data"]
    assert deal["custom_fields"][code] == drop  # a bare option id, as written
    client.request("DELETE", f"/api/v2/dealFields/{code}/options", json=[{"id": drop}]).raise_for_status()
    refused = client.post("/api/v2/deals", json={"title": "T", "custom_fields": {code: drop}})
    _refused(refused, f"option id {drop} does not exist")
    assert client.get(f"/api/v2/deals/{deal['id']}").json()["data"]["custom_fields"][code] is None  # value cleared
    kept = client.patch(f"/api/v2/deals/{deal['id']}", json={"custom_fields": {code: keep}}).json()["data"]
    assert kept["custom_fields"][code] == keep


def test_deleting_an_option_takes_it_out_of_set_values(sandbox: Sandbox, client: httpx.Client) -> None:
    code = enum_field(client, "personFields", ["a", "b"], field_type="set")
    person = client.post("/api/v2/persons", json={"name": "A B", "custom_fields": {code: [1, 2]}}).json()["data"]
    client.request("DELETE", f"/api/v2/personFields/{code}/options", json=[{"id": 2}]).raise_for_status()
    assert client.get(f"/api/v2/persons/{person['id']}").json()["data"]["custom_fields"][code] == [1]
    client.request("DELETE", f"/api/v2/personFields/{code}/options", json=[{"id": 1}]).raise_for_status()
    assert client.get(f"/api/v2/persons/{person['id']}").json()["data"]["custom_fields"][code] is None


def test_enum_values_are_bare_ids_unless_option_labels_are_asked_for(
    client: httpx.Client, openapi_validator: OpenApiV2
) -> None:
    tier = enum_field(client, "dealFields", ["Low", "High"])
    tags = enum_field(client, "dealFields", ["x", "y"], field_type="set")
    (_, high), (x, y) = (
        [oid for oid, _ in options(client, "dealFields", tier)],
        [oid for oid, _ in options(client, "dealFields", tags)],
    )
    body = {"title": "T", "custom_fields": {tier: high, tags: [x, y]}}
    deal = client.post("/api/v2/deals", json=body).json()["data"]
    assert (deal["custom_fields"][tier], deal["custom_fields"][tags]) == (high, [x, y])
    query = {"include_option_labels": "true"}
    openapi_validator.validate_request("GET", "/api/v2/deals", query=query)
    for path in ("/api/v2/deals", f"/api/v2/deals/{deal['id']}"):
        response = client.get(path, params=query)
        openapi_validator.validate_response("GET", path, 200, response.json())
        data = response.json()["data"]
        values = (data[0] if isinstance(data, list) else data)["custom_fields"]
        assert values[tier] == {"id": high, "label": "High"}
        assert values[tags] == [{"id": x, "label": "x"}, {"id": y, "label": "y"}]
    plain = client.get("/api/v2/deals", params={"include_option_labels": "false"}).json()["data"]
    assert plain[0]["custom_fields"][tier] == high
    assert client.get("/api/v2/deals", params={"include_option_labels": "yes"}).status_code == 400


def test_options_and_their_next_id_survive_a_restart_from_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "crm.json"
    with make(state_file=state) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        code = enum_field(c, "dealFields", ["A", "B"])
        c.request("DELETE", f"/api/v2/dealFields/{code}/options", json=[{"id": 2}]).raise_for_status()
    with make(state_file=state) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        assert options(c, "dealFields", code) == [(1, "A")]
        added = c.post(f"/api/v2/dealFields/{code}/options", json=[{"label": "B"}]).json()["data"]
        assert added == [{"id": 3, "label": "B"}]


OPTION_CALLS: list[tuple[str, str, object]] = [
    ("POST", "options", [{"label": "Critical"}]),
    ("PATCH", "options", [{"id": 1, "label": "Low!"}]),
    ("DELETE", "options", [{"id": 2}]),
    ("GET", "", None),
]


@pytest.mark.parametrize("plural", ["dealFields", "personFields"])
@pytest.mark.parametrize(("method", "tail", "body"), OPTION_CALLS, ids=[f"{m} {t}" for m, t, _ in OPTION_CALLS])
def test_option_requests_and_responses_match_the_v2_schema(
    client: httpx.Client, openapi_validator: OpenApiV2, plural: str, method: str, tail: str, body: object
) -> None:
    """The test's request fits the spec's request schema; the sandbox's 200 answer fits the response schema."""
    code = enum_field(client, plural, ["Low", "High"])
    path = f"/api/v2/{plural}/{code}" + (f"/{tail}" if tail else "")
    openapi_validator.validate_request(method, path, body=body)
    response = client.request(method, path, json=body)
    assert response.status_code == 200, response.text
    openapi_validator.validate_response(method, path, 200, response.json())
