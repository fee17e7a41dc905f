"""Pure: the custom fields a plan must create and the enum options it must add before its rows are written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from sync_job.destinations.base import Plan
from sync_job.pipedrive import kinds
from sync_job.pipedrive.budget import COSTS
from sync_job.pipedrive.entities import ENTITY_PLURAL, Entity
from sync_job.pipedrive.record_schema import RecordSchema


@dataclass(frozen=True, slots=True)
class FieldChange:
    entity: Entity
    name: str
    field_type: str
    code: str | None  # None: the field is created (with `labels` as its options when an enum)
    labels: tuple[str, ...]  # enum options to add

    @property
    def tokens(self) -> int:
        # adding options reads the field before and after (the answer holds only the new options)
        return COSTS["field_create"] if self.code is None else COSTS["option_create"] + 2 * COSTS["field_get"]

    @property
    def note(self) -> str:
        plural = ENTITY_PLURAL[self.entity]
        shown = ", ".join(repr(label) for label in self.labels[:5]) + (" ..." if len(self.labels) > 5 else "")
        if self.code is None:
            options = f" with option(s) {shown}" if self.labels else ""
            return f"the {plural} custom field {self.name!r} ({self.field_type}) is created{options}"
        return f"the {plural} {self.field_type} field {self.name!r} gets {len(self.labels)} new option(s): {shown}"


def field_changes(schemas: Mapping[Entity, RecordSchema], plan: Plan) -> tuple[FieldChange, ...]:
    """Missing mapped custom fields, and labels the planned rows use that their enum field has no option for."""
    changes = []
    for entity_plan in plan.entities:
        schema = schemas[entity_plan.entity]  # type: ignore[index]
        for column in schema.columns:
            if not column.custom:
                continue
            labels: tuple[str, ...] = ()
            if column.kind in kinds.OPTION_KINDS:
                planned = [entity_plan.creates.select(column.column), entity_plan.updates.select(column.column)]
                values = pl.concat(planned)[column.column].drop_nulls()
                if column.kind == "set":
                    values = values.str.split(kinds.SET_SEPARATOR).explode()
                used = values.unique().sort().to_list()
                labels = tuple(label for label in used if label and label not in column.options)
            if column.code is None:
                if column.kind in kinds.OPTION_KINDS and not labels:
                    labels = ("-",)  # Pipedrive creates an enum only with an option; no row needs one yet
                changes.append(FieldChange(schema.entity, column.name, column.field_type or "varchar", None, labels))
            elif labels:
                changes.append(
                    FieldChange(schema.entity, column.name, column.field_type or "enum", column.code, labels)
                )
    return tuple(changes)
