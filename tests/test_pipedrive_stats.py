"""The client's per-second tally of answers, 429s and retried failures (the HTML report's requests/s chart)."""

from __future__ import annotations

import stamina
from pytest_httpx import HTTPXMock

from sync_job.pipedrive.client import PipedriveClient, make_http_client
from sync_job.pipedrive.ratelimit import RateLimiter
from sync_job.pipedrive.stats import ApiStats
from tests.fakes import FakeTime

TOKEN = "0123456789abcdef0123456789abcdef01234567"


def test_each_answer_is_counted_in_its_second_with_429s_and_retriable_failures_apart() -> None:
    stats = ApiStats()
    for status in (200, 201, 429, 503, 0, 400):
        stats.tick(status, rate_limit=80 if status == 200 else None)
    assert stats.as_dict()["timeline"] == [[0, 6, 1, 2]]  # all within the first second of the run
    assert stats.as_dict()["rate_limit_per_2s"] == 80  # the last limit a response reported


async def test_the_client_ticks_every_answer_including_the_429_it_retried(httpx_mock: HTTPXMock) -> None:
    fake = FakeTime()
    client = PipedriveClient(
        make_http_client("https://pd.test", 4, 5.0),
        TOKEN,
        max_attempts=4,
        limiter=RateLimiter(clock=fake.clock, sleep=fake.sleep),
        settle_seconds=0,
    )
    httpx_mock.add_response(status_code=429, headers={"retry-after": "1"}, json={"success": False, "error": "rate"})
    httpx_mock.add_response(
        json={"success": True, "data": {"id": 3}}, headers={"x-ratelimit-limit": "40", "x-ratelimit-remaining": "30"}
    )
    with stamina.set_testing(True, attempts=100, cap=True):
        await client.update("deal", 3, {"title": "t"})
    await client.aclose()
    timeline = client.stats.as_dict()["timeline"]
    assert isinstance(timeline, list)
    assert [sum(column) for column in zip(*timeline, strict=True)][1:] == [2, 1, 0]
    assert client.stats.rate_limit == 40
