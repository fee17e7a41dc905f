"""The PostgreSQL destination takes the mapped fields too: a typed column per field of `deals.fields` (real server)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sync_job import sync
from sync_job.config import POSTGRES_DSN_ENV
from sync_job.errors import EXIT_INPUT, EXIT_OK, ConfigError, DataError
from tests.e2e import settings_for, write_sources
from tests.pg_server import PgServer

CUSTOMERS = [(1, "Ada", "Lovelace"), (2, "Zoë", "O'Neil, Jr.")]
ORDERS = [(10, 1, "2020-01-01", "placed"), (11, 2, "2020-01-02", "completed"), (12, 2, "2020-01-03", "returned")]
PAYMENTS = [(1, 10, "coupon", 1250), (2, 10, "credit_card", 1), (3, 11, "gift_card", 999)]
FIELDS = {
    "expected_close_date": "order_date",
    "Order status": {"value": "status", "type": "enum"},
    "Payments": {"value": "payment_count", "type": "double"},
}


@pytest.fixture
def folder(tmp_path: Path, pg: PgServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    monkeypatch.setenv(POSTGRES_DSN_ENV, pg.dsn)
    return tmp_path


def run(folder: Path, table: str, fields: dict[str, Any] = FIELDS) -> sync.RunOutcome:
    settings = settings_for(
        folder, "http://unused.invalid", destination={"kind": "postgres", "table": table}, deals={"fields": fields}
    )
    return sync.run(settings, sync.RunOptions())


def column_types(dsn: str, table: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table],
        ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def test_mapped_fields_become_typed_columns_filled_per_row_and_a_rerun_writes_nothing(
    folder: Path, pg: PgServer
) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    first = run(folder, table)
    assert first.exit_code == EXIT_OK, first.report.message
    types = column_types(pg.dsn, table)
    assert (types["expected_close_date"], types["Order status"], types["Payments"]) == (
        "date",
        "text",
        "double precision",
    )
    with psycopg.connect(pg.dsn) as conn:
        rows = conn.execute(
            f'SELECT order_id, expected_close_date::text, "Order status", "Payments" FROM {table} ORDER BY order_id'  # noqa: S608
        ).fetchall()
    assert rows == [
        (10, "2020-01-01", "placed", 2.0),
        (11, "2020-01-02", "completed", 1.0),
        (12, "2020-01-03", "returned", 0.0),
    ]
    again = run(folder, table)
    assert again.exit_code == EXIT_OK
    assert again.report.counts == {}


def test_a_field_mapped_later_adds_its_column_to_the_existing_table_and_fills_it(folder: Path, pg: PgServer) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    assert run(folder, table, fields={}).exit_code == EXIT_OK
    later = run(folder, table, fields={"Payments": {"value": "payment_count", "type": "double"}})
    assert later.exit_code == EXIT_OK, later.report.message
    assert later.report.counts == {"row": {"update:ok": 3}}
    assert column_types(pg.dsn, table)["Payments"] == "double precision"


def test_a_value_the_column_cannot_hold_stops_the_run_naming_order_field_and_value(folder: Path, pg: PgServer) -> None:
    table = f"orders_{uuid.uuid4().hex[:8]}"
    fields = {"expected_close_date": "CASE WHEN order_id = 11 THEN 'soon' ELSE '2020-01-01' END"}
    with pytest.raises(DataError, match=r"deal 11: expected_close_date .*'soon'") as caught:
        run(folder, table, fields=fields)
    assert caught.value.exit_code == EXIT_INPUT


def test_a_mapped_field_named_like_a_combined_column_is_a_config_error(folder: Path, pg: PgServer) -> None:
    with pytest.raises(ConfigError, match="already has a column 'status'"):
        run(folder, f"orders_{uuid.uuid4().hex[:8]}", fields={"status": "'open'"})


def test_persons_fields_are_refused_for_the_postgres_destination_before_anything_is_read(
    folder: Path, pg: PgServer
) -> None:
    settings = settings_for(
        folder,
        "http://unused.invalid",
        destination={"kind": "postgres", "table": "t"},
        persons={"fields": {"emails": "first_name"}},
    )
    with pytest.raises(ConfigError, match=r"persons\.fields is not supported by the postgres destination"):
        sync.run(settings, sync.RunOptions())
