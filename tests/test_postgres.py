"""PostgreSQL destination against a real server started for the session on 127.0.0.1."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import uuid
from typing import Any

import polars as pl
import psycopg
import pytest
import stamina

from sync_job import config
from sync_job.destinations import postgres
from sync_job.destinations.base import Plan, RecordResult
from sync_job.destinations.postgres import PostgresDestination
from sync_job.errors import EXIT_INPUT, EXIT_PARTIAL, AuthError, ConfigError, DataError, Interrupted, Unavailable
from tests.pg_server import PASSWORD, PgServer

NO_CUSTOMERS = pl.DataFrame(schema={"id": pl.Int64, "first_name": pl.Utf8, "last_name": pl.Utf8})


@pytest.fixture
def table() -> str:
    return f"orders_{uuid.uuid4().hex[:10]}"


def orders(n: int, *, start: int = 1, value_offset: float = 0.0) -> pl.DataFrame:
    """A combined frame of n orders, with a null, an empty string and non-ASCII text among them."""
    ids = list(range(start, start + n))
    return pl.DataFrame(
        {
            "order_id": ids,
            "customer_id": [i % 7 + 1 for i in ids],
            "first_name": ["Zoë" if i % 3 else "" for i in ids],
            "last_name": ["O'Neil, Jr." if i % 2 else None for i in ids],
            "title": [f"O'Neil {i}" for i in ids],
            "order_date": [dt.date(2024, 1, 1) + dt.timedelta(days=i % 300) for i in ids],
            "status": ["completed" if i % 4 else "returned" for i in ids],
            "payment_count": pl.Series([i % 3 for i in ids], dtype=pl.UInt32),
            "amount_cents": [i * 101 for i in ids],
            "value": [i * 1.01 + value_offset for i in ids],
        },
        schema_overrides={"order_id": pl.Int64, "customer_id": pl.Int64, "amount_cents": pl.Int64},
    )


async def sync(
    dsn: str,
    table: str,
    frame: pl.DataFrame,
    stop: asyncio.Event | None = None,
    results: list[RecordResult] | None = None,
) -> tuple[Plan, list[RecordResult], dict[str, object]]:
    destination = PostgresDestination(dsn, table)
    results = [] if results is None else results
    try:
        plan = await destination.plan(frame, NO_CUSTOMERS)
        await destination.apply(plan, results.append, stop or asyncio.Event())
    finally:
        await destination.aclose()
    return plan, results, destination.usage()


def rows(dsn: str, table: str) -> dict[int, tuple[Any, ...]]:
    """order_id -> (xmin, value, title): xmin changes exactly when a row is rewritten."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(f"SELECT order_id, xmin::text, value, title FROM {table}").fetchall()  # noqa: S608
    return {r[0]: tuple(r[1:]) for r in found}


