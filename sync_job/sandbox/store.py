"""The sandbox CRM's in-memory state: persons, deals, field registries, search index; thread-safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sync_job.sandbox import bodies, catalog, deals, validate
from sync_job.sandbox.envelope import bad_request, not_found
from sync_job.sandbox.fields import ENTITIES, SEARCHABLE_TYPES, Entity, FieldRegistry
from sync_job.sandbox.paging import dt_to_us, us_to_rfc3339
from sync_job.sandbox.search import SearchDoc, SearchIndex
from sync_job.sandbox.table import OptionLabels, Table

USER_ID = catalog.TOKEN_USER_ID  # the default owner, and the creator of every record written through the API


class Store:
    """All state behind one re-entrant lock: handlers (server thread) and tests (main thread) share it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.fields: dict[Entity, FieldRegistry] = {e: FieldRegistry.seeded(e) for e in ENTITIES}
        self.tables: dict[Entity, Table] = {e: Table(e) for e in ENTITIES}
        self.search: dict[Entity, SearchIndex] = {e: SearchIndex(e) for e in ENTITIES}
        self.search_lag_seconds = 0.0
        self.clock: Callable[[], float] = time.monotonic  # the search index's clock; tests may replace it
        self.version = 0  # bumped by every change; the state file is rewritten when it moved
        self._last_us = 0

    # -- time ------------------------------------------------------------------------------------
    def tick(self) -> int:
        """Wall-clock microseconds, strictly increasing: two writes never share an update_time."""
        self._last_us = max(time.time_ns() // 1000, self._last_us + 1)
        return self._last_us

    # -- reads -----------------------------------------------------------------------------------
    def custom_codes(self, entity: Entity) -> list[str]:
        return [f.code for f in self.fields[entity].custom_fields()]

    def option_labels(self, entity: Entity) -> dict[str, dict[int, str]]:
        """Labels of every enum and set field's options, for include_option_labels=true."""
        with self.lock:
            return {
                f.code: {int(o["id"]): str(o["label"]) for o in f.options or []}
                for f in self.fields[entity].custom_fields()
                if f.field_type in ("enum", "set")
            }

    def get(
        self, entity: Entity, record_id: int, codes: list[str] | None = None, labels: OptionLabels | None = None
    ) -> dict[str, Any]:
        with self.lock:
            table = self.tables[entity]
            record = table.records.get(record_id)
            if record is None:
                raise not_found(entity, record_id)
            return table.render(record, self.custom_codes(entity) if codes is None else codes, labels)

    def live(self, entity: Entity) -> list[dict[str, Any]]:
        """Every non-deleted record in id order, v2-shaped."""
        with self.lock:
            table, codes = self.tables[entity], self.custom_codes(entity)
            return [table.render(table.records[i], codes) for i in table.ids if not table.records[i]["is_deleted"]]

    # -- API writes (validated) --------------------------------------------------------------------
    def create(self, entity: Entity, body: object) -> dict[str, Any]:
        with self.lock:
            changes = self._validate(entity, body, create=True)
            record_id = self.tables[entity].next_id
            now = self.tick()
            add_us = now
            if "add_time" in changes:
                add_us = dt_to_us(validate.parse_rfc3339("add_time", changes.pop("add_time")))
            record = _defaults(entity, record_id, add_us, now)
            self._apply(entity, record, changes, now)
            self.tables[entity].insert(record_id, record, add_us, now)
            self._changed(entity, record_id)
            return self.get(entity, record_id)

    def update(self, entity: Entity, record_id: int, body: object) -> dict[str, Any]:
        with self.lock:
            record = self._writable(entity, record_id)
            changes = self._validate(entity, body, create=False)
            if changes.get("is_deleted") is True:
                raise bad_request("PATCH cannot delete: use DELETE")
            now = self.tick()
            updated = dict(record)
            self._apply(entity, updated, changes, now)
            self.tables[entity].records[record_id] = updated
            self.tables[entity].touch(record_id, now)
            self._changed(entity, record_id)
            return self.get(entity, record_id)

    def delete(self, entity: Entity, record_id: int) -> int:
        with self.lock:
            record = self._writable(entity, record_id)
            now = self.tick()
            self.tables[entity].records[record_id] = {**record, "is_deleted": True, "update_time": us_to_rfc3339(now)}
            self.tables[entity].touch(record_id, now)
            self._changed(entity, record_id)
            return record_id

    def _writable(self, entity: Entity, record_id: int) -> dict[str, Any]:
        record = self.tables[entity].records.get(record_id)
        if record is None or record["is_deleted"]:
            raise not_found(entity, record_id)
        return record

    def _validate(self, entity: Entity, body: object, *, create: bool) -> dict[str, Any]:
        registry = self.fields[entity]
        if entity == "person":
            return bodies.person_body(body, registry, create=create)
        persons = self.tables["person"].records
        return bodies.deal_body(
            body,
            registry,
            create=create,
            person_exists=lambda pid: pid in persons and not persons[pid]["is_deleted"],
        )

    def _apply(self, entity: Entity, record: dict[str, Any], changes: dict[str, Any], now: int) -> None:
        """Merge validated changes into a record copy, with the name and deal-status rules."""
        changes = dict(changes)
        custom = changes.pop("custom_fields", None)
        if custom is not None:
            merged = {**record["custom_fields"], **custom}
            record["custom_fields"] = {k: v for k, v in merged.items() if v is not None}
        if entity == "person":
            _person_names(record, changes)
        else:
            deals.apply_rules(record, changes, now)
        record.update(changes)
        record["update_time"] = us_to_rfc3339(now)

    def _changed(self, entity: Entity, record_id: int) -> None:
        """Queue the record's new state for the (lagging) search index; mark the state dirty."""
        self.version += 1
        record = self.tables[entity].records[record_id]
        doc = None if record["is_deleted"] else self._search_doc(entity, record)
        self.search[entity].enqueue(record_id, doc, self.clock() + self.search_lag_seconds)

    def _search_doc(self, entity: Entity, record: dict[str, Any]) -> SearchDoc:
        registry = self.fields[entity]
        custom: list[str] = []
        for code, value in record["custom_fields"].items():
            fd = registry.by_code.get(code)
            if fd is not None and fd.field_type in SEARCHABLE_TYPES:
                custom.append(str(value["value"] if isinstance(value, dict) else value))
        terms = [("custom_fields", v) for v in custom]
        owner = {"id": record["owner_id"]}
        base = {"id": record["id"], "type": entity, "visible_to": record["visible_to"], "owner": owner}
        if entity == "person":
            terms.append(("name", record["name"]))
            terms += [("email", e["value"]) for e in record["emails"]]
            terms += [("phone", p["value"]) for p in record["phones"]]
            item = {
                **base,
                "name": record["name"],
                "phones": [p["value"] for p in record["phones"]],
                "emails": [e["value"] for e in record["emails"]],
            }
        else:
            terms.append(("title", record["title"]))
            person_id = record["person_id"]
            person = self.tables["person"].records.get(person_id) if person_id is not None else None
            value = record["value"]
            item = {
                **base,
                "title": record["title"],
                "value": int(value) if float(value).is_integer() else value,
                "currency": record["currency"],
                "status": record["status"],
                "stage": {"id": record["stage_id"], "name": _stage_name(record["stage_id"])},
                "person": {"id": person["id"], "name": person["name"]} if person else None,
                "organization": None,
                "is_archived": record["is_archived"],
            }
        return SearchDoc(terms=terms, custom=custom, item=item)

    # -- helpers for tests and seeding (no API validation: "edited by hand") ---------------------------
    def add_field(
        self, entity: Entity, name: str, field_type: str = "varchar", options: list[str] | None = None
    ) -> str:
        """Register a custom field as if created in the UI; returns its 40-hex code."""
        with self.lock:
            self.version += 1
            return self.fields[entity].add_custom(name, field_type, options=options).code

    def delete_field(self, entity: Entity, code: str) -> None:
        """Delete a custom field as if in the UI: the definition and every record's value of it are gone."""
        with self.lock:
            self.version += 1
            self.fields[entity].remove_custom(code)
            table = self.tables[entity]
            for record_id, record in table.records.items():
                if code in record["custom_fields"]:
                    fields = {k: v for k, v in record["custom_fields"].items() if k != code}
                    table.records[record_id] = {**record, "custom_fields": fields}

    def add_record(self, entity: Entity, data: dict[str, Any]) -> int:
        """Insert a record as is (explicit id, add_time, update_time, is_deleted allowed); returns its id."""
        with self.lock:
            data = dict(data)
            table = self.tables[entity]
            record_id = int(data.pop("id", table.next_id))
            if record_id in table.records:
                raise ValueError(f"{entity} {record_id} already exists")
            now = self.tick()
            add_us = _us(data.pop("add_time", None), now)
            upd_us = _us(data.pop("update_time", None), now)
            record = _defaults(entity, record_id, add_us, upd_us)
            self._check_codes(entity, data.get("custom_fields", {}))
            if entity == "person":
                _person_names(record, data)
            record.update({k: v for k, v in data.items() if k != "custom_fields"})
            record["custom_fields"] = dict(data.get("custom_fields", {}))
            table.insert(record_id, record, add_us, upd_us)
            self._changed(entity, record_id)
            return record_id

    def patch_record(self, entity: Entity, record_id: int, changes: dict[str, Any], *, touch: bool = True) -> None:
        """Edit a record by hand; bumps update_time unless touch=False or an explicit update_time is given."""
        with self.lock:
            table = self.tables[entity]
            record = dict(table.records[record_id])
            changes = dict(changes)
            self._check_codes(entity, changes.get("custom_fields", {}))
            explicit = changes.pop("update_time", None)
            if "custom_fields" in changes:
                record["custom_fields"] = {**record["custom_fields"], **changes.pop("custom_fields")}
            if entity == "person":
                _person_names(record, changes)
            record.update(changes)
            if explicit is not None or touch:
                upd_us = _us(explicit, self.tick())
                record["update_time"] = us_to_rfc3339(upd_us)
                table.records[record_id] = record
                table.touch(record_id, upd_us)
            else:
                table.records[record_id] = record
            self._changed(entity, record_id)

    def _check_codes(self, entity: Entity, custom: dict[str, Any]) -> None:
        unknown = set(custom) - set(self.custom_codes(entity))
        if unknown:
            raise ValueError(f"unknown {entity} custom field code(s): {sorted(unknown)}")


def _us(value: object, default: int) -> int:
    if value is None:
        return default
    return dt_to_us(validate.parse_rfc3339("time", value))


def _stage_name(stage_id: int) -> str:
    stage = catalog.STAGE_BY_ID.get(stage_id)
    return stage.name if stage is not None else f"Stage {stage_id}"  # a hand-seeded record may name any stage


def _defaults(entity: Entity, record_id: int, add_us: int, upd_us: int) -> dict[str, Any]:
    times = {"add_time": us_to_rfc3339(add_us), "update_time": us_to_rfc3339(upd_us)}
    if entity == "person":
        return {
            "id": record_id, "name": "", "first_name": None, "last_name": None, "owner_id": USER_ID,
            "org_id": None, **times, "emails": [], "phones": [], "is_deleted": False, "visible_to": 3,
            "label_ids": [], "picture_id": None, "custom_fields": {},
        }  # fmt: skip
    return {
        "id": record_id, "title": "", "creator_user_id": USER_ID, "owner_id": USER_ID, "value": 0,
        "currency": "USD", "person_id": None, "org_id": None, "pipeline_id": catalog.DEFAULT_PIPELINE_ID,
        "stage_id": catalog.first_stage(catalog.DEFAULT_PIPELINE_ID).id, "status": "open",
        **times, "stage_change_time": None, "is_deleted": False, "is_archived": False, "archive_time": None,
        "probability": None, "lost_reason": None, "visible_to": 3, "close_time": None, "won_time": None,
        "lost_time": None, "expected_close_date": None, "label_ids": [], "origin": "API", "origin_id": None,
        "channel": None, "channel_id": None, "acv": None, "arr": None, "mrr": None, "custom_fields": {},
    }  # fmt: skip


def _person_names(record: dict[str, Any], changes: dict[str, Any]) -> None:
    """`name` splits into first/last; first/last alone rebuild `name` (reference §5.3)."""
    if "name" in changes:
        first, _, last = str(changes["name"]).strip().partition(" ")
        changes.setdefault("first_name", first or None)
        changes.setdefault("last_name", last.strip() or None)
        changes["name"] = str(changes["name"]).strip()
    elif "first_name" in changes or "last_name" in changes:
        first = changes.get("first_name", record.get("first_name")) or ""
        last = changes.get("last_name", record.get("last_name")) or ""
        changes["name"] = f"{first} {last}".strip()
