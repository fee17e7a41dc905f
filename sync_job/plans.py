"""A dry run's whole plan as a reviewable file (WORKDIR/plans/<run_id>.csv) and its samples as aligned text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from sync_job.destinations.base import EntityPlan, Plan
from sync_job.report import atomic_write

COLUMNS = ["entity", "external_id", "action", "field", "old", "new"]
_SCHEMA = dict.fromkeys(COLUMNS, pl.Utf8)


def changes(plan: Plan) -> pl.DataFrame:
    """One row per field a write sets (pure): a create lists every field (no old value), an update its changed ones."""
    frames = [frame for e in plan.entities for frame in (_creates(e), _updates(e), _deletes(e))]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=_SCHEMA)


def _creates(e: EntityPlan) -> pl.DataFrame:
    fields = [c for c in e.creates.columns if c != e.key]
    if not fields or e.creates.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    return (
        e.creates.select(pl.col(e.key).cast(pl.Utf8).alias("external_id"), *[pl.col(f).cast(pl.Utf8) for f in fields])
        .with_row_index("_row")
        .unpivot(index=["_row", "external_id"], on=fields, variable_name="field", value_name="new")
        .sort("_row", maintain_order=True)  # record by record, each record's fields in column order
        .select(
            pl.lit(e.entity).alias("entity"),
            "external_id",
            pl.lit("create").alias("action"),
            "field",
            pl.lit(None, dtype=pl.Utf8).alias("old"),
            "new",
        )
    )


def _updates(e: EntityPlan) -> pl.DataFrame:
    compared = [c.removeprefix("old_") for c in e.updates.columns if c.startswith("old_")]
    if not compared or e.updates.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    rows = e.updates.with_row_index("_row")
    per_field = [
        rows.filter(pl.col("changed").list.contains(c)).select(
            "_row",
            pl.lit(e.entity).alias("entity"),
            pl.col(e.key).cast(pl.Utf8).alias("external_id"),
            pl.lit("update").alias("action"),
            pl.lit(c).alias("field"),
            pl.col(f"old_{c}").cast(pl.Utf8).alias("old"),
            pl.col(c).cast(pl.Utf8).alias("new"),
        )
        for c in compared
    ]
    return pl.concat(per_field, how="vertical").sort("_row", maintain_order=True).drop("_row")


def _deletes(e: EntityPlan) -> pl.DataFrame:
    """A delete is one row: `old` is the Pipedrive id; a delete the guard held back says so in `new`."""
    frames = [
        rows.select(
            pl.lit(e.entity).alias("entity"),
            pl.col("external_id").cast(pl.Utf8),
            pl.lit("delete").alias("action"),
            pl.lit("id").alias("field"),
            pl.col("id").cast(pl.Utf8).alias("old"),
            pl.lit(new, dtype=pl.Utf8).alias("new"),
        )
        for rows, new in ((e.deletes, None), (e.held, "held: more than max_delete_fraction"))
    ]
    return pl.concat(frames, how="vertical")


def write(plan: Plan, workdir: Path, run_id: str) -> Path:
    """WORKDIR/plans/<run_id>.csv, written atomically."""
    folder = workdir / "plans"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.csv"
    atomic_write(path, lambda tmp: changes(plan).write_csv(tmp))
    return path


def sample_lines(summary: dict[str, Any], width: int = 40) -> list[str]:
    """The dry run's samples as aligned lines (pure): `~ deal 12  value  9.99 → 12.50`, `+ person 7  name  Ada`,
    `- deal 9  id  412` (a mirror delete of Pipedrive record 412)."""
    rows: list[tuple[str, str, str, str, str]] = []
    for entity in summary.get("entities", []):
        for update in entity.get("sample_updates", []):
            for field, change in update.get("changes", {}).items():
                rows.append(("~", entity["entity"], str(update["key"]), field, _arrow(change, width)))
        for delete in entity.get("sample_deletes", []):
            rows.append(("-", entity["entity"], str(delete["key"]), "id", str(delete["id"])))
        for create in entity.get("sample_creates", []):
            key, *fields = create.items()
            text = ", ".join(f"{k}={_short(v, width)}" for k, v in fields)
            rows.append(("+", entity["entity"], str(key[1]), "", text))
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  ".join([*(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]]).rstrip() for r in rows]


def _arrow(change: dict[str, Any], width: int) -> str:
    return f"{_short(change.get('old'), width)} → {_short(change.get('new'), width)}"


def _short(value: object, width: int) -> str:
    text = "∅" if value is None or value == "" else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
