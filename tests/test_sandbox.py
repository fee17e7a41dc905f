"""The Pipedrive sandbox behaves like the documented v2 API: pages, writes, search, limits, faults, state."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sync_job.cli import app as cli_app
from sync_job.sandbox import Sandbox, SandboxOptions
from sync_job.sandbox.fields import FIELD_CODE

TOKEN = "test-token"
HEADERS = {"x-api-token": TOKEN}


def make(**options: Any) -> Sandbox:
    defaults: dict[str, Any] = {"token": TOKEN, "burst": 100_000, "search_burst": 100_000, "window_seconds": 60.0}
    return Sandbox(SandboxOptions(**{**defaults, **options}))


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with make() as sb:
        yield sb


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, headers=HEADERS) as c:
        yield c


def all_pages(client: httpx.Client, path: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Follow next_cursor to the end; returns the records and the number of requests."""
    records: list[dict[str, Any]] = []
    cursor, requests = None, 0
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        body = client.get(path, params=query).raise_for_status().json()
        requests += 1
        records += body["data"]
        cursor = body["additional_data"]["next_cursor"]
        if cursor is None:
            return records, requests


# -- pagination ------------------------------------------------------------------------------------


def test_pages_of_500_cover_every_record_once_and_end_with_a_null_cursor(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    for i in range(1203):
        sandbox.store.add_record("person", {"name": f"P {i}"})
    records, requests = all_pages(client, "/api/v2/persons", limit=500)
    assert [r["id"] for r in records] == list(range(1, 1204))
    assert requests == 3


def test_default_page_is_100_and_the_cursor_is_base64url_json(sandbox: Sandbox, client: httpx.Client) -> None:
    for i in range(150):
        sandbox.store.add_record("deal", {"title": f"D {i}"})
    body = client.get("/api/v2/deals").json()
    assert len(body["data"]) == 100
    cursor = body["additional_data"]["next_cursor"]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded == {"field": "id", "fieldValue": 100, "sortDirection": "asc", "id": 100}


@pytest.mark.parametrize("limit", ["501", "0", "ten"])
def test_limit_outside_1_to_500_is_rejected(client: httpx.Client, limit: str) -> None:
    response = client.get("/api/v2/persons", params={"limit": limit})
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_a_forged_or_foreign_cursor_is_rejected(sandbox: Sandbox, client: httpx.Client) -> None:
    for i in range(3):
        sandbox.store.add_record("person", {"name": f"P {i}"})
    cursor = client.get("/api/v2/persons", params={"limit": 1}).json()["additional_data"]["next_cursor"]
    assert client.get("/api/v2/persons", params={"cursor": "%%%"}).status_code == 400
    assert client.get("/api/v2/persons", params={"cursor": cursor, "sort_by": "update_time"}).status_code == 400


def test_descending_and_update_time_orders(sandbox: Sandbox, client: httpx.Client) -> None:
    for i in range(5):
        sandbox.store.add_record("person", {"name": f"P {i}"})
    client.patch("/api/v2/persons/2", json={"name": "Moved Last"}).raise_for_status()
    desc, _ = all_pages(client, "/api/v2/persons", limit=2, sort_direction="desc")
    assert [r["id"] for r in desc] == [5, 4, 3, 2, 1]
    by_update, _ = all_pages(client, "/api/v2/persons", limit=2, sort_by="update_time")
    assert [r["id"] for r in by_update] == [1, 3, 4, 5, 2]


def test_update_time_pages_survive_a_write_between_pages(sandbox: Sandbox, client: httpx.Client) -> None:
    """A record rewritten mid-read moves to the end: read once more, never skipped, never duplicated."""
    for i in range(6):
        sandbox.store.add_record("person", {"name": f"P {i}"})
    first = client.get("/api/v2/persons", params={"limit": 3, "sort_by": "update_time"}).json()
    client.patch("/api/v2/persons/2", json={"name": "Touched"}).raise_for_status()
    rest, _ = all_pages(
        client, "/api/v2/persons", limit=3, sort_by="update_time", cursor=first["additional_data"]["next_cursor"]
    )
    assert [r["id"] for r in first["data"]] + [r["id"] for r in rest] == [1, 2, 3, 4, 5, 6, 2]


def test_updated_since_returns_every_record_written_at_or_after_t(sandbox: Sandbox, client: httpx.Client) -> None:
    """update_time has microseconds, so a re-read from the send time of a lost request finds its write."""
    old = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sandbox.store.add_record("person", {"name": "Old", "update_time": old})
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    created = client.post("/api/v2/persons", json={"name": "New One"}).json()["data"]
    assert created["update_time"] >= since
    for sort_by in ("id", "update_time"):
        found, _ = all_pages(client, "/api/v2/persons", updated_since=since, sort_by=sort_by)
        assert [r["id"] for r in found] == [created["id"]]
    until, _ = all_pages(client, "/api/v2/persons", updated_until=since)
    assert [r["name"] for r in until] == ["Old"]
    assert client.get("/api/v2/persons", params={"updated_since": "yesterday"}).status_code == 400


def test_ids_and_status_filters(sandbox: Sandbox, client: httpx.Client) -> None:
    for status in ("open", "won", "lost"):
        sandbox.store.add_record("deal", {"title": status, "status": status})
    client.delete("/api/v2/deals/1").raise_for_status()
    ids = client.get("/api/v2/deals", params={"ids": "3,2,99"}).json()["data"]
    assert [d["id"] for d in ids] == [2, 3]
    deleted = client.get("/api/v2/deals", params={"status": "deleted"}).json()["data"]
    assert [d["id"] for d in deleted] == [1]
    assert [d["id"] for d in client.get("/api/v2/deals", params={"status": "won,lost"}).json()["data"]] == [2, 3]


# -- writes ------------------------------------------------------------------------------------------


def test_create_get_update_delete_round_trip(client: httpx.Client) -> None:
    code = client.post("/api/v2/personFields", json={"field_name": "CustomerID", "field_type": "varchar"})
    field_code = code.json()["data"]["field_code"]
    assert FIELD_CODE.match(field_code)
    created = client.post("/api/v2/persons", json={"name": "Ann Lee", "custom_fields": {field_code: "7"}})
    assert created.status_code == 200  # v2 POST answers 200, not 201
    person = created.json()["data"]
    assert (person["first_name"], person["last_name"], person["custom_fields"]) == ("Ann", "Lee", {field_code: "7"})
    updated = client.patch(f"/api/v2/persons/{person['id']}", json={"last_name": "Smith"}).json()["data"]
    assert updated["name"] == "Ann Smith"
    assert updated["update_time"] > person["update_time"]
    assert client.get(f"/api/v2/persons/{person['id']}").json()["data"]["name"] == "Ann Smith"
    assert client.delete(f"/api/v2/persons/{person['id']}").json() == {"success": True, "data": {"id": person["id"]}}
    assert client.get(f"/api/v2/persons/{person['id']}").json()["data"]["is_deleted"] is True
    assert client.get("/api/v2/persons").json()["data"] == []
    assert client.patch(f"/api/v2/persons/{person['id']}", json={"name": "X"}).status_code == 404


def test_deal_status_sets_won_and_close_times(client: httpx.Client) -> None:
    deal = client.post("/api/v2/deals", json={"title": "T", "status": "won", "value": 10}).json()["data"]
    assert deal["won_time"] == deal["close_time"]
    reopened = client.patch(f"/api/v2/deals/{deal['id']}", json={"status": "open"}).json()["data"]
    assert "won_time" not in reopened
    assert reopened["close_time"] is None


def _bad_bodies(pcode: str) -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("/api/v2/persons", {"name": "A", pcode: "x"}, "top level"),
        ("/api/v2/persons", {"name": "A", "custom_fields": {"0" * 40: "x"}}, "Unknown custom field"),
        ("/api/v2/persons", {"name": "A", "custom_fields": {pcode: 7}}, "expected a string"),
        ("/api/v2/persons", {"first_name": "A"}, "name"),
        ("/api/v2/persons", {"name": "A", "visible_to": "3"}, "visible_to"),
        ("/api/v2/persons", {"name": "A", "emails": ["a@b.c"]}, "emails[0]"),
        ("/api/v2/persons", {"name": "A", "nickname": "x"}, "Unknown field 'nickname'"),
        ("/api/v2/deals", {"title": "T", "value": "12"}, "expected a number"),
        ("/api/v2/deals", {"title": "T", "is_archived": 1}, "boolean"),
        ("/api/v2/deals", {"value": 12}, "title"),
        ("/api/v2/deals", {"title": "T", "person_id": 99}, "does not exist"),
        ("/api/v2/deals", {"title": "T", "lost_reason": "x"}, "lost"),
        ("/api/v2/dealFields", {"field_name": "X"}, "field_type"),
        ("/api/v2/dealFields", {"field_type": "varchar"}, "field_name"),
    ]


