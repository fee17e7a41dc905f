"""Pure: find a custom field's code by its name in v2 field lists, and the body that creates a missing one."""

from __future__ import annotations

from typing import Any, Literal

from sync_job.errors import ConfigError


class FieldMissing(ConfigError):
    """The custom field does not exist and was not to be created (a dry run only reports it)."""


class FieldGone(ConfigError):
    """The external-id field existed on the previous run and is gone now: recreating it would double the CRM."""


Entity = Literal["person", "deal"]

FIELDS_PATH: dict[Entity, str] = {"person": "/api/v2/personFields", "deal": "/api/v2/dealFields"}
ENTITY_PLURAL: dict[Entity, str] = {"person": "persons", "deal": "deals"}

# varchar ("Text, up to 255 characters"), not text (65k): an id is short, varchar is searchable (api-reference §6)
# so a person can find a record by its id in the UI, and it shows as a one-line field.
NEW_FIELD_TYPE = "varchar"


def match_custom_field(items: list[dict[str, Any]], name: str, entity: Entity) -> str | None:
    """The `field_code` of the one custom field called `name`; None when absent, ConfigError when ambiguous.

    Only custom fields count: built-in and contact-sync fields may share a name (api-reference §8.1).
    """
    wanted = name.strip()
    codes = [
        str(item["field_code"])
        for item in items
        if item.get("is_custom_field") and str(item.get("field_name", "")).strip() == wanted and item.get("field_code")
    ]
    if len(codes) > 1:
        raise ConfigError(
            f"the {ENTITY_PLURAL[entity]} custom field name {name!r} is ambiguous: {len(codes)} custom fields carry it "
            f"(field codes {', '.join(codes)}); rename or delete all but one in Pipedrive"
        )
    return codes[0] if codes else None


def create_field_body(name: str) -> dict[str, Any]:
    """The POST body that creates the external-id field."""
    return {"field_name": name, "field_type": NEW_FIELD_TYPE}
