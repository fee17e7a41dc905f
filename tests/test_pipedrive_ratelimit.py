"""Header-driven pacing: waits computed from header sequences, never more sends than the window allows."""

from __future__ import annotations

import pytest

from sync_job.pipedrive.ratelimit import BurstWindow, RateHeaders, RateLimiter
from tests.fakes import FakeTime


def test_headers_are_parsed_and_malformed_ones_ignored() -> None:
    parsed = RateHeaders.parse(
        {
            "x-ratelimit-limit": "40",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": "1.5",
            "retry-after": "soon",
            "x-daily-ratelimit-token-remaining": "1234",
        }
    )
    assert parsed == RateHeaders(limit=40, remaining=0, reset=1.5, retry_after=None, daily_remaining=1234)
    assert RateHeaders.parse({}) == RateHeaders()


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "7", "x-ratelimit-reset": "2"}, 7.0),
        ({"x-ratelimit-reset": "1.2"}, 1.2),
        ({}, 2.0),
    ],
)
def test_a_429_waits_for_retry_after_else_the_reset_else_a_window(headers: dict[str, str], wait: float) -> None:
    assert RateHeaders.parse(headers).wait_after_429() == wait


def test_window_allows_limit_minus_headroom_then_waits_for_the_oldest_to_expire() -> None:
    window = BurstWindow(limit=5, window=2.0, slack=0.05, headroom=1, smooth=False)
    for t in (0.0, 0.1, 0.2, 0.3):
        assert window.delay(t) == 0.0
        window.record(t)
    assert window.delay(0.4) == pytest.approx(1.65)  # 0.0 + 2.05 - 0.4
    assert window.delay(2.05) == 0.0


def test_smooth_sends_are_spread_evenly_over_the_window() -> None:
    window = BurstWindow(limit=5, window=2.0, slack=0.0, headroom=1, catch_up=0)
    window.record(0.0)
    assert window.delay(0.1) == pytest.approx(0.4)  # 2.0 s / 4 sends
    assert window.delay(0.5) == 0.0


def test_a_late_sender_may_catch_up_a_little() -> None:
    window = BurstWindow(limit=5, window=2.0, slack=0.0, headroom=1, catch_up=2)
    for _ in range(3):
        assert window.delay(0.0) == 0.0
        window.record(0.0)
    assert window.delay(0.0) == pytest.approx(0.5)


def test_the_limit_is_learned_from_the_headers() -> None:
    window = BurstWindow(limit=20)
    window.observe(RateHeaders(limit=100, remaining=99, reset=2.0), now=0.0)
    assert window.capacity == 99


def test_remaining_zero_pauses_until_the_reset() -> None:
    window = BurstWindow(limit=40)
    window.observe(RateHeaders(limit=40, remaining=0, reset=1.25), now=10.0)
    assert window.delay(10.0) == pytest.approx(1.25)
    assert window.delay(11.25) == 0.0


def test_remaining_zero_caused_by_our_own_full_window_does_not_idle_until_the_reset() -> None:
    """Our window already waits for the oldest send to leave; the whole-second reset would waste time."""
    window = BurstWindow(limit=5, window=2.0, slack=0.0, headroom=1, smooth=False)
    for t in (0.0, 0.5, 1.0, 1.5):
        window.record(t)
    window.observe(RateHeaders(limit=5, remaining=0, reset=2.0), now=1.6)
    assert window.delay(1.6) == pytest.approx(0.4)  # the oldest send leaves at 2.0, not 1.6 + 2.0


def test_remaining_above_zero_never_pauses() -> None:
    window = BurstWindow(limit=40)
    for remaining in (39, 10, 1):
        window.observe(RateHeaders(limit=40, remaining=remaining, reset=2.0), now=0.0)
    assert window.delay(0.0) == 0.0


def test_a_steady_sender_never_exceeds_the_limit_in_any_window() -> None:
    """Simulate greedy sending for 10 s: every 2 s window holds at most limit - 1 sends, and the rate is close."""
    window = BurstWindow(limit=10, window=2.0, slack=0.02, headroom=1)
    now, sends = 0.0, []
    while now < 10.0:
        now += window.delay(now)
        window.record(now)
        sends.append(now)
    for start in sends:
        assert sum(1 for s in sends if start <= s < start + 2.0) <= 9
    assert len(sends) >= 9 * 10 / 2.02 - 1


async def test_limiter_sleeps_when_the_window_is_full() -> None:
    fake = FakeTime(100.0)
    limiter = RateLimiter(limit=3, headroom=1, slack=0.0, smooth=False, clock=fake.clock, sleep=fake.sleep)
    for _ in range(4):
        await limiter.acquire()
    assert fake.sleeps == [2.0]
    assert fake.now == pytest.approx(102.0)


async def test_search_has_its_own_lower_window() -> None:
    fake = FakeTime(100.0)
    limiter = RateLimiter(
        limit=100, search_limit=3, headroom=1, slack=0.0, smooth=False, clock=fake.clock, sleep=fake.sleep
    )
    await limiter.acquire(search=True)
    await limiter.acquire(search=True)
    await limiter.acquire()  # ordinary requests are not held back by the search window
    assert fake.sleeps == []
    await limiter.acquire(search=True)
    assert fake.sleeps == [2.0]


async def test_a_pause_holds_every_sender() -> None:
    fake = FakeTime(100.0)
    limiter = RateLimiter(limit=100, clock=fake.clock, sleep=fake.sleep)
    limiter.pause(7.0)
    waited = await limiter.acquire()
    assert waited == pytest.approx(7.0)
