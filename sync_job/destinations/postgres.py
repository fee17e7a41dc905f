"""PostgreSQL destination: COPY the combined frame into a staging table, diff in SQL, write in one transaction.

Connection and transaction lifecycle (one connection, one transaction per run):

    plan()   connect (retried); BEGIN (implicit); create the target table if missing (postgres_table); LOCK it
             against other writers; CREATE TEMP TABLE staging ... ON COMMIT DROP; COPY the combined rows in; one
             LEFT JOIN keeps the new and the differing rows in a second temp table (`changes`), read back as the
             plan's frames
    apply()  UPDATE ... FROM changes WHERE row IS DISTINCT FROM; INSERT ... SELECT FROM changes; COMMIT
             (or ROLLBACK and raise one error, classified by postgres_errors, or Interrupted when `stop` is set:
             the table is exactly as it was, and no row has a result)
    aclose() ROLLBACK whatever is still open (a dry run ends here: even a table created by plan() vanishes); close

The staging table lives only inside that transaction, which is why plan and apply must share the connection.
The table lock (SHARE ROW EXCLUSIVE: readers go on, writers wait) makes the plan exactly what apply writes, so
a plain INSERT cannot meet a duplicate key and unchanged rows are never rewritten (their xmin stays).
Rows in the table that are not in the source are left untouched, as with Pipedrive.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import polars as pl
import psycopg
import stamina
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from sync_job import errors, mapping
from sync_job.config import POSTGRES_DSN_ENV
from sync_job.destinations import postgres_sql as q
from sync_job.destinations import postgres_table
from sync_job.destinations.base import Action, EntityPlan, Plan, RecordResult
from sync_job.destinations.postgres_errors import classify, describe
from sync_job.errors import AuthError, ConfigError, DataError, Interrupted, SyncError, Unavailable
from sync_job.pipedrive import kinds
from sync_job.pipedrive.kinds import Kind

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000
LOCK_TIMEOUT = "30s"
CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT = 10  # seconds per attempt, unless the DSN sets connect_timeout
# Where each text column of the combined frame comes from: the source to fix and the key that finds the row.
_ORIGIN = {"first_name": ("customers", "customer_id"), "last_name": ("customers", "customer_id"),
           "title": ("customers", "customer_id"), "status": ("orders", "order_id")}  # fmt: skip


class PostgresDestination:
    """Syncs the combined frame into one table keyed by order_id (see the module docstring for the lifecycle)."""

    kind = "postgres"

    def __init__(
        self, dsn: str, table: str, *, chunk_rows: int = CHUNK_ROWS, field_mapping: mapping.Mapping | None = None
    ) -> None:
        parts = postgres_table.parse_name(table)
        try:
            conninfo_to_dict(dsn)
        except psycopg.Error:
            # libpq's parse error quotes pieces of the string, which may be the password: say less.
            raise ConfigError(
                f"{POSTGRES_DSN_ENV} is not a valid connection string (use key=value pairs or a postgresql:// URL)"
            ) from None
        self.table = table
        self._ident = sql.Identifier(*parts)
        self._dsn = dsn
        self._chunk_rows = chunk_rows
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._rows = {"staged": 0, "inserted": 0, "updated": 0, "unchanged": 0}
        self._seconds: dict[str, float] = {}
        self._everything_new = False  # the table was empty at plan time: insert straight from staging
        # A column per field `deals.fields` maps beyond the defaults (which the base columns already hold).
        self._mapped = mapped_fields(field_mapping)
        self._cols = q.table_columns({f.column: kind for f, kind in self._mapped})

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        """Stage the combined rows and compute creates / updates / unchanged in SQL (writes nothing lasting)."""
        del customers  # a table row carries the customer's names already
        combined = with_mapped_columns(combined, self._mapped)
        _check_frame(combined, self._cols)
        conn = await self._connect()
        started = time.perf_counter()
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
                created = await postgres_table.ensure(cur, self.table, self._cols)
                await cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._ident))
                await cur.execute(q.create_staging(self._ident, self._cols))
                await self._copy_in(cur, combined)
                self._seconds["stage"] = time.perf_counter() - started
                await cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(self._ident))
                empty = await cur.fetchone()
                self._everything_new = bool(empty and empty[0])
                if self._everything_new:  # first sync: no join, no second copy of the rows
                    creates = combined
                    updates = pl.DataFrame(schema=q.updates_schema(self._cols))
                else:
                    await cur.execute(sql.SQL("ANALYZE {}").format(q.STAGING))  # temp tables get no autovacuum
                    await cur.execute(q.create_changes(self._ident, self._cols))
                    await cur.execute(sql.SQL("ANALYZE {}").format(q.CHANGES))
                    new_ids = await _copy_out(cur, q.new_keys(), {q.KEY: pl.Int64()})
                    creates = combined.join(new_ids, on=q.KEY, how="semi", maintain_order="left")
                    updates = await _copy_out(
                        cur, q.updates_query(self._ident, self._cols), q.updates_schema(self._cols)
                    )
        except psycopg.Error as exc:
            error = self._translate(exc, "planning")
            where = _copy_line(exc)
            if where is not None and where[0] <= combined.height:
                # COPY names its staging table's line and quotes the value; the key finds the source row instead.
                key = combined.item(where[0] - 1, q.KEY)
                error = type(error)(f"{error} ({q.KEY} {key}{f', column {where[1]}' if where[1] else ''})")
            raise error from None
        updates = updates.with_columns(pl.col("changed").str.split(","))
        unchanged = combined.height - creates.height - updates.height
        self._rows.update(staged=combined.height, unchanged=unchanged)
        self._seconds["plan"] = time.perf_counter() - started
        duplicates = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})
        entity = EntityPlan("row", q.KEY, creates, updates, unchanged, duplicates)
        notes = (f"table {self.table} does not exist yet: it is created by the run",) if created else ()
        return Plan((entity,), notes=notes)

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        """One UPDATE and one INSERT, set-based, then COMMIT; every planned row is then reported ok.

        Both statements succeed or the transaction rolls back, so there are no per-row outcomes to report
        otherwise: a failed statement raises one error (classified by SQLSTATE), a stop raises Interrupted, and
        either way the table is exactly as it was.
        """
        if self._conn is None:
            raise RuntimeError("apply() needs the connection and staging table of a plan() on the same object")
        conn, rows = self._conn, next(e for e in plan.entities if e.entity == "row")
        statements = [q.update_rows(self._ident, self._cols)] if rows.updates.height else []
        if rows.creates.height:
            statements.append(q.insert_rows(self._ident, everything=self._everything_new, cols=self._cols))
        started = time.perf_counter()
        try:
            counts = None if stop.is_set() else await self._run_cancellable(conn, statements, stop)
            if counts is None or stop.is_set():
                await conn.rollback()
                raise Interrupted(
                    f"interrupted while applying to PostgreSQL table {self.table}: rolled back, nothing was written "
                    f"({rows.writes:,} planned row(s) left for the next run)"
                )
            await conn.commit()  # also keeps a table created by plan() when there was nothing to write
        except psycopg.Error as exc:
            error = self._translate(exc, "applying")
            if not conn.closed:
                await conn.rollback()
            raise error from None
        finally:
            self._seconds["apply"] = time.perf_counter() - started
        updated = counts[0] if rows.updates.height else 0
        inserted = counts[-1] if rows.creates.height else 0
        self._rows.update(inserted=inserted, updated=updated)
        if (inserted, updated) != (rows.creates.height, rows.updates.height):  # only a trigger or rule can do this
            log.warning("table %s: wrote %d inserts and %d updates, planned %d and %d", self.table, inserted,
                        updated, rows.creates.height, rows.updates.height)  # fmt: skip
        _report_ok(rows, on_result)

    @property
    def backend_pid(self) -> int | None:
        """The server process of this run's connection (tests and operators find its locks with it)."""
        return None if self._conn is None else self._conn.info.backend_pid

    def usage(self) -> dict[str, object]:
        return {
            "table": self.table,
            **{f"rows_{k}": v for k, v in self._rows.items()},
            "seconds": {k: round(v, 3) for k, v in self._seconds.items()},
        }

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if not conn.closed:
                await conn.rollback()  # a no-op after COMMIT; discards a dry run's staging and created table
        except psycopg.Error:
            pass  # the connection broke (the error that broke it is already raised): the server rolls back
        finally:
            await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None:
            raise RuntimeError("plan() runs once per PostgresDestination: the transaction spans plan and apply")
        where = f"cannot connect to PostgreSQL ({POSTGRES_DSN_ENV})"
        # Without a connect_timeout psycopg waits 130 s per attempt on a host that never answers.
        conninfo = self._dsn
        if "connect_timeout" not in conninfo_to_dict(conninfo):
            conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)
        tried = 0
        try:
            # A refused or dropped connection (a restart, a failover) may pass in seconds: retry it, bounded;
            # nothing has started yet. Rejected credentials or a missing database are not retried.
            async for attempt in stamina.retry_context(
                on=lambda exc: isinstance(exc, psycopg.Error) and isinstance(classify(exc, where, ""), Unavailable),
                attempts=CONNECT_ATTEMPTS,
                timeout=CONNECT_ATTEMPTS * (CONNECT_TIMEOUT + 5),
                wait_max=5.0,
            ):
                with attempt:
                    tried = attempt.num
                    conn = await psycopg.AsyncConnection.connect(conninfo)
        except psycopg.Error as exc:
            error = classify(exc, where, self._dsn)
            if isinstance(error, AuthError):
                message = describe(exc, self._dsn)
                raise AuthError(f"PostgreSQL rejected the credentials in {POSTGRES_DSN_ENV}: {message}") from None
            raise type(error)(f"{error} ({errors.tried(tried)})") from None
        self._conn = conn
        try:
            # Room for the staged rows in session memory; must be set before the session's first temp table.
            await conn.execute("SET temp_buffers = '256MB'")
        except psycopg.Error as exc:
            raise self._translate(exc, "connecting") from None
        return conn

    async def _copy_in(self, cur: psycopg.AsyncCursor[Any], combined: pl.DataFrame) -> None:
        """Stream the frame as CSV chunks; Polars writes null as an empty field and '' as a quoted one."""
        frame = combined.select(list(self._cols.types))
        async with cur.copy(q.copy_in(self._cols)) as copy:
            for chunk in frame.iter_slices(self._chunk_rows):
                # CSV encoding is CPU work: off the event loop so signals are still handled.
                await copy.write(await asyncio.to_thread(chunk.write_csv, None, include_header=False))

    async def _run_cancellable(
        self, conn: psycopg.AsyncConnection[Any], statements: list[sql.Composed], stop: asyncio.Event
    ) -> list[int] | None:
        """Run the statements (rows affected by each); if `stop` is set meanwhile, cancel on the server: None."""

        async def run() -> list[int]:
            counts = []
            async with conn.cursor() as cur:
                for statement in statements:
                    await cur.execute(statement)
                    counts.append(cur.rowcount)
            return counts

        work, stopped = asyncio.ensure_future(run()), asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not work.done():
            await conn.cancel_safe()
            try:
                await work
            except pg_errors.QueryCanceled:
                return None
        return work.result()

    def _translate(self, exc: psycopg.Error, doing: str) -> SyncError:
        error = classify(exc, f"PostgreSQL table {self.table}, {doing}", self._dsn)
        if exc.sqlstate == "55P03":
            return type(error)(f"{error} (another writer holds the table for longer than {LOCK_TIMEOUT})")
        return error


