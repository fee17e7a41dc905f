"""Strict v2 request-body validation (pure): the 400s a real account answers for malformed bodies."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, cast

from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.fields import CREATABLE_TYPES, FIELD_CODE, FieldDef, FieldRegistry

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
VISIBLE_TO = frozenset({1, 3, 5, 7})
DEAL_STATUSES = frozenset({"open", "won", "lost"})
MARKETING = frozenset({"no_consent", "unsubscribed", "subscribed", "archived"})

_TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def _kind(value: object) -> str:
    return "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _expect(ok: bool, key: str, wanted: str, value: object) -> None:
    if not ok:
        raise bad_request(f"Invalid value for '{key}': expected {wanted}, got {_kind(value)} {value!r:.60}")


def _check_date(key: str, value: object) -> None:
    _expect(isinstance(value, str) and bool(_DATE.match(value)), key, "a date YYYY-MM-DD", value)
    try:
        date.fromisoformat(str(value))
    except ValueError:
        raise bad_request(f"Invalid value for '{key}': {value!r} is not a calendar date") from None


def parse_rfc3339(key: str, value: object) -> datetime:
    """RFC 3339 timestamp (Z or offset); naive means UTC like the API's own values."""
    _expect(isinstance(value, str), key, "an RFC 3339 date-time string", value)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise bad_request(f"Invalid value for '{key}': {text!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _contacts(key: str, value: object) -> list[dict[str, Any]]:
    """emails/phones: objects with a string value; label defaults to work; at most one primary."""
    _expect(isinstance(value, list), key, "an array of objects", value)
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(cast(list[Any], value)):
        item_key = f"{key}[{i}]"
        _expect(isinstance(entry, dict), item_key, "an object {value, primary, label}", entry)
        unknown = set(entry) - {"value", "primary", "label"}
        if unknown:
            raise bad_request(f"Invalid value for '{item_key}': unknown key(s) {sorted(unknown)}")
        _expect(isinstance(entry.get("value"), str), f"{item_key}.value", "a string", entry.get("value"))
        primary = entry.get("primary", False)
        _expect(isinstance(primary, bool), f"{item_key}.primary", "a boolean", primary)
        label = entry.get("label", "work")
        _expect(isinstance(label, str), f"{item_key}.label", "a string", label)
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
        _expect(isinstance(value, str), key, f"a string {wanted}", value)
        if t == "varchar" and len(str(value)) > 255:
            raise bad_request(f"Invalid value for '{key}': varchar holds at most 255 characters")
    elif t == "date":
        _check_date(key, value)
    elif t == "double":
        _expect(is_number(value), key, f"a number {wanted}", value)
    elif t in ("user", "org", "people"):
        _expect(is_int(value), key, f"an integer id {wanted}", value)
    elif t == "monetary":
        money = value if isinstance(value, dict) else {}
        _expect(is_number(money.get("value")), key, f"{{value, currency}} {wanted}", value)
        currency = money.get("currency")
        _expect(currency is None or isinstance(currency, str), f"{key}.currency", "a string", currency)
    elif t in ("enum", "set"):
        ids = {int(o["id"]) for o in fd.options or []}
        items = value if t == "set" else [value]
        _expect(isinstance(items, list) and len(items) > 0, key, f"a non-empty array of option ids {wanted}", value)
        for item in cast(list[Any], items):
            _expect(is_int(item), key, f"option ids (integers) {wanted}", item)
            if item not in ids:
                raise bad_request(f"Invalid value for '{key}': option id {item} does not exist")
    else:  # address, daterange, time, timerange: objects with at least a value
        _expect(isinstance(value, dict) and "value" in value, key, f"an object with 'value' {wanted}", value)
    return value


def custom_fields(registry: FieldRegistry, value: object) -> dict[str, object]:
    _expect(isinstance(value, dict), "custom_fields", "an object keyed by field code", value)
    out: dict[str, object] = {}
    for code, raw in cast(dict[str, Any], value).items():
        fd = registry.by_code.get(code)
        if fd is None or not fd.custom:
            raise bad_request(f"Unknown custom field key '{code}' in custom_fields for {registry.entity}")
        out[code] = custom_value(fd, raw)
    return out


def _top_level_keys(body: Mapping[str, Any], allowed: frozenset[str], entity: str) -> None:
    for key in body:
        if FIELD_CODE.match(key):
            raise bad_request(f"Custom field '{key}' sent at the top level: v2 expects it inside custom_fields")
        if key not in allowed:
            raise bad_request(f"Unknown field '{key}' for {entity}")


_PERSON_KEYS = frozenset(
    [
        "name",
        "first_name",
        "last_name",
        "owner_id",
        "org_id",
        "emails",
        "phones",
        "visible_to",
        "label_ids",
        "marketing_status",
        "add_time",
        "custom_fields",
        "postal_address",
        "notes",
        "im",
        "birthday",
        "job_title",
    ]
)
_DEAL_KEYS = frozenset(
    [
        "title",
        "owner_id",
        "person_id",
        "org_id",
        "pipeline_id",
        "stage_id",
        "value",
        "currency",
        "is_deleted",
        "is_archived",
        "archive_time",
        "status",
        "probability",
        "lost_reason",
        "visible_to",
        "close_time",
        "won_time",
        "lost_time",
        "expected_close_date",
        "label_ids",
        "custom_fields",
    ]
)


def _common(key: str, value: object) -> object:
    """Checks shared by persons and deals; returns the normalised value."""
    if key in ("owner_id", "pipeline_id", "stage_id"):
        _expect(is_int(value), key, "an integer", value)
    elif key in ("org_id", "person_id"):
        _expect(value is None or is_int(value), key, "an integer or null", value)
    elif key == "visible_to":
        _expect(is_int(value) and value in VISIBLE_TO, key, "one of 1, 3, 5, 7 (integer)", value)
    elif key == "label_ids":
        _expect(isinstance(value, list) and all(is_int(v) for v in value), key, "an array of integers", value)
    elif key in ("notes", "birthday", "job_title", "archive_time", "won_time", "lost_time", "title", "name"):
        _expect(isinstance(value, str), key, "a string", value)
    elif key in ("first_name", "last_name"):
        _expect(isinstance(value, str) and value.strip() != "", key, "a non-empty string", value)
    elif key in ("is_deleted", "is_archived"):
        _expect(isinstance(value, bool), key, "a boolean (true or false)", value)
    elif key in ("im",):
        return _contacts(key, value)
    elif key in ("postal_address",):
        _expect(isinstance(value, dict), key, "an object", value)
    return value


def person_body(body: object, registry: FieldRegistry, *, create: bool) -> dict[str, Any]:
    """Validated person changes; name/first/last consistency is resolved by the store."""
    _expect(isinstance(body, dict), "body", "a JSON object", body)
    assert isinstance(body, dict)
    _top_level_keys(body, _PERSON_KEYS if create else _PERSON_KEYS - {"add_time"}, "person")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key == "custom_fields":
            changes[key] = custom_fields(registry, value)
        elif key in ("emails", "phones"):
            changes[key] = _contacts(key, value)
        elif key == "marketing_status":
            _expect(value in MARKETING, key, f"one of {sorted(MARKETING)}", value)
            changes[key] = value
        elif key == "add_time":
            parse_rfc3339(key, value)
            changes[key] = value
        else:
            changes[key] = _common(key, value)
    if "name" in changes and not str(changes["name"]).strip():
        raise bad_request("Invalid value for 'name': must not be empty")
    if create and "name" not in changes and not ("first_name" in changes and "last_name" in changes):
        raise bad_request("Person needs 'name', or both 'first_name' and 'last_name'")
    return changes


def deal_body(
    body: object, registry: FieldRegistry, *, create: bool, person_exists: Callable[[int], bool]
) -> dict[str, Any]:
    """Validated deal changes (status-dependent fields are checked against the resulting status by the store)."""
    _expect(isinstance(body, dict), "body", "a JSON object", body)
    assert isinstance(body, dict)
    _top_level_keys(body, _DEAL_KEYS, "deal")
    changes: dict[str, Any] = {}
    for key, value in body.items():
        if key == "custom_fields":
            changes[key] = custom_fields(registry, value)
        elif key == "value":
            _expect(is_number(value), key, "a number", value)
            changes[key] = value
        elif key == "currency":
            _expect(isinstance(value, str) and bool(_CURRENCY.match(value)), key, "a 3-letter currency code", value)
            changes[key] = value
        elif key == "status":
            _expect(value in DEAL_STATUSES, key, "one of open, won, lost", value)
            changes[key] = value
        elif key == "probability":
            _expect(value is None or is_number(value), key, "a number or null", value)
            changes[key] = value
        elif key in ("lost_reason", "close_time"):
            _expect(value is None or isinstance(value, str), key, "a string or null", value)
            changes[key] = value
        elif key == "expected_close_date":
            if value is not None:
                _check_date(key, value)
            changes[key] = value
        else:
            changes[key] = _common(key, value)
    if create and not str(changes.get("title", "")).strip():
        raise bad_request("Deal needs a non-empty 'title'")
    if "title" in changes and not str(changes["title"]).strip():
        raise bad_request("Invalid value for 'title': must not be empty")
    if create and changes.get("is_deleted") is True:
        raise bad_request("Cannot create an already-deleted deal")
    person_id = changes.get("person_id")
    if person_id is not None and not person_exists(person_id):
        raise bad_request(f"Invalid value for 'person_id': person {person_id} does not exist")
    return changes


def field_body(body: object) -> tuple[str, str, list[str] | None, str | None]:
    """A field create body -> (field_name, field_type, option labels, description)."""
    _expect(isinstance(body, dict), "body", "a JSON object", body)
    assert isinstance(body, dict)
    allowed = {"field_name", "field_type", "options", "description", "ui_visibility", "important_fields"}
    for key in body:
        if key not in allowed | {"required_fields"}:
            raise bad_request(f"Unknown field '{key}' for a field definition")
    name, field_type = body.get("field_name"), body.get("field_type")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("'field_name' is required and must be a non-empty string")
    if field_type not in CREATABLE_TYPES:
        raise bad_request(f"'field_type' is required and must be one of {sorted(CREATABLE_TYPES)}")
    labels: list[str] | None = None
    if field_type in ("enum", "set"):
        options = body.get("options")
        if not isinstance(options, list) or not options:
            raise bad_request(f'\'options\' is required for a {field_type} field: [{{"label": "..."}}]')
        labels = []
        for option in options:
            _expect(isinstance(option, dict) and isinstance(option.get("label"), str), "options[]", "{label}", option)
            labels.append(option["label"])
    description = body.get("description")
    _expect(description is None or isinstance(description, str), "description", "a string", description)
    return name, str(field_type), labels, description
