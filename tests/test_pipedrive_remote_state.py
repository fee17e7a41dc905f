"""The snapshot of the CRM across runs, against the sandbox: remembered field keys, incremental reads that plan
exactly what a full read plans, and runs killed mid-read or mid-apply that the next run repairs exactly."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync_job import combined as combined_module
from sync_job import sync
from sync_job.console import RunConsole
from sync_job.destinations.base import Plan
from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL
from sync_job.pipedrive import snapshot
from sync_job.pipedrive.fields import FieldGone
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

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))

Rows = list[tuple[Any, ...]]


def small_shop(n_customers: int = 8, n_orders: int = 16) -> tuple[Rows, Rows, Rows]:
    customers: Rows = [(i, f"First{i}", f"Last{i}") for i in range(1, n_customers + 1)]
    orders: Rows = [(i, (i % n_customers) + 1, "2018-01-01", "completed") for i in range(1, n_orders + 1)]
    payments: Rows = [(i, i, "coupon", 100 * i) for i in range(1, n_orders + 1)]
    return customers, orders, payments


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    write_sources(tmp_path, *small_shop())
    return tmp_path


def logged_run(sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture, **options: Any) -> str:
    """A run that must end in sync; what it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_in(sources, sandbox, **options).exit_code == EXIT_OK
    return caplog.text


def snapshot_file(sources: Path) -> Path:
    return snapshot.path_in(sources / "work")


def rewrite_meta(sources: Path, **changes: Any) -> None:
    """Change what the snapshot says about itself, keeping its records (as another run's snapshot would)."""
    old = snapshot.load(snapshot_file(sources))
    assert old is not None
    snapshot.save(snapshot_file(sources), replace(old, meta=replace(old.meta, **changes)))


# ---- remembered custom-field keys (#16.11) ------------------------------------------------------------------


