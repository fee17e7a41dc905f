"""The client against the sandbox over real HTTP: round trips, and no duplicate or lost write under every fault."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import stamina

from sync_job.errors import AuthError, BudgetExhausted
from sync_job.pipedrive.client import PipedriveClient, WriteResult, make_http_client
from sync_job.pipedrive.frames import default_schema
from sync_job.pipedrive.ratelimit import RateLimiter
from sync_job.sandbox import Sandbox, SandboxOptions
from tests.openapi import OpenApiV2

TOKEN = "client-test-token"

Sent = list[tuple[str, str, dict[str, str], Any]]


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """No exponential backoff sleeps (attempt counts kept); rate-limit waits stay real."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def new_client(url: str, sent: Sent | None = None, *, window: float = 2.0, concurrency: int = 8) -> PipedriveClient:
    http = make_http_client(url, concurrency, 5.0)
    if sent is not None:

        async def record(request: httpx.Request) -> None:
            body = json.loads(request.content) if request.content else None
            sent.append((request.method, request.url.path, dict(request.url.params), body))

        http.event_hooks["request"].append(record)
    limiter = RateLimiter(window=window, slack=0.02)
    return PipedriveClient(http, TOKEN, concurrency=concurrency, limiter=limiter, settle_seconds=0.02)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(token=TOKEN, burst=1000, search_burst=1000)) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[PipedriveClient]:
    api = new_client(sandbox.url)
    yield api
    await api.aclose()


async def test_fields_are_created_once_and_found_by_the_next_run(sandbox: Sandbox, client: PipedriveClient) -> None:
    person_code = await client.resolve_field("person", "CustomerID")
    deal_code = await client.resolve_field("deal", "OrderID")
    assert len(person_code) == 40
    assert person_code != deal_code
    later = new_client(sandbox.url)
    assert await later.resolve_field("person", "CustomerID") == person_code
    assert await later.resolve_field("deal", "OrderID") == deal_code
    assert later.stats.requests["field_create"] == 0
    await later.aclose()


async def test_created_records_read_back_as_frames(sandbox: Sandbox, client: PipedriveClient) -> None:
    pcode = await client.resolve_field("person", "CustomerID")
    dcode = await client.resolve_field("deal", "OrderID")
    ann = await client.create("person", {"name": "Ann Lee"}, external_id="C-1", field_code=pcode)
    deal = {"title": "Lee Ann", "value": 12.5, "currency": "EUR", "person_id": ann.pipedrive_id}
    await client.create("deal", deal, external_id="O-1", field_code=dcode)
    await client.update("deal", 1, {"status": "won"})
    persons = await client.read_all(default_schema("person", pcode))
    deals = await client.read_all(default_schema("deal", dcode))
    assert persons.select("name", "external_id").rows() == [("Ann Lee", "C-1")]
    assert deals.select("title", "value", "currency", "person_id", "external_id").rows() == [
        ("Lee Ann", 12.5, "EUR", ann.pipedrive_id, "O-1")
    ]


async def test_reading_spans_pages_of_500(sandbox: Sandbox, client: PipedriveClient) -> None:
    code = await client.resolve_field("person", "CustomerID")
    await asyncio.gather(
        *(client.create("person", {"name": f"P{i}"}, external_id=str(i), field_code=code) for i in range(501))
    )
    frames = [frame.height async for frame in client.iter_pages(default_schema("person", code))]
    assert frames == [500, 1]


async def test_a_wrong_token_is_an_auth_error(sandbox: Sandbox) -> None:
    api = PipedriveClient(make_http_client(sandbox.url, 2, 5.0), "wrong-token")
    with pytest.raises(AuthError, match=f"rejected \\(401\\) by {sandbox.url}"):
        await api.resolve_field("person", "CustomerID")
    await api.aclose()


async def test_stops_before_the_daily_budget_without_a_429(sandbox: Sandbox, client: PipedriveClient) -> None:
    code = await client.resolve_field("person", "CustomerID")  # 15 tokens
    sandbox.configure(daily_budget=200)

    async def create_until_stopped() -> None:
        for i in range(100):
            await client.create("person", {"name": f"P{i}"}, external_id=str(i), field_code=code)

    with pytest.raises(BudgetExhausted):
        await create_until_stopped()
    assert sandbox.stats()["budget_429s"] == 0
    assert sandbox.stats()["tokens_used"] <= 200


