"""Sync modes end to end over real HTTP against the sandbox: upsert, update, mirror and mirror's delete guard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from sync_job import history, sync
from sync_job.errors import EXIT_OK, EXIT_PARTIAL
from sync_job.pipedrive import snapshot
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, codes, crm_state, expected_from_csv, settings_for, write_sources, writes
from tests.test_bad_input import config_file, error_line, invoke, nothing_requested

CUSTOMERS = [(i, f"First{i}", f"Last{i}") for i in range(1, 21)]
ORDERS = [(i, i, f"2018-01-{i:02d}", "completed") for i in range(1, 21)]  # one order per customer
PAYMENTS = [(i, i, "credit_card", 100 * i) for i in range(1, 21)]


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    return tmp_path


def run_mode(folder: Path, sandbox: Sandbox, modes: dict[str, Any], **options: Any) -> sync.RunOutcome:
    """One run with `modes` as the config's persons:/deals: sections (options: RunOptions fields)."""
    settings = settings_for(folder, sandbox.url, **modes)
    return sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url, **options))


def mirror(fraction: float | None = None) -> dict[str, Any]:
    entity: dict[str, Any] = {"mode": "mirror"}
    if fraction is not None:
        entity["max_delete_fraction"] = fraction
    return {"persons": entity, "deals": entity}


UPDATE = {"persons": {"mode": "update"}, "deals": {"mode": "update"}}


def deletes(sandbox: Sandbox) -> int:
    return sum(n for kind, n in sandbox.stats()["writes"].items() if kind.endswith(".delete"))


def entity_plan(outcome: sync.RunOutcome, entity: str) -> dict[str, Any]:
    return next(e for e in outcome.report.plan["entities"] if e["entity"] == entity)


@pytest.mark.parametrize("modes", [{}, UPDATE, mirror()], ids=["upsert", "update", "mirror"])
def test_each_mode_converges_and_its_rerun_sends_no_write(
    sources: Path, sandbox: Sandbox, modes: dict[str, Any]
) -> None:
    first = run_mode(sources, sandbox, modes)
    assert first.exit_code == EXIT_OK
    before = writes(sandbox)
    again = run_mode(sources, sandbox, modes)
    assert again.exit_code == EXIT_OK
    assert writes(sandbox) == before
    assert again.report.counts == {}


def test_update_mode_on_an_empty_crm_creates_nothing_and_counts_every_row_as_skipped(
    sources: Path, sandbox: Sandbox
) -> None:
    outcome = run_mode(sources, sandbox, UPDATE)
    assert outcome.exit_code == EXIT_OK
    assert sandbox.persons() == []
    assert sandbox.deals() == []
    assert (entity_plan(outcome, "person")["skipped"], entity_plan(outcome, "deal")["skipped"]) == (20, 20)


def test_update_mode_updates_existing_records_and_skips_new_rows(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, {})
    write_sources(
        sources,
        [*CUSTOMERS, (21, "New", "Customer")],
        [*ORDERS, (21, 21, "2018-02-01", "placed")],
        [*PAYMENTS[:-1], (20, 20, "credit_card", 9999), (21, 21, "coupon", 500)],
    )
    before = writes(sandbox)
    outcome = run_mode(sources, sandbox, UPDATE)
    assert outcome.exit_code == EXIT_OK
    assert writes(sandbox) - before == 1  # order 20's value, nothing created
    assert outcome.report.counts == {"deal": {"update:ok": 1}}
    assert (entity_plan(outcome, "person")["skipped"], entity_plan(outcome, "deal")["skipped"]) == (1, 1)
    persons, deals = crm_state(sandbox, *codes(sandbox))
    assert "21" not in persons
    assert "21" not in deals
    assert deals["20"][0]["value"] == 99.99