def mapped_fields(field_mapping: mapping.Mapping | None) -> list[tuple[mapping.FieldMap, Kind]]:
    """The deal fields mapped beyond the defaults, each with the kind its column is typed and converted by."""
    if field_mapping is None:
        return []
    out = []
    for field in field_mapping.deals.fields:
        if field.target in mapping.DEFAULT_TARGETS["deal"]:
            continue
        if field.column in q.COLUMNS:
            raise ConfigError(
                f"deals.fields.{field.target!r}: the table already has a column {field.column!r} "
                "(from the combined rows): map it to another name for the postgres destination"
            )
        kind = field.standard.kind if field.standard else kinds.CUSTOM_KINDS[field.create_type]
        out.append((field, kind))
    return out


def with_mapped_columns(combined: pl.DataFrame, mapped: list[tuple[mapping.FieldMap, Kind]]) -> pl.DataFrame:
    """The combined rows with a column per mapped field, converted as its kind says; a value that cannot be is a
    DataError naming the order, the field and the value (the table is written all or nothing)."""
    if not mapped:
        return combined
    fields = mapping.EntityMapping("deal", "", tuple(field for field, _ in mapped))
    values, invalid = mapping.desired(fields, {f.column: kind for f, kind in mapped}, combined)
    if invalid.height:
        raise DataError(f"{invalid['error'][0]} ({invalid.height} row(s) in all): nothing was written")
    return pl.concat([combined, values.drop("external_id")], how="horizontal")


