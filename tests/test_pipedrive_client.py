"""The client's exact requests and its reaction to every kind of answer (pytest-httpx, no network)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import stamina
from pytest_httpx import HTTPXMock

from sync_job.errors import EXIT_PARTIAL, AuthError, BudgetExhausted, ConfigError, RowError
from sync_job.pipedrive.client import PipedriveClient, WriteResult, make_http_client
from sync_job.pipedrive.frames import default_schema
from sync_job.pipedrive.pagination import MAX_EMPTY_PAGES, PagingBroken
from sync_job.pipedrive.ratelimit import RateLimiter
from tests.fakes import FakeTime

BASE = "https://pd.test"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
CODE = "c" * 40
PERSONS = re.compile(r"https://pd\.test/api/v2/persons(\?.*)?$")


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Stamina keeps its attempt counts but does not sleep; rate-limit waits go through the fake clock."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def client(fake: FakeTime) -> AsyncIterator[PipedriveClient]:
    limiter = RateLimiter(clock=fake.clock, sleep=fake.sleep)
    api = PipedriveClient(make_http_client(BASE, 4, 5.0), TOKEN, max_attempts=4, limiter=limiter, settle_seconds=0)
    yield api
    await api.aclose()


def ok(data: Any, cursor: str | None = None, **headers: str) -> dict[str, Any]:
    return {
        "json": {"success": True, "data": data, "additional_data": {"next_cursor": cursor}},
        "headers": {"x-ratelimit-limit": "40", "x-ratelimit-remaining": "30", "x-ratelimit-reset": "2", **headers},
    }


def person(pid: int, ext: str | None) -> dict[str, Any]:
    return {"id": pid, "name": f"P{pid}", "update_time": "2026-01-01T00:00:00Z", "custom_fields": {CODE: ext}}


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


async def test_reads_all_pages_with_limit_500_and_the_token_only_in_the_header(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(url=PERSONS, **ok([person(1, "10"), person(2, None)], cursor="next-1"))
    httpx_mock.add_response(url=PERSONS, **ok([person(3, "30")]))
    frame = await client.read_all(default_schema("person", CODE))
    assert frame["id"].to_list() == [1, 2, 3]
    assert frame["external_id"].to_list() == ["10", None, "30"]
    first, second = httpx_mock.get_requests()
    assert first.url.params["limit"] == "500"
    assert "cursor" not in first.url.params
    assert second.url.params["cursor"] == "next-1"
    for request in (first, second):
        assert request.headers["x-api-token"] == TOKEN
        assert TOKEN not in str(request.url)
    assert client.stats.requests["list"] == 2
    assert client.stats.tokens_used == 20


async def test_a_looping_cursor_stops_the_read(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=PERSONS, **ok([person(1, "1")], cursor="same"), is_reusable=True)
    with pytest.raises(PagingBroken, match="cursor 'same' twice"):
        await client.read_all(default_schema("person", CODE))


async def test_empty_pages_with_ever_new_cursors_stop_the_read_after_three_requests(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    cursors = iter(range(10_000))

    def empty_page(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, **ok([], cursor=f"fresh-{next(cursors)}"))

    httpx_mock.add_callback(empty_page, url=PERSONS, is_reusable=True)
    with pytest.raises(PagingBroken, match="3 pages in a row had no records but a next cursor") as caught:
        await client.read_all(default_schema("person", CODE))
    assert caught.value.exit_code == EXIT_PARTIAL
    assert len(httpx_mock.get_requests()) == MAX_EMPTY_PAGES


async def test_patch_carries_only_the_changed_fields(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PATCH", url=f"{BASE}/api/v2/deals/7", **ok({"id": 7}))
    result = await client.update("deal", 7, {"value": 12.5})
    assert result == WriteResult("update", 7, 200, False)
    assert body_of(httpx_mock.get_requests()[0]) == {"value": 12.5}


async def test_post_nests_the_external_id_under_custom_fields(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=f"{BASE}/api/v2/persons", **ok({"id": 5}))
    result = await client.create("person", {"name": "Ann Lee"}, external_id="42", field_code=CODE)
    assert result == WriteResult("create", 5, 200, False)
    assert body_of(httpx_mock.get_requests()[0]) == {"name": "Ann Lee", "custom_fields": {CODE: "42"}}


FIELDS = f"{BASE}/api/v2/personFields"


async def test_a_missing_field_is_created_after_reading_every_field_page(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    builtin = {"field_name": "CustomerID", "field_code": "name", "field_type": "varchar", "is_custom_field": False}
    other = {"field_name": "Other", "field_code": "b" * 40, "field_type": "text", "is_custom_field": True}
    httpx_mock.add_response(url=f"{FIELDS}?limit=500", **ok([builtin], cursor="f2"))
    httpx_mock.add_response(url=f"{FIELDS}?limit=500&cursor=f2", **ok([other]))
    httpx_mock.add_response(method="POST", url=FIELDS, **ok({"field_code": CODE, "field_name": "CustomerID"}))
    assert await client.resolve_field("person", "CustomerID") == CODE
    assert body_of(httpx_mock.get_requests()[-1]) == {"field_name": "CustomerID", "field_type": "varchar"}
    assert await client.resolve_field("person", "CustomerID") == CODE  # cached: no more requests
    assert len(httpx_mock.get_requests()) == 3


async def test_an_existing_field_is_not_created_again(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    mine = {"field_name": "CustomerID", "field_code": CODE, "field_type": "varchar", "is_custom_field": True}
    httpx_mock.add_response(url=f"{FIELDS}?limit=500", **ok([mine]))
    assert await client.resolve_field("person", "CustomerID") == CODE


async def test_an_ambiguous_field_name_is_a_config_error(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    twins = [
        {"field_name": "CustomerID", "field_code": c * 40, "field_type": "varchar", "is_custom_field": True}
        for c in "de"
    ]
    httpx_mock.add_response(url=f"{FIELDS}?limit=500", **ok(twins))
    with pytest.raises(ConfigError, match=f"ambiguous.*{'d' * 40}, {'e' * 40}"):
        await client.resolve_field("person", "CustomerID")


async def test_a_missing_field_without_create_is_a_config_error(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{FIELDS}?limit=500", **ok([]))
    with pytest.raises(ConfigError, match="no persons custom field named 'CustomerID'"):
        await client.resolve_field("person", "CustomerID", create=False)


async def test_401_is_an_auth_error_naming_the_host_not_the_token(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=401, json={"success": False, "error": "unauthorized access"})
    with pytest.raises(AuthError) as caught:
        await client.update("person", 1, {"name": "x"})
    assert str(caught.value) == f"the API token was rejected (401) by {BASE}"
    assert len(httpx_mock.get_requests()) == 1  # never retried


async def test_400_is_a_row_error_with_pipedrive_text(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=400, json={"success": False, "error": "Invalid value for title"})
    with pytest.raises(RowError, match="400: Invalid value for title") as caught:
        await client.create("deal", {"title": ""}, external_id="1", field_code=CODE)
    assert caught.value.status == 400
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_and_missing_are_not_retried(client: PipedriveClient, httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(status_code=status, json={"success": False, "error": "not found"})
    with pytest.raises(RowError) as caught:
        await client.update("deal", 3, {"title": "t"})
    assert caught.value.status == status
    assert len(httpx_mock.get_requests()) == 1


async def test_503_is_retried_then_succeeds(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=503, json={"success": False, "error": "maintenance"})
    httpx_mock.add_response(**ok({"id": 3}))
    assert (await client.update("deal", 3, {"title": "t"})).status == 200
    assert client.stats.retries == 1
    assert client.stats.statuses[503] == 1


async def test_retries_are_bounded_and_end_in_a_row_error(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=502, json={"success": False, "error": "bad gateway"}, is_reusable=True)
    with pytest.raises(RowError, match="gave up after retries") as caught:
        await client.update("deal", 3, {"title": "t"})
    assert caught.value.status == 502
    assert len(httpx_mock.get_requests()) == 4


async def test_429_waits_for_retry_after_then_retries(
    client: PipedriveClient, httpx_mock: HTTPXMock, fake: FakeTime
) -> None:
    httpx_mock.add_response(status_code=429, headers={"retry-after": "7"}, json={"success": False, "error": "rate"})
    httpx_mock.add_response(**ok({"id": 3}))
    await client.update("deal", 3, {"title": "t"})
    assert sum(fake.sleeps) == pytest.approx(7.0)
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1


async def test_html_403_is_rate_limiting_with_a_long_backoff(
    client: PipedriveClient, httpx_mock: HTTPXMock, fake: FakeTime
) -> None:
    page = "<!DOCTYPE html><html><body>Access denied | Cloudflare</body></html>"
    httpx_mock.add_response(status_code=403, text=page, headers={"content-type": "text/html"})
    httpx_mock.add_response(status_code=403, text=page, headers={"content-type": "text/html"})
    httpx_mock.add_response(**ok({"id": 3}))
    await client.update("deal", 3, {"title": "t"})
    assert sum(fake.sleeps) == pytest.approx(15.0 + 30.0)  # doubling, bounded
    assert client.stats.forbidden_html == 2


async def test_json_403_is_a_row_error(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=403, json={"success": False, "error": "Open deals limit reached."})
    with pytest.raises(RowError, match="403: Open deals limit reached"):
        await client.create("deal", {"title": "t"}, external_id="1", field_code=CODE)


async def test_stops_before_the_daily_budget_runs_out(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(**ok({"id": 1}, **{"x-daily-ratelimit-token-remaining": "24"}))
    await client.update("deal", 1, {"title": "t"})
    with pytest.raises(BudgetExhausted, match="24 tokens left"):
        await client.update("deal", 2, {"title": "t"})  # 5 + the 20-token reserve would leave too little
    assert len(httpx_mock.get_requests()) == 1
    assert client.stats.daily_remaining == 24


async def test_a_429_with_no_daily_tokens_left_is_not_retried(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=429, headers={"x-daily-ratelimit-token-remaining": "0"})
    with pytest.raises(BudgetExhausted, match="daily"):
        await client.update("deal", 1, {"title": "t"})
    assert len(httpx_mock.get_requests()) == 1


async def test_max_tokens_caps_the_run(httpx_mock: HTTPXMock, fake: FakeTime) -> None:
    limiter = RateLimiter(clock=fake.clock, sleep=fake.sleep)
    api = PipedriveClient(make_http_client(BASE, 2, 5.0), TOKEN, max_tokens=30, limiter=limiter)
    httpx_mock.add_response(**ok({"id": 1}), is_reusable=True)
    await api.update("deal", 1, {"title": "t"})
    await api.update("deal", 1, {"title": "t"})
    with pytest.raises(BudgetExhausted, match="--max-tokens cap of 30"):
        await api.update("deal", 1, {"title": "t"})
    assert api.stats.tokens_used == 10
    await api.aclose()


async def test_a_lost_create_that_was_written_is_recovered_not_resent(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), method="POST")
    httpx_mock.add_response(method="GET", url=PERSONS, **ok([person(8, "41"), person(9, "42")]))
    result = await client.create("person", {"name": "Ann"}, external_id="42", field_code=CODE)
    assert result == WriteResult("create", 9, 200, recovered=True)
    lookup = httpx_mock.get_requests(method="GET")[0]
    assert lookup.url.params["sort_by"] == "update_time"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lookup.url.params["updated_since"])
    assert len(httpx_mock.get_requests(method="POST")) == 1
    assert client.stats.unknown_outcomes == 1
    assert client.stats.recovered == 1


async def test_a_lost_create_into_a_numeric_id_field_is_recovered_from_the_number_read_back(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"), method="POST")
    stored = [{**person(8, None), "custom_fields": {CODE: 41.0}}, {**person(9, None), "custom_fields": {CODE: 42.0}}]
    httpx_mock.add_response(method="GET", url=PERSONS, **ok(stored))
    result = await client.create("person", {"name": "Ann"}, external_id="42", field_code=CODE, field_type="double")
    assert result == WriteResult("create", 9, 200, recovered=True)
    assert body_of(httpx_mock.get_requests(method="POST")[0])["custom_fields"] == {CODE: 42}
    assert len(httpx_mock.get_requests(method="POST")) == 1


async def test_the_id_field_is_resolved_with_its_type_and_one_that_cannot_hold_ids_is_a_config_error(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    fields = [
        {"field_name": "CustomerID", "field_code": CODE, "field_type": "double", "is_custom_field": True},
        {"field_name": "Segment", "field_code": "e" * 40, "field_type": "enum", "is_custom_field": True},
    ]
    httpx_mock.add_response(method="GET", **ok(fields), is_reusable=True)
    field = await client.resolve_id_field("person", "CustomerID")
    assert (field.code, field.name, field.field_type) == (CODE, "CustomerID", "double")
    with pytest.raises(ConfigError, match="persons custom field 'Segment' has type 'enum', which cannot hold an id"):
        await client.resolve_id_field("person", "Segment")
    assert httpx_mock.get_requests(method="POST") == []


@pytest.mark.parametrize(
    "failure",
    [
        {"exception": httpx.RemoteProtocolError("Server disconnected without sending a response.")},
        {"exception": httpx.ReadError("connection reset")},
        {"status_code": 502, "json": {"success": False, "error": "bad gateway"}},
    ],
)
async def test_a_lost_create_that_is_absent_is_sent_again(
    client: PipedriveClient, httpx_mock: HTTPXMock, failure: dict[str, Any]
) -> None:
    if "exception" in failure:
        httpx_mock.add_exception(failure["exception"], method="POST")
    else:
        httpx_mock.add_response(method="POST", **failure)
    httpx_mock.add_response(method="GET", url=PERSONS, **ok([person(8, "41")]))
    httpx_mock.add_response(method="POST", **ok({"id": 10}))
    result = await client.create("person", {"name": "Ann"}, external_id="42", field_code=CODE)
    assert result == WriteResult("create", 10, 200, recovered=False)
    methods = [r.method for r in httpx_mock.get_requests()]
    assert methods == ["POST", "GET", "POST"]


async def test_a_create_that_never_left_is_resent_without_a_lookup(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), method="POST")
    httpx_mock.add_response(method="POST", **ok({"id": 10}))
    assert (await client.create("person", {"name": "A"}, external_id="1", field_code=CODE)).pipedrive_id == 10
    assert [r.method for r in httpx_mock.get_requests()] == ["POST", "POST"]


async def test_an_update_is_retried_after_a_timeout(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    httpx_mock.add_response(**ok({"id": 1}))
    assert (await client.update("person", 1, {"name": "x"})).status == 200


async def test_transport_errors_never_carry_the_token(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError(f"refused {TOKEN}"), is_reusable=True)
    with pytest.raises(RowError) as caught:
        await client.update("person", 1, {"name": "x"})
    assert TOKEN not in str(caught.value)
    assert "ConnectError" in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_the_http_client_does_not_hold_the_token() -> None:
    http = make_http_client(BASE, 8, 30.0)
    assert "x-api-token" not in http.headers


async def test_endless_429s_end_in_a_row_error_once_the_time_is_up(
    client: PipedriveClient, httpx_mock: HTTPXMock, fake: FakeTime
) -> None:
    httpx_mock.add_response(status_code=429, headers={"retry-after": "10"}, is_reusable=True)
    with pytest.raises(RowError, match="rate limited") as caught:
        await client.update("deal", 3, {"title": "t"})
    assert caught.value.status == 429
    assert 120.0 <= fake.now <= 140.0  # bounded by max_seconds, not by attempts


async def test_a_delete_sends_one_delete_to_the_records_v2_path(client: PipedriveClient, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(**ok({"id": 7}))
    result = await client.delete("deal", 7)
    assert (result.action, result.pipedrive_id, result.status, result.recovered) == ("delete", 7, 200, False)
    request = httpx_mock.get_requests()[0]
    assert (request.method, request.url.path) == ("DELETE", "/api/v2/deals/7")
    assert client.stats.tokens_used == 3


async def test_a_delete_retried_after_a_lost_answer_that_meets_404_counts_as_done(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("timed out"))
    httpx_mock.add_response(status_code=404, json={"success": False, "error": "person 7 not found"})
    result = await client.delete("person", 7)
    assert (result.pipedrive_id, result.status, result.recovered) == (7, 404, True)
    assert [r.method for r in httpx_mock.get_requests()] == ["DELETE", "DELETE"]


async def test_a_delete_the_api_refuses_otherwise_is_a_row_error(
    client: PipedriveClient, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=403, json={"success": False, "error": "no permission to delete"})
    with pytest.raises(RowError, match="rejected with 403") as caught:
        await client.delete("deal", 9)
    assert caught.value.status == 403
