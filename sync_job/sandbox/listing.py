"""List, search and field-list queries against the store: query-string parsing, filters, cursor pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync_job.sandbox import search as search_module
from sync_job.sandbox import validate
from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.fields import Entity
from sync_job.sandbox.paging import decode_cursor, dt_to_us, encode_cursor, page, parse_limit, us_to_rfc3339
from sync_job.sandbox.store import Store
from sync_job.sandbox.table import Table

_INT_FILTERS: dict[Entity, tuple[str, ...]] = {
    "deal": ("owner_id", "person_id", "org_id", "pipeline_id", "stage_id"),
    "person": ("owner_id", "org_id"),
}
_SMALL_RANGE = 20_000  # below this many updated_since candidates, sort them instead of scanning the sort order


def _int_param(query: Mapping[str, str], name: str) -> int:
    try:
        return int(query[name])
    except ValueError:
        raise bad_request(f"Invalid value for '{name}': {query[name]!r} is not an integer") from None


def custom_codes_param(store: Store, entity: Entity, query: Mapping[str, str]) -> list[str] | None:
    raw = query.get("custom_fields")
    if raw is None:
        return None
    codes = [c.strip() for c in raw.split(",") if c.strip()]
    if len(codes) > 15:
        raise bad_request("Invalid value for 'custom_fields': at most 15 keys")
    known = set(store.custom_codes(entity))
    for code in codes:
        if code not in known:
            raise bad_request(f"Invalid value for 'custom_fields': unknown custom field key '{code}'")
    return codes


def option_labels_param(store: Store, entity: Entity, query: Mapping[str, str]) -> dict[str, dict[int, str]] | None:
    """include_option_labels=true: enum/set values as {id, label} (spec: a boolean query parameter)."""
    raw = query.get("include_option_labels")
    if raw is None or raw == "false":
        return None
    if raw != "true":
        raise bad_request(f"Invalid value for 'include_option_labels': {raw!r} (true or false)")
    return store.option_labels(entity)


def list_records(store: Store, entity: Entity, query: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    limit = parse_limit(query.get("limit"))
    sort_by = query.get("sort_by", "id")
    direction = query.get("sort_direction", "asc")
    if sort_by not in ("id", "update_time", "add_time"):
        raise bad_request(f"Invalid value for 'sort_by': {sort_by!r} (id, update_time or add_time)")
    if direction not in ("asc", "desc"):
        raise bad_request(f"Invalid value for 'sort_direction': {direction!r} (asc or desc)")
    since = (
        dt_to_us(validate.parse_rfc3339("updated_since", query["updated_since"])) if "updated_since" in query else None
    )
    until = (
        dt_to_us(validate.parse_rfc3339("updated_until", query["updated_until"])) if "updated_until" in query else None
    )
    statuses = _statuses(entity, query)
    equals = {name: _int_param(query, name) for name in _INT_FILTERS[entity] if name in query}
    ids_filter: set[int] | None = None
    if "ids" in query:
        try:
            ids_filter = {int(part) for part in query["ids"].split(",") if part.strip()}
        except ValueError:
            raise bad_request("Invalid value for 'ids': comma-separated integers expected") from None
        if len(ids_filter) > 100:
            raise bad_request("Invalid value for 'ids': at most 100 ids")
    after = None
    if query.get("cursor"):
        payload = decode_cursor(query["cursor"], sort_by, direction)
        after = payload["id"] if sort_by == "id" else (int(payload["fieldValue"]), payload["id"])
    with store.lock:
        table = store.tables[entity]
        codes = custom_codes_param(store, entity, query)
        if codes is None:
            codes = store.custom_codes(entity)
        labels = option_labels_param(store, entity, query)
        records, upd = table.records, table.upd_us

        def accept_id(record_id: int) -> bool:
            record = records[record_id]
            if statuses is None:
                if record["is_deleted"]:
                    return False
            elif ("deleted" if record["is_deleted"] else record["status"]) not in statuses:
                return False
            if ids_filter is not None and record_id not in ids_filter:
                return False
            if since is not None and upd[record_id] < since:
                return False
            if until is not None and upd[record_id] >= until:
                return False
            return all(record.get(name) == value for name, value in equals.items())

        keys, key_of = _index(table, sort_by, since, until, ids_filter)
        lo = hi = None
        if sort_by == "update_time":
            lo = (since, -1) if since is not None else None
            hi = (until, -1) if until is not None else None
        accept: Callable[[Any], bool] = accept_id
        if sort_by != "id":
            accept = lambda k: table_key_ok(table, sort_by, k) and accept_id(k[1])  # noqa: E731
        found, more = page(keys, after=after, descending=direction == "desc", accept=accept, limit=limit, lo=lo, hi=hi)
        data = [table.render(records[key_of(k)], codes, labels) for k in found]
    next_cursor = None
    if more and found:
        last = found[-1]
        if sort_by == "id":
            next_cursor = encode_cursor("id", last, direction, last)
        else:
            next_cursor = encode_cursor(sort_by, last[0], direction, last[1])
    return data, next_cursor


def table_key_ok(table: Table, sort_by: str, key: tuple[int, int]) -> bool:
    return sort_by != "update_time" or table.current(key)


def _index(
    table: Table, sort_by: str, since: int | None, until: int | None, ids_filter: set[int] | None
) -> tuple[list[Any], Callable[[Any], int]]:
    """The key list to page through: the table's own index, or a small sorted candidate list."""
    candidates: list[int] | None = None
    if ids_filter is not None:
        candidates = [i for i in ids_filter if i in table.records]
    elif since is not None and sort_by != "update_time":
        tail = page(
            table.by_upd, after=None, descending=False, accept=table.current, limit=_SMALL_RANGE, lo=(since, -1)
        )
        if not tail[1]:
            candidates = [k[1] for k in tail[0]]
    if candidates is not None:
        if sort_by == "id":
            return sorted(candidates), lambda k: int(k)
        times = table.add_us if sort_by == "add_time" else table.upd_us
        return sorted((times[i], i) for i in candidates), lambda k: int(k[1])
    if sort_by == "id":
        return table.ids, lambda k: int(k)
    return (table.by_add if sort_by == "add_time" else table.by_upd), lambda k: int(k[1])


