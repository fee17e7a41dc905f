"""Pure: one page of v2 list JSON -> a Polars frame with the remote columns, built column-wise."""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, canonical

Entity = Literal["person", "deal"]

PERSON_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "name": pl.Utf8(),
    "external_id": pl.Utf8(),
    "update_time": pl.Utf8(),
}
DEAL_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "title": pl.Utf8(),
    "value": pl.Float64(),
    "currency": pl.Utf8(),
    "person_id": pl.Int64(),
    "status": pl.Utf8(),
    "update_time": pl.Utf8(),
    "external_id": pl.Utf8(),
}
SCHEMAS: dict[Entity, dict[str, pl.DataType]] = {"person": PERSON_SCHEMA, "deal": DEAL_SCHEMA}


def empty_frame(entity: Entity) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[entity])


def external_ids(records: list[dict[str, Any]], field_code: str, field_type: str = NEW_FIELD_TYPE) -> list[str | None]:
    """The custom field's value of each record as the text a source id has (see field_types.canonical)."""
    return [
        canonical(field_type, cf.get(field_code)) if isinstance(cf := r.get("custom_fields"), dict) else None
        for r in records
    ]


def page_frame(
    entity: Entity, records: list[dict[str, Any]], field_code: str, field_type: str = NEW_FIELD_TYPE
) -> pl.DataFrame:
    """Build the remote frame of one page; `external_id` is the custom field's value as id text (or null)."""
    schema = SCHEMAS[entity]
    if not records:
        return empty_frame(entity)
    plain = {name: dtype for name, dtype in schema.items() if name != "external_id"}
    # strict=False: v2 sends integral values like 200 for a Float64 column, ints are fine as Int64
    frame = pl.from_dicts(records, schema=plain, strict=False)
    ext = pl.Series("external_id", external_ids(records, field_code, field_type), dtype=pl.Utf8)
    return frame.with_columns(ext).select(list(schema))
