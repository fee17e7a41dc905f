"""The snapshot's pure decisions (when to read in full, merging, own writes) and its file (atomic, damage-proof)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sync_job.pipedrive import snapshot
from sync_job.pipedrive.frames import default_schema

URL = "https://acme.pipedrive.com"
CODES = {"person": "p" * 40, "deal": "d" * 40}
PERSON_SCHEMA = default_schema("person", CODES["person"]).remote_columns()
TYPES = {"person": "double", "deal": "varchar"}
NOW = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def empty(taken: snapshot.Meta) -> snapshot.Snapshot:
    """A snapshot with no records, in the default mapping's columns."""
    person, deal = (default_schema(e, CODES[e]).empty() for e in ("person", "deal"))
    return snapshot.Snapshot(taken, person, deal)


def meta(**changes: object) -> snapshot.Meta:
    values: dict[str, object] = {
        "base_url": URL,
        "field_codes": dict(CODES),
        "field_types": dict(TYPES),
        "watermark": "2026-12-01T02:59:00Z",
        "full_read_at": "2026-11-30T03:00:00Z",
    }
    values.update(changes)
    return snapshot.Meta(**values)  # type: ignore[arg-type]


def persons(*rows: tuple[int, str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"id": i, "name": n, "external_id": e, "update_time": None} for i, n, e in rows], schema=PERSON_SCHEMA
    )


def reason(snap: snapshot.Snapshot | None, **overrides: object) -> str | None:
    args: dict[str, object] = {
        "base_url": URL,
        "field_codes": dict(CODES),
        "field_types": dict(TYPES),
        "server_now": NOW,
        "full_read_every": WEEK,
        "forced": False,
    }
    args.update(overrides)
    return snapshot.full_read_reason(snap, **args)  # type: ignore[arg-type]


def test_a_fresh_snapshot_of_the_same_crm_allows_an_incremental_read() -> None:
    assert reason(empty(meta())) is None


@pytest.mark.parametrize(
    ("snap", "overrides", "says"),
    [
        (None, {}, "no usable snapshot"),
        (empty(meta()), {"forced": True}, "--full-read"),
        (empty(meta()), {"base_url": "https://other.pipedrive.com"}, "another Pipedrive base URL"),
        (empty(meta()), {"field_codes": {**CODES, "deal": "e" * 40}}, "custom-field keys differ"),
        (empty(meta()), {"field_types": {**TYPES, "person": "varchar"}}, "id fields' types differ"),
        (empty(meta(field_types={})), {}, "predates recording them"),
        (empty(meta(full_read_at="2026-11-25T03:00:00Z")), {}, "7.0d old"),
        (empty(meta(stale_because="2 write(s) refused")), {}, "2 write(s) refused"),
    ],
)
def test_each_reason_for_a_full_read_is_named(
    snap: snapshot.Snapshot | None, overrides: dict[str, object], says: str
) -> None:
    assert says in (reason(snap, **overrides) or "")


def test_the_watermark_starts_before_the_read_by_the_overlap() -> None:
    assert snapshot.next_watermark(NOW) == "2026-12-02T02:59:00Z"
    assert timedelta(seconds=2) <= snapshot.OVERLAP  # update_time has one-second resolution


def test_merge_replaces_changed_records_adds_new_ones_and_drops_removed_ones() -> None:
    base = persons((1, "Ann", "10"), (2, "Bob", "20"), (3, "Cy", "30"))
    changed = persons((2, "Bobby", "20"), (4, "Dee", "40"))
    merged = snapshot.merge(PERSON_SCHEMA, base, changed, removed_ids=[3])
    assert merged.select("id", "name").rows() == [(1, "Ann"), (2, "Bobby"), (4, "Dee")]


def test_own_writes_are_recorded_and_unsent_fields_keep_their_old_value() -> None:
    base = persons((1, "Ann", "10"))
    schema = default_schema("person", CODES["person"])
    written = pl.DataFrame(
        [schema.written({"external_id": "20", "name": "Bob"}, 2), {"id": 1, "external_id": None, "name": "Annie"}]
    )
    merged = snapshot.record_writes(PERSON_SCHEMA, base, written)
    assert merged.select("id", "name", "external_id").rows() == [(1, "Annie", "10"), (2, "Bob", "20")]


def test_save_then_load_gives_the_same_snapshot(tmp_path: Path) -> None:
    path = snapshot.path_in(tmp_path)
    deals = default_schema("deal", CODES["deal"]).empty()
    snap = snapshot.with_frames(empty(meta()), persons((1, "Ann", "10")), deals)
    snapshot.save(path, snap)
    loaded = snapshot.load(path)
    assert loaded is not None
    assert loaded.meta == snap.meta
    assert loaded.persons.equals(snap.persons)
    assert loaded.deals.equals(snap.deals)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize(
    "damage",
    [b"", b"not parquet at all", b"PAR1" + b"\0" * 64 + b"PAR1"],
    ids=["empty", "garbage", "broken-footer"],
)
def test_a_damaged_snapshot_file_loads_as_none_so_the_run_reads_in_full(tmp_path: Path, damage: bytes) -> None:
    path = snapshot.path_in(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    assert snapshot.load(path) is None


def test_a_truncated_snapshot_file_loads_as_none(tmp_path: Path) -> None:
    path = snapshot.path_in(tmp_path)
    snapshot.save(
        path,
        snapshot.with_frames(empty(meta()), persons((1, "Ann", "10")), default_schema("deal", CODES["deal"]).empty()),
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert snapshot.load(path) is None


def test_a_snapshot_of_another_format_version_loads_as_none(tmp_path: Path) -> None:
    path = snapshot.path_in(tmp_path)
    snapshot.save(path, empty(meta(version=snapshot.VERSION + 1)))
    assert snapshot.load(path) is None