def _check_frame(combined: pl.DataFrame, cols: q.TableColumns = q.BASE) -> None:
    """Refuse before connecting what the table cannot take: missing columns, bad keys, NUL bytes in text."""
    missing = [c for c in cols.types if c not in combined.columns]
    if missing:
        raise DataError(f"combined frame lacks column(s) {', '.join(missing)}")
    keys = combined.get_column(q.KEY)
    if keys.null_count() or keys.is_duplicated().any():
        raise DataError(f"combined frame: {q.KEY} must be present and unique in every row")
    for column, (source, key) in _ORIGIN.items():
        # PostgreSQL text cannot hold a NUL byte; COPY would name only its staging table's line.
        bad = combined.filter(pl.col(column).str.contains("\x00", literal=True))
        if bad.height:
            raise DataError(
                f"sources.{source}: the row with id {bad.item(0, key)} has a NUL byte in {column}, which PostgreSQL "
                f"text cannot store ({bad.height} order(s) affected in all)"
            )


def _copy_line(exc: psycopg.Error) -> tuple[int, str | None] | None:
    """The line (1-based) and column a failed COPY into staging names in its CONTEXT, if it does."""
    found = re.search(r"COPY \S+, line (\d+)(?:, column (\w+))?", exc.diag.context or "")
    return None if found is None else (int(found.group(1)), found.group(2))


async def _copy_out(
    cur: psycopg.AsyncCursor[Any], query: sql.Composable, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    buffer = bytearray()
    async with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(query)) as copy:
        async for data in copy:
            buffer += data
    return pl.read_csv(bytes(buffer), schema=schema)


def _report_ok(rows: EntityPlan, on_result: Callable[[RecordResult], None]) -> None:
    """One result per written row, built from the plan frames (the statements themselves return only counts)."""
    actions: tuple[tuple[Action, pl.DataFrame], ...] = (("create", rows.creates), ("update", rows.updates))
    for action, frame in actions:
        for key in frame.get_column(q.KEY).to_list():
            on_result(RecordResult(rows.entity, str(key), action, "ok", destination_id=key))
