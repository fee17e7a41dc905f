"""The PostgreSQL destination's table definition and statements, composed from quoted identifiers (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
# A mapped field's column type by its kind (pipedrive/kinds.py), and how it is read back: dates as their ISO text,
# money and numbers as float8, whole numbers as bigint, the rest as text.
KIND_TYPES: dict[str, str] = {
    "money": "numeric(18,2)", "monetary": "numeric(18,2)", "number": "double precision",
    "integer": "bigint", "user": "bigint", "visibility": "bigint", "date": "date",
}  # fmt: skip
_KIND_READ: dict[str, tuple[str, pl.DataType]] = {
    "numeric(18,2)": ("float8", pl.Float64()), "double precision": ("float8", pl.Float64()),
    "bigint": ("bigint", pl.Int64()), "date": ("text", pl.Utf8()), "text": ("text", pl.Utf8()),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TableColumns:
    """The table's columns: the combined frame's, then one per mapped field (`deals.fields`), typed by its kind."""

    types: dict[str, str]
    read_schema: dict[str, pl.DataType]
    read_cast: dict[str, str]

    @property
    def compared(self) -> list[str]:
        return [c for c in self.types if c != KEY]


def table_columns(mapped: Mapping[str, str] | None = None) -> TableColumns:
    """The base columns plus `mapped` (column name -> kind)."""
    types, read, cast = dict(COLUMNS), dict(_READ_SCHEMA), dict(_READ_CAST)
    for name, kind in (mapped or {}).items():
        sql_type = KIND_TYPES.get(kind, "text")
        types[name] = sql_type
        cast[name], read[name] = _KIND_READ[sql_type]
    return TableColumns(types, read, cast)


BASE = table_columns()


def columns(cols: TableColumns = BASE) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(c) for c in cols.types)


def differs(new: str, old: str, cols: TableColumns = BASE) -> sql.Composed:
    """Row comparison that treats two NULLs as equal: true when any compared column changed."""
    return sql.SQL("({}) IS DISTINCT FROM ({})").format(
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(new), sql.Identifier(c)) for c in cols.compared),
        sql.SQL(", ").join(sql.SQL("{}.{}").format(sql.Identifier(old), sql.Identifier(c)) for c in cols.compared),
    )


def create_table(target: sql.Identifier, cols: TableColumns = BASE) -> sql.Composed:
    defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in cols.types.items())
    return sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(target, defs, sql.Identifier(KEY))


def add_column(target: sql.Identifier, name: str, cols: TableColumns) -> sql.Composed:
    """A newly mapped field's column on an existing table (NULL for the rows already there until they are updated)."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(target, sql.Identifier(name), sql.SQL(cols.types[name]))


def create_staging(target: sql.Identifier, cols: TableColumns = BASE) -> sql.Composed:
    """Staging takes the target's own column types, so the comparison is like with like."""
    return sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        STAGING, columns(cols), target
    )


def copy_in(cols: TableColumns = BASE) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(STAGING, columns(cols))


def create_changes(target: sql.Identifier, cols: TableColumns = BASE) -> sql.Composed:
    """One anti/semi join over staging and target: new keys plus rows whose values differ."""
    return sql.SQL(
        "CREATE TEMP TABLE {c} ON COMMIT DROP AS SELECT s.*, t.{k} IS NULL AS is_new "
        "FROM {s} s LEFT JOIN {t} t ON t.{k} = s.{k} WHERE t.{k} IS NULL OR {differs}"
    ).format(c=CHANGES, s=STAGING, t=target, k=sql.Identifier(KEY), differs=differs("s", "t", cols))


def new_keys() -> sql.Composed:
    return sql.SQL("SELECT {k} FROM {c} WHERE is_new").format(k=sql.Identifier(KEY), c=CHANGES)


def updates_query(target: sql.Identifier, cols: TableColumns = BASE) -> sql.Composed:
    """Planned updates with new values, `old_<column>` values and the changed column names (comma-joined)."""

    def read(alias: str, column: str, name: str) -> sql.Composable:
        cast = sql.SQL("::" + cols.read_cast[column]) if column in cols.read_cast else sql.SQL("")
        return sql.SQL("{}.{}{} AS {}").format(
            sql.Identifier(alias), sql.Identifier(column), cast, sql.Identifier(name)
        )

    changed = sql.SQL(", ").join(
        sql.SQL("CASE WHEN c.{col} IS DISTINCT FROM t.{col} THEN {name} END").format(
            col=sql.Identifier(c), name=sql.Literal(c)
        )
        for c in cols.compared
    )
    return sql.SQL(
        "SELECT {key}, c.{k} AS id, {new}, {old}, concat_ws(',', {changed}) AS changed "
        "FROM {c} c JOIN {t} t ON t.{k} = c.{k} WHERE NOT c.is_new ORDER BY c.{k}"
    ).format(
        key=read("c", KEY, KEY),
        k=sql.Identifier(KEY),
        new=sql.SQL(", ").join(read("c", col, col) for col in cols.compared),
        old=sql.SQL(", ").join(read("t", col, f"old_{col}") for col in cols.compared),
        changed=changed,
        c=CHANGES,
        t=target,
    )


def updates_schema(cols: TableColumns = BASE) -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {KEY: pl.Int64(), "id": pl.Int64()}
    schema.update({c: cols.read_schema[c] for c in cols.compared})
    schema.update({f"old_{c}": cols.read_schema[c] for c in cols.compared})
    return {**schema, "changed": pl.Utf8()}


def update_rows(target: sql.Identifier, cols: TableColumns = BASE) -> sql.Composed:
    """Rewrite only the planned rows; the IS DISTINCT FROM guard keeps unchanged rows' xmin even so."""
    sets = sql.SQL(", ").join(sql.SQL("{col} = c.{col}").format(col=sql.Identifier(c)) for c in cols.compared)
    return sql.SQL("UPDATE {t} AS t SET {sets} FROM {c} c WHERE t.{k} = c.{k} AND NOT c.is_new AND {differs}").format(
        t=target, sets=sets, c=CHANGES, k=sql.Identifier(KEY), differs=differs("c", "t", cols)
    )


def insert_rows(target: sql.Identifier, *, everything: bool, cols: TableColumns = BASE) -> sql.Composed:
    """A plain INSERT is safe: the table lock keeps other writers from adding a planned key meanwhile."""
    names = columns(cols)
    if everything:  # the table was empty at plan time: every staged row is new, no join was needed
        return sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s}").format(t=target, cols=names, s=STAGING)
    return sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {c} WHERE is_new").format(
        t=target, cols=names, c=CHANGES
    )
