"""Strict v2 value checks (pure): dates, contacts, custom-field values, field definitions; the 400s of bad bodies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, cast

from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.fields import CREATABLE_TYPES, FieldDef, FieldRegistry

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIELD_SETTINGS = ("ui_visibility", "important_fields", "required_fields")  # objects the sandbox accepts and ignores

_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _kind(value: object) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def expect(ok: bool, key: str, wanted: str, value: object) -> None:
    if not ok:
        raise bad_request(f"Invalid value for '{key}': expected {wanted}, got {_kind(value)} {value!r:.60}")


def check_date(key: str, value: object) -> None:
    expect(isinstance(value, str) and bool(_DATE.match(value)), key, "a date YYYY-MM-DD", value)
    try:
        date.fromisoformat(str(value))
    except ValueError:
        raise bad_request(f"Invalid value for '{key}': {value!r} is not a calendar date") from None


def parse_rfc3339(key: str, value: object) -> datetime:
    """RFC 3339 timestamp (Z or offset); naive means UTC like the API's own values."""
    expect(isinstance(value, str), key, "an RFC 3339 date-time string", value)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid value for '{key}': {text!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def contacts(key: str, value: object) -> list[dict[str, Any]]:
    """emails/phones: objects with a string value; label defaults to work; at most one primary."""
    expect(isinstance(value, list), key, "an array of objects", value)
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(cast(list[Any], value)):
        item_key = f"{key}[{i}]"
        expect(isinstance(entry, dict), item_key, "an object {value, primary, label}", entry)
        unknown = set(entry) - {"value", "primary", "label"}
        if unknown:
            raise bad_request(f"Invalid value for '{item_key}': unknown key(s) {sorted(unknown)}")
        expect(isinstance(entry.get("value"), str), f"{item_key}.value", "a string", entry.get("value"))
        primary = entry.get("primary", False)
        expect(isinstance(primary, bool), f"{item_key}.primary", "a boolean", primary)
        label = entry.get("label", "work")
        expect(isinstance(label, str), f"{item_key}.label", "a string", label)
        out.append({"value": entry["value"], "primary": primary, "label": label})
    primaries = sum(1 for e in out if e["primary"])
    if primaries > 1:
        raise bad_request(f"Invalid value for '{key}': at most one entry may be primary")
    if out and primaries == 0:
        out[0]["primary"] = True
    return out


def custom_value(fd: FieldDef, value: object) -> object:
    """One custom-field value, checked against its field type (reference §8.2 v2 column); None clears."""
    if value is None:
        return None
    key = f"custom_fields.{fd.code}"
    wanted = f"({fd.name}, {fd.field_type})"
    t = fd.field_type
    if t in ("varchar", "varchar_auto", "text", "phone"):
        expect(isinstance(value, str), key, f"a string {wanted}", value)
        if t == "varchar" and len(str(value)) > 255:
            raise bad_request(f"Invalid value for '{key}': varchar holds at most 255 characters")
    elif t == "date":
        check_date(key, value)
    elif t == "double":
        expect(is_number(value), key, f"a number {wanted}", value)
    elif t in ("user", "org", "people"):
        expect(is_int(value), key, f"an integer id {wanted}", value)
    elif t == "monetary":
        money = value if isinstance(value, dict) else {}
        expect(is_number(money.get("value")), key, f"{{value, currency}} {wanted}", value)
        currency = money.get("currency")
        expect(currency is None or isinstance(currency, str), f"{key}.currency", "a string", currency)
    elif t in ("enum", "set"):
        ids = {int(o["id"]) for o in fd.options or []}
        items = value if t == "set" else [value]
        expect(isinstance(items, list) and len(items) > 0, key, f"a non-empty array of option ids {wanted}", value)
        for item in cast(list[Any], items):
            expect(is_int(item), key, f"option ids (integers) {wanted}", item)
            if item not in ids:
                raise bad_request(f"Invalid value for '{key}': option id {item} does not exist")
    else:  # address, daterange, time, timerange: objects with at least a value
        expect(isinstance(value, dict) and "value" in value, key, f"an object with 'value' {wanted}", value)
    return value


def custom_fields(registry: FieldRegistry, value: object) -> dict[str, object]:
    expect(isinstance(value, dict), "custom_fields", "an object keyed by field code", value)
    out: dict[str, object] = {}
    for code, raw in cast(dict[str, Any], value).items():
        fd = registry.by_code.get(code)
        if fd is None or not fd.custom:
            raise bad_request(f"Unknown custom field key '{code}' in custom_fields for {registry.entity}")
        out[code] = custom_value(fd, raw)
    return out


def option_label(key: str, value: object) -> str:
    """An option label: 1..255 characters (spec: the options endpoints' label minLength/maxLength)."""
    expect(isinstance(value, str) and 1 <= len(value) <= 255, key, "a label of 1 to 255 characters", value)
    return str(value)


def unique_labels(labels: list[str], taken: Iterable[str] = ()) -> None:
    """Labels unique within one field, compared exactly (case and spaces count).

    The spec does not say whether Pipedrive refuses a duplicate label. The job maps labels to option ids and must
    find exactly one id per label, so the sandbox refuses a duplicate rather than guess which of two ids it meant.
    """
    seen = set(taken)
    for label in labels:
        if label in seen:
            raise bad_request(f"Option label {label!r} already exists on this field: labels must be unique per field")
        seen.add(label)


def _option_items(key: str, value: object, allowed: frozenset[str], what: str) -> list[dict[str, Any]]:
    """A non-empty array of objects holding only `allowed` keys (each key required)."""
    expect(isinstance(value, list) and len(value) > 0, key, f"a non-empty array of {what}", value)
    items = cast(list[Any], value)
    for i, item in enumerate(items):
        expect(isinstance(item, dict), f"{key}[{i}]", what, item)
        missing, unknown = allowed - set(item), set(item) - allowed
        if missing or unknown:
            raise bad_request(f"Invalid value for '{key}[{i}]': expected {what}, got keys {sorted(item)}")
    return cast(list[dict[str, Any]], items)


def new_option_labels(key: str, value: object) -> list[str]:
    """[{label}, ...] (field create and POST …/options) -> the labels, each valid, none repeated."""
    items = _option_items(key, value, frozenset({"label"}), "{label}")
    labels = [option_label(f"{key}[{i}].label", item["label"]) for i, item in enumerate(items)]
    unique_labels(labels)
    return labels


def option_ids(key: str, items: list[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for i, item in enumerate(items):
        expect(is_int(item["id"]), f"{key}[{i}].id", "an option id (integer)", item["id"])
        if item["id"] in ids:
            raise bad_request(f"Invalid value for '{key}[{i}].id': option {item['id']} is listed twice")
        ids.append(item["id"])
    return ids


def relabels(value: object) -> list[tuple[int, str]]:
    """PATCH …/options body [{id, label}, ...] -> (id, new label) pairs."""
    items = _option_items("body", value, frozenset({"id", "label"}), "{id, label}")
    ids = option_ids("body", items)
    return [(oid, option_label(f"body[{i}].label", items[i]["label"])) for i, oid in enumerate(ids)]


def removals(value: object) -> list[int]:
    """DELETE …/options body [{id}, ...] -> the option ids."""
    return option_ids("body", _option_items("body", value, frozenset({"id"}), "{id}"))


def field_body(body: object) -> tuple[str, str, list[str] | None, str | None]:
    """A field create body (spec: addDealField) -> (field_name, field_type, option labels, description)."""
    expect(isinstance(body, dict), "body", "a JSON object", body)
    assert isinstance(body, dict)
    for key in body:
        if key not in ("field_name", "field_type", "options", "description", *_FIELD_SETTINGS):
            raise bad_request(f"Unknown field '{key}' for a field definition")
    name, field_type = body.get("field_name"), body.get("field_type")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise bad_request("'field_name' is required and must be a non-empty string of at most 255 characters")
    if field_type not in CREATABLE_TYPES:
        raise bad_request(f"'field_type' is required and must be one of {sorted(CREATABLE_TYPES)}")
    for key in _FIELD_SETTINGS:
        expect(body.get(key) is None or isinstance(body[key], dict), key, "an object", body.get(key))
    labels: list[str] | None = None
    if field_type in ("enum", "set"):
        if "options" not in body:
            raise bad_request(f'\'options\' is required for a {field_type} field: [{{"label": "..."}}]')
        labels = new_option_labels("options", body["options"])
    elif body.get("options") is not None:
        # The spec only says options are "required for enum and set"; options sent with another type would be
        # dropped, and a mapping that sends them has the field type wrong: refuse instead.
        raise bad_request(f"'options' only apply to enum and set fields, not {field_type}")
    description = body.get("description")
    expect(description is None or isinstance(description, str), "description", "a string", description)
    return name, str(field_type), labels, description
