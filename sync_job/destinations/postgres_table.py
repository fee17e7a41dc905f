"""The target table: the rules for its name, and creating it or checking an existing one (no data moves here)."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from psycopg import sql

from sync_job.destinations import postgres_sql as q
from sync_job.errors import ConfigError

log = logging.getLogger(__name__)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The first key of the two-key advisory lock that serialises creating a table (the second is its name's hash):
# a constant of our own, so the lock cannot meet an application's one-key advisory locks.
_CREATE_LOCK = 0x53594E43  # "SYNC"


def parse_name(table: str) -> tuple[str, ...]:
    """The name's parts, used exactly as written (quoted: case-sensitive); refuses names a run cannot keep."""
    parts = tuple(table.split("."))
    if len(parts) > 2 or not all(_IDENT.fullmatch(p) for p in parts):
        raise ConfigError(f"destination.table {table!r}: must be a plain SQL identifier like 'orders' or 'crm.orders'")
    schema = parts[0].lower() if len(parts) == 2 else ""
    if schema.startswith("pg_") or schema == "information_schema":
        # pg_temp's tables vanish with the session: a run would report every row written and keep none.
        raise ConfigError(
            f"destination.table {table!r}: schema {parts[0]} belongs to PostgreSQL (temporary or system tables); "
            "use a schema of your own, like 'crm.orders'"
        )
    if table != table.lower():
        log.warning(
            "destination.table %r is case-sensitive (sync-job quotes the name): it means the table \"%s\", "
            "not %s, which is what SQL reads unquoted; write it in lower case to mean %s",
            table, table.replace(".", '"."'), table.lower(), table.lower(),
        )  # fmt: skip
    return parts


async def ensure(cur: psycopg.AsyncCursor[Any], table: str, cols: q.TableColumns = q.BASE) -> bool:
    """Create the table when missing (True); else check it has our columns and a unique order_id.

    A mapped field's column that an existing table lacks is added (the field was mapped since the last run).
    """
    parts = table.split(".")
    ident = sql.Identifier(*parts)
    oid = await _oid(cur, ident)
    if oid is None:
        # Two first runs both find the table missing; the second CREATE would then fail on pg_type's unique
        # index when the first commits. An advisory lock on the name, held to the end of the transaction,
        # makes the second wait (up to lock_timeout: exit 3) and then find the first one's table.
        # The re-check reads pg_class with this statement's snapshot: to_regclass's catalog cache may still
        # miss a table another transaction committed while this one waited.
        schema, name = parts[0] if len(parts) == 2 else None, parts[-1]
        await cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(%s, current_schema()) || '.' || %s))",
            [_CREATE_LOCK, schema, name],
        )
        await cur.execute(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = %s",
            [schema, name],
        )
        found = await cur.fetchone()
        oid = None if found is None else int(found[0])
    if oid is None:
        await _refuse_case_twin(cur, table)
        await cur.execute(q.create_table(ident, cols))
        return True
    # A column is "unfillable" when an INSERT naming only our columns cannot give it a value: NOT NULL, with no
    # default, identity or generation expression. Every new row would fail, so say so before staging anything.
    await cur.execute(
        "SELECT attname, attnotnull AND NOT atthasdef AND attidentity = '' AND attgenerated = '' "
        "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [oid],
    )
    present = dict(await cur.fetchall())
    missing = [c for c in q.COLUMNS if c not in present]
    if missing:
        raise ConfigError(f"table {table} exists but lacks column(s) {', '.join(missing)}")
    for name in cols.types:
        if name not in present:
            await cur.execute(q.add_column(ident, name, cols))
    unfillable = [c for c, must in present.items() if must and c not in cols.types]
    if unfillable:
        raise ConfigError(
            f"table {table} has NOT NULL column(s) {', '.join(unfillable)} without a default, which sync-job does "
            "not write, so every insert would fail; give them a default or drop NOT NULL"
        )
    await cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s AND i.indisunique AND i.indnatts = 1 "
        "AND i.indpred IS NULL AND a.attname = %s)",
        [oid, q.KEY],
    )
    unique = await cur.fetchone()
    if not (unique and unique[0]):
        raise ConfigError(f"table {table} has no primary key or unique index on {q.KEY} alone")
    return False


async def _refuse_case_twin(cur: psycopg.AsyncCursor[Any], table: str) -> None:
    """A mixed-case name must not create a second table beside the one its lower-case spelling names."""
    folded = table.lower()
    if folded != table and await _oid(cur, sql.Identifier(*folded.split("."))) is not None:
        raise ConfigError(
            f"destination.table {table!r} would create a second table beside the existing {folded}: "
            f"names are case-sensitive; write {folded!r} to sync into it, or create the new table yourself"
        )


async def _oid(cur: psycopg.AsyncCursor[Any], name: sql.Identifier) -> int | None:
    await cur.execute("SELECT to_regclass(%s)::oid", [name.as_string(cur)])
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])
