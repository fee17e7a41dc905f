"""A dry run's whole plan in WORKDIR/plans/<run_id>.csv, and its samples as aligned old → new lines."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from sync_job import plans, sync
from sync_job.config import POSTGRES_DSN_ENV
from sync_job.console import RunConsole
from sync_job.destinations.base import EntityPlan, Plan
from sync_job.report import RunReport
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, codes, crm_state, settings_for, write_sources, writes
from tests.pg_server import PgServer

NO_DUPLICATES = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})


def deal_plan() -> Plan:
    creates = pl.DataFrame({"external_id": ["7"], "title": ["Lovelace Ada"], "value": [12.5]})
    updates = pl.DataFrame(
        {
            "external_id": ["3", "4"],
            "id": [30, 40],
            "title": ["Turing Alan", "Hopper Grace"],
            "value": [9.99, 1.0],
            "old_title": ["Turing Alan", "edited"],
            "old_value": [5.0, 1.0],
            "changed": [["value"], ["title"]],
        }
    )
    return Plan((EntityPlan("deal", "external_id", creates, updates, unchanged=2, duplicates=NO_DUPLICATES),))


def test_the_plan_lists_every_field_of_a_create_and_only_the_changed_fields_of_an_update() -> None:
    rows = plans.changes(deal_plan()).rows()
    assert rows == [
        ("deal", "7", "create", "title", None, "Lovelace Ada"),
        ("deal", "7", "create", "value", None, "12.5"),
        ("deal", "3", "update", "value", "5.0", "9.99"),
        ("deal", "4", "update", "title", "edited", "Hopper Grace"),
    ]


def test_a_dry_run_writes_the_whole_plan_not_just_samples_and_sends_nothing(tmp_path: Path, sandbox: Sandbox) -> None:
    customers = [(i, f"First{i}", f"Last{i}") for i in range(1, 13)]
    orders = [(100 + i, i, "2024-01-02", "placed") for i in range(1, 13)]
    payments = [(1000 + i, 100 + i, "card", 100 * i) for i in range(1, 13)]
    write_sources(tmp_path, customers, orders, payments)
    settings = settings_for(tmp_path, sandbox.url)
    sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))  # the CRM now holds all 12
    _, deals = crm_state(sandbox, *codes(sandbox))
    sandbox.store.patch_record("deal", deals["105"][0]["id"], {"value": 1.0})
    write_sources(tmp_path, [*customers, *[(i, f"New{i}", "Person") for i in range(13, 21)]], orders, payments)
    before = writes(sandbox)

    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url, dry_run=True))

    assert writes(sandbox) == before
    path = Path(outcome.report.paths["plan"])
    assert path == settings.workdir / "plans" / f"{outcome.report.run_id}.csv"
    plan = pl.read_csv(path, infer_schema=False)
    assert plan.columns == plans.COLUMNS
    creates = plan.filter(pl.col("action") == "create")
    assert sorted(creates["external_id"].to_list(), key=int) == [str(i) for i in range(13, 21)]  # all 8, not 5
    assert set(creates["field"]) == {"name"}
    assert plan.filter(pl.col("action") == "update").rows() == [("deal", "105", "update", "value", "1.0", "5.0")]


def test_a_plan_file_that_cannot_be_put_in_place_leaves_no_temporary_file(tmp_path: Path) -> None:
    """Once left `.<run_id>.csv.tmp` behind whenever the rename failed (here: a folder holds the file's name)."""
    (tmp_path / "plans" / "r1.csv").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        plans.write(deal_plan(), tmp_path, "r1")
    assert sorted(p.name for p in (tmp_path / "plans").iterdir()) == ["r1.csv"]


def test_the_samples_are_aligned_old_to_new_lines() -> None:
    summary = {
        "entities": [
            {
                "entity": "deal",
                "sample_updates": [
                    {"key": "3", "id": 30, "changes": {"value": {"old": 5.0, "new": 9.99}}},
                    {"key": "1204", "id": 40, "changes": {"title": {"old": "edited", "new": "Hopper Grace"}}},
                ],
                "sample_creates": [{"external_id": "7", "title": "Lovelace Ada", "value": 12.5}],
            },
            {"entity": "person", "sample_updates": [], "sample_creates": [{"external_id": "12", "name": ""}]},
        ]
    }
    lines = plans.sample_lines(summary)
    assert lines == [
        "~  deal    3     value  5.0 → 9.99",
        "~  deal    1204  title  edited → Hopper Grace",
        "+  deal    7            title=Lovelace Ada, value=12.5",
        "+  person  12           name=∅",
    ]


def test_sample_lines_show_a_mirror_delete_with_its_pipedrive_id() -> None:
    summary = {"entities": [{"entity": "deal", "sample_deletes": [{"key": "4", "id": 412}], "sample_creates": []}]}
    assert plans.sample_lines(summary) == ["-  deal  4  id  412"]


def test_the_summary_table_on_a_terminal_is_as_wide_as_its_title() -> None:
    ui = RunConsole(rich_output=True)
    out = io.StringIO()
    ui.console = Console(file=out, width=120, color_system=None)
    report = RunReport("20260301T030000.000000Z-42", "pipedrive", status="budget_exhausted")
    report.counts = {"deal": {"create:ok": 3}}
    ui.show_summary(report)
    assert "BUDGET_EXHAUSTED  (run 20260301T030000.000000Z-42)" in out.getvalue().splitlines()[0]


def test_a_postgres_dry_run_plans_each_changed_column_old_to_new(
    tmp_path: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers, orders = [(1, "Ada", "Lovelace")], [(10, 1, "2020-01-01", "placed"), (11, 1, "2020-01-02", "placed")]
    write_sources(tmp_path, customers, orders, [(1, 10, "card", 1250), (2, 11, "card", 500)])
    monkeypatch.setenv(POSTGRES_DSN_ENV, pg.dsn)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path, "http://unused.invalid", destination={"kind": "postgres", "table": table})
    assert sync.run(settings, sync.RunOptions()).exit_code == 0
    write_sources(tmp_path, customers, orders, [(1, 10, "card", 1250), (2, 11, "card", 750)])
    outcome = sync.run(settings, sync.RunOptions(dry_run=True))
    plan = pl.read_csv(outcome.report.paths["plan"], infer_schema=False)
    assert sorted(plan.rows()) == [
        ("row", "11", "update", "amount_cents", "500", "750"),
        ("row", "11", "update", "value", "5.0", "7.5"),
    ]


def test_the_terminal_plan_shows_the_plans_notes() -> None:
    ui = RunConsole(rich_output=True)
    out = io.StringIO()
    ui.console = Console(file=out, width=120, color_system=None)
    note = "the deals custom field 'Order status' (enum) is created with option(s) 'placed', 'returned'"
    ui.show_plan({"entities": [], "notes": [note]})
    assert f"Note: {note}" in out.getvalue()
