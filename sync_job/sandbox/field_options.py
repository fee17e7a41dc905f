"""/api/v2/{deal,person}Fields/{field_code}/options: add, relabel and delete the options of an enum or set field."""

from __future__ import annotations

from typing import Any

from sync_job.sandbox import validate
from sync_job.sandbox.envelope import ApiError, bad_request
from sync_job.sandbox.fields import Entity, FieldDef
from sync_job.sandbox.paging import us_to_rfc3339
from sync_job.sandbox.store import Store
from sync_job.sandbox.table import Table


def _option_field(store: Store, entity: Entity, code: str) -> FieldDef:
    fd = store.fields[entity].by_code.get(code)
    if fd is None:
        raise ApiError(404, f"field {code} not found", error_info="Object was not found.")
    if not fd.custom or fd.field_type not in ("enum", "set") or fd.options is None:
        # the spec: options belong to "a custom field that supports options (enum or set field types)"
        raise bad_request(f"Field {code} ({fd.name}, {fd.field_type}) has no options: only enum and set custom fields")
    return fd


def _known(fd: FieldDef, ids: list[int]) -> dict[int, dict[str, Any]]:
    """The field's options by id; 400 naming every requested id it lacks (the operations are all-or-nothing)."""
    by_id = {int(o["id"]): o for o in fd.options or []}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise bad_request(f"Option id(s) {missing} do not exist on field {fd.code} ({fd.name}): nothing was changed")
    return by_id


def _brief(option: dict[str, Any]) -> dict[str, Any]:
    """The options endpoints answer {id, label} per option (spec response schema and example)."""
    return {"id": option["id"], "label": option["label"]}


def add(store: Store, entity: Entity, code: str, body: object) -> list[dict[str, Any]]:
    """POST: append new options with fresh ids; answers only the added ones."""
    labels = validate.new_option_labels("body", body)
    with store.lock:
        fd = _option_field(store, entity, code)
        validate.unique_labels(labels, taken=(o["label"] for o in fd.options or []))
        stamp = us_to_rfc3339(store.tick())
        added = [store.fields[entity].new_option(label, stamp) for label in labels]
        fd.options = [*(fd.options or []), *added]
        store.version += 1
        return [_brief(o) for o in added]


def relabel(store: Store, entity: Entity, code: str, body: object) -> list[dict[str, Any]]:
    """PATCH: new labels for existing option ids (ids and values on records stay); answers the updated options."""
    changes = validate.relabels(body)
    with store.lock:
        fd = _option_field(store, entity, code)
        by_id = _known(fd, [oid for oid, _ in changes])
        new_label = dict(changes)
        # Unique after the whole request, so two options may swap labels in one call.
        validate.unique_labels([new_label.get(int(o["id"]), o["label"]) for o in fd.options or []])
        stamp = us_to_rfc3339(store.tick())
        fd.options = [
            {**o, "label": new_label[int(o["id"])], "update_time": stamp} if int(o["id"]) in new_label else o
            for o in fd.options or []
        ]
        store.version += 1
        return [_brief({**by_id[oid], "label": label}) for oid, label in changes]


def remove(store: Store, entity: Entity, code: str, body: object) -> list[dict[str, Any]]:
    """DELETE: drop options; records holding them lose that value. Answers the deleted options."""
    ids = validate.removals(body)
    with store.lock:
        fd = _option_field(store, entity, code)
        by_id = _known(fd, ids)
        gone = set(ids)
        fd.options = [o for o in fd.options or [] if int(o["id"]) not in gone]
        _forget(store.tables[entity], code, gone, many=fd.field_type == "set")
        store.version += 1
        return [_brief(by_id[i]) for i in ids]


def _forget(table: Table, code: str, gone: set[int], *, many: bool) -> None:
    """Take deleted option ids out of stored values, so no record keeps an id that GET of the field no longer lists.

    What Pipedrive shows for such values is unverified (reference §15.14); clearing them matches deleting a whole
    field (Store.delete_field). Like that UI edit, it leaves update_time alone: no API write touched the records.
    """
    for record_id, record in table.records.items():
        value = record["custom_fields"].get(code)
        if value is None:
            continue
        kept: object = [v for v in value if v not in gone] if many else (None if value in gone else value)
        if kept != value:
            values = {k: v for k, v in record["custom_fields"].items() if k != code}
            if kept not in (None, []):  # a set needs at least one option, like the API's own "[] is invalid"
                values[code] = kept
            table.records[record_id] = {**record, "custom_fields": values}
