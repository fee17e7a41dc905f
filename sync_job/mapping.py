"""The one declarative model of what a run writes: per entity, each field and the SQL expression that fills it.

Everything else derives from it: the source columns the transform passes through (`source_columns`), the desired
frames and their per-row conversion errors (`desired`), and, once the destination has resolved each field's kind,
the diff's compared columns, the request bodies, the snapshot's columns and the PostgreSQL table's columns.
Adding a mapped field is a config change, or one entry in `_DEFAULTS`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass

import polars as pl

from sync_job.errors import ConfigError, first_line
from sync_job.pipedrive import kinds
from sync_job.pipedrive.entities import ENTITY_PLURAL, Entity
from sync_job.pipedrive.kinds import Kind
from sync_job.pipedrive.standard_fields import READ_ONLY, STANDARD, UNMAPPABLE, StandardField
from sync_job.transform import COMBINED_SCHEMA, CUSTOMERS_SCHEMA

# The columns each entity's expressions see before any source column passes through: a deal sees the combined
# order row, a person the customer row.
BASE_COLUMNS: dict[Entity, pl.Schema] = {"deal": COMBINED_SCHEMA, "person": CUSTOMERS_SCHEMA}
KEYS: dict[Entity, str] = {"deal": "order_id", "person": "id"}  # the source column that becomes the external id
# Names the plan frames use themselves: a custom field may not take one as its column.
RESERVED = frozenset({"id", "external_id", "changed", "person_external_id", "update_time"})
_API_KEY = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """One mapped field: a standard field by its API key, or a custom field by its name."""

    target: str
    expression: str
    standard: StandardField | None  # None: a custom field, found by name (created when missing)
    declared_type: str | None = None  # a custom field's type when the job creates it; None: varchar

    @property
    def column(self) -> str:
        """The plan frames' column: the target, except the person link, planned as the person's external id."""
        return "person_external_id" if self.target == "person_id" and self.standard else self.target

    @property
    def label(self) -> str:
        return self.target if self.standard else f"custom field {self.target!r}"

    @property
    def create_type(self) -> str:
        return self.declared_type or "varchar"


@dataclass(frozen=True, slots=True)
class EntityMapping:
    entity: Entity
    id_field: str  # the custom field holding the source key (pipedrive.person_id_field / deal_id_field)
    fields: tuple[FieldMap, ...]

    @property
    def key(self) -> str:
        return KEYS[self.entity]

    def field(self, column: str) -> FieldMap:
        return next(f for f in self.fields if f.column == column)

    @property
    def custom(self) -> tuple[FieldMap, ...]:
        return tuple(f for f in self.fields if f.standard is None)

    def extra_columns(self) -> list[str]:
        """Source columns the expressions use beyond the base ones: passed through by the transform."""
        base = BASE_COLUMNS[self.entity]
        names = {n for f in self.fields for n in _parse(f.expression, self.entity, f.target).meta.root_names()}
        return sorted(n for n in names if n not in base)


@dataclass(frozen=True, slots=True)
class Mapping:
    persons: EntityMapping
    deals: EntityMapping
    # The deal value's expression: the transform computes it as the combined `value` column, whose facts it checks
    # in the same pass (no NULL, NaN or overflow), and the deal's `value` field reads that column.
    value_expression: str

    def of(self, entity: Entity) -> EntityMapping:
        return self.persons if entity == "person" else self.deals


# What every config maps unless its `fields:` says otherwise (see `_defaults`).
DEFAULT_TARGETS: dict[Entity, tuple[str, ...]] = {
    "person": ("name",),
    "deal": ("title", "value", "currency", "person_id"),
}


def _defaults(entity: Entity, value: str, currency: str) -> dict[str, str]:
    """Today's fixed mapping: what every config gets unless its `fields:` says otherwise."""
    if entity == "person":
        return {"name": "concat_ws(' ', first_name, last_name)"}
    return {"title": "title", "value": "value", "currency": f"'{currency}'", "person_id": "customer_id"}


def build(
    fields: MappingOf[Entity, MappingOf[str, str | tuple[str, str | None]]],
    id_fields: MappingOf[Entity, str],
    *,
    value: str,
    currency: str,
) -> Mapping:
    """The mapping from the config's `persons.fields` / `deals.fields` over the defaults; ConfigError names the key.

    A field given as (expression, type) declares a custom field's type. Standard keys are checked against the API
    v2 request bodies (pipedrive/standard_fields.py): a read-only key, one the job cannot own or a `type` on a
    standard field is an error, and so is an unknown lower-case key that is close to a standard one (a typo).
    """
    entities = {}
    for entity in ("person", "deal"):
        given = dict(fields.get(entity, {}))
        if entity == "deal" and "value" in given:
            spec = given.pop("value")
            value = spec[0] if isinstance(spec, tuple) else spec
            if isinstance(spec, tuple) and spec[1] is not None:
                raise ConfigError(
                    f"{_where(entity, 'value')}: a standard field of a fixed type: 'type' is for custom fields"
                )
        merged: dict[str, tuple[str, str | None]] = {
            k: (v, None) for k, v in _defaults(entity, value, currency).items()
        }
        for target, spec in given.items():
            merged[target] = spec if isinstance(spec, tuple) else (spec, None)
        entities[entity] = EntityMapping(
            entity, id_fields[entity], tuple(_field(entity, t, e, d) for t, (e, d) in merged.items())
        )
    mapping = Mapping(entities["person"], entities["deal"], value)
    for entity_mapping in (mapping.persons, mapping.deals):
        names = [f.target.strip().casefold() for f in entity_mapping.custom] + [entity_mapping.id_field.casefold()]
        repeated = [n for i, n in enumerate(names) if n in names[:i]]
        if repeated:
            where = _where(entity_mapping.entity, repeated[0])
            raise ConfigError(f"{where}: the custom field {repeated[0]!r} is mapped twice (names ignore case)")
    return mapping