def table_exists(dsn: str, table: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()
    return row is not None and row[0] is not None


def execute(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[call-overload]


async def test_initial_sync_creates_the_table_and_inserts_every_row(pg: PgServer, table: str) -> None:
    frame = orders(50)
    plan, results, usage = await sync(pg.dsn, table, frame)
    (entity,) = plan.entities
    assert (entity.creates.height, entity.updates.height, entity.unchanged) == (50, 0, 0)
    assert [r.outcome for r in results] == ["ok"] * 50
    assert {r.action for r in results} == {"create"}
    assert results[0].external_id == "1"
    assert results[0].destination_id == 1
    assert usage["rows_inserted"] == 50
    assert usage["rows_updated"] == 0
    with psycopg.connect(pg.dsn) as conn:
        back = conn.execute(f"SELECT first_name, last_name, value FROM {table} WHERE order_id = 3").fetchone()  # noqa: S608
    assert back is not None
    assert back[0] == ""
    assert back[1] == "O'Neil, Jr."
    assert float(back[2]) == 3.03


async def test_resync_without_changes_rewrites_nothing(pg: PgServer, table: str) -> None:
    await sync(pg.dsn, table, orders(40))
    before = rows(pg.dsn, table)
    plan, results, usage = await sync(pg.dsn, table, orders(40))
    assert plan.writes == 0
    assert plan.entities[0].unchanged == 40
    assert results == []
    assert usage["rows_inserted"] == 0
    assert usage["rows_updated"] == 0
    assert rows(pg.dsn, table) == before  # same xmin: no row was rewritten


async def test_k_changed_rows_are_updated_new_rows_inserted_and_others_untouched(pg: PgServer, table: str) -> None:
    await sync(pg.dsn, table, orders(30))
    before = rows(pg.dsn, table)
    changed = orders(30).with_columns(
        value=pl.when(pl.col("order_id").is_in([4, 9, 17])).then(pl.col("value") + 1).otherwise(pl.col("value")),
        title=pl.when(pl.col("order_id") == 9).then(pl.lit("Renamed")).otherwise(pl.col("title")),
    )
    frame = pl.concat([changed.filter(pl.col("order_id") > 2), orders(2, start=100)])  # 1 and 2 leave the source
    plan, results, usage = await sync(pg.dsn, table, frame)
    entity = plan.entities[0]
    assert sorted(entity.updates["order_id"].to_list()) == [4, 9, 17]
    assert entity.creates["order_id"].to_list() == [100, 101]
    assert entity.unchanged == 28 - 3
    row9 = entity.updates.filter(pl.col("order_id") == 9).row(0, named=True)
    assert sorted(row9["changed"]) == ["title", "value"]
    assert row9["old_title"] == "O'Neil 9"
    assert usage["rows_updated"] == 3
    assert usage["rows_inserted"] == 2
    assert sorted((r.action, r.external_id) for r in results) == [
        ("create", "100"), ("create", "101"), ("update", "17"), ("update", "4"), ("update", "9"),
    ]  # fmt: skip
    after = rows(pg.dsn, table)
    rewritten = {k for k in before if after[k][0] != before[k][0]}
    assert rewritten == {4, 9, 17}  # unchanged rows, and rows gone from the source, keep their xmin
    assert after[1] == before[1]
    assert after[9][2] == "Renamed"


async def test_value_is_stored_to_the_cent_so_float_noise_is_not_a_change(pg: PgServer, table: str) -> None:
    await sync(pg.dsn, table, orders(5))
    plan, _, _ = await sync(pg.dsn, table, orders(5, value_offset=1e-9))
    assert plan.writes == 0


async def test_a_trigger_rejecting_one_row_is_one_error_and_rolls_back_the_whole_run(pg: PgServer, table: str) -> None:
    """A statement fails as a whole: one exit-2 error, not one failed result per planned row; the table is unchanged."""
    await sync(pg.dsn, table, orders(20))
    execute(
        pg.dsn,
        f"CREATE FUNCTION {table}_reject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.order_id = 15 THEN RAISE EXCEPTION 'order 15 is frozen'; END IF; RETURN NEW; END $$; "
        f"CREATE TRIGGER reject BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_reject()",
    )
    before = rows(pg.dsn, table)
    results: list[RecordResult] = []
    with pytest.raises(ConfigError, match="order 15 is frozen") as caught:
        await sync(pg.dsn, table, pl.concat([orders(20, value_offset=5), orders(3, start=50)]), results=results)
    assert caught.value.exit_code == EXIT_INPUT
    assert "\n" not in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert results == []
    assert rows(pg.dsn, table) == before


async def test_a_check_rejecting_every_row_is_one_error_naming_it_without_any_row_data(
    pg: PgServer, table: str
) -> None:
    """The table rejects the INSERT as a whole: one exit-2 error naming the constraint, never "Failing row contains"."""
    await sync(pg.dsn, table, orders(10))
    execute(pg.dsn, f"ALTER TABLE {table} ADD CONSTRAINT small_orders CHECK (order_id < 1000) NOT VALID")
    before = rows(pg.dsn, table)
    results: list[RecordResult] = []
    with pytest.raises(ConfigError) as caught:
        await sync(pg.dsn, table, orders(20_000, value_offset=1), results=results)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_INPUT
    assert f"PostgreSQL table {table}, applying" in message
    assert '"small_orders"' in message
    for personal in ("Failing row", "Zoë", "O'Neil", "2024-"):
        assert personal not in message
    assert "\n" not in message
    assert results == []
    assert rows(pg.dsn, table) == before


async def test_an_extra_not_null_column_without_a_default_is_refused_before_staging(pg: PgServer, table: str) -> None:
    """Every insert would fail on it: the plan says so (a dry run too), naming the column, and writes nothing."""
    await sync(pg.dsn, table, orders(10))
    execute(pg.dsn, f"ALTER TABLE {table} ADD COLUMN region text NOT NULL DEFAULT 'eu'")
    execute(pg.dsn, f"ALTER TABLE {table} ALTER COLUMN region DROP DEFAULT")
    before = rows(pg.dsn, table)
    destination = PostgresDestination(pg.dsn, table)
    with pytest.raises(ConfigError, match=r"has NOT NULL column\(s\) region without a default") as caught:
        await destination.plan(orders(20_000, value_offset=1), NO_CUSTOMERS)
    await destination.aclose()
    assert caught.value.exit_code == EXIT_INPUT
    assert rows(pg.dsn, table) == before


async def test_extra_not_null_columns_postgresql_fills_itself_are_accepted(pg: PgServer, table: str) -> None:
    await sync(pg.dsn, table, orders(10))
    execute(
        pg.dsn,
        f"ALTER TABLE {table} ADD COLUMN region text NOT NULL DEFAULT 'eu', "
        f"ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY, "
        f"ADD COLUMN twice bigint NOT NULL GENERATED ALWAYS AS (order_id * 2) STORED",
    )
    _, results, _ = await sync(pg.dsn, table, orders(12))
    assert [r.action for r in results] == ["create", "create"]
    assert len(rows(pg.dsn, table)) == 12


async def test_stop_before_apply_rolls_back_and_says_nothing_was_written(pg: PgServer, table: str) -> None:
    stop = asyncio.Event()
    stop.set()
    results: list[RecordResult] = []
    with pytest.raises(Interrupted, match=r"nothing was written \(10 planned row"):
        await sync(pg.dsn, table, orders(10), stop, results=results)
    assert results == []  # one summary, not a "skipped" result per planned row
    assert not table_exists(pg.dsn, table)  # even the table creation was rolled back


async def until_running(dsn: str, task: asyncio.Task[Any], query: str) -> int:
    """Wait until a backend runs a statement LIKE `query` (or the task ended: then 0); return its pid."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as watcher:
        while not task.done():
            cur = await watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()", [query]
            )
            found = await cur.fetchone()
            if found:
                return int(found[0])
            await asyncio.sleep(0.05)
    return 0


async def slow_updates(dsn: str, table: str) -> dict[int, tuple[Any, ...]]:
    """Five synced rows, then a trigger that makes every UPDATE of them sleep a minute; the rows as they are."""
    await sync(dsn, table, orders(5))
    execute(
        dsn,
        f"CREATE FUNCTION {table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"PERFORM pg_sleep(60); RETURN NEW; END $$; "
        f"CREATE TRIGGER slow BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_slow()",
    )
    return rows(dsn, table)


async def test_stop_during_a_long_upsert_cancels_it_on_the_server(pg: PgServer, table: str) -> None:
    before = await slow_updates(pg.dsn, table)
    stop = asyncio.Event()
    results: list[RecordResult] = []
    task = asyncio.create_task(sync(pg.dsn, table, orders(5, value_offset=1), stop, results=results))
    assert await until_running(pg.dsn, task, "UPDATE %")
    stop.set()
    with pytest.raises(Interrupted, match="rolled back, nothing was written"):
        await task
    assert results == []
    assert rows(pg.dsn, table) == before


async def test_dry_run_plans_without_writing_anything(pg: PgServer, table: str) -> None:
    destination = PostgresDestination(pg.dsn, table)
    plan = await destination.plan(orders(10), NO_CUSTOMERS)
    await destination.aclose()
    assert plan.writes == 10
    assert plan.notes
    assert not table_exists(pg.dsn, table)
    await sync(pg.dsn, table, orders(10))
    before = rows(pg.dsn, table)
    destination = PostgresDestination(pg.dsn, table)
    plan = await destination.plan(orders(10, value_offset=2), NO_CUSTOMERS)
    await destination.aclose()
    assert plan.entities[0].updates.height == 10
    assert rows(pg.dsn, table) == before


@pytest.mark.parametrize("name", ["orders; drop table x", "a.b.c", "1orders", "", "ord-ers"])
def test_an_invalid_table_name_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match=r"destination\.table"):
        PostgresDestination("host=127.0.0.1", name)


def test_a_missing_dsn_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.POSTGRES_DSN_ENV, raising=False)
    with pytest.raises(ConfigError, match=config.POSTGRES_DSN_ENV):
        config.postgres_dsn()


def test_a_malformed_dsn_is_a_config_error_that_hides_it() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresDestination("host=h password=se cret", "orders")
    assert "cret" not in str(caught.value)


async def test_a_refused_connection_may_pass_later_so_it_is_exit_1_without_the_password(
    pg: PgServer, table: str
) -> None:
    destination = PostgresDestination(pg.dsn_for(port=1), table)
    with pytest.raises(Unavailable, match="cannot connect to PostgreSQL") as caught:
        await destination.plan(orders(1), NO_CUSTOMERS)
    assert caught.value.exit_code == EXIT_PARTIAL
    assert PASSWORD not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    await destination.aclose()


async def test_a_refused_connection_is_retried_a_bounded_number_of_times(pg: PgServer, table: str) -> None:
    destination = PostgresDestination(pg.dsn_for(port=1), table)
    with stamina.set_testing(True, attempts=10, cap=True), pytest.raises(Unavailable, match=r"\(tried 3 times\)$"):
        await destination.plan(orders(1), NO_CUSTOMERS)
    await destination.aclose()


async def test_a_server_that_accepts_and_never_answers_times_out_by_default(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DSN without connect_timeout still gives up: psycopg alone would wait 130 s per attempt."""
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT", 2)  # psycopg's minimum; the default is 10
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        destination = PostgresDestination(f"host=127.0.0.1 port={port} user=u password=p dbname=d", table)
        with stamina.set_testing(True, attempts=1), pytest.raises(Unavailable, match="timeout"):
            await asyncio.wait_for(destination.plan(orders(1), NO_CUSTOMERS), timeout=60)
        await destination.aclose()


async def test_a_role_at_its_connection_limit_may_pass_later_so_it_is_exit_1(pg: PgServer, table: str) -> None:
    role = f"r_{table}"
    execute(pg.dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'x' CONNECTION LIMIT 1")
    async with await psycopg.AsyncConnection.connect(pg.dsn_for(user=role, password="x")):
        destination = PostgresDestination(pg.dsn_for(user=role, password="x"), table)
        with stamina.set_testing(True), pytest.raises(Unavailable, match="too many connections for role"):
            await destination.plan(orders(1), NO_CUSTOMERS)
        await destination.aclose()


async def test_a_database_that_does_not_exist_needs_a_human_so_it_is_exit_2(pg: PgServer, table: str) -> None:
    destination = PostgresDestination(pg.dsn_for(dbname="no_such_db"), table)
    with pytest.raises(ConfigError, match='database "no_such_db" does not exist'):
        await destination.plan(orders(1), NO_CUSTOMERS)
    await destination.aclose()


async def test_the_server_ending_the_connection_during_copy_is_exit_1_and_writes_nothing(
    pg: PgServer, table: str
) -> None:
    """pg_terminate_backend while COPY loads the staging table (held there by a slow domain check on one row)."""
    execute(
        pg.dsn,
        f"CREATE FUNCTION {table}_slow(t text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
        f"IF t = 'O''Neil 15000' THEN PERFORM pg_sleep(60); END IF; RETURN true; END $$; "
        f"CREATE DOMAIN {table}_title AS text CHECK ({table}_slow(VALUE)); "
        f"CREATE TABLE {table} (order_id bigint PRIMARY KEY, customer_id bigint, first_name text, last_name text, "
        f"title {table}_title, order_date date, status text, payment_count int, amount_cents bigint, value numeric)",
    )
    task = asyncio.create_task(sync(pg.dsn, table, orders(20_000)))
    pid = await until_running(pg.dsn, task, "COPY %")
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as killer:
        while not task.done():  # the COPY runs until row 15000 is checked: then it sleeps, and is ended
            cur = await killer.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", [pid])
            found = await cur.fetchone()
            if found and found[0] == "PgSleep":
                await killer.execute("SELECT pg_terminate_backend(%s)", [pid])
                break
            await asyncio.sleep(0.05)
    with pytest.raises(Unavailable, match=f"PostgreSQL table {table}, planning: terminating connection") as caught:
        await task
    assert caught.value.exit_code == EXIT_PARTIAL
    assert "\n" not in str(caught.value)
    assert rows(pg.dsn, table) == {}


async def test_the_server_ending_the_connection_during_apply_is_exit_1_and_writes_nothing(
    pg: PgServer, table: str
) -> None:
    before = await slow_updates(pg.dsn, table)
    results: list[RecordResult] = []
    task = asyncio.create_task(sync(pg.dsn, table, orders(5, value_offset=1), results=results))
    pid = await until_running(pg.dsn, task, "UPDATE %")
    execute(pg.dsn, f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(Unavailable, match=f"PostgreSQL table {table}, applying"):
        await task
    assert results == []
    assert rows(pg.dsn, table) == before


@pytest.mark.parametrize("form", ["keywords", "url"])
async def test_a_wrong_password_is_an_auth_error_that_never_shows_it(pg: PgServer, table: str, form: str) -> None:
    secret = "wrong-Secret-123"
    dsn = pg.dsn_for(password=secret) if form == "keywords" else f"postgresql://postgres:{secret}@127.0.0.1:{pg.port}/x"
    destination = PostgresDestination(dsn, table)
    with pytest.raises(AuthError) as caught:
        await destination.plan(orders(1), NO_CUSTOMERS)
    assert secret not in str(caught.value)
    assert "authentication failed" in str(caught.value)


async def test_an_existing_table_without_our_columns_or_key_is_refused(pg: PgServer, table: str) -> None:
    execute(pg.dsn, f"CREATE TABLE {table} (order_id bigint PRIMARY KEY, title text)")
    with pytest.raises(ConfigError, match="lacks column"):
        await sync(pg.dsn, table, orders(2))
    other = table + "_nokey"
    columns = "order_id bigint, customer_id bigint, first_name text, last_name text, title text, order_date date"
    execute(
        pg.dsn, f"CREATE TABLE {other} ({columns}, status text, payment_count int, amount_cents bigint, value real)"
    )
    with pytest.raises(ConfigError, match="unique index on order_id"):
        await sync(pg.dsn, other, orders(2))


async def test_duplicate_order_ids_in_the_frame_are_a_data_error(pg: PgServer, table: str) -> None:
    with pytest.raises(DataError, match="order_id"):
        await sync(pg.dsn, table, pl.concat([orders(3), orders(1)]))


async def test_a_value_too_large_for_the_column_is_a_data_error_and_writes_nothing(pg: PgServer, table: str) -> None:
    frame = orders(3).with_columns(value=pl.when(pl.col("order_id") == 2).then(1e20).otherwise(pl.col("value")))
    with pytest.raises(DataError, match=table) as caught:
        await sync(pg.dsn, table, frame)
    assert str(caught.value).endswith("(order_id 2, column value)")
    assert not table_exists(pg.dsn, table)


async def test_two_first_runs_into_one_new_table_both_succeed_and_leave_it_exact(pg: PgServer, table: str) -> None:
    """The second run waits for the first one's CREATE TABLE to commit, then finds its rows unchanged."""
    first, second = PostgresDestination(pg.dsn, table), PostgresDestination(pg.dsn, table)
    try:
        first_plan = await first.plan(orders(30), NO_CUSTOMERS)  # created the table, not committed yet
        second_planning = asyncio.create_task(second.plan(orders(30), NO_CUSTOMERS))
        async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as watcher:
            while not second_planning.done():  # until the second run waits for a lock the first one holds
                cur = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND %s = ANY "
                    "(pg_blocking_pids(pid))",
                    [first.backend_pid],
                )
                found = await cur.fetchone()
                if found and found[0]:
                    break
                await asyncio.sleep(0.05)
        assert not second_planning.done()
        first_results: list[RecordResult] = []
        await first.apply(first_plan, first_results.append, asyncio.Event())
        second_plan = await second_planning
        second_results: list[RecordResult] = []
        await second.apply(second_plan, second_results.append, asyncio.Event())
    finally:
        await first.aclose()
        await second.aclose()
    assert len(first_results) == 30
    assert second_plan.writes == 0
    assert second_plan.entities[0].unchanged == 30
    assert not second_plan.notes  # it did not create the table
    assert len(rows(pg.dsn, table)) == 30


@pytest.mark.parametrize("name", ["pg_temp.orders", "PG_TEMP.orders", "pg_catalog.orders", "information_schema.x"])
def test_a_table_in_a_schema_of_postgresql_itself_is_refused(name: str) -> None:
    """pg_temp's tables vanish with the session: a run would report every row created and keep none."""
    with pytest.raises(ConfigError, match=r"destination\.table .* belongs to PostgreSQL"):
        PostgresDestination("host=127.0.0.1", name)


async def test_a_mixed_case_name_warns_that_it_is_case_sensitive(
    pg: PgServer, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = table.replace("orders", "Orders")
    await sync(pg.dsn, name, orders(3))
    assert "is case-sensitive" in caplog.text
    assert f'"{name}"' in caplog.text
    assert len(rows(pg.dsn, f'"{name}"')) == 3
    assert not table_exists(pg.dsn, table)


async def test_a_mixed_case_name_never_creates_a_second_table_beside_its_lower_case_twin(
    pg: PgServer, table: str
) -> None:
    await sync(pg.dsn, table, orders(3))
    name = table.replace("orders", "Orders")
    with pytest.raises(ConfigError, match=f"would create a second table beside the existing {table}"):
        await sync(pg.dsn, name, orders(3))
    assert not table_exists(pg.dsn, f'"{name}"')


async def test_a_nul_byte_in_a_name_names_the_source_and_its_key_before_connecting(pg: PgServer, table: str) -> None:
    frame = orders(5).with_columns(
        last_name=pl.when(pl.col("order_id") == 4).then(pl.lit("Mül\x00ler")).otherwise(pl.col("last_name"))
    )
    with pytest.raises(DataError, match=r"sources\.customers: the row with id 5 has a NUL byte in last_name"):
        await sync(pg.dsn, table, frame)
    assert not table_exists(pg.dsn, table)
