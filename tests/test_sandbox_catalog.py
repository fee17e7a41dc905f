"""The sandbox's seeded users, pipelines and stages: fixed ids, read endpoints, and their token costs."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sync_job.sandbox import Sandbox, SandboxOptions
from tests.openapi import OpenApiV2

TOKEN = "catalog-token"


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    options = SandboxOptions(token=TOKEN, burst=10_000, search_burst=10_000)
    with Sandbox(options) as sandbox, httpx.Client(base_url=sandbox.url, headers={"x-api-token": TOKEN}) as c:
        yield c


def test_two_pipelines_with_their_own_stages_are_seeded(client: httpx.Client) -> None:
    pipelines = client.get("/api/v2/pipelines").json()["data"]
    assert [(p["id"], p["name"]) for p in pipelines] == [(1, "Sales"), (2, "Partners")]
    stages = client.get("/api/v2/stages").json()["data"]
    assert [(s["id"], s["pipeline_id"]) for s in stages] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    second = client.get("/api/v2/stages", params={"pipeline_id": 2}).json()["data"]
    assert [s["id"] for s in second] == [5, 6]
    assert client.get("/api/v2/stages/5").json()["data"]["name"] == "Qualified"


def test_unknown_pipeline_or_stage_id_is_404(client: httpx.Client) -> None:
    assert client.get("/api/v2/pipelines/9").status_code == 404
    assert client.get("/api/v2/stages/99").status_code == 404


def test_stage_pages_follow_the_cursor_to_the_end(client: httpx.Client) -> None:
    first = client.get("/api/v2/stages", params={"limit": 4, "sort_by": "order_nr"}).json()
    cursor = first["additional_data"]["next_cursor"]
    rest = client.get("/api/v2/stages", params={"limit": 4, "sort_by": "order_nr", "cursor": cursor}).json()
    assert len(first["data"]) + len(rest["data"]) == 6
    assert rest["additional_data"]["next_cursor"] is None
    assert client.get("/api/v2/stages", params={"sort_by": "name"}).status_code == 400


def test_pipeline_and_stage_reads_cost_what_the_spec_says() -> None:
    """Lists of pipelines and stages cost 5 tokens, one by id 1 (spec x-token-cost)."""
    options = SandboxOptions(token=TOKEN, daily_budget=100)
    with Sandbox(options) as sandbox, httpx.Client(base_url=sandbox.url, headers={"x-api-token": TOKEN}) as c:
        for path in ("/api/v2/pipelines", "/api/v2/stages", "/api/v2/pipelines/1", "/api/v2/stages/1"):
            c.get(path).raise_for_status()
        assert sandbox.stats()["tokens_used"] == 5 + 5 + 1 + 1


@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/v2/pipelines", None), ("/api/v2/pipelines/2", None), ("/api/v2/stages", {"pipeline_id": 1}),
     ("/api/v2/stages/6", None)],
)  # fmt: skip
def test_pipeline_and_stage_responses_match_the_v2_schema(
    client: httpx.Client, openapi_validator: OpenApiV2, path: str, query: dict[str, int] | None
) -> None:
    openapi_validator.validate_request("GET", path, query=query)
    response = client.get(path, params=query)
    assert response.status_code == 200, response.text
    openapi_validator.validate_response("GET", path, 200, response.json())
