"""The destination protocol: read the current state, diff it into a plan, apply the plan record by record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import polars as pl

Action = Literal["create", "update", "delete"]
Outcome = Literal["ok", "failed", "skipped"]
NO_DELETES = pl.DataFrame(schema={"external_id": pl.Utf8, "id": pl.Int64})
NO_INVALID = pl.DataFrame(schema={"external_id": pl.Utf8, "error": pl.Utf8})


@dataclass(frozen=True, slots=True)
class EntityPlan:
    """What must change for one kind of record (persons, deals, table rows).

    `creates` holds the key column plus every desired column. `updates` holds the key, the destination's id
    (`id`), the desired columns, `old_<column>` for each compared column, and `changed` (list[str]): only
    those columns are sent. `duplicates` lists keys that exist more than once remotely (`key`, `ids`).
    `deletes` (`external_id`, `id`) are remote records a `mirror` run removes; `held` are the ones the delete guard
    kept back. `skipped` counts the creates an `update` run leaves out.
    """

    entity: str
    key: str
    creates: pl.DataFrame
    updates: pl.DataFrame
    unchanged: int
    duplicates: pl.DataFrame
    orphans: int = 0
    deletes: pl.DataFrame = field(default_factory=lambda: NO_DELETES)
    held: pl.DataFrame = field(default_factory=lambda: NO_DELETES)
    skipped: int = 0
    # rows whose mapped values their fields cannot hold (`external_id`, `error`): each fails alone, never silently
    invalid: pl.DataFrame = field(default_factory=lambda: NO_INVALID)

    @property
    def writes(self) -> int:
        return self.creates.height + self.updates.height + self.deletes.height


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole difference, in the order it must be applied (persons before deals)."""

    entities: tuple[EntityPlan, ...]
    estimated_tokens: int | None = None  # API tokens the writes will cost, when the destination has a budget
    estimated_seconds: float | None = None  # at the destination's rate limit
    tokens_per_day: int | None = None  # what the destination's daily budget allows this job (Pipedrive)
    days_needed: int | None = None  # days the writes need at that budget, counting what is left today
    notes: tuple[str, ...] = field(default_factory=tuple)
    held_line: str = ""  # set when the mirror guard kept the deletes back: the run ends partial with this line
    # What the destination's apply needs besides the rows (read state, resolved fields): the plan carries it, so
    # applying a plan does not depend on what planning left behind in the destination object.
    context: Any = None

    @property
    def writes(self) -> int:
        return sum(e.writes for e in self.entities)


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The outcome of one planned write; one row of WORKDIR/results/."""

    entity: str
    external_id: str
    action: Action
    outcome: Outcome
    destination_id: int | None = None
    status: int | None = None
    error: str | None = None


class Destination(Protocol):
    """A place the combined frame is synced into. Adding one is one module that registers its kind (registry.py)."""

    kind: str

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        """Read the destination's current state and diff the desired frames against it (no writes)."""
        ...

    async def apply(
        self,
        plan: Plan,
        on_result: Callable[[RecordResult], None],
        stop: asyncio.Event,
    ) -> None:
        """Apply the plan; report every planned record through `on_result`; stop taking work once `stop` is set.

        Raises BudgetExhausted when the API budget ran out (records not attempted are reported as
        skipped first), AuthError when credentials are rejected. A destination that writes all or nothing
        (PostgreSQL: one transaction) reports only the rows it wrote: when it writes nothing it raises one error
        instead (Interrupted on `stop`, the failed statement's classified error), never a result per row.
        """
        ...

    def usage(self) -> dict[str, object]:
        """Requests by kind, 429s, retries, tokens used: whatever the destination can count."""
        ...

    async def aclose(self) -> None: ...