def test_mirror_deletes_exactly_the_removed_rows_and_never_a_hand_made_record(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    person_code, deal_code = codes(sandbox)
    _, deals_before = crm_state(sandbox, person_code, deal_code)
    linked_to = deals_before["5"][0]["person_id"]
    hand_person = sandbox.store.add_record("person", {"name": "Made by hand"})
    hand_deal = sandbox.store.add_record("deal", {"title": "Made by hand", "person_id": hand_person})
    # Order 2 is gone; customer 3 is gone (and so is their order, rejected without its customer).
    customers = [c for c in CUSTOMERS if c[0] != 3]
    write_sources(sources, customers, [o for o in ORDERS if o[0] != 2], [p for p in PAYMENTS if p[0] != 2])
    outcome = run_mode(sources, sandbox, mirror())
    assert outcome.exit_code == EXIT_OK, outcome.report.message
    assert outcome.report.counts == {"deal": {"delete:ok": 2}, "person": {"delete:ok": 1}}
    persons, deals = crm_state(sandbox, person_code, deal_code)
    expected = expected_from_csv(sources)
    assert set(persons) - {"None"} == set(expected.persons)
    assert "3" not in persons
    assert set(deals) - {"None"} == set(expected.deals)
    assert not {"2", "3"} & set(deals)
    assert {p["id"] for p in sandbox.persons()} >= {hand_person, linked_to}
    assert hand_deal in {d["id"] for d in sandbox.deals()}
    assert deletes(sandbox) == 3
    before = writes(sandbox)
    assert run_mode(sources, sandbox, mirror()).exit_code == EXIT_OK
    assert writes(sandbox) == before


def test_mirror_keeps_a_person_whose_customer_is_gone_while_a_hand_made_deal_links_to_them(
    sources: Path, sandbox: Sandbox
) -> None:
    run_mode(sources, sandbox, mirror())
    persons, _ = crm_state(sandbox, *codes(sandbox))
    person_id = persons["7"][0]["id"]
    sandbox.store.add_record("deal", {"title": "Made by hand", "person_id": person_id})
    write_sources(sources, [c for c in CUSTOMERS if c[0] != 7], ORDERS, PAYMENTS)
    outcome = run_mode(sources, sandbox, mirror())
    assert outcome.exit_code == EXIT_OK
    assert person_id in {p["id"] for p in sandbox.persons()}
    assert outcome.report.counts == {"deal": {"delete:ok": 1}}  # order 7, rejected without its customer
    assert any("1 person(s) whose customer is gone stay" in note for note in outcome.report.plan["notes"])


def test_a_person_whose_orders_are_gone_but_who_is_still_a_customer_stays(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, CUSTOMERS, [o for o in ORDERS if o[0] != 9], PAYMENTS)
    outcome = run_mode(sources, sandbox, mirror())
    assert outcome.exit_code == EXIT_OK
    assert outcome.report.counts == {"deal": {"delete:ok": 1}}
    persons, deals = crm_state(sandbox, *codes(sandbox))
    assert "9" in persons
    assert "9" not in deals


def test_mirror_guard_on_a_truncated_export_deletes_nothing_applies_the_rest_and_exits_1(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    run_mode(sources, sandbox, mirror())
    # Half the orders file is gone, and one remaining order changed its value.
    write_sources(sources, CUSTOMERS, ORDERS[:10], [*PAYMENTS[:9], (10, 10, "credit_card", 4242)])
    with caplog.at_level(logging.WARNING, logger="sync_job.sync"):
        outcome = run_mode(sources, sandbox, mirror())
    assert outcome.exit_code == EXIT_PARTIAL
    assert deletes(sandbox) == 0
    assert len(sandbox.deals()) == 20
    assert outcome.report.counts == {"deal": {"update:ok": 1}}
    _, deals = crm_state(sandbox, *codes(sandbox))
    assert deals["10"][0]["value"] == 42.42
    line = "mirror would delete 10 of 20 deals (max_delete_fraction 0.1)"
    assert line in outcome.report.message
    assert "sync-job run --allow-deletes" in outcome.report.message
    assert "\n" not in outcome.report.message
    assert [r.getMessage() for r in caplog.records if line in r.getMessage()]
    assert entity_plan(outcome, "deal")["held_deletes"] == 10

    accepted = run_mode(sources, sandbox, mirror(), allow_deletes=True)
    assert accepted.exit_code == EXIT_OK
    assert accepted.report.counts == {"deal": {"delete:ok": 10}}
    assert sorted(crm_state(sandbox, *codes(sandbox))[1]) == sorted(str(i) for i in range(1, 11))


def test_a_higher_max_delete_fraction_lets_the_same_deletes_through(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, CUSTOMERS, ORDERS[:10], PAYMENTS[:10])
    outcome = run_mode(sources, sandbox, mirror(0.5))
    assert outcome.exit_code == EXIT_OK
    assert deletes(sandbox) == 10


def test_dry_run_lists_the_deletes_in_samples_and_plan_file_with_their_token_cost(
    sources: Path, sandbox: Sandbox
) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, CUSTOMERS, [o for o in ORDERS if o[0] != 4], PAYMENTS)
    _, deals = crm_state(sandbox, *codes(sandbox))
    before = writes(sandbox)
    outcome = run_mode(sources, sandbox, mirror(), dry_run=True)
    assert outcome.exit_code == EXIT_OK
    assert writes(sandbox) == before
    plan = outcome.report.plan
    assert entity_plan(outcome, "deal")["sample_deletes"] == [{"key": "4", "id": deals["4"][0]["id"]}]
    assert plan["delete_tokens"] == 3
    rows = pl.read_csv(outcome.report.paths["plan"], infer_schema_length=0).filter(pl.col("action") == "delete")
    assert rows.select("entity", "external_id", "old").rows() == [("deal", "4", str(deals["4"][0]["id"]))]


def test_a_dry_run_lists_held_deletes_too_and_says_the_guard_holds_them(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, CUSTOMERS, ORDERS[:10], PAYMENTS[:10])
    outcome = run_mode(sources, sandbox, mirror(), dry_run=True)
    assert outcome.exit_code == EXIT_OK
    assert outcome.report.plan["delete_tokens"] == 30
    assert "mirror would delete 10 of 20 deals" in outcome.report.plan["held_deletes"]
    rows = pl.read_csv(outcome.report.paths["plan"], infer_schema_length=0).filter(pl.col("action") == "delete")
    assert rows.height == 10
    assert set(rows["new"]) == {"held: more than max_delete_fraction"}


def test_the_snapshot_records_the_runs_deletes_so_an_incremental_read_agrees_with_a_full_one(
    sources: Path, sandbox: Sandbox
) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, [c for c in CUSTOMERS if c[0] != 3], ORDERS, PAYMENTS)
    assert run_mode(sources, sandbox, mirror()).exit_code == EXIT_OK
    taken = snapshot.load(snapshot.path_in(sources / "work"))
    assert taken is not None
    assert sorted(taken.persons["id"].to_list()) == sorted(p["id"] for p in sandbox.persons())
    assert sorted(taken.deals["id"].to_list()) == sorted(d["id"] for d in sandbox.deals())
    incremental = run_mode(sources, sandbox, mirror())
    full = run_mode(sources, sandbox, mirror(), full_read=True)
    assert incremental.report.plan["entities"] == full.report.plan["entities"]
    assert incremental.report.counts == full.report.counts == {}


