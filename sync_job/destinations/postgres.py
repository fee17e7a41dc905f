"""PostgreSQL destination: COPY the combined frame into a staging table, diff in SQL, upsert in one transaction.

Connection and transaction lifecycle (one connection, one transaction per run):

    plan()   connect; BEGIN (implicit); create the target table if missing; LOCK it against other writers;
             CREATE TEMP TABLE staging ... ON COMMIT DROP; COPY the combined rows in; read creates/updates back
    apply()  one INSERT ... ON CONFLICT (order_id) DO UPDATE ... WHERE row IS DISTINCT FROM; COMMIT
             (or ROLLBACK on an error or when `stop` is set: the table is exactly as it was)
    aclose() ROLLBACK whatever is still open (a dry run ends here: even a table created by plan() vanishes); close

The staging table lives only inside that transaction, which is why plan and apply must share the connection.
The table lock (SHARE ROW EXCLUSIVE: readers go on, writers wait) makes the plan exactly what apply writes.
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
from sync_job.destinations.base import Action, EntityPlan, Outcome, Plan, RecordResult
from sync_job.errors import AuthError, ConfigError, DataError, LockHeld, SyncError

log = logging.getLogger(__name__)

KEY = "order_id"
# numeric(18,2), not double precision: `value` is money; exact decimals make IS DISTINCT FROM immune to float
# noise (a value expression's 12.300000000000001 stores and compares as 12.30) and sums add up to the cent.
COLUMNS: dict[str, str] = {
    "order_id": "bigint",
    "customer_id": "bigint",
    "first_name": "text",
    "last_name": "text",
    "title": "text",
    "order_date": "date",
    "status": "text",
    "payment_count": "integer",
    "amount_cents": "bigint",
    "value": "numeric(18,2)",
}
COMPARED = [c for c in COLUMNS if c != KEY]
_READ_SCHEMA: dict[str, pl.DataType] = {
    "order_id": pl.Int64(), "customer_id": pl.Int64(), "first_name": pl.Utf8(), "last_name": pl.Utf8(),
    "title": pl.Utf8(), "order_date": pl.Date(), "status": pl.Utf8(), "payment_count": pl.Int64(),
    "amount_cents": pl.Int64(), "value": pl.Float64(),
}  # fmt: skip
_READ_CAST = {"order_id": "bigint", "customer_id": "bigint", "order_date": "date", "payment_count": "bigint",
              "amount_cents": "bigint", "value": "float8"}  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
STAGING = sql.Identifier("sync_job_staging")
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
                # Staging takes the target's own column types, so the comparison is like with like.
                await cur.execute(
                    sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
                        STAGING, _cols(COLUMNS), self._ident
                    )
                )
                await self._copy_in(cur, combined)
                self._seconds["stage"] = time.perf_counter() - started
                await cur.execute(sql.SQL("ANALYZE {}").format(STAGING))
                new_ids = await _copy_out(cur, self._creates_query(), {KEY: pl.Int64()})
                updates = await _copy_out(cur, self._updates_query(), self._updates_schema())
        except psycopg.Error as exc:
            raise self._translate(exc, "planning") from None
        creates = combined.join(new_ids, on=KEY, how="semi", maintain_order="left")
        updates = updates.with_columns(pl.col("changed").str.split(","))
        unchanged = combined.height - creates.height - updates.height
        self._rows.update(staged=combined.height, unchanged=unchanged)
        self._seconds["plan"] = time.perf_counter() - started
        duplicates = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})
        entity = EntityPlan("row", KEY, creates, updates, unchanged, duplicates)
        notes = (f"table {self.table} does not exist yet: it is created by the run",) if created else ()
        return Plan((entity,), notes=notes)

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        """One set-based upsert and one COMMIT; every planned row is reported ok, failed or skipped together."""
        if self._conn is None:
            raise RuntimeError("apply() needs the connection and staging table of a plan() on the same object")
        conn, rows = self._conn, [e for e in plan.entities if e.entity == "row"]
        started = time.perf_counter()
        try:
            if stop.is_set():
                await conn.rollback()
                return _report(rows, on_result, "skipped", None)
            counts = await self._run_cancellable(conn, self._upsert(), stop)
            if counts is None or stop.is_set():
                await conn.rollback()
                return _report(rows, on_result, "skipped", None)
            await conn.commit()
        except psycopg.Error as exc:
            message = self._translate(exc, "applying").args[0]
            log.error("%s; rolled back, the table is unchanged", message)
            if not conn.closed:
                await conn.rollback()
            return _report(rows, on_result, "failed", message)
        finally:
            self._seconds["apply"] = time.perf_counter() - started
        inserted, updated = counts
        self._rows.update(inserted=inserted, updated=updated)
        planned = sum(e.creates.height for e in rows), sum(e.updates.height for e in rows)
        if (inserted, updated) != planned:  # only a trigger or rule on the table can cause this
            log.warning("table %s: wrote %d inserts/%d updates, planned %s", self.table, inserted, updated, planned)
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
            columns = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items()]
            await cur.execute(
                sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                    self._ident, sql.SQL(", ").join(columns), sql.Identifier(KEY)
                )
            )
            return True
        oid = row[0]
        await cur.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped", [oid]
        )
        present = {r[0] for r in await cur.fetchall()}
        missing = [c for c in COLUMNS if c not in present]
        if missing:
            raise ConfigError(f"table {self.table} exists but lacks column(s) {', '.join(missing)}")
        await cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND i.indisunique AND i.indnatts = 1 "
            "AND i.indpred IS NULL AND a.attname = %s)",
            [oid, KEY],
        )
        unique = await cur.fetchone()
        if not (unique and unique[0]):
            raise ConfigError(f"table {self.table} has no primary key or unique index on {KEY} alone")
        return False

    async def _copy_in(self, cur: psycopg.AsyncCursor[Any], combined: pl.DataFrame) -> None:
        """Stream the frame as CSV chunks; Polars writes null as an empty field and '' as a quoted one."""
        frame = combined.select(list(COLUMNS))
        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(STAGING, _cols(COLUMNS))
        async with cur.copy(query) as copy:
            for chunk in frame.iter_slices(self._chunk_rows):
                # CSV encoding is CPU work: off the event loop so signals are still handled.
                await copy.write(await asyncio.to_thread(chunk.write_csv, None, include_header=False))

    def _creates_query(self) -> sql.Composable:
        return sql.SQL("SELECT s.{k} FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.{k} = s.{k})").format(
            k=sql.Identifier(KEY), s=STAGING, t=self._ident
        )

    def _updates_query(self) -> sql.Composable:
        def read(alias: str, column: str, name: str) -> sql.Composable:
            cast = sql.SQL("::" + _READ_CAST[column]) if column in _READ_CAST else sql.SQL("")
            return sql.SQL("{}.{}{} AS {}").format(
                sql.Identifier(alias), sql.Identifier(column), cast, sql.Identifier(name)
            )

        changed = sql.SQL(", ").join(
            sql.SQL("CASE WHEN s.{c} IS DISTINCT FROM t.{c} THEN {n} END").format(c=sql.Identifier(c), n=sql.Literal(c))
            for c in COMPARED
        )
        return sql.SQL(
            "SELECT {key}, s.{k} AS id, {new}, {old}, concat_ws(',', {changed}) AS changed "
            "FROM {s} s JOIN {t} t ON t.{k} = s.{k} WHERE {differs} ORDER BY s.{k}"
        ).format(
            key=read("s", KEY, KEY),
            k=sql.Identifier(KEY),
            new=sql.SQL(", ").join(read("s", c, c) for c in COMPARED),
            old=sql.SQL(", ").join(read("t", c, f"old_{c}") for c in COMPARED),
            changed=changed,
            s=STAGING,
            t=self._ident,
            differs=_differs("s", "t"),
        )

    @staticmethod
    def _updates_schema() -> dict[str, pl.DataType]:
        schema: dict[str, pl.DataType] = {KEY: pl.Int64(), "id": pl.Int64()}
        schema.update({c: _READ_SCHEMA[c] for c in COMPARED})
        schema.update({f"old_{c}": _READ_SCHEMA[c] for c in COMPARED})
        return {**schema, "changed": pl.Utf8()}

    def _upsert(self) -> sql.Composed:
        """Insert new keys; update a conflicting row only when its values differ, so unchanged rows keep their xmin."""
        return sql.SQL(
            "WITH written AS (INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} "
            "ON CONFLICT ({k}) DO UPDATE SET {sets} WHERE {differs} RETURNING (t.xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
        ).format(
            t=self._ident,
            cols=_cols(COLUMNS),
            s=STAGING,
            k=sql.Identifier(KEY),
            sets=sql.SQL(", ").join(sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in COMPARED),
            differs=_differs("excluded", "t"),
        )

    async def _run_cancellable(
        self, conn: psycopg.AsyncConnection[Any], query: sql.Composed, stop: asyncio.Event
    ) -> tuple[int, int] | None:
        """Run the upsert; if `stop` is set meanwhile, cancel it on the server and return None."""

        async def run() -> tuple[int, int]:
            async with conn.cursor() as cur:
                await cur.execute(query)
                row = await cur.fetchone()
                return (int(row[0]), int(row[1])) if row else (0, 0)

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
    missing = [c for c in COLUMNS if c not in combined.columns]
    if missing:
        raise DataError(f"combined frame lacks column(s) {', '.join(missing)}")
    keys = combined.get_column(KEY)
    if keys.null_count() or keys.is_duplicated().any():
        raise DataError(f"combined frame: {KEY} must be present and unique in every row")


def _cols(columns: dict[str, str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _differs(new: str, old: str) -> sql.Composable:
    return sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(new), sql.Identifier(c)) for c in COMPARED),
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(old), sql.Identifier(c)) for c in COMPARED),
    )


async def _copy_out(
    cur: psycopg.AsyncCursor[Any], query: sql.Composable, schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    buffer = bytearray()
    async with cur.copy(sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(query)) as copy:
        async for data in copy:
            buffer += data
    return pl.read_csv(bytes(buffer), schema=schema)


def _report(
    rows: list[EntityPlan], on_result: Callable[[RecordResult], None], outcome: Outcome, error: str | None
) -> None:
    """One result per planned row, built from the plan frames (the upsert itself returns only counts)."""
    for entity in rows:
        actions: tuple[tuple[Action, pl.DataFrame], ...] = (("create", entity.creates), ("update", entity.updates))
        for action, frame in actions:
            for key in frame.get_column(KEY).to_list():
                on_result(RecordResult(entity.entity, str(key), action, outcome, destination_id=key, error=error))


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