def test_malformed_bodies_get_a_descriptive_400(client: httpx.Client) -> None:
    pcode = client.post("/api/v2/personFields", json={"field_name": "C", "field_type": "varchar"}).json()["data"]
    for path, body, message in _bad_bodies(pcode["field_code"]):
        response = client.post(path, json=body)
        assert response.status_code == 400, (path, body)
        error = response.json()
        assert message in error["error"], (body, error)
        assert (error["success"], error["data"], error["additional_data"]) == (False, None, None)
    assert client.post("/api/v2/persons", content=b"{not json").status_code == 400
    assert client.get("/api/v2/persons", params={"custom_fields": "f" * 40}).status_code == 400


def test_set_fields_reject_an_empty_array(sandbox: Sandbox, client: httpx.Client) -> None:
    code = sandbox.store.add_field("deal", "Tags", "set", options=["a", "b"])
    deal = client.post("/api/v2/deals", json={"title": "T", "custom_fields": {code: [1]}})
    assert deal.status_code == 200
    assert client.patch("/api/v2/deals/1", json={"custom_fields": {code: []}}).status_code == 400
    cleared = client.patch("/api/v2/deals/1", json={"custom_fields": {code: None}}).json()["data"]
    assert cleared["custom_fields"][code] is None


@pytest.mark.parametrize(
    ("field_type", "right", "wrong", "message"),
    [("double", 17, "17", "expected a number"), ("varchar", "17", 17, "expected a string"),
     ("text", "17", 17, "expected a string"), ("varchar_auto", "17", 17.0, "expected a string")],
)  # fmt: skip
def test_a_custom_field_keeps_values_of_its_type_and_answers_400_to_another(
    sandbox: Sandbox, client: httpx.Client, field_type: str, right: object, wrong: object, message: str
) -> None:
    code = sandbox.store.add_field("person", "CustomerID", field_type)
    refused = client.post("/api/v2/persons", json={"name": "A", "custom_fields": {code: wrong}})
    assert refused.status_code == 400
    assert message in refused.json()["error"]
    assert f"CustomerID, {field_type}" in refused.json()["error"]
    created = client.post("/api/v2/persons", json={"name": "A", "custom_fields": {code: right}}).json()["data"]
    assert created["custom_fields"][code] == right
    assert type(created["custom_fields"][code]) is type(right)
    listed = client.get("/api/v2/persons", params={"custom_fields": code}).json()["data"]
    assert [p["custom_fields"][code] for p in listed] == [right]
    assert client.patch(f"/api/v2/persons/{created['id']}", json={"custom_fields": {code: wrong}}).status_code == 400


