"""The local snapshot of the remote persons and deals: one Parquet file that incremental reads are merged into.

It is a cache: deleting it (or any damage to it) only makes the next run a full read. It lives in
WORKDIR/state/, which the workdir lock gives to one run at a time, and is replaced atomically (write a
temporary file, fsync, rename), so a run killed at any point leaves the previous snapshot intact.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from sync_job import staging
from sync_job.pipedrive import lookup
from sync_job.pipedrive.entities import ENTITIES, Entity

log = logging.getLogger(__name__)

FILE_NAME = "pipedrive-snapshot.parquet"
VERSION = 2  # bump when the columns or the meaning of a field change: an old snapshot then means a full read
_META_KEY = "sync_job_snapshot"

# `update_time` has one-second resolution and a write may become visible to list reads a moment after it is
# stamped: the next incremental read starts this long before the previous read started (records read twice are
# merged by id, so the overlap costs a few records, never correctness).
OVERLAP = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Meta:
    """What the snapshot is of, and up to when. Times are Pipedrive's clock (its Date header), RFC 3339 UTC."""

    base_url: str
    field_codes: dict[str, str]  # entity -> the external-id custom field's key when the snapshot was taken
    watermark: str  # the next incremental read asks for records with update_time >= this
    full_read_at: str  # when the last full read started
    version: int = VERSION
    # entity -> the id field's type: the external ids are stored as that type reads back (field_types.canonical),
    # so a snapshot without types (an older run) or of other types is not trusted.
    field_types: dict[str, str] = field(default_factory=dict)
    # Set when the CRM refused a write in a way a stale snapshot explains (a record gone that the snapshot holds):
    # the next run then reads in full instead of trusting it.
    stale_because: str = ""
    # entity -> what its columns mean (RecordSchema.signature): a mapping changed since means a full read, since
    # the snapshot holds no values for a newly mapped field.
    signatures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: Meta
    persons: pl.DataFrame
    deals: pl.DataFrame

    def frame(self, entity: Entity) -> pl.DataFrame:
        return self.persons if entity == "person" else self.deals


def path_in(workdir: Path) -> Path:
    return workdir / "state" / FILE_NAME


def rfc3339(moment: datetime) -> str:
    return lookup.rfc3339(moment.timestamp())


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# ---- pure decisions ------------------------------------------------------------------------------------------


def full_read_reason(
    snapshot: Snapshot | None,
    *,
    base_url: str,
    field_codes: dict[str, str | None],
    field_types: dict[str, str] | None = None,
    signatures: dict[str, str] | None = None,
    server_now: datetime,
    full_read_every: timedelta,
    forced: bool,
) -> str | None:
    """Why this run must read everything (a sentence for the log), or None when an incremental read is exact."""
    if forced:
        return "--full-read was given"
    if snapshot is None:
        return "there is no usable snapshot of the CRM"
    meta = snapshot.meta
    if not same_base_url(meta.base_url, base_url):
        return "the snapshot was taken from another Pipedrive base URL"
    # Field keys are random per account and per field: another account, or a field deleted and created again,
    # shows here (the records then carry their ids under another key).
    if any(meta.field_codes.get(entity) != code for entity, code in field_codes.items()):
        return "the custom-field keys differ from the snapshot's (another account, or a field was re-created)"
    if field_types is not None and meta.field_types != field_types:
        return "the id fields' types differ from the snapshot's (or it predates recording them)"
    if signatures is not None and meta.signatures != signatures:
        return "the field mapping differs from the snapshot's (a field was mapped, unmapped or created)"
    if meta.stale_because:
        return meta.stale_because
    age = server_now - parse_time(meta.full_read_at)
    if age >= full_read_every:
        return f"the last full read is {_days(age)} old (pipedrive.full_read_every is {_days(full_read_every)})"
    return None