@pytest.mark.slow
async def test_no_duplicate_and_no_lost_write_under_every_fault(openapi_validator: OpenApiV2) -> None:
    """300 creates then 100 updates from two clients sharing one token (429 storms), with 5xx, writes dropped
    after commit, latency and a search index 60 s behind: every record exists once, with its values.

    The sandbox's window is 0.25 s (the clients are told) so that the storm takes seconds, not minutes."""
    options = SandboxOptions(
        token=TOKEN, burst=16, window_seconds=0.25, search_burst=10,
        fail_rate=0.08, drop_after_commit_rate=0.08, latency_ms=3, search_lag_seconds=60.0, seed=11,
    )  # fmt: skip
    sent: Sent = []
    with Sandbox(options) as sandbox:
        clients = [new_client(sandbox.url, sent, window=0.25, concurrency=6) for _ in range(2)]
        code = await clients[0].resolve_field("person", "CustomerID")

        async def create(i: int) -> WriteResult:
            api = clients[i % 2]
            return await api.create("person", {"name": f"Person {i}"}, external_id=f"ext-{i}", field_code=code)

        created = await asyncio.gather(*(create(i) for i in range(300)))
        updated = await asyncio.gather(
            *(clients[i % 2].update("person", created[i].pipedrive_id, {"name": f"Renamed {i}"}) for i in range(100))
        )
        stats = sandbox.stats()
        stored = sandbox.persons()
        for api in clients:
            await api.aclose()

    by_ext = Counter(p["custom_fields"].get(code) for p in stored)
    assert sorted(by_ext.values()) == [1] * 300, "duplicates or missing records"
    names = {p["custom_fields"][code]: (p["id"], p["name"]) for p in stored}
    for i, result in enumerate(created):
        expected = f"Renamed {i}" if i < 100 else f"Person {i}"
        assert names[f"ext-{i}"] == (result.pipedrive_id, expected)
    assert all(u.status == 200 for u in updated)
    # the faults really happened, and the client recovered writes it had lost
    assert stats["rate_limited"] > 0
    assert stats["injected_5xx"] > 0
    assert stats["dropped"] > 0
    assert sum(api.stats.recovered for api in clients) > 0
    assert sum(api.stats.tokens_used for api in clients) == stats["tokens_used"]  # costs counted like the server
    for method, path, query, body in sent:
        openapi_validator.validate_request(method, path, query=query, body=body)


async def test_incremental_reads_send_what_the_spec_allows_and_see_changes_and_deletions(
    sandbox: Sandbox, openapi_validator: OpenApiV2
) -> None:
    sent: Sent = []
    api = new_client(sandbox.url, sent)
    code = await api.resolve_field("deal", "OrderID")
    old = await api.create("deal", {"title": "old"}, external_id="1", field_code=code)
    gone = await api.create("deal", {"title": "gone"}, external_id="2", field_code=code)
    since = sandbox.deals()[-1]["update_time"]  # the sandbox's own clock, like the Date header
    await api.update("deal", old.pipedrive_id, {"title": "edited"})
    sandbox.store.delete("deal", gone.pipedrive_id)
    changed = [f async for f in api.iter_pages(default_schema("deal", code), updated_since=since)]
    deleted = [f async for f in api.iter_pages(default_schema("deal", code), updated_since=since, deleted=True)]
    await api.aclose()
    assert [row for f in changed for row in f.select("id", "title").rows()] == [(old.pipedrive_id, "edited")]
    assert [row for f in deleted for row in f["id"].to_list()] == [gone.pipedrive_id]
    lists = [(m, p, q, b) for m, p, q, b in sent if m == "GET" and p == "/api/v2/deals"]
    assert lists[-1][2] == {
        "custom_fields": code,
        "updated_since": since,
        "sort_by": "update_time",
        "sort_direction": "asc",
        "status": "deleted",
        "limit": "500",
    }
    for method, path, query, body in sent:
        openapi_validator.validate_request(method, path, query=query, body=body)
