"""Pipedrive as a destination: read persons and deals, diff, apply persons then deals through the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from sync_job import diff, mapping, modes
from sync_job.config import EntitySettings, PipedriveSettings
from sync_job.destinations.base import Action, EntityPlan, Plan, RecordResult
from sync_job.errors import BudgetExhausted, RowError
from sync_job.pipedrive import kinds, ledger, ration, snapshot
from sync_job.pipedrive.client import PipedriveClient, WriteResult
from sync_job.pipedrive.entities import ENTITIES, Entity
from sync_job.pipedrive.field_changes import FieldChange, field_changes
from sync_job.pipedrive.field_types import IdField, unconvertible
from sync_job.pipedrive.fields import create_custom_field_body
from sync_job.pipedrive.record_schema import RecordSchema
from sync_job.pipedrive.remote import RemoteReader
from sync_job.progress import NullProgress, Progress

log = logging.getLogger(__name__)

GRACE_SECONDS = 20.0  # how long in-flight requests may finish after SIGTERM before they are cancelled

Op = tuple[Action, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What a Pipedrive plan's apply needs besides its rows: what the read resolved and saw."""

    schemas: dict[Entity, RecordSchema]
    fields: dict[Entity, IdField | None]
    changes: tuple[FieldChange, ...]  # custom fields to create and enum options to add, before any row
    remote_persons: pl.DataFrame  # (id, external_id): deals link to persons that existed before the run
    remote_deals: pl.DataFrame  # (id, person_id): a person whose deal stays is not deleted
    order_dates: pl.DataFrame  # (external_id, order_date): a budget-cut run writes the newest orders first
    next_snapshot: snapshot.Snapshot | None  # what the read saw; the apply adds its own writes
    day: str | None


