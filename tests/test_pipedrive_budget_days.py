"""A plan larger than the job's share of the daily budget, against the sandbox: newest orders first, the days
line, and the next day continuing where the last one stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sync_job.errors import EXIT_OK, EXIT_PARTIAL
from sync_job.pipedrive import ledger
from sync_job.sandbox.server import Sandbox, SandboxOptions
from tests.e2e import TOKEN, assert_matches, codes, crm_state, expected_from_csv, run_in, write_sources

DAILY_BUDGET = 1_000  # the job may spend 500 a day: reads and field creates, then about 80 writes
CUSTOMERS = [(i, f"First{i}", f"Last{i}") for i in range(1, 21)]
ORDERS = [(i, (i % 20) + 1, f"2018-{1 + i // 28:02d}-{1 + i % 28:02d}", "completed") for i in range(1, 121)]
PAYMENTS = [(i, i, "coupon", 100 * i) for i in range(1, 121)]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxOptions(token=TOKEN, burst=1000, search_burst=1000, daily_budget=DAILY_BUDGET)) as sb:
        yield sb


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    return tmp_path


def next_day(sources: Path, sandbox: Sandbox) -> None:
    """Pipedrive's budget resets at midnight; so does the job's count of what it spent today."""
    sandbox.reset_budget()
    path = ledger.path_in(sources / "work")
    spent = ledger.load(path)
    assert spent is not None
    ledger.save(path, ledger.Spent("2000-01-01", spent.tokens))


def test_dry_run_says_how_many_days_the_plan_needs_at_the_budget_share(sources: Path, sandbox: Sandbox) -> None:
    outcome = run_in(sources, sandbox, dry_run=True)
    assert outcome.exit_code == EXIT_OK
    plan = outcome.report.plan
    assert plan["tokens_per_day"] == DAILY_BUDGET // 2
    assert plan["writes"] == 140
    assert plan["days_needed"] == 2  # 700 tokens of writes: what is left today, then one more day


def test_a_plan_beyond_todays_share_applies_the_newest_orders_first_and_finishes_on_later_days(
    sources: Path, sandbox: Sandbox
) -> None:
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_PARTIAL
    assert first.report.status == "budget_exhausted"
    assert "more day(s) at 500 tokens a day (50% of 1000, pipedrive.max_budget_share)" in first.report.message
    assert sandbox.stats()["tokens_used"] <= DAILY_BUDGET // 2  # other integrations keep the other half
    person_code, deal_code = codes(sandbox)
    _, deals = crm_state(sandbox, person_code, deal_code)
    done = sorted(int(k) for k in deals)
    assert done == list(range(121 - len(done), 121))  # the newest orders, no gap
    for _ in range(3):
        next_day(sources, sandbox)
        outcome = run_in(sources, sandbox)
        if outcome.exit_code == EXIT_OK:
            break
        assert outcome.exit_code == EXIT_PARTIAL
    assert outcome.exit_code == EXIT_OK
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


def test_a_second_run_the_same_day_spends_only_what_is_left_of_the_share(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_PARTIAL
    spent = sandbox.stats()["tokens_used"]
    second = run_in(sources, sandbox)
    assert second.exit_code == EXIT_PARTIAL
    assert sandbox.stats()["tokens_used"] - spent <= DAILY_BUDGET // 2 - spent + 50  # at most its reads over the share


def test_a_ledger_that_cannot_be_put_in_place_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Once left `.pipedrive-budget.json.<pid>.tmp` behind whenever the rename failed (a folder holds the name)."""
    path = tmp_path / "state" / "pipedrive-budget.json"
    path.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        ledger.save(path, ledger.Spent(day="2026-12-02", tokens=10))
    assert [p.name for p in path.parent.iterdir()] == ["pipedrive-budget.json"]
