"""One entity's records with the sorted indexes that keep list pages O(page): ids, update_time, add_time."""

from __future__ import annotations

from bisect import insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sync_job.sandbox.fields import Entity

OptionLabels = Mapping[str, Mapping[int, str]]  # field code -> option id -> label, for enum and set fields

# Fields the v2 spec declares nullable; other fields without a value are left out of the response
# (the spec types them non-nullable, and clients must tolerate absent keys anyway).
NULLABLE: dict[Entity, frozenset[str]] = {
    "deal": frozenset(
        [
            "probability",
            "lost_reason",
            "close_time",
            "origin_id",
            "channel",
            "channel_id",
            "arr",
            "mrr",
            "acv",
            "archive_time",
        ]
    ),
    "person": frozenset(),
}


@dataclass
class Table:
    """Records by id plus (key, id) indexes; update_time entries go stale on rewrite and are skipped, then compacted."""

    entity: Entity
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    add_us: dict[int, int] = field(default_factory=dict)
    upd_us: dict[int, int] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)
    by_add: list[tuple[int, int]] = field(default_factory=list)
    by_upd: list[tuple[int, int]] = field(default_factory=list)
    stale: int = 0
    next_id: int = 1

    def insert(self, record_id: int, record: dict[str, Any], add_us: int, upd_us: int) -> None:
        self.records[record_id] = record
        self.add_us[record_id] = add_us
        self.upd_us[record_id] = upd_us
        _append_sorted(self.ids, record_id)
        _append_sorted(self.by_add, (add_us, record_id))
        _append_sorted(self.by_upd, (upd_us, record_id))
        self.next_id = max(self.next_id, record_id + 1)

    def touch(self, record_id: int, upd_us: int) -> None:
        """Move a record to its new update_time; the old index entry becomes stale."""
        self.upd_us[record_id] = upd_us
        self.stale += 1
        _append_sorted(self.by_upd, (upd_us, record_id))
        if self.stale > 1000 and self.stale * 2 > len(self.by_upd):
            self.by_upd = [key for key in self.by_upd if self.upd_us[key[1]] == key[0]]
            self.stale = 0

    def current(self, key: tuple[int, int]) -> bool:
        """Is this update_time index entry the record's current one?"""
        return self.upd_us[key[1]] == key[0]

    def render(
        self, record: dict[str, Any], custom_codes: list[str], labels: OptionLabels | None = None
    ) -> dict[str, Any]:
        """The v2 shape: nulls only where the spec allows them; every requested custom field present.

        Enum and set values are bare option ids, or {id, label} objects when `labels` (include_option_labels) is given.
        """
        nullable = NULLABLE[self.entity]
        out = {k: v for k, v in record.items() if v is not None or k in nullable}
        values = record["custom_fields"]
        custom = {code: values.get(code) for code in custom_codes}
        for code, names in (labels or {}).items():
            value = custom.get(code)
            if isinstance(value, list):
                custom[code] = [{"id": v, "label": names.get(v)} for v in value]
            elif value is not None:
                custom[code] = {"id": value, "label": names.get(value)}
        out["custom_fields"] = custom
        return out


def _append_sorted(seq: list[Any], item: Any) -> None:
    """Append in the common (monotonic) case; insort for hand-seeded out-of-order values."""
    if not seq or seq[-1] < item:
        seq.append(item)
    else:
        insort(seq, item)
