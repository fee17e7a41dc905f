"""Pipedrive as a destination: read persons and deals, diff, apply persons then deals through the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from sync_job import diff, modes
from sync_job.config import EntitySettings, PipedriveSettings
from sync_job.destinations.base import Action, EntityPlan, Plan, RecordResult
from sync_job.errors import BudgetExhausted, RowError
from sync_job.pipedrive import ledger, payloads, ration, snapshot
from sync_job.pipedrive.client import Entity, PipedriveClient, WriteResult
from sync_job.pipedrive.field_types import IdField, unconvertible
from sync_job.pipedrive.remote import RemoteReader
from sync_job.progress import NullProgress, Progress

log = logging.getLogger(__name__)

GRACE_SECONDS = 20.0  # how long in-flight requests may finish after SIGTERM before they are cancelled

Op = tuple[Action, dict[str, Any]]


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
        self._order_dates = pl.DataFrame(schema={"external_id": pl.Utf8, "order_date": pl.Date})
        self._fields: dict[Entity, IdField | None] = {}
        self._remote_persons = pl.DataFrame()
        self._next: snapshot.Snapshot | None = None  # what this run's read saw; the apply adds its own writes
        self._written: dict[Entity, list[dict[str, Any]]] = {"person": [], "deal": []}
        self._deleted: dict[Entity, list[int]] = {"person": [], "deal": []}
        self._failed_deletes: list[int] = []  # ids of deletes that failed (deals' keep their persons)
        self._remote_deals = pl.DataFrame(schema={"id": pl.Int64, "person_id": pl.Int64})
        self._refused = 0  # writes the CRM refused with a 4xx other than 429

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        remote = await self.reader.read()
        self._fields, self._next, self._day = remote.fields, remote.next_snapshot, remote.day
        remote_persons, remote_deals = remote.persons, remote.deals
        self._remote_persons = remote_persons
        self._remote_deals = remote_deals.select(pl.col("id").cast(pl.Int64), pl.col("person_id").cast(pl.Int64))
        want_persons = diff.desired_persons(customers)
        want_deals = diff.desired_deals(combined, self.settings.currency)
        persons, deals, mode_notes = modes.pipedrive_modes(
            diff.diff_persons(want_persons, remote_persons),
            diff.diff_deals(want_deals, remote_deals, remote_persons),
            {"person": want_persons, "deal": want_deals},
            {"person": remote_persons, "deal": remote_deals},
            self.modes,
        )
        carrying = {"person": modes.carrying_ids(remote_persons), "deal": modes.carrying_ids(remote_deals)}
        plan = modes.guard(Plan(entities=(persons, deals)), carrying, self.modes, self.allow_deletes)
        persons, deals = plan.entities
        # The run's whole cost: the reads it made (incremental ones cost what changed) plus each write's cost.
        writes = ration.write_tokens(plan)
        tokens = writes + self.client.stats.tokens_used
        _, seconds = diff.estimate(plan, {}, self.client.limiter.general.limit)
        self._order_dates = combined.select(pl.col("order_id").cast(pl.Utf8).alias("external_id"), "order_date")
        per_day = self.client.budget.share_per_day
        days = None if per_day is None else ration.days_needed(writes, per_day, self.client.budget.available())
        # Only creates send the id: name the ones the id field cannot hold before the run (and in a dry run).
        planned: tuple[tuple[Entity, EntityPlan], ...] = (("person", persons), ("deal", deals))
        notes = tuple(
            note
            for entity, entity_plan in planned
            if (field := self._fields.get(entity)) is not None
            and (note := unconvertible(field, entity_plan.creates["external_id"].cast(pl.Utf8).to_list())) is not None
        )
        return Plan(
            entities=plan.entities,
            notes=(*notes, *mode_notes),  # the held line has its own key (held_deletes), said once
            held_line=plan.held_line,
            estimated_tokens=tokens,
            estimated_seconds=round(seconds, 1),
            tokens_per_day=per_day,
            days_needed=days,
        )

    def _save_snapshot(self) -> None:
        """Store what the read saw plus this run's successful writes; the next run reads only what changed."""
        if self._next is None or self.snapshot_path is None:
            return
        frames = {
            entity: snapshot.record_deletes(
                entity,
                snapshot.record_writes(entity, self._next.frame(entity), pl.DataFrame(rows, infer_schema_length=None)),
                self._deleted[entity],
            )
            for entity, rows in self._written.items()
        }
        taken = snapshot.with_frames(self._next, frames["person"], frames["deal"])
        if self._refused:
            # A record the snapshot holds may be gone (a person deleted by hand: no incremental read shows it).
            reason = f"the previous run had {self._refused} write(s) refused by Pipedrive; the snapshot may be stale"
            taken = replace(taken, meta=replace(taken.meta, stale_because=reason))
        snapshot.save(self.snapshot_path, taken)

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        try:
            available = self.client.budget.available()
            if available is None or ration.write_tokens(plan) <= available:
                await self._apply(plan, on_result, stop)
                return
            # Not all of it fits today: apply the slice that does, newest orders first, and say how long the rest takes.
            cut = ration.ration(plan, self._order_dates, available)
            reason = "not in today's API budget: a later run continues"
            for entity in cut.rest.entities:
                writes: tuple[tuple[Action, pl.DataFrame], ...] = (
                    ("create", entity.creates),
                    ("update", entity.updates),
                    ("delete", entity.deletes),
                )
                for action, rows in writes:
                    _skip(on_result, entity.entity, action, rows, reason)
            await self._apply(cut.fits, on_result, stop)
            raise BudgetExhausted(self._days_line(plan, cut, available))
        finally:
            self._save_snapshot()

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

    async def _apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        persons, deals = plan.entities
        # Deletes wait until every create and update is done, deals' before persons': a person is never deleted
        # while a deal of this run still points at it.
        try:
            created = await self._apply_entity(
                "person", replace(persons, deletes=persons.deletes.head(0)), on_result, stop
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
        ids = diff.person_id_map(self._remote_persons, created)
        resolved = replace(
            deals,
            creates=diff.resolve_person_ids(deals.creates, ids),
            updates=diff.resolve_person_ids(deals.updates, ids),
        )
        try:
            await self._apply_entity("deal", resolved, on_result, stop)
        except BudgetExhausted as exc:
            _skip(on_result, "person", "delete", persons.deletes, str(exc))
            raise
        # A person whose deal could not be deleted stays: deleting it would leave that deal on a deleted contact.
        linked = self._remote_deals.filter(pl.col("id").is_in(self._failed_deletes)).select(
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
        await self._apply_entity("person", only_deletes, on_result, stop)

    async def _apply_entity(
        self, entity: Entity, plan: EntityPlan, on_result: Callable[[RecordResult], None], stop: asyncio.Event
    ) -> pl.DataFrame:
        """Run the entity's creates, updates, then deletes (bounded concurrency); returns creates' (external_id, id)."""
        field = self._fields[entity]
        assert field is not None, "apply needs the resolved custom field (plan() without dry_run)"
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
            send = self._send(entity, field, action, row)
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
                    self._written[entity].append(snapshot.written_row(entity, row, result.pipedrive_id))
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

    def _send(
        self, entity: Entity, field: IdField, action: Action, row: dict[str, Any]
    ) -> Callable[[], Awaitable[WriteResult]]:
        """Build the request for one planned row; a row that cannot be mapped is a RowError, not a crash."""

        async def send() -> WriteResult:
            if action == "delete":
                return await self.client.delete(entity, int(row["id"]))
            if action == "create":
                if entity == "person":
                    body = payloads.person_body(row, field)
                else:
                    body = payloads.deal_body(row, field, row.get("person_id"))
                return await self.client.create(
                    entity,
                    body,
                    external_id=str(row["external_id"]),
                    field_code=field.code,
                    field_type=field.field_type,
                )
            changes = payloads.patch_body(entity, row, row["changed"], field)
            return await self.client.update(entity, int(row["id"]), changes)

        return send

    def usage(self) -> dict[str, object]:
        return self.client.stats.as_dict()

    async def aclose(self) -> None:
        if self._day is not None and self.ledger_path is not None:
            budget = self.client.budget
            ledger.save(self.ledger_path, ledger.Spent(self._day, budget.spent_earlier_today + budget.spent))
        await self.client.aclose()


def _skip(on_result: Callable[[RecordResult], None], entity: str, action: Action, rows: pl.DataFrame, why: str) -> None:
    """Report every planned row of `rows` as skipped (not attempted) with the reason."""
    for row in rows.iter_rows(named=True):
        on_result(RecordResult(entity, str(row["external_id"]), action, "skipped", row.get("id"), None, why))