def test_a_delete_whose_response_was_lost_counts_as_done(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    write_sources(sources, CUSTOMERS, [o for o in ORDERS if o[0] != 6], PAYMENTS)
    sandbox.configure(drop_after_commit_rate=1.0)  # the DELETE lands, its answer never arrives
    outcome = run_mode(sources, sandbox, mirror())
    sandbox.configure(drop_after_commit_rate=0.0)
    assert outcome.exit_code == EXIT_OK, outcome.report.message
    assert outcome.report.counts == {"deal": {"delete:ok": 1}}
    assert "6" not in crm_state(sandbox, *codes(sandbox))[1]
    assert sandbox.stats()["dropped"] >= 1


def test_the_results_file_lists_each_delete_with_its_pipedrive_id(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    deal_id = crm_state(sandbox, *codes(sandbox))[1]["8"][0]["id"]
    write_sources(sources, CUSTOMERS, [o for o in ORDERS if o[0] != 8], PAYMENTS)
    outcome = run_mode(sources, sandbox, mirror())
    results = pl.read_csv(outcome.report.paths["results"], infer_schema_length=0)
    assert results.select("entity", "external_id", "action", "outcome", "destination_id").rows() == [
        ("deal", "8", "delete", "ok", str(deal_id))
    ]
    assert history.row(outcome.report).deletes == 1


@pytest.mark.parametrize(
    ("deals", "needle"),
    [
        ({"mode": "mirrror"}, "invalid value for 'deals.mode'"),
        ({"mode": "mirror", "max_delete_fraction": 2}, "invalid value for 'deals.max_delete_fraction'"),
        ({"mode": "update", "max_delete_fraction": 0.5}, "max_delete_fraction only applies to mode 'mirror'"),
    ],
)
def test_a_wrong_mode_setting_is_exit_2_in_one_line_before_any_request(
    sources: Path, sandbox: Sandbox, deals: dict[str, Any], needle: str
) -> None:
    error_line(invoke(config_file(sources, deals=deals), sandbox.url), "sync.yaml", needle)
    nothing_requested(sandbox)


def test_the_cli_guard_exits_1_with_its_line_and_allow_deletes_accepts(sources: Path, sandbox: Sandbox) -> None:
    path = config_file(sources, deals={"mode": "mirror"}, pipedrive={"max_attempts": 2, "base_url": sandbox.url})
    assert invoke(path, sandbox.url).exit_code == EXIT_OK
    write_sources(sources, CUSTOMERS, ORDERS[:10], PAYMENTS[:10])
    held = invoke(path, sandbox.url)
    assert held.exit_code == EXIT_PARTIAL
    assert "mirror would delete 10 of 20 deals" in held.stderr
    assert "Traceback" not in held.stderr
    assert deletes(sandbox) == 0
    accepted = invoke(path, sandbox.url, TOKEN, "--allow-deletes")
    assert accepted.exit_code == EXIT_OK, accepted.stderr
    assert deletes(sandbox) == 10


class RefuseDealDeletes(httpx.AsyncBaseTransport):
    """Real HTTP to the sandbox, except that every DELETE of a deal is answered 403 (a user without the right)."""

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE" and request.url.path.startswith("/api/v2/deals/"):
            return httpx.Response(403, json={"success": False, "error": "You are not allowed to delete deals"})
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


def test_a_person_whose_deal_could_not_be_deleted_is_not_deleted(sources: Path, sandbox: Sandbox) -> None:
    run_mode(sources, sandbox, mirror())
    persons, _ = crm_state(sandbox, *codes(sandbox))
    write_sources(sources, [c for c in CUSTOMERS if c[0] != 11], ORDERS, PAYMENTS)  # customer 11 and order 11 go
    outcome = run_mode(sources, sandbox, mirror(), transport=RefuseDealDeletes())
    assert outcome.exit_code == EXIT_PARTIAL
    assert outcome.report.counts == {"deal": {"delete:failed": 1}, "person": {"delete:skipped": 1}}
    assert persons["11"][0]["id"] in {p["id"] for p in sandbox.persons()}
    assert deletes(sandbox) == 0


def test_with_every_allow_deletes_answers_only_the_first_runs_guard(
    sources: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sync_job import schedule

    seen: list[bool] = []

    def fake_run(settings: object, options: sync.RunOptions) -> sync.RunOutcome:
        seen.append(options.allow_deletes)
        return sync.RunOutcome(EXIT_OK, None, Path())  # type: ignore[arg-type]

    def three_runs(spec: str, job: Callable[[], int], **_: object) -> int:
        return max(job() for _ in range(3))

    monkeypatch.setattr(sync, "run", fake_run)
    monkeypatch.setattr(schedule, "run_every", three_runs)
    result = invoke(
        config_file(sources, deals={"mode": "mirror"}), sandbox.url, TOKEN, "--allow-deletes", "--every", "1h"
    )
    assert result.exit_code == EXIT_OK, result.stderr
    assert seen == [True, False, False]