# -- search ------------------------------------------------------------------------------------------


def test_search_wraps_items_and_lists_matched_custom_values(sandbox: Sandbox, client: httpx.Client) -> None:
    code = sandbox.store.add_field("deal", "OrderID", "varchar")
    sandbox.store.add_record("deal", {"title": "Lee Ann", "custom_fields": {code: "42"}})
    sandbox.store.add_record("deal", {"title": "Other", "custom_fields": {code: "420"}})
    exact = client.get("/api/v2/deals/search", params={"term": "42", "exact_match": "true", "fields": "custom_fields"})
    items = exact.json()["data"]["items"]
    assert [(i["item"]["id"], i["item"]["custom_fields"]) for i in items] == [(1, ["42"])]
    assert items[0]["result_score"] > 0
    fuzzy = client.get("/api/v2/deals/search", params={"term": "42"}).json()["data"]["items"]
    assert sorted(i["item"]["id"] for i in fuzzy) == [1, 2]


def test_search_term_length_rules(client: httpx.Client) -> None:
    assert client.get("/api/v2/persons/search", params={"term": "a"}).status_code == 400
    assert client.get("/api/v2/persons/search", params={"term": "a", "exact_match": "true"}).status_code == 200
    assert client.get("/api/v2/persons/search", params={"term": "ab", "fields": "title"}).status_code == 400


