"""Pure: find a custom field's code by its name in v2 field lists, and the body that creates a missing one."""

from __future__ import annotations

from typing import Any

from sync_job.errors import ConfigError
from sync_job.mapping import EntityMapping
from sync_job.pipedrive import kinds
from sync_job.pipedrive.entities import ENTITY_PLURAL, FIELDS_PATH, Entity
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField, check_id_type
from sync_job.pipedrive.record_schema import Column, RecordSchema

__all__ = ["ENTITY_PLURAL", "FIELDS_PATH", "FieldGone", "FieldMissing", "resolve_schema"]


class FieldMissing(ConfigError):
    """The custom field does not exist and was not to be created (a dry run only reports it)."""


class FieldGone(ConfigError):
    """The external-id field existed on the previous run and is gone now: recreating it would double the CRM."""


def match_custom_field(items: list[dict[str, Any]], name: str, entity: Entity) -> str | None:
    """The `field_code` of the one custom field called `name`; None when absent, ConfigError when ambiguous.

    Only custom fields count: built-in and contact-sync fields may share a name (api-reference §8.1).
    """
    item = one_custom_field(items, name, entity)
    return None if item is None else str(item["field_code"])


def match_id_field(items: list[dict[str, Any]], name: str, entity: Entity) -> IdField | None:
    """The external-id field called `name` with its type; ConfigError when ambiguous or of a type without ids."""
    item = one_custom_field(items, name, entity)
    if item is None:
        return None
    field_type = str(item.get("field_type") or "")
    check_id_type(ENTITY_PLURAL[entity], name, field_type)
    return IdField(str(item["field_code"]), name, field_type)


def one_custom_field(items: list[dict[str, Any]], name: str, entity: Entity) -> dict[str, Any] | None:
    """The definition of the one custom field called `name`; None when absent, ConfigError when ambiguous."""
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


def resolve_schema(
    mapping: EntityMapping, items: list[dict[str, Any]], id_field: IdField, currency: str = "USD"
) -> RecordSchema:
    """The mapping's columns as this account has them: a custom field found by name is used as it is, whatever its
    type, if a mapping can write that type (ConfigError otherwise); a missing one is to be created (`code` None).
    """
    columns = []
    for field in mapping.fields:
        if field.standard is not None:
            columns.append(Column(field.column, field.standard.kind, field.target, key=field.standard.key))
            continue
        item = one_custom_field(items, field.target, mapping.entity)
        if item is None:
            columns.append(
                Column(field.column, kinds.CUSTOM_KINDS[field.create_type], field.target, field_type=field.create_type)
            )
            continue
        field_type = str(item.get("field_type") or "")
        kind = kinds.CUSTOM_KINDS.get(field_type)
        if kind is None:
            raise ConfigError(
                f"{ENTITY_PLURAL[mapping.entity]}.fields.{field.target!r}: the custom field has type {field_type!r}, "
                f"which a mapping cannot write (it can write {', '.join(kinds.CUSTOM_KINDS)}): map another field"
            )
        options = {kinds.label(o["label"]): int(o["id"]) for o in item.get("options") or [] if "id" in o}
        columns.append(
            Column(
                field.column, kind, field.target, code=str(item["field_code"]), field_type=field_type, options=options
            )
        )
    return RecordSchema(mapping.entity, id_field, tuple(columns), currency)


def create_custom_field_body(name: str, field_type: str, labels: list[str]) -> dict[str, Any]:
    """The POST body that creates a mapped custom field; an enum needs its options at once (api-reference §8.4)."""
    body: dict[str, Any] = {"field_name": name, "field_type": field_type}
    if field_type in ("enum", "set"):
        body["options"] = [{"label": label} for label in labels]
    return body