class PipedriveDestination:
    kind = "pipedrive"

    def __init__(
        self,
        client: PipedriveClient,
        settings: PipedriveSettings,
        *,
        dry_run: bool = False,
        ui: Progress | None = None,
        grace_seconds: float = GRACE_SECONDS,
        snapshot_path: Path | None = None,
        ledger_path: Path | None = None,
        full_read: bool = False,
        recreate_fields: bool = False,
        entity_modes: Mapping[str, EntitySettings] | None = None,
        allow_deletes: bool = False,
        field_mapping: mapping.Mapping,
    ) -> None:
        self.client = client
        self.settings = settings
        self.dry_run = dry_run
        self.ui = ui or NullProgress()
        self.grace_seconds = grace_seconds
        self.snapshot_path = snapshot_path
        self.ledger_path = ledger_path
        # keyed by the plan's entity names ("person", "deal"); the config says persons:/deals:
        self.modes = dict(entity_modes or {"person": EntitySettings(), "deal": EntitySettings()})
        self.allow_deletes = allow_deletes
        self.mapping = field_mapping
        self.client.budget.share = settings.max_budget_share
        self.reader = RemoteReader(
            client,
            settings,
            self.ui,
            snapshot_path=snapshot_path,
            ledger_path=ledger_path,
            full_read=full_read,
            recreate_fields=recreate_fields,
            dry_run=dry_run,
        )
        self._day: str | None = None  # today in Pipedrive's clock, once a response has told it
        self._written: dict[Entity, list[dict[str, Any]]] = {"person": [], "deal": []}
        self._deleted: dict[Entity, list[int]] = {"person": [], "deal": []}
        self._failed_deletes: list[int] = []  # ids of deletes that failed (deals' keep their persons)
        self._refused = 0  # writes the CRM refused with a 4xx other than 429

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        remote = await self.reader.read(self.mapping)
        schemas = remote.schemas
        rows = {"person": customers, "deal": combined}
        wanted: dict[Entity, pl.DataFrame] = {}
        invalid: dict[Entity, pl.DataFrame] = {}
        for entity in ENTITIES:
            wanted[entity], invalid[entity] = mapping.desired(
                self.mapping.of(entity), schemas[entity].compare, rows[entity]
            )
        compared = {e: schemas[e].canonical_remote(remote.persons if e == "person" else remote.deals) for e in ENTITIES}
        # A row that failed conversion still exists in the source: mirror must not take its record for gone.
        keys: dict[str, pl.DataFrame] = {
            e: pl.concat([wanted[e].select("external_id"), invalid[e].select("external_id")]) for e in ENTITIES
        }
        person_schema, deal_schema = schemas["person"], schemas["deal"]
        persons_diff = diff.diff_persons(
            wanted["person"], compared["person"], person_schema.compare, person_schema.keep_when_empty
        )
        deals_diff = diff.diff_deals(
            wanted["deal"], compared["deal"], remote.persons, deal_schema.compare, deal_schema.keep_when_empty
        )
        persons, deals, mode_notes = modes.pipedrive_modes(
            replace(persons_diff, invalid=invalid["person"]),
            replace(deals_diff, invalid=invalid["deal"]),
            keys,
            {"person": remote.persons, "deal": remote.deals},
            self.modes,
        )
        carrying = {"person": modes.carrying_ids(remote.persons), "deal": modes.carrying_ids(remote.deals)}
        plan = modes.guard(Plan(entities=(persons, deals)), carrying, self.modes, self.allow_deletes)
        persons, deals = plan.entities
        changes = field_changes(schemas, plan)
        # The run's whole cost: the reads it made (incremental ones cost what changed) plus each write's cost.
        writes = ration.write_tokens(plan)
        tokens = writes + self.client.stats.tokens_used + sum(c.tokens for c in changes)
        _, seconds = diff.estimate(plan, {}, self.client.limiter.general.limit)
        per_day = self.client.budget.share_per_day
        days = None if per_day is None else ration.days_needed(writes, per_day, self.client.budget.available())
        # Only creates send the id: name the ones the id field cannot hold before the run (and in a dry run).
        planned: tuple[tuple[Entity, EntityPlan], ...] = (("person", persons), ("deal", deals))
        notes = tuple(
            note
            for entity, entity_plan in planned
            if (field := remote.fields.get(entity)) is not None
            and (note := unconvertible(field, entity_plan.creates["external_id"].cast(pl.Utf8).to_list())) is not None
        )
        notes += tuple(c.note for c in changes)
        notes += tuple(
            f"{e.invalid.height} {e.entity}(s) have a value their field cannot hold and will fail, e.g. "
            f"{e.invalid['error'][0]}"
            for e in plan.entities
            if e.invalid.height
        )
        prepared = Prepared(
            schemas=schemas,
            fields=remote.fields,
            changes=changes,
            remote_persons=remote.persons.select("id", "external_id"),
            remote_deals=remote.deals.select(pl.col("id").cast(pl.Int64), pl.col("person_id").cast(pl.Int64)),
            order_dates=combined.select(pl.col("order_id").cast(pl.Utf8).alias("external_id"), "order_date"),
            next_snapshot=remote.next_snapshot,
            day=remote.day,
        )
        self._day = remote.day  # the budget ledger is written on close, whether or not the plan is applied
        return Plan(
            entities=plan.entities,
            notes=(*notes, *mode_notes),  # the held line has its own key (held_deletes), said once
            held_line=plan.held_line,
            estimated_tokens=tokens,
            estimated_seconds=round(seconds, 1),
            tokens_per_day=per_day,
            days_needed=days,
            context=prepared,
        )

    def _save_snapshot(self, prepared: Prepared) -> None:
        """Store what the read saw plus this run's successful writes; the next run reads only what changed."""
        if prepared.next_snapshot is None or self.snapshot_path is None:
            return
        frames = {}
        for entity, rows in self._written.items():
            columns = prepared.schemas[entity].remote_columns()
            written = pl.DataFrame(rows, schema=columns) if rows else pl.DataFrame(schema=columns)
            frames[entity] = snapshot.record_deletes(
                columns,
                snapshot.record_writes(columns, prepared.next_snapshot.frame(entity), written),
                self._deleted[entity],
            )
        taken = snapshot.with_frames(prepared.next_snapshot, frames["person"], frames["deal"])
        signatures = {str(entity): schema.signature() for entity, schema in prepared.schemas.items()}
        taken = replace(taken, meta=replace(taken.meta, signatures=signatures))
        if self._refused:
            # A record the snapshot holds may be gone (a person deleted by hand: no incremental read shows it).
            reason = f"the previous run had {self._refused} write(s) refused by Pipedrive; the snapshot may be stale"
            taken = replace(taken, meta=replace(taken.meta, stale_because=reason))
        snapshot.save(self.snapshot_path, taken)

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        prepared = plan.context
        assert isinstance(prepared, Prepared), "a Pipedrive plan carries what its read resolved (plan() made it)"
        try:
            for entity_plan in plan.entities:
                _fail_invalid(on_result, entity_plan)
            # Fields and enum options come first: every row after may need them.
            prepared = await self._change_fields(prepared)
            available = self.client.budget.available()
            if available is None or ration.write_tokens(plan) <= available:
                await self._apply(plan, prepared, on_result, stop)
                return
            # Not all of it fits today: apply the slice that does, newest orders first, and say how long the rest takes.
            cut = ration.ration(plan, prepared.order_dates, available)
            reason = "not in today's API budget: a later run continues"
            for entity in cut.rest.entities:
                writes: tuple[tuple[Action, pl.DataFrame], ...] = (
                    ("create", entity.creates),
                    ("update", entity.updates),
                    ("delete", entity.deletes),
                )
                for action, rows in writes:
                    _skip(on_result, entity.entity, action, rows, reason)
            await self._apply(cut.fits, prepared, on_result, stop)
            raise BudgetExhausted(self._days_line(plan, cut, available))
        finally:
            self._save_snapshot(prepared)

    async def _change_fields(self, prepared: Prepared) -> Prepared:
        """Create the mapped custom fields still missing and add the enum options the rows need."""
        schemas = dict(prepared.schemas)
        for change in prepared.changes:
            schema = schemas[change.entity]
            if change.code is None:
                data = await self.client.create_custom_field(
                    change.entity, create_custom_field_body(change.name, change.field_type, list(change.labels))
                )
                code, options = str(data["field_code"]), list(data.get("options") or [])
            else:
                code = change.code
                options = await self.client.add_options(change.entity, code, list(change.labels))
            labels = {kinds.label(o["label"]): int(o["id"]) for o in options if "id" in o}
            schemas[change.entity] = schema.with_field(change.name, code, change.field_type, labels)
        return replace(prepared, schemas=schemas, changes=())

    def _days_line(self, plan: Plan, cut: ration.Ration, available: int) -> str:
        budget = self.client.budget
        line = (
            f"{budget.binding()} paid for {cut.fits.writes} of {plan.writes} writes ({available} tokens were left); "
            f"{cut.rest.writes} writes ({cut.rest_tokens} tokens) are left"
        )
        if (per_day := budget.share_per_day) is None:
            return line + " for the next run, which continues with the newest orders"
        days = ration.days_needed(cut.rest_tokens, per_day)
        return (
            f"{line}: {days} more day(s) at {per_day} tokens a day ({budget.share:.0%} of {budget.daily_limit}, "
            "pipedrive.max_budget_share); the next run continues with the newest orders"
        )

    async def _apply(
        self, plan: Plan, prepared: Prepared, on_result: Callable[[RecordResult], None], stop: asyncio.Event
    ) -> None:
        persons, deals = plan.entities
        # Deletes wait until every create and update is done, deals' before persons': a person is never deleted
        # while a deal of this run still points at it.
        try:
            created = await self._apply_entity(
                prepared.schemas["person"], replace(persons, deletes=persons.deletes.head(0)), on_result, stop
            )
        except BudgetExhausted as exc:
            # The deals are left too: list them as skipped, so the results show everything still to do.
            left: tuple[tuple[Entity, Action, pl.DataFrame], ...] = (
                ("deal", "create", deals.creates),
                ("deal", "update", deals.updates),
                ("deal", "delete", deals.deletes),
                ("person", "delete", persons.deletes),
            )
            for entity, action, rows in left:
                _skip(on_result, entity, action, rows, str(exc))
            raise
        ids = diff.person_id_map(prepared.remote_persons, created)
        resolved = replace(
            deals,
            creates=diff.resolve_person_ids(deals.creates, ids),
            updates=diff.resolve_person_ids(deals.updates, ids),
        )
        try:
            await self._apply_entity(prepared.schemas["deal"], resolved, on_result, stop)
        except BudgetExhausted as exc:
            _skip(on_result, "person", "delete", persons.deletes, str(exc))
            raise
        # A person whose deal could not be deleted stays: deleting it would leave that deal on a deleted contact.
        linked = prepared.remote_deals.filter(pl.col("id").is_in(self._failed_deletes)).select(
            pl.col("person_id").cast(pl.Int64).alias("id")
        )
        blocked = persons.deletes.join(linked, on="id", how="semi")
        _skip(on_result, "person", "delete", blocked, "a deal linked to this person could not be deleted")
        only_deletes = replace(
            persons,
            creates=persons.creates.head(0),
            updates=persons.updates.head(0),
            deletes=persons.deletes.join(linked, on="id", how="anti", maintain_order="left"),
        )
        await self._apply_entity(prepared.schemas["person"], only_deletes, on_result, stop)

    async def _apply_entity(
        self, schema: RecordSchema, plan: EntityPlan, on_result: Callable[[RecordResult], None], stop: asyncio.Event
    ) -> pl.DataFrame:
        """Run the entity's creates, updates, then deletes (bounded concurrency); returns creates' (external_id, id)."""
        entity = schema.entity
        assert schema.id_field.code, "apply needs the resolved id field (plan() without dry_run)"
        ops: list[Op] = [("create", row) for row in plan.creates.iter_rows(named=True)]
        ops += [("update", row) for row in plan.updates.iter_rows(named=True)]
        ops += [("delete", row) for row in plan.deletes.iter_rows(named=True)]
        created: list[tuple[str, int]] = []
        queue: asyncio.Queue[Op] = asyncio.Queue()
        for op in ops:
            queue.put_nowait(op)
        budget: list[BudgetExhausted] = []

        def report(action: Action, row: dict[str, Any], outcome: str, **extra: Any) -> None:
            on_result(RecordResult(entity, str(row["external_id"]), action, outcome, **extra))  # type: ignore[arg-type]

        async def one(action: Action, row: dict[str, Any]) -> None:
            send = self._send(schema, action, row)
            try:
                result = await send()
            except asyncio.CancelledError:
                report(
                    action, row, "failed", destination_id=row.get("id"), error="interrupted in flight: outcome unknown"
                )
                raise
            except RowError as exc:
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    self._refused += 1
                if action == "delete":
                    self._failed_deletes.append(int(row["id"]))
                report(action, row, "failed", destination_id=row.get("id"), status=exc.status, error=str(exc))
            else:
                if action == "create":
                    created.append((str(row["external_id"]), result.pipedrive_id))
                if action == "delete":
                    self._deleted[entity].append(result.pipedrive_id)
                else:
                    self._written[entity].append(schema.written(row, result.pipedrive_id, row.get("person_id")))
                report(action, row, "ok", destination_id=result.pipedrive_id, status=result.status)

        async def worker() -> None:
            while not queue.empty():
                action, row = queue.get_nowait()
                if stop.is_set() or budget:
                    reason = "interrupted" if stop.is_set() else "daily API budget exhausted"
                    report(action, row, "skipped", destination_id=row.get("id"), error=reason)
                    continue
                try:
                    await one(action, row)
                except BudgetExhausted as exc:
                    budget.append(exc)
                    report(action, row, "skipped", destination_id=row.get("id"), error=str(exc))

        workers = [asyncio.create_task(worker()) for _ in range(self.settings.concurrency)]
        stopped = asyncio.create_task(stop.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(workers)
            while pending and not stop.is_set():
                _, pending = await asyncio.wait(pending | {stopped}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stopped)
            if pending:  # a signal: in-flight requests get a bounded grace, then are cancelled
                await self._drain(workers)
            for task in workers:
                if not task.cancelled() and (error := task.exception()) is not None:
                    raise error
        finally:
            stopped.cancel()
            for task in workers:
                task.cancel()
        self._skip_rest(queue, entity, on_result, "interrupted" if stop.is_set() else "not attempted")
        if budget:
            raise budget[0]
        return pl.DataFrame(created, schema={"external_id": pl.Utf8, "id": pl.Int64}, orient="row")

    async def _drain(self, workers: list[asyncio.Task[None]]) -> None:
        from sync_job.shutdown import drain

        _, cancelled = await drain(workers, self.grace_seconds)
        if cancelled:
            log.warning(
                "%d request(s) were still in flight after the grace period: the next run re-reads them", cancelled
            )

    def _skip_rest(
        self, queue: asyncio.Queue[Op], entity: Entity, on_result: Callable[[RecordResult], None], reason: str
    ) -> None:
        while not queue.empty():
            action, row = queue.get_nowait()
            on_result(RecordResult(entity, str(row["external_id"]), action, "skipped", row.get("id"), None, reason))

    def _send(self, schema: RecordSchema, action: Action, row: dict[str, Any]) -> Callable[[], Awaitable[WriteResult]]:
        """Build the request for one planned row; a row that cannot be mapped is a RowError, not a crash."""
        entity, field = schema.entity, schema.id_field

        async def send() -> WriteResult:
            if action == "delete":
                return await self.client.delete(entity, int(row["id"]))
            if action == "create":
                return await self.client.create(
                    entity,
                    schema.create_body(row, row.get("person_id")),
                    external_id=str(row["external_id"]),
                    field_code=field.code,
                    field_type=field.field_type,
                )
            changes = schema.patch_body(row, row["changed"], row.get("person_id"))
            return await self.client.update(entity, int(row["id"]), changes)

        return send

    def usage(self) -> dict[str, object]:
        return self.client.stats.as_dict()

    async def aclose(self) -> None:
        if self._day is not None and self.ledger_path is not None:
            budget = self.client.budget
            ledger.save(self.ledger_path, ledger.Spent(self._day, budget.spent_earlier_today + budget.spent))
        await self.client.aclose()


def _fail_invalid(on_result: Callable[[RecordResult], None], plan: EntityPlan) -> None:
    """Each row whose values its fields cannot hold fails on its own, with the message naming row, field, value."""
    for row in plan.invalid.iter_rows(named=True):
        on_result(RecordResult(plan.entity, str(row["external_id"]), "create", "failed", None, None, row["error"]))


def _skip(on_result: Callable[[RecordResult], None], entity: str, action: Action, rows: pl.DataFrame, why: str) -> None:
    """Report every planned row of `rows` as skipped (not attempted) with the reason."""
    for row in rows.iter_rows(named=True):
        on_result(RecordResult(entity, str(row["external_id"]), action, "skipped", row.get("id"), None, why))
