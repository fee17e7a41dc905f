"""Pure: find a custom field's code by its name in v2 field lists, and the body that creates a missing one."""

from __future__ import annotations

from typing import Any, Literal

from sync_job.errors import ConfigError
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField, check_id_type


class FieldMissing(ConfigError):
    """The custom field does not exist and was not to be created (a dry run only reports it)."""


class FieldGone(ConfigError):
    """The external-id field existed on the previous run and is gone now: recreating it would double the CRM."""


Entity = Literal["person", "deal"]

FIELDS_PATH: dict[Entity, str] = {"person": "/api/v2/personFields", "deal": "/api/v2/dealFields"}
ENTITY_PLURAL: dict[Entity, str] = {"person": "persons", "deal": "deals"}


def match_custom_field(items: list[dict[str, Any]], name: str, entity: Entity) -> str | None:
    """The `field_code` of the one custom field called `name`; None when absent, ConfigError when ambiguous.

    Only custom fields count: built-in and contact-sync fields may share a name (api-reference §8.1).
    """
    item = _one_custom_field(items, name, entity)
    return None if item is None else str(item["field_code"])


def match_id_field(items: list[dict[str, Any]], name: str, entity: Entity) -> IdField | None:
    """The external-id field called `name` with its type; ConfigError when ambiguous or of a type without ids."""
    item = _one_custom_field(items, name, entity)
    if item is None:
        return None
    field_type = str(item.get("field_type") or "")
    check_id_type(ENTITY_PLURAL[entity], name, field_type)
    return IdField(str(item["field_code"]), name, field_type)


def _one_custom_field(items: list[dict[str, Any]], name: str, entity: Entity) -> dict[str, Any] | None:
    wanted = name.strip()
    found = [
        item
        for item in items
        if item.get("is_custom_field") and str(item.get("field_name", "")).strip() == wanted and item.get("field_code")
    ]
    if len(found) > 1:
        codes = ", ".join(str(item["field_code"]) for item in found)
        raise ConfigError(
            f"the {ENTITY_PLURAL[entity]} custom field name {name!r} is ambiguous: {len(found)} custom fields carry it "
            f"(field codes {codes}); rename or delete all but one in Pipedrive"
        )
    return found[0] if found else None


def create_field_body(name: str) -> dict[str, Any]:
    """The POST body that creates the external-id field."""
    return {"field_name": name, "field_type": NEW_FIELD_TYPE}
