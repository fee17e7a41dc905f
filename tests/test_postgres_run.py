"""`sync.run` with `destination.kind: postgres`: the same plan, dry run, report, results and exit codes as Pipedrive."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import polars as pl
import psycopg
import pytest

from sync_job import sync
from sync_job.config import POSTGRES_DSN_ENV
from sync_job.errors import EXIT_OK, ConfigError
from tests.e2e import expected_from_csv, settings_for, write_sources
from tests.pg_server import PgServer

CUSTOMERS = [(1, "Ada", "Lovelace"), (2, "Zoë", "O'Neil, Jr.")]
ORDERS = [(10, 1, "2020-01-01", "placed"), (11, 2, "2020-01-02", "shipped"), (12, 3, "2020-01-03", "placed")]
PAYMENTS = [(1, 10, "coupon", 1250), (2, 10, "credit_card", 1), (3, 11, "gift_card", 999)]


@pytest.fixture
def folder(tmp_path: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    monkeypatch.setenv(POSTGRES_DSN_ENV, pg.dsn)
    return tmp_path


def run(folder: Path, table: str, *, dry_run: bool = False) -> sync.RunOutcome:
    settings = settings_for(folder, "http://unused.invalid", destination={"kind": "postgres", "table": table})
    return sync.run(settings, sync.RunOptions(dry_run=dry_run))


def table_rows(dsn: str, table: str) -> dict[int, tuple[str, float]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT order_id, title, value FROM {table}").fetchall()  # noqa: S608 -- test-made name
    return {int(r[0]): (str(r[1]), float(r[2])) for r in rows}


def test_run_into_postgres_creates_the_table_then_a_rerun_writes_nothing(folder: Path, pg: PgServer) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    dry = run(folder, table, dry_run=True)
    assert dry.exit_code == EXIT_OK
    assert dry.report.plan["entities"][0]["creates"] == 2
    first = run(folder, table)
    assert first.exit_code == EXIT_OK
    expected = expected_from_csv(folder)
    assert table_rows(pg.dsn, table) == {int(k): (title, value) for k, (title, value, _) in expected.deals.items()}
    assert first.report.counts == {"row": {"create:ok": 2}}
    results = pl.read_csv(first.report.paths["results"])
    assert sorted(results["external_id"].to_list()) == [10, 11]
    second = run(folder, table)
    assert second.exit_code == EXIT_OK
    assert second.report.counts == {}
    report = json.loads(second.report_path.read_text())
    assert report["destination"] == "postgres"
    assert report["api"]["rows_unchanged"] == 2
    assert report["plan"]["entities"][0]["unchanged"] == 2


def test_a_changed_payment_updates_exactly_one_row(folder: Path, pg: PgServer) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    run(folder, table)
    write_sources(folder, CUSTOMERS, ORDERS, [*PAYMENTS, (4, 11, "coupon", 1)])
    outcome = run(folder, table)
    assert outcome.report.counts == {"row": {"update:ok": 1}}
    assert table_rows(pg.dsn, table)[11] == ("O'Neil, Jr. Zoë", 10.0)


def test_missing_dsn_is_a_config_error_before_fetching(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POSTGRES_DSN_ENV)
    with pytest.raises(ConfigError, match=POSTGRES_DSN_ENV):
        run(folder, "orders")
