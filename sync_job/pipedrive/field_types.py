"""Pure: which custom-field types can hold an external id, and the id's value in each type (sent and compared).

An account may already have `CustomerID` or `OrderID` of a type chosen by a human. Such a field is used as it is:
the id is sent as the JSON value the type takes (api-reference §8.2: `"str"` for the text types, a number for
`double`), and a value read back is turned into the same text the source id has, so a re-run matches it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sync_job.errors import ConfigError

Holds = Literal["text", "number"]

# Types whose value can be an id, and what JSON value each takes. Every other type (enum, set, date, monetary,
# address, user, org, people, phone, time, ...) holds option ids, dates, objects or formatted numbers, not an id.
ID_TYPES: dict[str, Holds] = {"varchar": "text", "varchar_auto": "text", "text": "text", "double": "number"}
# The type of a field the job creates: varchar ("Text, up to 255 characters"), not text (65k): an id is short, varchar
# is searchable (api-reference §6) so a person can find a record by its id in the UI, and it shows on one line.
NEW_FIELD_TYPE = "varchar"
MAX_CHARACTERS: dict[str, int] = {"varchar": 255}  # api-reference §8.3; `text` holds 65k, more than any id
MAX_EXACT_INTEGER = 2**53  # a double holds every integer up to here exactly, and not every one beyond


class NotConvertible(ValueError):
    """The source id has no exact value in the field's type (it would be lost or changed on the way)."""


@dataclass(frozen=True, slots=True)
class IdField:
    """An external-id custom field as the account has it."""

    code: str  # the 40-hex key values are stored under
    name: str  # as configured (`pipedrive.person_id_field` / `deal_id_field`)
    field_type: str  # Pipedrive's `field_type`, already checked by `check_id_type`

    def to_api(self, external_id: str) -> str | int:
        return to_api(self.field_type, external_id)


def check_id_type(plural: str, name: str, field_type: str) -> None:
    """ConfigError when an existing field's type cannot hold an id (a human must pick or rename a field)."""
    if field_type not in ID_TYPES:
        raise ConfigError(
            f"the {plural} custom field {name!r} has type {field_type!r}, which cannot hold an id: "
            f"use a field of type {', '.join(ID_TYPES)}, or rename it in Pipedrive so the job creates its own"
        )


def to_api(field_type: str, external_id: str) -> str | int:
    """The JSON value that stores `external_id` in a field of this type; NotConvertible when none is exact."""
    if ID_TYPES[field_type] == "text":
        limit = MAX_CHARACTERS.get(field_type)
        if limit is not None and len(external_id) > limit:
            raise NotConvertible(f"{field_type} holds at most {limit} characters")
        return external_id
    try:
        number = int(external_id)
    except ValueError:
        raise NotConvertible("a double field holds numbers only") from None
    if str(number) != external_id:  # "007" or "+7" would come back as 7: another id
        raise NotConvertible("it would read back as the number " + str(number))
    if abs(number) > MAX_EXACT_INTEGER:
        raise NotConvertible(f"a double field holds whole numbers exactly only up to {MAX_EXACT_INTEGER}")
    return number


def unconvertible(field: IdField, external_ids: Iterable[str]) -> str | None:
    """A plan note when some ids cannot be held by the field (each of those rows will fail), else None."""
    bad = []
    for external_id in external_ids:
        try:
            to_api(field.field_type, external_id)
        except NotConvertible:
            bad.append(external_id)
    if not bad:
        return None
    return (
        f"{len(bad)} id(s) cannot be held by the custom field {field.name!r} ({field.field_type}), "
        f"e.g. {bad[0]!r}: those records will fail"
    )


def canonical(field_type: str, value: object) -> str | None:
    """A stored value as the text a source id has ("7" for 7, 7.0 or "7.0" in a double field); None when empty."""
    if value is None:
        return None
    if ID_TYPES.get(field_type) != "number":
        return value if isinstance(value, str) else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value  # not a number: matches no source id, so the record is an orphan, never touched
    else:
        return str(value)
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return repr(number)
