"""Field registry per entity: built-in fields, custom fields under 40-hex codes, v2 field objects."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Entity = Literal["person", "deal"]
ENTITIES: tuple[Entity, ...] = ("person", "deal")

FIELD_CODE = re.compile(r"^[0-9a-f]{40}$")

# Types a v2 create accepts (spec: addDealField/addPersonField field_type enum).
CREATABLE_TYPES = frozenset(
    [
        "varchar",
        "text",
        "double",
        "phone",
        "date",
        "daterange",
        "time",
        "timerange",
        "set",
        "enum",
        "varchar_auto",
        "address",
        "monetary",
        "org",
        "people",
        "user",
    ]
)
# Custom-field types the search endpoints look into (reference §6).
SEARCHABLE_TYPES = frozenset({"address", "varchar", "text", "varchar_auto", "double", "monetary", "phone"})

_BUILTIN: dict[Entity, list[tuple[str, str, str]]] = {
    "person": [
        ("name", "Name", "varchar"),
        ("first_name", "First name", "varchar"),
        ("last_name", "Last name", "varchar"),
        ("owner_id", "Owner", "user"),
        ("org_id", "Organization", "org"),
        ("emails", "Email", "varchar"),
        ("phones", "Phone", "phone"),
        ("label_ids", "Labels", "set"),
        ("visible_to", "Visible to", "visible_to"),
        ("add_time", "Person created", "date"),
        ("update_time", "Update time", "date"),
    ],
    "deal": [
        ("title", "Title", "varchar"),
        ("value", "Value", "monetary"),
        ("person_id", "Contact person", "people"),
        ("org_id", "Organization", "org"),
        ("owner_id", "Owner", "user"),
        ("pipeline_id", "Pipeline", "int"),
        ("stage_id", "Stage", "stage"),
        ("status", "Status", "status"),
        ("probability", "Probability", "double"),
        ("expected_close_date", "Expected close date", "date"),
        ("label_ids", "Labels", "set"),
        ("visible_to", "Visible to", "visible_to"),
        ("add_time", "Deal created", "date"),
        ("update_time", "Update time", "date"),
    ],
}


@dataclass
class FieldDef:
    """One field definition; `options` only for enum/set."""

    code: str
    name: str
    field_type: str
    custom: bool
    description: str | None = None
    options: list[dict[str, Any]] | None = None

    def to_v2(self) -> dict[str, Any]:
        """The v2 field object (reference §8.4)."""
        subfields = None
        if self.field_type == "monetary":
            subfields = [
                {"field_code": "value", "field_name": f"Amount of {self.name}", "field_type": "double"},
                {"field_code": "currency", "field_name": f"Currency of {self.name}", "field_type": "varchar"},
            ]
        out: dict[str, Any] = {
            "field_name": self.name,
            "field_code": self.code,
            "field_type": self.field_type,
            "options": [dict(o) for o in self.options] if self.options is not None else None,
            "subfields": subfields,
            "is_custom_field": self.custom,
            "is_optional_response_field": False,
        }
        if self.description is not None:
            out["description"] = self.description
        return out

    def to_state(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "field_type": self.field_type,
            "custom": self.custom,
            "description": self.description,
            "options": self.options,
        }


def new_field_code() -> str:
    """A fresh 40-hex key, different in every sandbox, like Pipedrive's per-account hashes."""
    return hashlib.sha1(uuid.uuid4().bytes, usedforsecurity=False).hexdigest()


@dataclass
class FieldRegistry:
    """Fields of one entity in creation order, built-ins first."""

    entity: Entity
    fields: list[FieldDef] = field(default_factory=list)
    by_code: dict[str, FieldDef] = field(default_factory=dict)
    _next_option_id: int = 1

    @classmethod
    def seeded(cls, entity: Entity) -> FieldRegistry:
        registry = cls(entity)
        for code, name, field_type in _BUILTIN[entity]:
            registry._add(FieldDef(code, name, field_type, custom=False))
        return registry

    def _add(self, fd: FieldDef) -> FieldDef:
        self.fields.append(fd)
        self.by_code[fd.code] = fd
        return fd

    def add_custom(
        self,
        name: str,
        field_type: str,
        *,
        options: list[str] | None = None,
        code: str | None = None,
        description: str | None = None,
        stamp: str | None = None,
    ) -> FieldDef:
        """Register a custom field; the caller has validated name, type and labels. `stamp`: the options' add_time."""
        opts = None
        if field_type in ("enum", "set"):
            opts = [self.new_option(label, stamp) for label in options or []]
        fd = FieldDef(code or new_field_code(), name, field_type, custom=True, description=description, options=opts)
        return self._add(fd)

    def new_option(self, label: str, stamp: str | None) -> dict[str, Any]:
        """An option with an id never used before in this registry (ids of deleted options are not reused)."""
        option = {"id": self._next_option_id, "label": label, "color": None, "add_time": stamp, "update_time": stamp}
        self._next_option_id += 1
        return option

    def remove_custom(self, code: str) -> None:
        """Delete a custom field (as in the UI); its values go with it."""
        fd = self.by_code.pop(code)
        self.fields.remove(fd)

    def custom_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if f.custom]

    def to_state(self) -> list[dict[str, Any]]:
        return [f.to_state() for f in self.fields if f.custom]

    @property
    def next_option_id(self) -> int:
        return self._next_option_id

    def load_state(self, rows: list[dict[str, Any]], next_option_id: int = 1) -> None:
        """Custom fields from a state file; `next_option_id` keeps deleted options' ids from coming back."""
        self._next_option_id = max(self._next_option_id, next_option_id)
        for row in rows:
            fd = FieldDef(row["code"], row["name"], row["field_type"], True, row.get("description"), row.get("options"))
            self._add(fd)
            for option in fd.options or []:
                self._next_option_id = max(self._next_option_id, int(option["id"]) + 1)
