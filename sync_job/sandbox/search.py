"""A search index that catches up with writes after a lag, like a CRM's asynchronous search service."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.fields import Entity

# Searchable field groups per entity (spec: searchDeals/searchPersons `fields`).
SEARCH_FIELDS: dict[Entity, frozenset[str]] = {
    "deal": frozenset({"custom_fields", "notes", "title"}),
    "person": frozenset({"custom_fields", "email", "notes", "phone", "name"}),
}


@dataclass
class SearchDoc:
    """What the index knows of one record: searchable terms by group, and the result item to show."""

    terms: list[tuple[str, str]]  # (group, value), value as written
    custom: list[str]  # searchable custom-field values (for the item's matched custom_fields)
    item: dict[str, Any]


@dataclass
class SearchIndex:
    entity: Entity
    view: dict[int, SearchDoc] = field(default_factory=dict)
    exact: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    pending: deque[tuple[float, int, SearchDoc | None]] = field(default_factory=deque)

    def enqueue(self, record_id: int, doc: SearchDoc | None, visible_at: float) -> None:
        """Schedule a write (doc None = delete) to become searchable at monotonic time `visible_at`."""
        self.pending.append((visible_at, record_id, doc))

    def catch_up(self, now: float) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, record_id, doc = self.pending.popleft()
            self._apply(record_id, doc)

    def _apply(self, record_id: int, doc: SearchDoc | None) -> None:
        old = self.view.pop(record_id, None)
        if old is not None:
            for group, value in old.terms:
                ids = self.exact.get((group, value.lower()))
                if ids is not None:
                    ids.discard(record_id)
                    if not ids:
                        del self.exact[(group, value.lower())]
        if doc is not None:
            self.view[record_id] = doc
            for group, value in doc.terms:
                self.exact.setdefault((group, value.lower()), set()).add(record_id)

    def search(
        self, term: str, groups: frozenset[str], *, exact: bool, filters: dict[str, Any]
    ) -> list[tuple[float, int]]:
        """(score, id) of matching records, best first (ties by id)."""
        needle = term.lower()
        hits: dict[int, float] = {}
        if exact:
            for group in groups:
                for record_id in self.exact.get((group, needle), ()):
                    hits[record_id] = 1.0
        else:
            for record_id, doc in self.view.items():
                best = 0.0
                for group, value in doc.terms:
                    if group in groups:
                        low = value.lower()
                        if low == needle:
                            best = 1.0
                            break
                        if needle in low:
                            best = max(best, round(len(needle) / max(len(low), 1), 4))
                if best > 0:
                    hits[record_id] = best
        matched = [(score, rid) for rid, score in hits.items() if _passes(self.view[rid].item, filters)]
        matched.sort(key=lambda pair: (-pair[0], pair[1]))
        return matched

    def result_item(self, record_id: int, term: str, groups: frozenset[str]) -> dict[str, Any]:
        doc = self.view[record_id]
        item = dict(doc.item)
        needle = term.lower()
        item["custom_fields"] = [v for v in doc.custom if needle in v.lower()] if "custom_fields" in groups else []
        item["notes"] = []
        return item


def _passes(item: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, wanted in filters.items():
        if key == "status":
            if item.get("status") != wanted:
                return False
        else:
            related = item.get(key)
            if not isinstance(related, dict) or related.get("id") != wanted:
                return False
    return True


def parse_query(entity: Entity, query: dict[str, str]) -> tuple[str, frozenset[str], bool, dict[str, Any]]:
    """term, field groups, exact_match and filters from the query string, with the documented 400s."""
    term = query.get("term", "")
    exact_raw = query.get("exact_match", "false")
    if exact_raw not in ("true", "false"):
        raise bad_request(f"Invalid value for 'exact_match': {exact_raw!r} (expected true or false)")
    exact = exact_raw == "true"
    if len(term.strip()) < (1 if exact else 2):
        raise bad_request("Search term must be at least 2 characters long (1 with exact_match=true)")
    allowed = SEARCH_FIELDS[entity]
    raw_fields = query.get("fields")
    groups = allowed
    if raw_fields:
        requested = frozenset(f.strip() for f in raw_fields.split(",") if f.strip())
        unknown = requested - allowed
        if unknown:
            raise bad_request(f"Invalid value for 'fields': {sorted(unknown)} (allowed: {sorted(allowed)})")
        groups = requested
    filters: dict[str, Any] = {}
    for param, key in (("person_id", "person"), ("organization_id", "organization")):
        if param in query:
            try:
                filters[key] = int(query[param])
            except ValueError:
                raise bad_request(f"Invalid value for '{param}': expected an integer") from None
    if "status" in query:
        if entity != "deal" or query["status"] not in ("open", "won", "lost"):
            raise bad_request(f"Invalid value for 'status': {query['status']!r}")
        filters["status"] = query["status"]
    return term.strip(), groups, exact, filters