def test_a_deleted_id_field_stops_the_next_run_with_exit_2_before_any_write(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    person_code, _ = codes(sandbox)
    sandbox.store.delete_field("person", person_code)
    before = writes(sandbox)
    with pytest.raises(FieldGone, match=r"'CustomerID'.* existed on the previous run") as caught:
        run_in(sources, sandbox)
    assert caught.value.exit_code == EXIT_INPUT
    message = str(caught.value)
    assert "--recreate-fields" in message
    assert "\n" not in message
    assert writes(sandbox) == before


def test_an_id_field_deleted_and_created_again_by_hand_also_stops_the_run(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    _, deal_code = codes(sandbox)
    sandbox.store.delete_field("deal", deal_code)
    new_code = sandbox.store.add_field("deal", "OrderID")
    before = writes(sandbox)
    with pytest.raises(FieldGone, match=rf"created again \(key {new_code} now\)") as caught:
        run_in(sources, sandbox)
    assert caught.value.exit_code == EXIT_INPUT
    assert writes(sandbox) == before


def test_recreate_fields_accepts_the_new_field_with_a_full_read(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    _, deal_code = codes(sandbox)
    sandbox.store.delete_field("deal", deal_code)
    assert "full read of the CRM: the custom-field keys differ" in logged_run(
        sources, sandbox, caplog, recreate_fields=True
    )
    _, new_deal_code = codes(sandbox)
    assert new_deal_code != deal_code
    _, deals = crm_state(sandbox, codes(sandbox)[0], new_deal_code)
    assert all(len(records) == 1 for key, records in deals.items() if key != "None")
    assert run_in(sources, sandbox).exit_code == EXIT_OK  # and the run after that is in sync, incrementally


# ---- when a full read happens (#13) -------------------------------------------------------------------------


def test_the_second_run_reads_incrementally_and_still_restores_a_hand_edit(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert "full read of the CRM: there is no usable snapshot" in logged_run(sources, sandbox, caplog)
    person_code, deal_code = codes(sandbox)
    _, deals = crm_state(sandbox, person_code, deal_code)
    sandbox.store.patch_record("deal", deals["3"][0]["id"], {"value": 1.0})
    before = writes(sandbox)
    assert "incremental read of the CRM" in logged_run(sources, sandbox, caplog)
    assert writes(sandbox) - before == 1
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)
    before = writes(sandbox)
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert writes(sandbox) == before  # a no-change re-run still writes nothing


def test_the_snapshot_records_the_runs_own_writes_with_their_ids(sources: Path, sandbox: Sandbox) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK  # into an empty CRM: the read saw nothing
    taken = snapshot.load(snapshot_file(sources))
    assert taken is not None
    person_code, deal_code = codes(sandbox)
    crm = {(p["id"], p["name"], p["custom_fields"][person_code]) for p in sandbox.persons()}
    assert set(taken.persons.select("id", "name", "external_id").rows()) == crm
    deals = {(d["id"], d["title"], d["person_id"], d["custom_fields"][deal_code]) for d in sandbox.deals()}
    assert set(taken.deals.select("id", "title", "person_id", "external_id").rows()) == deals


def test_a_dry_run_with_nothing_new_costs_and_estimates_only_its_incremental_reads(
    sources: Path, sandbox: Sandbox
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    dry = run_in(sources, sandbox, dry_run=True)
    assert dry.exit_code == EXIT_OK
    assert dry.report.plan["writes"] == 0
    assert dry.report.plan["estimated_tokens"] == dry.report.api["tokens_used"] == 50  # 2 field lists, 3 lists


def test_a_corrupt_snapshot_means_a_full_read_not_a_crash(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    snapshot_file(sources).write_bytes(b"PAR1 this is not what was written PAR1")
    before = writes(sandbox)
    assert "cannot be read" in logged_run(sources, sandbox, caplog)
    assert "full read of the CRM: there is no usable snapshot" in caplog.text
    assert writes(sandbox) == before
    assert snapshot.load(snapshot_file(sources)) is not None  # replaced by a good one


def test_a_snapshot_of_another_base_url_means_a_full_read(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    rewrite_meta(sources, base_url="https://other.pipedrive.com")
    assert "full read of the CRM: the snapshot was taken from another Pipedrive base URL" in logged_run(
        sources, sandbox, caplog
    )


def test_full_read_flag_and_an_old_snapshot_each_force_a_full_read(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    assert "full read of the CRM: --full-read was given" in logged_run(sources, sandbox, caplog, full_read=True)
    rewrite_meta(sources, full_read_at="2020-01-01T00:00:00Z")
    assert "(pipedrive.full_read_every is 7.0d)" in logged_run(sources, sandbox, caplog)


def delete_by_hand(sandbox: Sandbox, entity: str, external_id: str) -> tuple[str, str]:
    """Delete the record of `external_id` as a person would in the UI; returns the two id fields' keys."""
    person_code, deal_code = codes(sandbox)
    persons, deals = crm_state(sandbox, person_code, deal_code)
    record = (persons if entity == "person" else deals)[external_id][0]
    sandbox.store.delete(entity, record["id"])  # type: ignore[arg-type]
    return person_code, deal_code


def test_a_person_deleted_by_hand_is_recreated_after_a_refused_write_makes_the_next_read_full(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    person_code, deal_code = delete_by_hand(sandbox, "person", "3")
    customers, orders, payments = small_shop()
    orders.append((99, 3, "2018-05-01", "placed"))  # a new order of the deleted person's customer
    write_sources(sources, customers, orders, payments)
    first = run_in(sources, sandbox)  # incremental: the deletion is invisible, the new deal's person link is refused
    assert first.exit_code == EXIT_PARTIAL
    assert "full read of the CRM: the previous run had 1 write(s) refused" in logged_run(sources, sandbox, caplog)
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


def test_a_deal_deleted_by_hand_is_created_again_by_an_incremental_run(
    sources: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert run_in(sources, sandbox).exit_code == EXIT_OK
    person_code, deal_code = delete_by_hand(sandbox, "deal", "5")
    with caplog.at_level(logging.INFO):
        outcome = run_in(sources, sandbox)
    assert "incremental read of the CRM" in caplog.text
    assert outcome.exit_code == EXIT_OK
    deal_plan = next(e for e in outcome.report.plan["entities"] if e["entity"] == "deal")
    assert (deal_plan["creates"], deal_plan["updates"]) == (1, 0)
    assert_matches(sandbox, expected_from_csv(sources), person_code, deal_code)


# ---- incremental == full, over random changes (#13, the key test) ----------------------------------------------


def plan_of(sources: Path, sandbox: Sandbox, *, full_read: bool) -> Plan:
    """The plan a run would make now (a dry run's read, no writes, the snapshot left as it is)."""
    settings = settings_for(sources, sandbox.url)
    result = sync.transform(settings)
    combined = combined_module.read_combined(result.combined_path)
    customers = combined_module.read_customers(result.customers_path)
    options = sync.RunOptions(token=TOKEN, base_url=sandbox.url, dry_run=True, full_read=full_read)
    destination = sync._open_destination(settings, options, RunConsole(False))

    async def go() -> Plan:
        try:
            return await destination.plan(combined, customers)
        finally:
            await destination.aclose()

    return asyncio.run(go())


def comparable(plan: Plan) -> list[Any]:
    """Everything a plan decides, in a canonical order: what is created, what is updated to what, what is left."""
    out: list[Any] = []
    for e in plan.entities:
        creates = sorted(tuple(map(str, row)) for row in e.creates.rows())
        updates = sorted(
            (str(row["external_id"]), row["id"], tuple(sorted(row["changed"])))
            for row in e.updates.iter_rows(named=True)
        )
        dups = sorted((str(k), tuple(ids)) for k, ids in e.duplicates.rows())
        out.append((e.entity, creates, updates, e.unchanged, dups, e.orphans))
    return out


def random_step(rng: random.Random, sources: Path, sandbox: Sandbox, shop: tuple[Rows, Rows, Rows]) -> None:
    """A few source changes and hand edits of the CRM, each of a kind that bumps update_time."""
    customers, orders, payments = shop
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["revalue", "new_order", "new_customer", "rename"])
        if kind == "revalue":
            i = rng.randrange(len(payments))
            payments[i] = (*payments[i][:3], rng.randint(1, 99_999))
        elif kind == "new_order":
            oid = max(o[0] for o in orders) + 1
            orders.append((oid, rng.choice(customers)[0], "2018-02-01", "placed"))
            payments.append((max(p[0] for p in payments) + 1, oid, "credit_card", rng.randint(1, 9_999)))
        elif kind == "new_customer":
            customers.append((max(c[0] for c in customers) + 1, f"New{len(customers)}", "Person"))
        else:
            i = rng.randrange(len(customers))
            customers[i] = (customers[i][0], f"Re{rng.randint(1, 999)}", customers[i][2])
    write_sources(sources, customers, orders, payments)
    person_code, deal_code = codes(sandbox)
    live_deals = sandbox.deals()
    live_persons = sandbox.persons()
    for _ in range(rng.randint(1, 3)):
        edit = rng.choice(["value", "title", "name", "delete_deal", "clear_id", "hand_deal", "relink", "restore"])
        deal = rng.choice(live_deals)
        if edit == "value":
            sandbox.store.patch_record("deal", deal["id"], {"value": float(rng.randint(0, 500))})
        elif edit == "title":
            sandbox.store.patch_record("deal", deal["id"], {"title": f"by hand {rng.randint(1, 99)}"})
        elif edit == "name":
            sandbox.store.patch_record("person", rng.choice(live_persons)["id"], {"name": "Renamed ByHand"})
        elif edit == "delete_deal":
            sandbox.store.delete("deal", deal["id"])
        elif edit == "clear_id":
            sandbox.store.patch_record("deal", deal["id"], {"custom_fields": {deal_code: None}})
        elif edit == "hand_deal":
            oid = str(rng.choice(orders)[0])
            sandbox.store.add_record("deal", {"title": "typed in by hand", "custom_fields": {deal_code: oid}})
        elif edit == "relink":
            sandbox.store.patch_record("deal", deal["id"], {"person_id": rng.choice(live_persons)["id"]})
        else:
            deleted = [r for r in sandbox.store.tables["deal"].records.values() if r["is_deleted"]]
            if deleted:
                sandbox.store.patch_record("deal", rng.choice(deleted)["id"], {"is_deleted": False})
    assert person_code  # the person field stays: deleting a person by hand is the documented full-read case


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_and_full_reads_make_the_same_plan_over_random_changes_and_hand_edits(
    tmp_path: Path, sandbox: Sandbox, seed: int
) -> None:
    rng = random.Random(seed)
    shop = small_shop(12, 30)
    write_sources(tmp_path, *shop)
    assert run_in(tmp_path, sandbox).exit_code == EXIT_OK
    for step in range(6):
        random_step(rng, tmp_path, sandbox, shop)
        full = comparable(plan_of(tmp_path, sandbox, full_read=True))
        incremental = comparable(plan_of(tmp_path, sandbox, full_read=False))
        assert incremental == full, f"seed {seed}, step {step}"
        run_in(tmp_path, sandbox)  # applies (exit 1 is fine: duplicates typed in by hand are left alone)


# ---- killed runs (#13) --------------------------------------------------------------------------------------


def _config(folder: Path) -> Path:
    config = {
        "sources": {name: str(folder / f"raw_{name}.csv") for name in ("customers", "orders", "payments")},
        "workdir": str(folder / "work"),
        "pipedrive": {"max_attempts": 2, "concurrency": 2},
    }
    path = folder / "sync.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _kill_when(folder: Path, sandbox: Sandbox, ready: Any) -> None:
    env = {**os.environ, "PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": sandbox.url}
    proc = subprocess.Popen(
        [SYNC_JOB, "run", "--config", str(_config(folder)), "--log-format", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)


def _lists(sandbox: Sandbox) -> int:
    """List requests for persons so far: the kill lands while the deals are still to be read."""
    return int(sandbox.stats()["requests"].get(("GET", "/api/v2/persons"), 0))


@pytest.mark.parametrize("moment", ["mid-read", "mid-apply"])
def test_a_run_killed_by_sigkill_is_repaired_exactly_by_the_next_run(
    tmp_path: Path, sandbox: Sandbox, moment: str
) -> None:
    shop = small_shop(20, 60)
    write_sources(tmp_path, *shop)
    assert run_in(tmp_path, sandbox).exit_code == EXIT_OK
    customers, orders, payments = shop
    payments[:] = [(pid, oid, method, amount + 7) for pid, oid, method, amount in payments]  # every deal re-valued
    orders.extend((oid, (oid % 20) + 1, "2018-03-01", "placed") for oid in range(61, 81))
    write_sources(tmp_path, customers, orders, payments)
    sandbox.configure(latency_ms=40)
    if moment == "mid-read":
        start = _lists(sandbox)
        _kill_when(tmp_path, sandbox, lambda: _lists(sandbox) > start)
    else:
        start = writes(sandbox)
        _kill_when(tmp_path, sandbox, lambda: writes(sandbox) >= start + 10)
    sandbox.configure(latency_ms=0)
    assert run_in(tmp_path, sandbox).exit_code == EXIT_OK
    assert_matches(sandbox, expected_from_csv(tmp_path), *codes(sandbox))
    before = writes(sandbox)
    assert run_in(tmp_path, sandbox).exit_code == EXIT_OK
    assert writes(sandbox) == before
    assert comparable(plan_of(tmp_path, sandbox, full_read=True)) == comparable(
        plan_of(tmp_path, sandbox, full_read=False)
    )
