"""Pure mapping of plan rows to Pipedrive v2 request bodies (JSON-native values only)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from sync_job.errors import RowError
from sync_job.pipedrive.field_types import IdField, NotConvertible

Entity = Literal["person", "deal"]

# Plan column -> API body field, per entity. `external_id` goes inside `custom_fields` under the field code, and
# the deal's person link is planned as the customer's external id but sent as the resolved Pipedrive person id.
_FIELDS: dict[str, dict[str, str]] = {
    "person": {"name": "name"},
    "deal": {"title": "title", "value": "value", "currency": "currency", "person_external_id": "person_id"},
}


def money(value: float | int | None) -> float:
    """Currency units rounded to the cent exactly as the diff compares them (half away from zero)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    cents = round(float(value) * 100, 6)  # drop float noise first: 12.345 * 100 = 1234.4999…
    whole = math.floor(abs(cents) + 0.5)
    return math.copysign(whole, cents) / 100 if whole else 0.0


def person_body(row: Mapping[str, Any], field: IdField) -> dict[str, Any]:
    """POST /api/v2/persons body: the name and the customer id in its custom field."""
    return {"name": _text(row["name"]), "custom_fields": id_value("person", row, field)}


def deal_body(row: Mapping[str, Any], field: IdField, person_id: int | None) -> dict[str, Any]:
    """POST /api/v2/deals body; RowError when the deal's person has no Pipedrive id (its create failed)."""
    return {
        "title": _text(row["title"]),
        "value": money(row["value"]),
        "currency": _text(row["currency"]),
        "person_id": _person_id(row, person_id),
        "custom_fields": id_value("deal", row, field),
    }


def id_value(entity: Entity, row: Mapping[str, Any], field: IdField) -> dict[str, Any]:
    """`custom_fields` holding the row's external id in the field's type; RowError naming row, field and value."""
    external_id = str(row["external_id"])
    try:
        return {field.code: field.to_api(external_id)}
    except NotConvertible as exc:
        raise RowError(
            f"{entity} {external_id}: the custom field {field.name!r} ({field.field_type}) cannot hold "
            f"the id {external_id!r}: {exc}"
        ) from None


def patch_body(entity: Entity, row: Mapping[str, Any], changed: Iterable[str], field: IdField) -> dict[str, Any]:
    """PATCH body with only the changed fields; a changed person link needs `person_id` resolved on the row."""
    fields = _FIELDS[entity]
    body: dict[str, Any] = {}
    for column in changed:
        if column == "external_id":
            body["custom_fields"] = id_value(entity, row, field)
        elif column == "value":
            body["value"] = money(row["value"])
        elif column == "person_external_id":
            body["person_id"] = _person_id(row, row.get("person_id"))
        elif column in fields:
            body[fields[column]] = _text(row[column])
        else:
            raise ValueError(f"{entity} {row.get('external_id')}: no API field for planned column '{column}'")
    return body


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _person_id(row: Mapping[str, Any], person_id: int | None) -> int:
    if person_id is None:
        raise RowError(
            f"deal {row.get('external_id')}: person for customer {row.get('person_external_id')} has no Pipedrive id"
        )
    return int(person_id)
