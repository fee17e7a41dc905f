"""Pure: the mapping resolved against one Pipedrive account: where each planned column lives and in what kind.

A `RecordSchema` is what the read, the diff, the bodies and the snapshot share: the remote frame's columns
(`remote_columns`), how a page of v2 JSON fills them (`frame`), what the diff compares (`compare`), and the
create and update bodies (`create_body`, `patch_body`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from sync_job.errors import RowError
from sync_job.pipedrive import kinds
from sync_job.pipedrive.entities import Entity
from sync_job.pipedrive.field_types import IdField, NotConvertible, canonical
from sync_job.pipedrive.kinds import Kind

# What every remote frame holds whatever the mapping: the record id, the external id as text, when it last changed
# (for the snapshot), and a deal's person (the link is compared through the person's external id).
BASE: dict[Entity, dict[str, pl.DataType]] = {
    "person": {"id": pl.Int64(), "external_id": pl.Utf8(), "update_time": pl.Utf8()},
    "deal": {"id": pl.Int64(), "external_id": pl.Utf8(), "update_time": pl.Utf8(), "person_id": pl.Int64()},
}
_SCALAR_STANDARD = frozenset(
    {"text", "varchar", "money", "currency", "number", "integer", "user", "visibility", "date", "deal_status",
     "marketing_status"}
)  # fmt: skip


# Standard keys the spec's request bodies mark nullable, and kinds whose empty value is itself a value (the empty
# text; money, where an empty value is 0).
NULLABLE = frozenset({"probability", "lost_reason"})
REQUIRED = frozenset({"title", "name"})  # a deal needs a title, a person a name
_EMPTIABLE = frozenset({"text", "varchar", "money"})


@dataclass(frozen=True, slots=True)
class Column:
    """One planned column and where it lives in the account."""

    column: str
    kind: Kind
    name: str  # as mapped: a standard key or a custom field's name
    key: str | None = None  # a standard field's API key
    code: str | None = None  # a custom field's key; None while the field is still to be created
    field_type: str | None = None  # a custom field's type
    options: Mapping[str, int] = field(default_factory=dict)  # an enum's option ids by label (as `kinds.label`)

    @property
    def custom(self) -> bool:
        return self.key is None

    def labels(self) -> dict[int, str]:
        return {option: label for label, option in self.options.items()}


@dataclass(frozen=True, slots=True)
class RecordSchema:
    entity: Entity
    id_field: IdField
    columns: tuple[Column, ...]
    currency: str = "USD"  # what a monetary custom field's value is in when the record has no currency column

    def remote_columns(self) -> dict[str, pl.DataType]:
        """The remote frame's schema: BASE plus each mapped column held as it reads back."""
        out = dict(BASE[self.entity])
        for column in self.columns:
            if column.kind != "person":
                out[column.column] = kinds.remote_dtype(column.kind)
        return out

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.remote_columns())

    @property
    def compare(self) -> dict[str, Kind]:
        return {c.column: c.kind for c in self.columns}

    @property
    def keep_when_empty(self) -> frozenset[str]:
        """Standard fields the API cannot empty (not nullable in the spec): an empty source value leaves them be."""
        return frozenset(
            c.column for c in self.columns if not c.custom and c.kind not in _EMPTIABLE and c.key not in NULLABLE
        )

    def custom_codes(self) -> list[str]:
        """The custom fields a list read asks for: the id field and every mapped one that exists."""
        return [self.id_field.code, *[c.code for c in self.columns if c.custom and c.code]]

    def signature(self) -> str:
        """What the snapshot's columns mean; another signature means the snapshot cannot be merged into."""
        parts = [[self.id_field.code, self.id_field.field_type]]
        parts += [[c.column, c.key or c.code or "", c.kind] for c in self.columns]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

    def frame(self, records: list[dict[str, Any]]) -> pl.DataFrame:
        """One page of v2 records as the remote frame (see `remote_columns`)."""
        schema = self.remote_columns()
        if not records:
            return self.empty()
        plain = {n: t for n, t in BASE[self.entity].items() if n != "external_id"}
        # A standard scalar's column is its API key: read straight from the records, column-wise.
        standard = {c.column: c for c in self.columns if not c.custom and c.kind in _SCALAR_STANDARD}
        plain |= {name: kinds.remote_dtype(c.kind) for name, c in standard.items()}
        # strict=False: v2 sends integral values like 200 for a Float64 column; ints are fine as Int64
        frame = pl.from_dicts(records, schema=plain, strict=False)
        code, id_type = self.id_field.code, self.id_field.field_type
        extra = [
            pl.Series(
                "external_id",
                [canonical(id_type, cf.get(code)) if isinstance(cf := r.get("custom_fields"), dict) else None
                 for r in records],
                dtype=pl.Utf8,
            )
        ]  # fmt: skip
        for column in self.columns:
            if column.column in standard or column.kind == "person":
                continue
            values = [kinds.from_api(column.kind, _value(r, column)) for r in records]
            extra.append(pl.Series(column.column, values, dtype=kinds.remote_dtype(column.kind), strict=False))
        return frame.with_columns(extra).select(list(schema))

    def canonical_remote(self, remote: pl.DataFrame) -> pl.DataFrame:
        """The remote frame with enum and set option ids replaced by their labels, ready to compare."""
        named = [c for c in self.columns if c.kind in kinds.OPTION_KINDS and c.column in remote.columns]
        if not named:
            return remote
        return remote.with_columns(
            kinds.canonical_remote(c.kind, pl.col(c.column), c.labels()).alias(c.column) for c in named
        )

    # ---- bodies --------------------------------------------------------------------------------------------

    def create_body(self, row: Mapping[str, Any], person_id: int | None = None) -> dict[str, Any]:
        """POST body: every mapped value (empty ones left out) and the external id in its custom field."""
        body: dict[str, Any] = {}
        for column in self.columns:
            value = self._value(column, row, person_id)
            # An empty value is left out, except for a record's required text (a deal's title, a person's name):
            # Pipedrive then says why the row cannot be created.
            if value is None or value == [] or (value == "" and column.key not in REQUIRED):
                continue
            _put(body, column, value)
        body.setdefault("custom_fields", {})[self.id_field.code] = self.id_value(row)
        return body

    def patch_body(
        self, row: Mapping[str, Any], changed: Iterable[str], person_id: int | None = None
    ) -> dict[str, Any]:
        """PATCH body with only the changed columns; an emptied custom field is cleared with null."""
        body: dict[str, Any] = {}
        by_column = {c.column: c for c in self.columns}
        for name in changed:
            if name == "external_id":
                body.setdefault("custom_fields", {})[self.id_field.code] = self.id_value(row)
                continue
            column = by_column.get(name)
            if column is None:
                raise ValueError(f"{self.entity} {row.get('external_id')}: no API field for planned column '{name}'")
            value = self._value(column, row, person_id)
            _put(body, column, None if value == "" and (column.custom or column.key in NULLABLE) else value)
        return body

    def id_value(self, row: Mapping[str, Any]) -> str | int:
        external_id = str(row["external_id"])
        try:
            return self.id_field.to_api(external_id)
        except NotConvertible as exc:
            raise RowError(
                f"{self.entity} {external_id}: the custom field {self.id_field.name!r} ({self.id_field.field_type}) "
                f"cannot hold the id {external_id!r}: {exc}"
            ) from None

    def _value(self, column: Column, row: Mapping[str, Any], person_id: int | None) -> Any:
        if column.kind == "person":
            if person_id is None:
                raise RowError(
                    f"deal {row.get('external_id')}: person for customer {row.get(column.column)} has no Pipedrive id"
                )
            return int(person_id)
        if column.custom and column.code is None:
            raise RowError(f"{self.entity} {row.get('external_id')}: the custom field {column.name!r} does not exist")
        try:
            currency = str(row.get("currency") or self.currency)  # a deal's own currency; else the configured one
            return kinds.to_api(column.kind, row.get(column.column), column.options, currency)
        except KeyError:
            raise RowError(
                f"{self.entity} {row.get('external_id')}: the {column.kind} field {column.name!r} has no option "
                f"for {row.get(column.column)!r}"
            ) from None

    def written(self, row: Mapping[str, Any], record_id: int, person_id: int | None = None) -> dict[str, Any]:
        """What one successful create or update leaves in Pipedrive, in the remote frame's columns."""
        out: dict[str, Any] = {"id": int(record_id), "external_id": str(row["external_id"])}
        for column in self.columns:
            value = row.get(column.column)
            if column.kind == "person":
                out["person_id"] = None if person_id is None else int(person_id)
            elif column.kind == "enum":
                out[column.column] = None if value is None else column.options.get(kinds.label(value))
            elif column.kind == "set":
                parts = [] if value is None else str(value).split(kinds.SET_SEPARATOR)
                ids = sorted(i for p in parts if (i := column.options.get(kinds.label(p))) is not None)
                out[column.column] = ids or None
            else:
                out[column.column] = value
        return out

    def with_field(self, name: str, code: str, field_type: str, options: Mapping[str, int]) -> RecordSchema:
        """The schema once a custom field was created or got new options."""
        columns = tuple(
            replace(c, code=code, field_type=field_type, options=dict(options)) if c.custom and c.name == name else c
            for c in self.columns
        )
        return replace(self, columns=columns)


def _value(record: Mapping[str, Any], column: Column) -> Any:
    if column.custom:
        custom = record.get("custom_fields")
        return custom.get(column.code) if isinstance(custom, dict) and column.code else None
    return record.get(column.key or column.column)


def _put(body: dict[str, Any], column: Column, value: Any) -> None:
    if column.custom:
        assert column.code is not None
        body.setdefault("custom_fields", {})[column.code] = value
    else:
        body[column.key or column.column] = value
