"""The PostgreSQL destination's table definition and statements, composed from quoted identifiers (no I/O)."""

from __future__ import annotations

import polars as pl
from psycopg import sql

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
STAGING = sql.Identifier("sync_job_staging")  # every desired row, as COPY loaded it
CHANGES = sql.Identifier("sync_job_changes")  # only the rows to insert (is_new) or update: the plan, in SQL

_READ_SCHEMA: dict[str, pl.DataType] = {
    "order_id": pl.Int64(), "customer_id": pl.Int64(), "first_name": pl.Utf8(), "last_name": pl.Utf8(),
    "title": pl.Utf8(), "order_date": pl.Date(), "status": pl.Utf8(), "payment_count": pl.Int64(),
    "amount_cents": pl.Int64(), "value": pl.Float64(),
}  # fmt: skip
# Read back as the frame's types whatever an existing table declares (e.g. value as real or numeric).
_READ_CAST = {"order_id": "bigint", "customer_id": "bigint", "order_date": "date", "payment_count": "bigint",
              "amount_cents": "bigint", "value": "float8"}  # fmt: skip


def columns() -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)


def differs(new: str, old: str) -> sql.Composed:
    """Row comparison that treats two NULLs as equal: true when any compared column changed."""
    return sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(new), sql.Identifier(c)) for c in COMPARED),
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(old), sql.Identifier(c)) for c in COMPARED),
    )


def create_table(target: sql.Identifier) -> sql.Composed:
    defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items())
    return sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(target, defs, sql.Identifier(KEY))


def create_staging(target: sql.Identifier) -> sql.Composed:
    """Staging takes the target's own column types, so the comparison is like with like."""
    return sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        STAGING, columns(), target
    )


def copy_in() -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(STAGING, columns())


def create_changes(target: sql.Identifier) -> sql.Composed:
    """One anti/semi join over staging and target: new keys plus rows whose values differ."""
    return sql.SQL(
        "CREATE TEMP TABLE {c} ON COMMIT DROP AS SELECT s.*, t.{k} IS NULL AS is_new "
        "FROM {s} s LEFT JOIN {t} t ON t.{k} = s.{k} WHERE t.{k} IS NULL OR {differs}"
    ).format(c=CHANGES, s=STAGING, t=target, k=sql.Identifier(KEY), differs=differs("s", "t"))


def new_keys() -> sql.Composed:
    return sql.SQL("SELECT {k} FROM {c} WHERE is_new").format(k=sql.Identifier(KEY), c=CHANGES)


def updates_query(target: sql.Identifier) -> sql.Composed:
    """Planned updates with new values, `old_<column>` values and the changed column names (comma-joined)."""

    def read(alias: str, column: str, name: str) -> sql.Composable:
        cast = sql.SQL("::" + _READ_CAST[column]) if column in _READ_CAST else sql.SQL("")
        return sql.SQL("{}.{}{} AS {}").format(
            sql.Identifier(alias), sql.Identifier(column), cast, sql.Identifier(name)
        )

    changed = sql.SQL(", ").join(
        sql.SQL("CASE WHEN c.{col} IS DISTINCT FROM t.{col} THEN {name} END").format(
            col=sql.Identifier(c), name=sql.Literal(c)
        )
        for c in COMPARED
    )
    return sql.SQL(
        "SELECT {key}, c.{k} AS id, {new}, {old}, concat_ws(',', {changed}) AS changed "
        "FROM {c} c JOIN {t} t ON t.{k} = c.{k} WHERE NOT c.is_new ORDER BY c.{k}"
    ).format(
        key=read("c", KEY, KEY),
        k=sql.Identifier(KEY),
        new=sql.SQL(", ").join(read("c", col, col) for col in COMPARED),
        old=sql.SQL(", ").join(read("t", col, f"old_{col}") for col in COMPARED),
        changed=changed,
        c=CHANGES,
        t=target,
    )


def updates_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {KEY: pl.Int64(), "id": pl.Int64()}
    schema.update({c: _READ_SCHEMA[c] for c in COMPARED})
    schema.update({f"old_{c}": _READ_SCHEMA[c] for c in COMPARED})
    return {**schema, "changed": pl.Utf8()}


def update_rows(target: sql.Identifier) -> sql.Composed:
    """Rewrite only the planned rows; the IS DISTINCT FROM guard keeps unchanged rows' xmin even so."""
    sets = sql.SQL(", ").join(sql.SQL("{col} = c.{col}").format(col=sql.Identifier(c)) for c in COMPARED)
    return sql.SQL("UPDATE {t} AS t SET {sets} FROM {c} c WHERE t.{k} = c.{k} AND NOT c.is_new AND {differs}").format(
        t=target, sets=sets, c=CHANGES, k=sql.Identifier(KEY), differs=differs("c", "t")
    )


def insert_rows(target: sql.Identifier, *, everything: bool) -> sql.Composed:
    """A plain INSERT is safe: the table lock keeps other writers from adding a planned key meanwhile."""
    if everything:  # the table was empty at plan time: every staged row is new, no join was needed
        return sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}").format(t=target, cols=columns(), s=STAGING)
    return sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {c} WHERE is_new").format(
        t=target, cols=columns(), c=CHANGES
    )
