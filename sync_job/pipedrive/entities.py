"""The two Pipedrive record types this job writes, and the paths and words that go with each (one home)."""

from __future__ import annotations

from typing import Literal

Entity = Literal["person", "deal"]
ENTITIES: tuple[Entity, ...] = ("person", "deal")  # the order a run applies them in: a deal links to its person

ENTITY_PLURAL: dict[Entity, str] = {"person": "persons", "deal": "deals"}
RECORDS_PATH: dict[Entity, str] = {"person": "/api/v2/persons", "deal": "/api/v2/deals"}
FIELDS_PATH: dict[Entity, str] = {"person": "/api/v2/personFields", "deal": "/api/v2/dealFields"}


def options_path(entity: Entity, field_code: str) -> str:
    """Where an enum or set custom field's options are added (api-reference §8.4)."""
    return f"{FIELDS_PATH[entity]}/{field_code}/options"
