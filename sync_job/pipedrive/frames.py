"""Pure: the record schema of the default mapping, for callers that read or write without a configured mapping."""

from __future__ import annotations

from sync_job import mapping
from sync_job.pipedrive.entities import Entity
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField
from sync_job.pipedrive.fields import resolve_schema
from sync_job.pipedrive.record_schema import RecordSchema


def default_schema(entity: Entity, field_code: str, field_type: str = NEW_FIELD_TYPE, name: str = "") -> RecordSchema:
    """The schema of the default mapping (a person's name; a deal's title, value, currency and person)."""
    default = mapping.build({}, {"person": name, "deal": name}, value="value", currency="USD").of(entity)
    return resolve_schema(default, [], IdField(field_code, name or field_code, field_type))
