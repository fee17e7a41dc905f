"""Deal and person write bodies, checked key by key against the v2 spec's POST/PATCH request schemas (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sync_job.sandbox import catalog
from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.fields import FIELD_CODE, FieldRegistry
from sync_job.sandbox.paging import dt_to_us, us_to_rfc3339
from sync_job.sandbox.validate import (
    check_date,
    contacts,
    custom_fields,
    expect,
    is_int,
    is_number,
    parse_rfc3339,
)

Check = Callable[[str, Any], Any]  # (key, value) -> the value to store; raises a 400 ApiError

_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ARCHIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
VISIBLE_TO = frozenset({1, 3, 5, 7})
DEAL_STATUSES = ("open", "won", "lost")  # the spec types status as a bare string; the values are the reference's
MARKETING = ("no_consent", "unsubscribed", "subscribed", "archived")
_ADDRESS_PARTS = frozenset(
    ["value", "country", "admin_area_level_1", "admin_area_level_2", "locality", "sublocality", "route",
     "street_number", "subpremise", "postal_code"]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Key:
    """One request-body key: its check, and whether the spec marks it nullable."""

    check: Check
    nullable: bool = False


def _string(key: str, value: Any) -> str:
    expect(isinstance(value, str), key, "a string", value)
    return cast(str, value)


def _non_blank(key: str, value: Any) -> str:
    expect(isinstance(value, str) and value.strip() != "", key, "a non-empty string", value)
    return cast(str, value)


def _integer(key: str, value: Any) -> int:
    expect(is_int(value), key, "an integer", value)
    return cast(int, value)


def _number(key: str, value: Any) -> float | int:
    expect(is_number(value), key, "a number", value)
    return cast(float | int, value)


def _boolean(key: str, value: Any) -> bool:
    expect(isinstance(value, bool), key, "a boolean (true or false)", value)
    return cast(bool, value)


def _int_array(key: str, value: Any) -> list[int]:
    expect(isinstance(value, list) and all(is_int(v) for v in value), key, "an array of integers", value)
    return cast(list[int], value)


def _date(key: str, value: Any) -> str:
    check_date(key, value)
    return cast(str, value)


def _date_time(key: str, value: Any) -> str:
    """Stored the way responses show times (RFC 3339, UTC), whatever offset the request used."""
    return us_to_rfc3339(dt_to_us(parse_rfc3339(key, value)))


def _archive_time(key: str, value: Any) -> str:
    # the spec's own words: "in UTC. Format: YYYY-MM-DD HH:MM:SS"
    expect(isinstance(value, str) and bool(_ARCHIVE_TIME.match(value)), key, "'YYYY-MM-DD HH:MM:SS' (UTC)", value)
    parse_rfc3339(key, value)  # a calendar date and a clock time
    return cast(str, value)


def _currency(key: str, value: Any) -> str:
    # The spec says only "string"; a three-letter code is what every account accepts, so a mapping bug shows early.
    expect(isinstance(value, str) and bool(_CURRENCY.match(value)), key, "a 3-letter currency code", value)
    return cast(str, value)


def _visible_to(key: str, value: Any) -> int:
    expect(is_int(value) and value in VISIBLE_TO, key, "one of 1, 3, 5, 7 (integer)", value)
    return cast(int, value)


def _one_of(values: tuple[str, ...]) -> Check:
    def check(key: str, value: Any) -> str:
        expect(value in values, key, f"one of {', '.join(values)}", value)
        return cast(str, value)

    return check


def _notes(key: str, value: Any) -> str:
    if len(_string(key, value)) > 10_000:  # "maximum 10 000 characters" (spec, addPerson)
        raise bad_request(f"Invalid value for '{key}': at most 10000 characters")
    return cast(str, value)


def _address(key: str, value: Any) -> dict[str, str]:
    expect(isinstance(value, dict), key, "an object (PersonItemAddress)", value)
    for part, text in cast(dict[str, Any], value).items():
        if part not in _ADDRESS_PARTS:
            raise bad_request(f"Invalid value for '{key}': unknown key '{part}'")
        _string(f"{key}.{part}", text)
    return cast(dict[str, str], value)


def _user(key: str, value: Any) -> int:
    if _integer(key, value) not in catalog.USER_IDS:
        raise bad_request(f"Invalid value for '{key}': user {value} does not exist")
    return cast(int, value)


def _pipeline(key: str, value: Any) -> int:
    if _integer(key, value) not in catalog.PIPELINE_BY_ID:
        raise bad_request(f"Invalid value for '{key}': pipeline {value} does not exist")
    return cast(int, value)


def _stage(key: str, value: Any) -> int:
    if _integer(key, value) not in catalog.STAGE_BY_ID:
        raise bad_request(f"Invalid value for '{key}': stage {value} does not exist")
    return cast(int, value)


# POST /api/v2/deals and PATCH /api/v2/deals/{id} share one request schema (custom_fields is checked on its own).
DEAL_KEYS: dict[str, Key] = {
    "title": Key(_non_blank), "owner_id": Key(_user), "person_id": Key(_integer), "org_id": Key(_integer),
    "pipeline_id": Key(_pipeline), "stage_id": Key(_stage), "value": Key(_number), "currency": Key(_currency),
    "is_deleted": Key(_boolean), "is_archived": Key(_boolean), "archive_time": Key(_archive_time),
    "status": Key(_one_of(DEAL_STATUSES)), "probability": Key(_number, nullable=True),
    "lost_reason": Key(_string, nullable=True), "visible_to": Key(_visible_to),
    "close_time": Key(_date_time, nullable=True), "won_time": Key(_date_time), "lost_time": Key(_date_time),
    "expected_close_date": Key(_date), "label_ids": Key(_int_array),
}  # fmt: skip
# POST /api/v2/persons; PATCH has the same keys but add_time. first_name and last_name are not in the spec's schema,
# but the migration guide accepts them in place of name (reference §5.3), and the job may send them.
PERSON_KEYS: dict[str, Key] = {
    "name": Key(_non_blank), "first_name": Key(_non_blank), "last_name": Key(_non_blank), "owner_id": Key(_user),
    "org_id": Key(_integer), "add_time": Key(_string), "emails": Key(contacts), "phones": Key(contacts),
    "visible_to": Key(_visible_to), "label_ids": Key(_int_array), "postal_address": Key(_address),
    "notes": Key(_notes), "im": Key(contacts), "birthday": Key(_string), "job_title": Key(_string),
    "marketing_status": Key(_one_of(MARKETING)),
}  # fmt: skip
# In the response schemas (Deal, Person, the reference's examples) but not in the request schemas: the API sets them.
DEAL_READ_ONLY = frozenset(
    ["id", "creator_user_id", "add_time", "update_time", "stage_change_time", "origin", "origin_id", "channel",
     "channel_id", "source_lead_id", "arr", "mrr", "acv", "local_won_date", "local_lost_date", "local_close_date"]
)  # fmt: skip
PERSON_READ_ONLY = frozenset(["id", "update_time", "is_deleted", "picture_id"])


def _checked(
    body: object, keys: Mapping[str, Key], read_only: frozenset[str], registry: FieldRegistry, what: str
) -> dict[str, Any]:
    """Every key known, writable, of its type, and null only where the spec says nullable."""
    expect(isinstance(body, dict), "body", "a JSON object", body)
    changes: dict[str, Any] = {}
    for key, value in cast(dict[str, Any], body).items():
        if FIELD_CODE.match(key):
            raise bad_request(f"Custom field '{key}' sent at the top level: v2 expects it inside custom_fields")
        if key == "custom_fields":
            changes[key] = custom_fields(registry, value)
            continue
        if key in read_only:
            raise bad_request(f"Field '{key}' is read-only: the API sets it, a {what} body cannot")
        spec = keys.get(key)
        if spec is None:
            raise bad_request(f"Unknown field '{key}' for {what}")
        if value is None:
            if not spec.nullable:
                raise bad_request(f"Invalid value for '{key}': null is not allowed (leave the key out to keep it)")
            changes[key] = None
        else:
            changes[key] = spec.check(key, value)
    return changes


def person_body(body: object, registry: FieldRegistry, *, create: bool) -> dict[str, Any]:
    """Validated person changes; name/first/last consistency is resolved by the store."""
    keys = PERSON_KEYS if create else {k: v for k, v in PERSON_KEYS.items() if k != "add_time"}
    read_only = PERSON_READ_ONLY if create else PERSON_READ_ONLY | {"add_time"}
    changes = _checked(body, keys, read_only, registry, "person" if create else "person update")
    if "add_time" in changes:
        parse_rfc3339("add_time", changes["add_time"])
    if create and "name" not in changes and not ("first_name" in changes and "last_name" in changes):
        raise bad_request("Person needs 'name', or both 'first_name' and 'last_name'")
    return changes


def deal_body(
    body: object, registry: FieldRegistry, *, create: bool, person_exists: Callable[[int], bool]
) -> dict[str, Any]:
    """Validated deal changes; status-, archive- and stage-dependent rules need the record: the store applies them."""
    changes = _checked(body, DEAL_KEYS, DEAL_READ_ONLY, registry, "deal")
    if create and "title" not in changes:
        raise bad_request("Deal needs a non-empty 'title'")
    if create and changes.get("is_deleted") is True:
        raise bad_request("Cannot create an already-deleted deal")
    person_id = changes.get("person_id")
    if person_id is not None and not person_exists(person_id):
        raise bad_request(f"Invalid value for 'person_id': person {person_id} does not exist")
    return changes