def test_search_lags_behind_writes_while_lists_do_not(sandbox: Sandbox, client: httpx.Client) -> None:
    now = [1000.0]
    sandbox.store.clock = lambda: now[0]
    sandbox.configure(search_lag_seconds=5.0)
    client.post("/api/v2/persons", json={"name": "Fresh Person"}).raise_for_status()
    query = {"term": "Fresh Person", "exact_match": "true"}
    assert client.get("/api/v2/persons/search", params=query).json()["data"]["items"] == []
    assert [p["name"] for p in client.get("/api/v2/persons").json()["data"]] == ["Fresh Person"]
    now[0] += 5.0
    assert len(client.get("/api/v2/persons/search", params=query).json()["data"]["items"]) == 1


# -- auth, gone routes, rate limits, budget ---------------------------------------------------------


def test_auth_header_bearer_and_rejections(sandbox: Sandbox) -> None:
    url = sandbox.url + "/api/v2/persons"
    assert httpx.get(url).status_code == 401
    wrong = httpx.get(url, headers={"x-api-token": "nope"})
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized access")
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert "x-ratelimit-limit" in wrong.headers


@pytest.mark.parametrize("path", ["/v1/deals", "/v1/persons/3", "/api/v1/deals", "/api/v1/persons"])
def test_v1_deal_and_person_routes_are_gone(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 410
    assert response.json()["success"] is False


def test_burst_window_answers_429_with_headers_and_retry_after() -> None:
    with make(burst=5, search_burst=2) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        answers = [c.get("/api/v2/persons") for _ in range(6)]
        assert [r.status_code for r in answers] == [200] * 5 + [429]
        assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["4", "3", "2", "1", "0", "0"]
        assert all(r.headers["x-ratelimit-limit"] == "5" for r in answers)
        limited = answers[-1]
        assert int(limited.headers["Retry-After"]) >= 1
        assert int(limited.headers["x-ratelimit-reset"]) >= 1
        assert limited.json()["success"] is False
        search = [c.get("/api/v2/persons/search", params={"term": "ab"}).status_code for _ in range(3)]
        assert search == [200, 200, 429]  # search has its own, lower window
        assert sb.stats()["rate_limited"] == 2


def test_html_403_after_consecutive_429s() -> None:
    with make(burst=1, forbid_html_after_429s=2) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        statuses = [c.get("/api/v2/deals").status_code for _ in range(5)]
        assert statuses == [200, 429, 429, 403, 403]
        blocked = c.get("/api/v2/deals")
        assert blocked.headers["content-type"].startswith("text/html")


def test_daily_budget_is_charged_with_v2_token_costs() -> None:
    with make(daily_budget=22) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        calls = [
            ("GET", "/api/v2/persons", None),  # list 10 -> 12 left
            ("POST", "/api/v2/persons", {"name": "A B"}),  # create 5 -> 7
            ("GET", "/api/v2/persons/1", None),  # get 1 -> 6
            ("PATCH", "/api/v2/persons/1", {"name": "C D"}),  # update 5 -> 1
            ("DELETE", "/api/v2/persons/1", None),  # delete 3 > 1 left: refused, nothing deleted
            ("GET", "/api/v2/persons/1", None),  # get 1 -> 0
        ]
        answers = [c.request(method, path, json=body) for method, path, body in calls]
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 429, 200]
        assert [r.headers["x-daily-ratelimit-token-remaining"] for r in answers] == ["12", "7", "6", "1", "1", "0"]
        assert answers[-1].json()["data"]["is_deleted"] is False
        assert sb.stats()["budget_429s"] == 1


def test_daily_budget_exhaustion_and_reset() -> None:
    with make(daily_budget=20) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        assert [c.get("/api/v2/persons").status_code for _ in range(2)] == [200, 200]
        out = [c.get("/api/v2/persons"), c.get("/api/v2/persons/1"), c.get("/api/v2/dealFields")]
        assert [r.status_code for r in out] == [429, 429, 429]
        assert out[0].headers["x-daily-ratelimit-token-remaining"] == "0"
        assert sb.stats()["tokens_used"] == 20
        sb.reset_budget()
        assert c.get("/api/v2/persons").status_code == 200


# -- faults ------------------------------------------------------------------------------------------


def _statuses_under_faults(seed: int) -> list[int]:
    with make(fail_rate=0.5, seed=seed) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        statuses = [c.post("/api/v2/persons", json={"name": f"P {i}"}).status_code for i in range(30)]
        assert len(sb.persons()) == statuses.count(200)  # a 5xx happens before any change
        assert sb.stats()["injected_5xx"] == 30 - statuses.count(200)
        return statuses


