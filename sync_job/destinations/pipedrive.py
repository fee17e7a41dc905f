"""Pipedrive as a destination: read persons and deals, diff, apply persons then deals through the client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import polars as pl

from sync_job import diff
from sync_job.config import PipedriveSettings
from sync_job.console import RunConsole
from sync_job.destinations.base import Action, EntityPlan, Plan, RecordResult
from sync_job.errors import BudgetExhausted, RowError
from sync_job.pipedrive import payloads
from sync_job.pipedrive.client import Entity, PipedriveClient, WriteResult
from sync_job.pipedrive.fields import FieldMissing
from sync_job.pipedrive.frames import empty_frame

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
        ui: RunConsole | None = None,
        grace_seconds: float = GRACE_SECONDS,
    ) -> None:
        self.client = client
        self.settings = settings
        self.dry_run = dry_run
        self.ui = ui or RunConsole(rich_output=False)
        self.grace_seconds = grace_seconds
        self._codes: dict[Entity, str | None] = {}
        self._remote_persons = pl.DataFrame()

    async def _field(self, entity: Entity, name: str) -> str | None:
        # A dry run must not create the custom field; a missing field just means nothing matches yet.
        try:
            return await self.client.resolve_field(entity, name, create=not self.dry_run)
        except FieldMissing:
            return None

    async def _read(self, entity: Entity, code: str | None) -> pl.DataFrame:
        if code is None:
            return empty_frame(entity)
        frames = []
        async for page in self.client.iter_pages(entity, code):
            frames.append(page)
            self.ui.advance(f"reading {entity}s", page.height)
        total = sum(frame.height for frame in frames)
        self.ui.advance(f"reading {entity}s", 0, total=total)  # the bar ends full, even for an empty CRM
        if not frames:
            return empty_frame(entity)
        return pl.concat(frames, how="vertical", rechunk=True)

    async def plan(self, combined: pl.DataFrame, customers: pl.DataFrame) -> Plan:
        self._codes["person"] = await self._field("person", self.settings.person_id_field)
        self._codes["deal"] = await self._field("deal", self.settings.deal_id_field)
        remote_persons = await self._read("person", self._codes["person"])
        remote_deals = await self._read("deal", self._codes["deal"])
        self._remote_persons = remote_persons
        persons = diff.diff_persons(diff.desired_persons(customers), remote_persons)
        deals = diff.diff_deals(diff.desired_deals(combined, self.settings.currency), remote_deals, remote_persons)
        plan = Plan(entities=(persons, deals))
        tokens, seconds = diff.estimate(
            plan, {"person": remote_persons.height, "deal": remote_deals.height}, self.client.limiter.general.limit
        )
        return Plan(entities=plan.entities, estimated_tokens=tokens, estimated_seconds=round(seconds, 1))

    async def apply(self, plan: Plan, on_result: Callable[[RecordResult], None], stop: asyncio.Event) -> None:
        persons, deals = plan.entities
        try:
            created = await self._apply_entity("person", persons, on_result, stop)
        except BudgetExhausted as exc:
            # The deals are left too: list them as skipped, so the results show everything still to do.
            left: tuple[tuple[Action, pl.DataFrame], ...] = (("create", deals.creates), ("update", deals.updates))
            for action, rows in left:
                for row in rows.iter_rows(named=True):
                    on_result(
                        RecordResult("deal", str(row["external_id"]), action, "skipped", row.get("id"), None, str(exc))
                    )
            raise
        ids = diff.person_id_map(self._remote_persons, created)
        resolved = EntityPlan(
            entity=deals.entity,
            key=deals.key,
            creates=diff.resolve_person_ids(deals.creates, ids),
            updates=diff.resolve_person_ids(deals.updates, ids),
            unchanged=deals.unchanged,
            duplicates=deals.duplicates,
            orphans=deals.orphans,
        )
        await self._apply_entity("deal", resolved, on_result, stop)

    async def _apply_entity(
        self, entity: Entity, plan: EntityPlan, on_result: Callable[[RecordResult], None], stop: asyncio.Event
    ) -> pl.DataFrame:
        """Run the entity's creates and updates with bounded concurrency; returns (external_id, id) of creates."""
        code = self._codes[entity]
        assert code is not None, "apply needs the resolved custom field (plan() without dry_run)"
        ops: list[Op] = [("create", row) for row in plan.creates.iter_rows(named=True)]
        ops += [("update", row) for row in plan.updates.iter_rows(named=True)]
        created: list[tuple[str, int]] = []
        queue: asyncio.Queue[Op] = asyncio.Queue()
        for op in ops:
            queue.put_nowait(op)
        budget: list[BudgetExhausted] = []

        def report(action: Action, row: dict[str, Any], outcome: str, **extra: Any) -> None:
            on_result(RecordResult(entity, str(row["external_id"]), action, outcome, **extra))  # type: ignore[arg-type]

        async def one(action: Action, row: dict[str, Any]) -> None:
            send = self._send(entity, code, action, row)
            try:
                result = await send()
            except asyncio.CancelledError:
                report(
                    action, row, "failed", destination_id=row.get("id"), error="interrupted in flight: outcome unknown"
                )
                raise
            except RowError as exc:
                report(action, row, "failed", destination_id=row.get("id"), status=exc.status, error=str(exc))
            else:
                if action == "create":
                    created.append((str(row["external_id"]), result.pipedrive_id))
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
        self, entity: Entity, code: str, action: Action, row: dict[str, Any]
    ) -> Callable[[], Awaitable[WriteResult]]:
        """Build the request for one planned row; a row that cannot be mapped is a RowError, not a crash."""

        async def send() -> WriteResult:
            if action == "create":
                if entity == "person":
                    body = payloads.person_body(row, code)
                else:
                    body = payloads.deal_body(row, code, row.get("person_id"))
                return await self.client.create(entity, body, external_id=str(row["external_id"]), field_code=code)
            changes = payloads.patch_body(entity, row, row["changed"], code)
            return await self.client.update(entity, int(row["id"]), changes)

        return send

    def usage(self) -> dict[str, object]:
        return self.client.stats.as_dict()

    async def aclose(self) -> None:
        await self.client.aclose()