def same_base_url(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _days(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:.1f}d" if hours >= 24 else f"{hours:.1f}h"


def next_watermark(read_started: datetime) -> str:
    """The watermark a completed read leaves: its start in Pipedrive's clock, minus the overlap."""
    return rfc3339(read_started - OVERLAP)


Columns = Mapping[str, pl.DataType]


def merge(schema: Columns, base: pl.DataFrame, changed: pl.DataFrame, removed_ids: list[int]) -> pl.DataFrame:
    """The snapshot frame after an incremental read: changed records replace theirs by id, removed ones go."""
    gone = pl.DataFrame({"id": [*removed_ids, *changed["id"].to_list()]}, schema={"id": pl.Int64})
    kept = base.select(list(schema)).join(gone, on="id", how="anti", maintain_order="left")
    return pl.concat([kept, changed.select(list(schema))], how="vertical").sort("id")


def record_writes(schema: Columns, base: pl.DataFrame, written: pl.DataFrame) -> pl.DataFrame:
    """The snapshot frame with the run's own successful writes (`id` plus the fields that were sent).

    A field a write did not carry (null or absent) keeps the value the snapshot had.
    """
    if written.is_empty():
        return base
    new = written.select(
        [pl.col(n).cast(t) if n in written.columns else pl.lit(None, t).alias(n) for n, t in schema.items()]
    ).unique("id", keep="last")
    old = base.select(list(schema)).rename({n: f"old_{n}" for n in schema if n != "id"})
    merged = new.join(old, on="id", how="left").select(
        "id", *[pl.coalesce(n, f"old_{n}").alias(n) for n in schema if n != "id"]
    )
    return merge(schema, base, merged, [])


def record_deletes(schema: Columns, base: pl.DataFrame, deleted_ids: list[int]) -> pl.DataFrame:
    """The snapshot frame without the records this run deleted: no incremental read lists a deleted person."""
    if not deleted_ids:
        return base
    return merge(schema, base, pl.DataFrame(schema=dict(schema)), deleted_ids)


# ---- the file ------------------------------------------------------------------------------------------------


def load(path: Path) -> Snapshot | None:
    """The snapshot, or None (logged) when it is missing, unreadable, of another version or inconsistent."""
    if not path.exists():
        return None
    try:
        raw = pl.read_parquet_metadata(path)
        meta = _meta_from(raw)
        columns: dict[str, dict[str, str]] = json.loads(raw[_META_KEY])["columns"]
        if meta.version != VERSION:
            log.info(
                "the snapshot %s has format version %s, not %s: reading the CRM in full", path, meta.version, VERSION
            )
            return None
        table = pl.read_parquet(path)
        frames = {
            entity: table.filter(pl.col("entity") == entity).select(
                [pl.col(f"{entity}.{n}").cast(_DTYPES[t]).alias(n) for n, t in columns[entity].items()]
            )
            for entity in ENTITIES
        }
    except Exception as exc:  # any damage only means a full read; say what it was
        log.warning("the snapshot %s cannot be read (%s: %s): reading the CRM in full", path, type(exc).__name__, exc)
        return None
    return Snapshot(meta, frames["person"], frames["deal"])


# The remote frames' column types (record_schema), by the name the snapshot's metadata gives them.
_DTYPES: dict[str, pl.DataType] = {
    "Int64": pl.Int64(), "Float64": pl.Float64(), "String": pl.Utf8(), "List(Int64)": pl.List(pl.Int64())
}  # fmt: skip


def _meta_from(raw: dict[str, str]) -> Meta:
    data: Any = json.loads(raw[_META_KEY])
    codes = data["field_codes"]
    if not isinstance(codes, dict):
        raise ValueError("field_codes is not a mapping")
    return Meta(
        base_url=str(data["base_url"]),
        field_codes={str(k): str(v) for k, v in codes.items()},
        watermark=rfc3339(parse_time(str(data["watermark"]))),
        full_read_at=rfc3339(parse_time(str(data["full_read_at"]))),
        version=int(data["version"]),
        field_types={str(k): str(v) for k, v in (data.get("field_types") or {}).items()},
        stale_because=str(data.get("stale_because") or ""),
        signatures={str(k): str(v) for k, v in (data.get("signatures") or {}).items()},
    )


def save(path: Path, snapshot: Snapshot) -> None:
    """Replace the snapshot atomically: readers see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {entity: {n: str(t) for n, t in snapshot.frame(entity).schema.items()} for entity in ENTITIES}
    union: dict[str, pl.DataType] = {"entity": pl.Utf8()}
    for entity in ENTITIES:
        union.update({f"{entity}.{n}": t for n, t in snapshot.frame(entity).schema.items()})
    table = pl.concat(
        [
            snapshot.frame(entity)
            .select(pl.all().name.prefix(f"{entity}."))
            .select(
                [pl.lit(entity).alias("entity") if n == "entity" else _column(snapshot.frame(entity), n, t, entity)
                 for n, t in union.items()]
            )
            for entity in ENTITIES
        ],
        how="vertical",
    )  # fmt: skip
    meta = json.dumps(
        {
            "base_url": snapshot.meta.base_url,
            "field_codes": snapshot.meta.field_codes,
            "watermark": snapshot.meta.watermark,
            "full_read_at": snapshot.meta.full_read_at,
            "version": snapshot.meta.version,
            "field_types": snapshot.meta.field_types,
            "stale_because": snapshot.meta.stale_because,
            "signatures": snapshot.meta.signatures,
            "columns": columns,
        }
    )
    with staging.staged([path]) as (tmp,):
        table.write_parquet(tmp, metadata={_META_KEY: meta})
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType, entity: str) -> pl.Expr:
    own = name.removeprefix(f"{entity}.")
    return (
        pl.col(name).cast(dtype)
        if name.startswith(f"{entity}.") and own in frame.columns
        else pl.lit(None, dtype).alias(name)
    )


def with_frames(snapshot: Snapshot, persons: pl.DataFrame, deals: pl.DataFrame) -> Snapshot:
    return replace(snapshot, persons=persons, deals=deals)