def test_fault_injection_is_deterministic_for_a_seed() -> None:
    first, again, other = _statuses_under_faults(7), _statuses_under_faults(7), _statuses_under_faults(8)
    assert first == again
    assert first != other
    assert set(first) <= {200, 500, 502, 503}
    assert 200 in first
    assert len(set(first)) > 1


def test_dropped_write_is_committed_but_the_response_never_arrives(sandbox: Sandbox, client: httpx.Client) -> None:
    sandbox.configure(drop_after_commit_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/api/v2/persons", json={"name": "Lost Answer"})
    sandbox.configure(drop_after_commit_rate=0.0)  # faults off at runtime
    assert [p["name"] for p in client.get("/api/v2/persons").json()["data"]] == ["Lost Answer"]
    stats = sandbox.stats()
    assert (stats["dropped"], stats["writes"]) == (1, {"persons.create": 1})


def test_configure_rejects_unknown_options(sandbox: Sandbox) -> None:
    with pytest.raises(TypeError, match="fail_rat"):
        sandbox.configure(fail_rat=1.0)


def test_latency_is_added_without_changing_answers() -> None:
    with make(latency_ms=5) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        assert c.get("/api/v2/deals").status_code == 200


# -- store helpers, stats, state file, CLI -----------------------------------------------------------


def test_store_helpers_seed_fields_records_and_hand_edits(sandbox: Sandbox, client: httpx.Client) -> None:
    code = sandbox.store.add_field("person", "CustomerID")
    pid = sandbox.store.add_record("person", {"name": "Ann Lee", "custom_fields": {code: "1"}})
    twin = sandbox.store.add_record("person", {"name": "Ann Lee", "custom_fields": {code: "1"}})  # a duplicate
    before = sandbox.persons()[0]["update_time"]
    sandbox.store.patch_record("person", pid, {"custom_fields": {code: "2"}}, touch=False)
    assert sandbox.persons()[0]["update_time"] == before
    sandbox.store.patch_record("person", twin, {"name": "Bo Ek"})
    listed = client.get("/api/v2/persons").json()["data"]
    assert [(p["name"], p["custom_fields"][code]) for p in listed] == [("Ann Lee", "2"), ("Bo Ek", "1")]
    assert listed[1]["update_time"] > before
    with pytest.raises(ValueError, match="unknown person custom field"):
        sandbox.store.add_record("person", {"name": "X", "custom_fields": {"f" * 40: 1}})


def test_stats_count_requests_by_route(sandbox: Sandbox, client: httpx.Client) -> None:
    client.get("/api/v2/persons")
    client.get("/api/v2/persons/9")
    requests = sandbox.stats()["requests"]
    assert requests[("GET", "/api/v2/persons")] == 1
    assert requests[("GET", "/api/v2/persons/{id}")] == 1


def test_state_file_round_trip(tmp_path: Path) -> None:
    state = tmp_path / "crm.json"
    with make(state_file=state) as sb, httpx.Client(base_url=sb.url, headers=HEADERS) as c:
        code = c.post("/api/v2/dealFields", json={"field_name": "OrderID", "field_type": "varchar"}).json()["data"]
        person = c.post("/api/v2/persons", json={"name": "Ann Lee"}).json()["data"]
        c.post(
            "/api/v2/deals", json={"title": "T", "person_id": person["id"], "custom_fields": {code["field_code"]: "9"}}
        )
        c.delete(f"/api/v2/persons/{person['id']}")
        persons, deals = sb.store.live("person"), sb.deals()
    assert json.loads(state.read_text())["fields"]["deal"][0]["name"] == "OrderID"
    with make(state_file=state) as again, httpx.Client(base_url=again.url, headers=HEADERS) as c:
        assert (again.store.live("person"), again.deals()) == (persons, deals)
        assert c.get(f"/api/v2/persons/{person['id']}").json()["data"]["is_deleted"] is True
        assert c.post("/api/v2/persons", json={"name": "Next"}).json()["data"]["id"] == person["id"] + 1


def test_cli_sandbox_help_lists_its_options() -> None:
    result = CliRunner().invoke(cli_app, ["sandbox", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--burst", "--fail-rate", "--drop-after-commit-rate", "--latency-ms", "--state"):
        assert option in result.output
