"""End to end over real HTTP: `sync.run` against the in-process sandbox, checked field by field."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import polars as pl
import pytest

from sync_job import sync
from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, AuthError, DataError, Unavailable
from sync_job.sandbox.server import Sandbox
from tests.e2e import (
    TOKEN,
    assert_matches,
    codes,
    crm_state,
    expected_from_csv,
    run_in,
    settings_for,
    write_sources,
    writes,
)

CUSTOMERS = [
    (1, "Michael", "P."),
    (2, "Shawn", "M."),
    (3, "Kathleen", "P."),
    (4, "Zoë", "Ölçek, Jr."),
    (5, "No", "Orders"),
]
ORDERS = [
    (1, 1, "2018-01-01", "returned"),
    (2, 3, "2018-01-02", "completed"),
    (3, 4, "2018-01-04", "completed"),
    (4, 2, "2018-01-05", "placed"),  # no payment: value 0
    (5, 99, "2018-01-05", "placed"),  # unknown customer: rejected, no deal
]
PAYMENTS = [(1, 1, "credit_card", 1000), (2, 2, "coupon", 2050), (3, 2, "credit_card", 1), (4, 3, "gift_card", 333)]


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    return tmp_path


def test_initial_sync_into_an_empty_crm_creates_every_record_exactly_as_the_csvs_say(
    sources: Path, sandbox: Sandbox
) -> None:
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert_matches(sandbox, expected_from_csv(sources), *codes(sandbox))
    report = json.loads(outcome.report_path.read_text())
    assert report["counts"]["person"] == {"create:ok": 5}
    assert report["counts"]["deal"] == {"create:ok": 4}
    assert report["transform"]["rejected_orders"] == 1
    assert (sources / "work" / "combined.csv").is_file()
    assert Path(report["paths"]["results"]).is_file()


def test_rerun_without_changes_sends_no_write_request(sources: Path, sandbox: Sandbox) -> None:
    run_in(sources, sandbox)
    before = writes(sandbox)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert writes(sandbox) == before
    assert outcome.report.counts == {}


def test_payment_change_new_order_and_new_customer_send_exactly_those_writes(sources: Path, sandbox: Sandbox) -> None:
    run_in(sources, sandbox)
    before = writes(sandbox)
    write_sources(
        sources,
        [*CUSTOMERS, (6, "New", "Customer")],
        [*ORDERS, (6, 6, "2018-02-01", "placed")],
        [*PAYMENTS, (5, 3, "credit_card", 100), (6, 6, "coupon", 500)],
    )
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    # one person create (customer 6), one deal create (order 6), one deal update (order 3's value)
    assert writes(sandbox) - before == 3
    assert outcome.report.counts == {"deal": {"create:ok": 1, "update:ok": 1}, "person": {"create:ok": 1}}
    assert_matches(sandbox, expected_from_csv(sources), *codes(sandbox))


def test_a_value_edited_by_hand_in_the_crm_is_restored_by_the_next_run(sources: Path, sandbox: Sandbox) -> None:
    run_in(sources, sandbox)
    person_code, deal_code = codes(sandbox)
    _, deals = crm_state(sandbox, person_code, deal_code)
    sandbox.store.patch_record("deal", deals["2"][0]["id"], {"value": 1.0, "title": "edited by hand"})
    before = writes(sandbox)
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_OK
    assert writes(sandbox) - before == 1
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


def test_custom_fields_that_already_exist_under_random_keys_are_used_not_duplicated(
    sources: Path, sandbox: Sandbox
) -> None:
    person_code = sandbox.store.add_field("person", "CustomerID")
    deal_code = sandbox.store.add_field("deal", "OrderID")
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert codes(sandbox) == (person_code, deal_code)
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


def test_remote_duplicates_are_reported_with_both_ids_and_never_get_a_third(sources: Path, sandbox: Sandbox) -> None:
    deal_code = sandbox.store.add_field("deal", "OrderID")
    ids = [sandbox.store.add_record("deal", {"title": "dup", "custom_fields": {deal_code: "2"}}) for _ in range(2)]
    outcome = run_in(sources, sandbox)
    assert outcome.exit_code == EXIT_PARTIAL
    deal_plan = next(e for e in outcome.report.plan["entities"] if e["entity"] == "deal")
    assert deal_plan["duplicates"] == 1
    assert sorted(deal_plan["sample_duplicates"][0]["ids"]) == sorted(ids)
    _, deals = crm_state(sandbox, codes(sandbox)[0], deal_code)
    assert len(deals["2"]) == 2
    assert run_in(sources, sandbox).exit_code == EXIT_PARTIAL
    _, deals = crm_state(sandbox, codes(sandbox)[0], deal_code)
    assert len(deals["2"]) == 2


def test_dry_run_prints_the_plan_and_sends_no_write(sources: Path, sandbox: Sandbox) -> None:
    outcome = run_in(sources, sandbox, dry_run=True)
    assert outcome.exit_code == EXIT_OK
    assert writes(sandbox) == 0
    assert sandbox.persons() == []
    assert sandbox.deals() == []
    entities = {e["entity"]: e for e in outcome.report.plan["entities"]}
    assert entities["person"]["creates"] == 5
    assert entities["deal"]["creates"] == 4
    assert outcome.report.plan["estimated_tokens"] > 0


def test_dry_run_after_a_change_shows_old_and_new_values(sources: Path, sandbox: Sandbox) -> None:
    run_in(sources, sandbox)
    write_sources(sources, CUSTOMERS, ORDERS, [*PAYMENTS, (5, 1, "coupon", 250)])
    outcome = run_in(sources, sandbox, dry_run=True)
    deal = next(e for e in outcome.report.plan["entities"] if e["entity"] == "deal")
    assert deal["updates"] == 1
    assert deal["sample_updates"][0]["changes"]["value"] == {"old": 10.0, "new": 12.5}


def test_a_record_the_api_rejects_gives_exit_1_is_flagged_when_it_repeats_and_converges_once_fixed(
    sources: Path, sandbox: Sandbox
) -> None:
    # A customer with no name at all: Pipedrive answers 400 for the person, so its deal has no person either.
    write_sources(sources, [*CUSTOMERS, (7, "", "")], [*ORDERS, (7, 7, "2018-03-01", "placed")], PAYMENTS)
    first = run_in(sources, sandbox)
    assert first.exit_code == EXIT_PARTIAL
    assert first.report.failures_total == 2
    assert first.report.repeated_failures == 0
    assert {(f["entity"], f["external_id"]) for f in first.report.failures} == {("person", "7"), ("deal", "7")}
    assert first.report.counts["person"] == {"create:failed": 1, "create:ok": 5}
    second = run_in(sources, sandbox)
    assert second.exit_code == EXIT_PARTIAL
    assert second.report.repeated_failures == 2
    results = pl.read_csv(second.report.paths["results"])
    assert results.filter(pl.col("outcome") == "failed")["consecutive_failures"].to_list() == [2, 2]
    write_sources(sources, [*CUSTOMERS, (7, "Fixed", "Name")], [*ORDERS, (7, 7, "2018-03-01", "placed")], PAYMENTS)
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert_matches(sandbox, expected_from_csv(sources), *codes(sandbox))


def test_pipedrive_unavailable_after_retries_exits_1_without_writing(sources: Path, sandbox: Sandbox) -> None:
    sandbox.configure(fail_rate=1.0)
    settings = settings_for(sources, sandbox.url, pipedrive={"max_attempts": 2})
    with pytest.raises(Unavailable) as info:
        sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    assert info.value.exit_code == EXIT_PARTIAL
    assert "gave up after retries" in str(info.value)
    assert writes(sandbox) == 0


def test_bad_input_raises_exit_2_before_any_request_reaches_pipedrive(sources: Path, sandbox: Sandbox) -> None:
    (sources / "raw_payments.csv").write_text("id,order_id,payment_method,amount\n1,1,coupon,ten\n")
    with pytest.raises(DataError) as info:
        run_in(sources, sandbox)
    assert info.value.exit_code == EXIT_INPUT
    assert "raw_payments.csv" in str(info.value)
    assert sum(sandbox.stats()["requests"].values()) == 0


def test_dry_run_against_an_account_without_the_custom_fields_creates_nothing(sources: Path, sandbox: Sandbox) -> None:
    outcome = run_in(sources, sandbox, dry_run=True)
    assert outcome.exit_code == EXIT_OK
    assert sandbox.store.fields["person"].custom_fields() == []
    assert sandbox.store.fields["deal"].custom_fields() == []


def test_rejected_token_is_an_input_error_before_any_write(sources: Path, sandbox: Sandbox) -> None:
    settings = settings_for(sources, sandbox.url)
    with pytest.raises(AuthError, match=r"the API token was rejected \(401\)") as info:
        sync.run(settings, sync.RunOptions(token="wrong-token", base_url=sandbox.url))
    assert info.value.exit_code == EXIT_INPUT
    assert "wrong-token" not in str(info.value)
    assert writes(sandbox) == 0


def test_sigterm_while_reading_pipedrive_stops_without_waiting_for_all_pages(sources: Path, sandbox: Sandbox) -> None:
    sandbox.configure(latency_ms=3000)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        outcome = run_in(sources, sandbox)
    finally:
        timer.cancel()
    assert outcome.exit_code == EXIT_PARTIAL
    assert outcome.report.status == "interrupted"
    assert "nothing was written" in outcome.report.message
    assert writes(sandbox) == 0
