"""PostgreSQL destination: COPY the combined frame into a staging table, diff in SQL, write in one transaction.

Connection and transaction lifecycle (one connection, one transaction per run):

    plan()   connect; BEGIN (implicit); create the target table if missing; LOCK it against other writers;
             CREATE TEMP TABLE staging ... ON COMMIT DROP; COPY the combined rows in; one LEFT JOIN keeps the
             new and the differing rows in a second temp table (`changes`), read back as the plan's frames
    apply()  UPDATE ... FROM changes WHERE row IS DISTINCT FROM; INSERT ... SELECT FROM changes; COMMIT
             (or ROLLBACK on an error or when `stop` is set: the table is exactly as it was)
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
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from sync_job.config import POSTGRES_DSN_ENV
from sync_job.destinations import postgres_sql as q
from sync_job.destinations.base import Action, EntityPlan, Outcome, Plan, RecordResult
from sync_job.errors import AuthError, ConfigError, DataError, LockHeld, SyncError

log = logging.getLogger(__name__)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
CHUNK_ROWS = 100_000
LOCK_TIMEOUT = "30s"


class PostgresDestination:
    """Syncs the combined frame into one table keyed by order_id (see the module docstring for the lifecycle)."""

    kind = "postgres"

    def __init__(self, dsn: str, table: str, *, chunk_rows: int = CHUNK_ROWS) -> None:
        parts = table.split(".")
        if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
            raise ConfigError(
                f"destination.table {table!r}: must be a plain SQL identifier like 'orders' or 'crm.orders'"
            )
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

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        """Stage the combined rows and compute creates / updates / unchanged in SQL (writes nothing lasting)."""
        del customers  # a table row carries the customer's names already
        _check_keys(combined)
        conn = await self._connect()
        started = time.perf_counter()
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
                created = await self._ensure_table(cur)
                await cur.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._ident))
                await cur.execute(q.create_staging(self._ident))
                await self._copy_in(cur, combined)
                self._seconds["stage"] = time.perf_counter() - started
                await cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(self._ident))
                empty = await cur.fetchone()
                self._everything_new = bool(empty and empty[0])
                if self._everything_new:  # first sync: no join, no second copy of the rows
                    creates = combined
                    updates = pl.DataFrame(schema=q.updates_schema())
                else:
                    await cur.execute(sql.SQL("ANALYZE {}").format(q.STAGING))  # temp tables get no autovacuum
                    await cur.execute(q.create_changes(self._ident))
                    await cur.execute(sql.SQL("ANALYZE {}").format(q.CHANGES))
                    new_ids = await _copy_out(cur, q.new_keys(), {q.KEY: pl.Int64()})
                    creates = combined.join(new_ids, on=q.KEY, how="semi", maintain_order="left")
                    updates = await _copy_out(cur, q.updates_query(self._ident), q.updates_schema())
        except psycopg.Error as exc:
            raise self._translate(exc, "planning") from None
        updates = updates.with_columns(pl.col("changed").str.split(","))
        unchanged = combined.height - creates.height - updates.height
        self._rows.update(staged=combined.height, unchanged=unchanged)
        self._seconds["plan"] = time.perf_counter() - started
        duplicates = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})
        entity = EntityPlan("row", q.KEY, creates, updates, unchanged, duplicates)
        notes = (f"table {self.table} does not exist yet: it is created by the run",) if created else ()
        return Plan((entity,), notes=notes)

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        """One UPDATE and one INSERT, set-based, then COMMIT; all planned rows are reported ok, failed or skipped."""
        if self._conn is None:
            raise RuntimeError("apply() needs the connection and staging table of a plan() on the same object")
        conn, rows = self._conn, next(e for e in plan.entities if e.entity == "row")
        statements = [q.update_rows(self._ident)] if rows.updates.height else []
        if rows.creates.height:
            statements.append(q.insert_rows(self._ident, everything=self._everything_new))
        started = time.perf_counter()
        try:
            counts = None if stop.is_set() else await self._run_cancellable(conn, statements, stop)
            if counts is None or stop.is_set():
                await conn.rollback()
                return _report(rows, on_result, "skipped", None)
            await conn.commit()  # also keeps a table created by plan() when there was nothing to write
        except psycopg.Error as exc:
            message = self._translate(exc, "applying").args[0]
            log.error("%s; rolled back, the table is unchanged", message)
            if not conn.closed:
                await conn.rollback()
            return _report(rows, on_result, "failed", message)
        finally:
            self._seconds["apply"] = time.perf_counter() - started
        updated = counts[0] if rows.updates.height else 0
        inserted = counts[-1] if rows.creates.height else 0
        self._rows.update(inserted=inserted, updated=updated)
        if (inserted, updated) != (rows.creates.height, rows.updates.height):  # only a trigger or rule can do this
            log.warning("table %s: wrote %d inserts and %d updates, planned %d and %d", self.table, inserted,
                        updated, rows.creates.height, rows.updates.height)  # fmt: skip
        return _report(rows, on_result, "ok", None)

    def usage(self) -> dict[str, object]:
        return {
            "table": self.table,
            **{f"rows_{k}": v for k, v in self._rows.items()},
            "seconds": {k: round(v, 3) for k, v in self._seconds.items()},
        }

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            await conn.rollback()  # a no-op after COMMIT; discards a dry run's staging and created table
            await conn.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is not None:
            raise RuntimeError("plan() runs once per PostgresDestination: the transaction spans plan and apply")
        try:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn)
            # Room for the staged rows in session memory; must be set before the session's first temp table.
            await self._conn.execute("SET temp_buffers = '256MB'")
        except psycopg.Error as exc:
            message = _redact(str(exc), self._dsn)
            if exc.sqlstate in {"28P01", "28000"} or "authentication failed" in message:
                raise AuthError(f"PostgreSQL rejected the credentials in {POSTGRES_DSN_ENV}: {message}") from None
            raise ConfigError(f"cannot connect to PostgreSQL ({POSTGRES_DSN_ENV}): {message}") from None
        return self._conn

    async def _ensure_table(self, cur: psycopg.AsyncCursor[Any]) -> bool:
        """Create the table when missing (True); else check it has our columns and a unique order_id."""
        await cur.execute("SELECT to_regclass(%s)::oid", [self._ident.as_string(cur)])
        row = await cur.fetchone()
        if row is None or row[0] is None:
            await cur.execute(q.create_table(self._ident))
            return True
        oid = row[0]
        await cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", [oid]
        )
        present = {r[0] for r in await cur.fetchall()}
        missing = [c for c in q.COLUMNS if c not in present]
        if missing:
            raise ConfigError(f"table {self.table} exists but lacks column(s) {', '.join(missing)}")
        await cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND i.indisunique AND i.indnatts = 1 "
            "AND i.indpred IS NULL AND a.attname = %s)",
            [oid, q.KEY],
        )
        unique = await cur.fetchone()
        if not (unique and unique[0]):
            raise ConfigError(f"table {self.table} has no primary key or unique index on {q.KEY} alone")
        return False

    async def _copy_in(self, cur: psycopg.AsyncCursor[Any], combined: pl.DataFrame) -> None:
        """Stream the frame as CSV chunks; Polars writes null as an empty field and '' as a quoted one."""
        frame = combined.select(list(q.COLUMNS))
        async with cur.copy(q.copy_in()) as copy:
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
        message = f"PostgreSQL table {self.table}, {doing}: {_redact(str(exc), self._dsn)}"
        if isinstance(exc, pg_errors.LockNotAvailable):
            return LockHeld(f"{message} (another writer holds the table for longer than {LOCK_TIMEOUT})")
        if isinstance(exc, psycopg.DataError):
            return DataError(message)
        return ConfigError(message)


def _check_keys(combined: pl.DataFrame) -> None:
    missing = [c for c in q.COLUMNS if c not in combined.columns]
    if missing:
        raise DataError(f"combined frame lacks column(s) {', '.join(missing)}")
    keys = combined.get_column(q.KEY)
    if keys.null_count() or keys.is_duplicated().any():
        raise DataError(f"combined frame: {q.KEY} must be present and unique in every row")


async def _copy_out(
    cur: psycopg.AsyncCursor[Any], query: sql.Composable, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    buffer = bytearray()
    async with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(query)) as copy:
        async for data in copy:
            buffer += data
    return pl.read_csv(bytes(buffer), schema=schema)


def _report(rows: EntityPlan, on_result: Callable[[RecordResult], None], outcome: Outcome, error: str | None) -> None:
    """One result per planned row, built from the plan frames (the statements themselves return only counts)."""
    actions: tuple[tuple[Action, pl.DataFrame], ...] = (("create", rows.creates), ("update", rows.updates))
    for action, frame in actions:
        for key in frame.get_column(q.KEY).to_list():
            on_result(RecordResult(rows.entity, str(key), action, outcome, destination_id=key, error=error))


def _redact(text: str, dsn: str) -> str:
    """One line, with every spelling of the DSN's password replaced (libpq messages name host and user only)."""
    secrets = set(re.findall(r"password\s*=\s*'?([^\s']+)", dsn)) | set(re.findall(r"://[^:/@]*:([^@]*)@", dsn))
    try:
        password = conninfo_to_dict(dsn).get("password")
        if password:
            secrets.add(str(password))
    except psycopg.Error:
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(re.sub(r"password\s*=\s*\S+", "password=***", text).split())