def _field(entity: Entity, target: str, expression: str, declared: str | None) -> FieldMap:
    where = _where(entity, target)
    if not target.strip():
        raise ConfigError(f"{where}: a field name must not be empty")
    if target in READ_ONLY[entity]:
        raise ConfigError(f"{where}: '{target}' is read-only in Pipedrive's API (it sets it itself)")
    if target in UNMAPPABLE[entity]:
        raise ConfigError(f"{where}: '{target}' cannot be mapped: {UNMAPPABLE[entity][target]}")
    standard = STANDARD[entity].get(target)
    if standard is not None and declared is not None:
        raise ConfigError(f"{where}: '{target}' is a standard field of a fixed type: 'type' is for custom fields")
    if standard is None:
        close = difflib.get_close_matches(target, list(STANDARD[entity]), n=1, cutoff=0.8)
        if declared is None and _API_KEY.fullmatch(target) and close:
            raise ConfigError(
                f"{where}: unknown standard field '{target}' (did you mean '{close[0]}'?); "
                "a custom field of that name needs a 'type'"
            )
        if target in RESERVED or target.startswith(("old_", "__")):
            raise ConfigError(f"{where}: the name {target!r} is reserved by the job: rename the custom field")
        if declared is not None and declared not in kinds.CREATABLE_TYPES:
            raise ConfigError(
                f"{where}: type {declared!r} is not one the job can write: "
                f"use one of {', '.join(kinds.CREATABLE_TYPES)}"
            )
    parsed = _parse(expression, entity, target)
    made = FieldMap(target, expression, standard, declared)
    kind = standard.kind if standard else kinds.CUSTOM_KINDS[declared] if declared else None
    base = BASE_COLUMNS[entity]
    if kind is not None and all(name in base for name in parsed.meta.root_names()):
        # Over the base columns alone the value's type is known now: a field it can never fill is a config error
        # before anything is fetched (extra columns are checked once the headers are read).
        try:
            source = pl.LazyFrame(schema=base).select(parsed.alias("x")).collect().schema["x"]
        except Exception as exc:
            raise ConfigError(f"{where}: {expression!r} cannot be evaluated: {first_line(exc)}") from None
        check_value(entity, made, kind, parsed, source)
    return made


def _where(entity: Entity, target: str) -> str:
    return f"{ENTITY_PLURAL[entity]}.fields.{target!r}" if target else f"{ENTITY_PLURAL[entity]}.fields"


def _parse(expression: str, entity: Entity, target: str) -> pl.Expr:
    try:
        parsed = pl.sql_expr(expression)
    except Exception as exc:  # polars raises several SQL error types; all mean "not an expression"
        raise ConfigError(
            f"{_where(entity, target)}: {expression!r} is not a valid SQL expression: {first_line(exc)}"
        ) from None
    assert isinstance(parsed, pl.Expr)
    return parsed


def check_columns(
    mapping: EntityMapping, available: pl.Schema, where: str, field_kinds: MappingOf[str, Kind] | None = None
) -> dict[str, pl.DataType]:
    """Each field's value type over the entity's rows, by column. ConfigError when an expression uses a column the
    rows lack, cannot be evaluated on them, or gives what its field can never hold (see `check_value`);
    `field_kinds` (by column) defaults to the standard fields'."""
    probe = pl.LazyFrame(schema=available)
    types: dict[str, pl.DataType] = {}
    for field in mapping.fields:
        parsed = _parse(field.expression, mapping.entity, field.target)
        unknown = [n for n in parsed.meta.root_names() if n not in available]
        if unknown:
            raise ConfigError(
                f"{_where(mapping.entity, field.target)}: {field.expression!r} uses column {unknown[0]!r}, "
                f"which {where} lacks (columns: {', '.join(available.names())})"
            )
        try:
            # type errors (e.g. upper() of a number) surface on execution
            source = probe.select(parsed.alias("x")).collect().schema["x"]
        except Exception as exc:
            raise ConfigError(
                f"{_where(mapping.entity, field.target)}: {field.expression!r} cannot be evaluated: {first_line(exc)}"
            ) from None
        kind = (field_kinds or {}).get(field.column) or (field.standard.kind if field.standard else None)
        if kind is not None:
            check_value(mapping.entity, field, kind, parsed, source)
        types[field.column] = source
    return types


