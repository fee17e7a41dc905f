"""Pure: the record schema of today's fixed mapping, for callers that read without a configured mapping."""

from __future__ import annotations

from sync_job.pipedrive.entities import Entity
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField
from sync_job.pipedrive.record_schema import Column, RecordSchema
from sync_job.pipedrive.standard_fields import STANDARD

DEFAULT_COLUMNS: dict[Entity, tuple[str, ...]] = {
    "person": ("name",),
    "deal": ("title", "value", "currency", "person_id"),
}


def default_schema(entity: Entity, field_code: str, field_type: str = NEW_FIELD_TYPE, name: str = "") -> RecordSchema:
    """The schema of the default mapping (a person's name; a deal's title, value, currency and person)."""
    columns = []
    for key in DEFAULT_COLUMNS[entity]:
        standard = STANDARD[entity][key]
        column = "person_external_id" if key == "person_id" else key
        columns.append(Column(column, standard.kind, key, key=key))
    return RecordSchema(entity, IdField(field_code, name or field_code, field_type), tuple(columns))