def _statuses(entity: Entity, query: Mapping[str, str]) -> set[str] | None:
    if "status" not in query:
        return None
    if entity != "deal":
        raise bad_request("Unknown parameter 'status' for persons")
    statuses = {s.strip() for s in query["status"].split(",") if s.strip()}
    bad = statuses - {"open", "won", "lost", "deleted"}
    if bad:
        raise bad_request(f"Invalid value for 'status': {sorted(bad)} (open, won, lost, deleted)")
    return statuses


def search_records(store: Store, entity: Entity, query: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    term, groups, exact, filters = search_module.parse_query(entity, dict(query))
    limit = parse_limit(query.get("limit"))
    offset = 0
    if query.get("cursor"):
        offset = int(decode_cursor(query["cursor"], "result", "asc")["id"])
    with store.lock:
        index = store.search[entity]
        index.catch_up(store.clock())
        hits = index.search(term, groups, exact=exact, filters=filters)
        chunk = hits[offset : offset + limit]
        items = [{"result_score": score, "item": index.result_item(rid, term, groups)} for score, rid in chunk]
    more = offset + limit < len(hits)
    next_cursor = encode_cursor("result", offset + limit, "asc", offset + limit) if more else None
    return {"items": items}, next_cursor


def list_fields(store: Store, entity: Entity, query: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    limit = parse_limit(query.get("limit"))
    offset = 0
    if query.get("cursor"):
        offset = int(decode_cursor(query["cursor"], "field", "asc")["id"])
    with store.lock:
        fields = store.fields[entity].fields
        data = [f.to_v2() for f in fields[offset : offset + limit]]
        more = offset + limit < len(fields)
    return data, encode_cursor("field", offset + limit, "asc", offset + limit) if more else None


def create_field(store: Store, entity: Entity, body: object) -> dict[str, Any]:
    name, field_type, labels, description = validate.field_body(body)
    with store.lock:
        stamp = us_to_rfc3339(store.tick())
        fd = store.fields[entity].add_custom(name, field_type, options=labels, description=description, stamp=stamp)
        store.version += 1
        return fd.to_v2()
