"""`sync.run` with `destination.kind: postgres`: the same plan, dry run, report, results and exit codes as Pipedrive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import psycopg
import pytest
import yaml

from sync_job import sync
from sync_job.config import POSTGRES_DSN_ENV
from sync_job.destinations import postgres_sql as q
from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL, ConfigError, DataError
from sync_job.generate import generate
from tests.e2e import expected_from_csv, settings_for, write_sources
from tests.pg_server import PASSWORD, PgServer
from tests.test_postgres import execute

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))  # the installed console script
COLUMNS = ", ".join(f"{name} {kind}" for name, kind in q.COLUMNS.items()) + f", PRIMARY KEY ({q.KEY})"

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


def test_a_nul_byte_in_a_customer_name_names_the_source_file_and_line_and_writes_nothing(
    folder: Path, pg: PgServer
) -> None:
    """The source check finds it before PostgreSQL's COPY could name only its staging line."""
    table = f"orders_{uuid.uuid4().hex[:8]}"
    write_sources(folder, [*CUSTOMERS[:1], (2, "Zo\x00ë", "O'Neil")], ORDERS, PAYMENTS)
    with pytest.raises(DataError, match=r"raw_customers\.csv: line 3: NUL byte"):
        run(folder, table)
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute("SELECT to_regclass(%s)", [table]).fetchone() == (None,)


@pytest.fixture
def big(tmp_path: Path, pg: PgServer) -> tuple[Path, str]:
    """20,000 generated orders, a config for a fresh table, and its name."""
    table = f"orders_{uuid.uuid4().hex[:8]}"
    generate(tmp_path, orders=20_000, seed=3)
    config = {
        "sources": {n: str(tmp_path / f"raw_{n}.csv") for n in ("customers", "orders", "payments")},
        "workdir": str(tmp_path / "work"),
        "destination": {"kind": "postgres", "table": table},
    }
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, table


def start(config: Path, dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, POSTGRES_DSN_ENV: dsn}
    return subprocess.Popen(
        [SYNC_JOB, "run", "--config", str(config), "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines; every other stderr line must be one JSON log event."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if not line.startswith("error: "):
            json.loads(line)
    return [line for line in lines if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ("region text NOT NULL", "has NOT NULL column(s) region without a default"),  # seen before staging
        ("CONSTRAINT small CHECK (order_id < 10)", "applying: new row for relation"),  # only the INSERT finds it
    ],
    ids=["extra NOT NULL column", "CHECK"],
)
def test_a_table_rejecting_every_row_is_one_stderr_line_exit_2_and_no_per_row_results(
    big: tuple[Path, str], pg: PgServer, extra: str, said: str
) -> None:
    """The table rejects every row: the same every run, so a human must fix the table; nothing is written."""
    config, table = big
    execute(pg.dsn, f"CREATE TABLE {table} ({COLUMNS}, {extra})")
    proc = start(config, pg.dsn)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INPUT, stderr
    (error,) = error_lines(stderr)
    assert table in error
    assert said in error
    assert len(stderr.splitlines()) < 10  # not one warning per planned row
    assert "Failing row" not in stderr
    assert PASSWORD not in stderr
    results = config.parent / "work" / "results"
    assert not results.exists() or not any(results.iterdir())
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)  # noqa: S608 -- test-made name


def test_postgres_refusing_connections_is_exit_1_so_the_next_run_retries(big: tuple[Path, str], pg: PgServer) -> None:
    config, _ = big
    proc = start(config, pg.dsn_for(port=1))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PARTIAL, stderr
    (error,) = error_lines(stderr)
    assert "cannot connect to PostgreSQL" in error
    assert "Connection refused" in error


def sigterm_while_sleeping(config: Path, dsn: str, statement: str) -> str:
    """Run, send SIGTERM once the `statement` (INSERT, COPY) sleeps in the server; exit 1, no error line: stderr."""
    proc = start(config, dsn)
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while proc.poll() is None:
            found = watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE %s AND wait_event = 'PgSleep'", [f"{statement} %"]
            ).fetchone()
            if found:
                break
            time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PARTIAL, stderr
    assert error_lines(stderr) == []
    return stderr


def test_sigterm_during_a_large_insert_exits_1_with_one_summary_and_writes_nothing(
    big: tuple[Path, str], pg: PgServer
) -> None:
    """The INSERT is cancelled and rolled back; the report says so once, with no "skipped" result per row."""
    config, table = big
    execute(
        pg.dsn,
        f"CREATE TABLE {table} ({COLUMNS}); "
        f"CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.order_id = 15000 THEN PERFORM pg_sleep(60); END IF; RETURN NEW; END $$; "
        f"CREATE TRIGGER slow BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_slow()",
    )
    stderr = sigterm_while_sleeping(config, pg.dsn, "INSERT")  # on order 15000, with 14,999 rows in it
    assert len(stderr.splitlines()) < 10
    (path,) = (config.parent / "work" / "reports").glob("*.json")
    report = json.loads(path.read_text())
    assert report["status"] == "interrupted"
    planned = report["plan"]["entities"][0]["creates"]
    assert planned > 19_000
    assert f"rolled back, nothing was written ({planned:,} planned row(s)" in report["message"]
    assert report["counts"] == {}
    with psycopg.connect(pg.dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)  # noqa: S608 -- test-made name


def test_sigterm_while_copy_loads_the_staging_table_exits_1_and_writes_nothing(
    big: tuple[Path, str], pg: PgServer
) -> None:
    """The plan is cancelled mid-COPY (held there by a domain check that sleeps on one order id)."""
    config, table = big
    execute(
        pg.dsn,
        f"CREATE FUNCTION {table}_slow(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        f"IF id = 15000 THEN PERFORM pg_sleep(60); END IF; RETURN true; END $$; "
        f"CREATE DOMAIN {table}_id AS bigint CHECK ({table}_slow(VALUE)); "
        f"CREATE TABLE {table} ({COLUMNS.replace('order_id bigint', f'order_id {table}_id', 1)})",
    )
    sigterm_while_sleeping(config, pg.dsn, "COPY")
    report = json.loads((config.parent / "work" / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert "nothing was written" in report["message"]
    with psycopg.connect(pg.dsn) as conn:
        # The COPY was cancelled on the server, not left sleeping with the table locked against the next run.
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")  # type: ignore[call-overload]
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)  # noqa: S608 -- test-made name