# What a kind can take from a source column, by its type (text may hold anything: it is checked row by row).
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "date": ("date", "text"),
    "money": ("number", "text"),
    "monetary": ("number", "text"),
    "number": ("number", "text"),
    "integer": ("number", "text"),
    "user": ("number", "text"),
    "visibility": ("number", "text"),
    "person": ("number", "text"),
    "deal_status": ("text",),
    "marketing_status": ("text",),
    "currency": ("text",),
}


def check_value(entity: Entity, field: FieldMap, kind: Kind, parsed: pl.Expr, source: pl.DataType) -> None:
    """ConfigError when no row could fill the field: a column of a type the kind never takes (a number for a date),
    or a constant the field cannot hold (`status: 'done'`). Other values are checked row by row."""
    where = _where(entity, field.target)
    family = (
        "date"
        if source.is_temporal()
        else "number"
        if source.is_numeric()
        else "boolean"
        if source == pl.Boolean
        else "text"
    )
    accepted = _ACCEPTS.get(kind)
    if accepted is not None and source != pl.Null and family not in accepted:
        raise ConfigError(
            f"{where}: {field.expression!r} gives {source} values, which {field.label} ({_describe(kind)}) cannot hold"
        )
    if not parsed.meta.root_names():  # a constant: one value for every row, so check it once, here
        constant = pl.select(parsed.alias("x"))
        if constant["x"].null_count() == 0:
            flag = constant.select(kinds.desired(kind, pl.col("x"), constant.schema["x"]).bad.fill_null(False))
            if flag.item():
                raise ConfigError(
                    f"{where}: the constant {field.expression!r} is not a value {field.label} can hold "
                    f"({_describe(kind)})"
                )


INVALID_SCHEMA = {"external_id": pl.Utf8(), "error": pl.Utf8()}


def desired(
    mapping: EntityMapping, field_kinds: MappingOf[str, Kind], rows: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(desired rows, invalid rows): `external_id` plus one normalised column per field; `field_kinds` is by column.

    A row with a value its field cannot hold is not planned: it is returned in `invalid` (external_id, error) with
    a message naming the row, the field and the value, so it fails on its own and is never silently dropped.
    """
    schema = rows.collect_schema() if isinstance(rows, pl.LazyFrame) else rows.schema
    types = check_columns(
        mapping, schema, "the combined rows" if mapping.entity == "deal" else "the customers file", field_kinds
    )
    key = pl.col(mapping.key).cast(pl.Utf8).alias("external_id")
    values: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    raws: list[pl.Expr] = []
    for field in mapping.fields:
        parsed = _parse(field.expression, mapping.entity, field.target)
        kind = field_kinds[field.column]
        normal = kinds.desired(kind, parsed, types[field.column])
        values.append(normal.value.cast(kinds.dtype(kind)).alias(field.column))
        flags.append(normal.bad.fill_null(False).alias(f"__bad{len(flags)}"))
        raws.append(parsed.cast(pl.Utf8).alias(f"__raw{len(raws)}"))
    bad_any = pl.any_horizontal(flags) if flags else pl.lit(False)
    frame = rows.lazy().select(key, *values, bad_any.alias("__bad")).collect()
    good = frame.filter(~pl.col("__bad")).drop("__bad")
    if good.height == frame.height:  # the usual case: no row pays for the error messages
        return good, pl.DataFrame(schema=INVALID_SCHEMA)
    # Error path: the failing rows again, with which field failed and the value the expression gave.
    invalid = rows.lazy().filter(frame["__bad"]).select(key, *flags, *raws).collect()
    errors = []
    for row in invalid.iter_rows(named=True):
        index = next(i for i in range(len(flags)) if row[f"__bad{i}"])
        field = mapping.fields[index]
        kind = field_kinds[field.column]
        errors.append(
            (
                row["external_id"],
                f"{mapping.entity} {row['external_id']}: {field.label} ({_describe(kind)}) cannot hold "
                f"{row[f'__raw{index}']!r} (from {field.expression!r})",
            )
        )
    return good, pl.DataFrame(errors, schema=INVALID_SCHEMA, orient="row")


def _describe(kind: Kind) -> str:
    allowed = kinds.CHOICES.get(kind)
    if allowed is not None:
        return f"one of {', '.join(map(str, allowed))}"
    return {
        "date": "a date YYYY-MM-DD",
        "integer": "a whole number",
        "user": "a user id",
        "person": "a customer id",
        "number": "a finite number",
        "money": "a finite amount",
        "monetary": "a finite amount",
        "currency": "a 3-letter currency code",
        "varchar": f"text of at most {kinds.VARCHAR_LIMIT} characters",
    }.get(kind, kind)
