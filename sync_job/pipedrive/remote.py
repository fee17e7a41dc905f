"""The remote side of the diff: Pipedrive's persons and deals, from the snapshot plus what changed, or in full."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sync_job.config import PipedriveSettings
from sync_job.mapping import Mapping
from sync_job.pipedrive import ledger, snapshot
from sync_job.pipedrive.client import PipedriveClient
from sync_job.pipedrive.entities import ENTITY_PLURAL, Entity
from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, IdField
from sync_job.pipedrive.fields import FieldGone, FieldMissing, resolve_schema
from sync_job.pipedrive.record_schema import RecordSchema
from sync_job.progress import NULL_PROGRESS, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Remote:
    """What one read saw: the frames, the id fields (key and type), and the snapshot to store after the apply."""

    persons: pl.DataFrame
    deals: pl.DataFrame
    fields: dict[Entity, IdField | None]  # None: missing, and a dry run does not create it
    schemas: dict[Entity, RecordSchema]  # the mapping as the account has it (a missing id field has code "")
    next_snapshot: snapshot.Snapshot | None  # None: nothing to store (no Date header, or fields missing)
    day: str | None  # today in Pipedrive's clock, for the budget ledger


@dataclass(frozen=True, slots=True)
class RemoteReader:
    client: PipedriveClient
    settings: PipedriveSettings
    ui: Progress = NULL_PROGRESS
    snapshot_path: Path | None = None  # None: no local state, every run reads the whole CRM
    ledger_path: Path | None = None  # None: the budget share counts this run's spending only
    full_read: bool = False
    recreate_fields: bool = False
    dry_run: bool = False

    async def read(self, mapping: Mapping) -> Remote:
        """Persons and deals as a full read would see them: from the snapshot plus what changed, or in full."""
        old = snapshot.load(self.snapshot_path) if self.snapshot_path is not None else None
        # Field keys are remembered per CRM: a snapshot of another base URL says nothing about this one's fields.
        same_crm = old is not None and snapshot.same_base_url(old.meta.base_url, self.client.base_url)
        remembered = old.meta.field_codes if old is not None and same_crm else {}
        names: dict[Entity, str] = {"person": self.settings.person_id_field, "deal": self.settings.deal_id_field}
        # Both fields are looked up (and their types checked) before either is created: a config error in the
        # second must not leave the first created.
        found = {entity: await self._field(entity, name, remembered.get(entity)) for entity, name in names.items()}
        fields = {
            entity: await self._create(entity, name) if found[entity] is None else found[entity]
            for entity, name in names.items()
        }
        codes = {entity: None if field is None else field.code for entity, field in fields.items()}
        schemas = {
            entity: resolve_schema(
                mapping.of(entity),
                await self.client.field_items(entity),
                field or IdField("", names[entity], NEW_FIELD_TYPE),
                self.settings.currency,
            )
            for entity, field in fields.items()
        }
        started = self.client.server_now()  # after the field lists: their Date header gives Pipedrive's clock
        day = self._count_earlier_spending(started.strftime("%Y-%m-%d")) if started is not None else None
        reason = None
        if self.snapshot_path is not None and started is not None:
            reason = snapshot.full_read_reason(
                old,
                base_url=self.client.base_url,
                field_codes={str(entity): code for entity, code in codes.items()},
                field_types={str(entity): field.field_type for entity, field in fields.items() if field is not None},
                signatures={str(entity): schema.signature() for entity, schema in schemas.items()},
                server_now=started,
                full_read_every=self.settings.full_read_every,
                forced=self.full_read,
            )
        if old is None or reason is not None or started is None:
            if self.snapshot_path is not None:
                log.info("full read of the CRM: %s", reason or "Pipedrive sent no Date header to date a snapshot by")
            persons = await self._read(schemas["person"], fields["person"])
            deals = await self._read(schemas["deal"], fields["deal"])
            full_read_at = started
        else:
            since = old.meta.watermark
            log.info("incremental read of the CRM: changes since %s (last full read %s)", since, old.meta.full_read_at)
            changed_persons = await self._read(schemas["person"], fields["person"], updated_since=since)
            changed_deals = await self._read(schemas["deal"], fields["deal"], updated_since=since)
            deleted_deals = await self._read(schemas["deal"], fields["deal"], updated_since=since, deleted=True)
            persons = snapshot.merge(schemas["person"].remote_columns(), old.persons, changed_persons, [])
            deals = snapshot.merge(
                schemas["deal"].remote_columns(), old.deals, changed_deals, deleted_deals["id"].to_list()
            )
            full_read_at = snapshot.parse_time(old.meta.full_read_at)
        taken = None
        if started is not None and full_read_at is not None and None not in fields.values():
            meta = snapshot.Meta(
                base_url=self.client.base_url,
                field_codes={entity: str(code) for entity, code in codes.items()},
                field_types={entity: field.field_type for entity, field in fields.items() if field is not None},
                watermark=snapshot.next_watermark(started),
                full_read_at=snapshot.rfc3339(full_read_at),
                signatures={entity: schema.signature() for entity, schema in schemas.items()},
            )
            taken = snapshot.Snapshot(meta, persons, deals)
        return Remote(persons, deals, fields, schemas, taken, day)

    def _count_earlier_spending(self, day: str) -> str | None:
        """Tell the budget what this job's earlier runs spent today; the day, when it is to be recorded."""
        if self.ledger_path is None:
            return None
        earlier = ledger.load(self.ledger_path)
        budget = self.client.budget
        budget.spent_earlier_today = earlier.on(day) if earlier else 0
        if budget.forget_earlier_if_reset():
            log.info("Pipedrive's daily budget was reset since this job's earlier runs today: they no longer count")
        return day

    async def _field(self, entity: Entity, name: str, remembered: str | None) -> IdField | None:
        """The existing id field (its type checked); None when missing. FieldGone when it was there last run."""
        try:
            field: IdField | None = await self.client.resolve_id_field(entity, name, create=False)
        except FieldMissing:
            field = None
        code = None if field is None else field.code
        if remembered is not None and code != remembered and not self.recreate_fields:
            # The field links records to source rows: under a new key every record looks unlinked, and the run
            # would create a second person or deal for every row. A human decides.
            now = "is gone from Pipedrive now" if code is None else f"was deleted and created again (key {code} now)"
            raise FieldGone(
                f"the {ENTITY_PLURAL[entity]} custom field {name!r} (key {remembered}) existed on the previous run "
                f"and {now}: restore it, or run with --recreate-fields to accept a new one "
                f"(every {entity} is then created again, next to the old ones)"
            )
        return field

    async def _create(self, entity: Entity, name: str) -> IdField | None:
        if self.dry_run:  # a dry run must not create the field: nothing matches yet
            return None
        return await self.client.resolve_id_field(entity, name, create=True)

    async def _read(self, schema: RecordSchema, field: IdField | None, **query: Any) -> pl.DataFrame:
        entity = schema.entity
        if field is None:
            return schema.empty()
        frames = []
        label = f"reading deleted {entity}s" if query.get("deleted") else f"reading {entity}s"
        async for page in self.client.iter_pages(schema, **query):
            frames.append(page)
            self.ui.advance(label, page.height)
        total = sum(frame.height for frame in frames)
        self.ui.advance(label, 0, total=total)  # the bar ends full, even for an empty CRM
        if not frames:
            return schema.empty()
        return pl.concat(frames, how="vertical", rechunk=True)
