"""Benchmark: diff 1,000,000 desired deals against 1,000,000 remote deals (1% changed, 0.5% new).

Usage: .venv/bin/python bench/diff.py [--rows N] [--seed S] [--repeat R] [--text-keys]
Frames are generated in memory with Polars (seeded). Prints the diff time, the peak RSS of the process
and whether the plan found exactly the planted creates and updates. Target: <= 3 s and <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time

import polars as pl

from sync_job.diff import diff_deals

TARGET_SECONDS = 3.0
TARGET_BYTES = 1.5 * 1024**3


def frames(rows: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, int, int]:
    """Desired deals, remote deals, remote persons, planted creates and planted updates."""
    customers = max(1, rows // 5)
    new = rows // 200  # 0.5% of desired keys absent remotely
    changed = rows // 100  # 1% of matched deals differ in one compared field
    idx = pl.int_range(0, rows, eager=True, dtype=pl.Int64)
    first = pl.Series(["Ann", "Bob", "Zoë", "Émile", "Li", "Mary Jo", "Jürgen", "O'Neil"])
    last = pl.Series(["Lee", "Ray", "Ünal", "Dubois", "Wang", "Smith-Jones", "Müller", "Nguyen"])
    desired = pl.DataFrame({"n": idx}).select(
        external_id=(pl.col("n") + 1).cast(pl.Utf8),
        value=(pl.col("n").hash(seed + 1) % 100_000).cast(pl.Float64) / 100,
        currency=pl.lit("USD"),
        cust=(pl.col("n").hash(seed) % customers).cast(pl.Int64),
    )
    desired = desired.with_columns(person_external_id=(pl.col("cust") + 1).cast(pl.Utf8))
    names_l = pl.DataFrame({"k": range(8), "l": last})
    names_f = pl.DataFrame({"k": range(8), "f": first})
    desired = (
        desired.with_columns(kl=pl.col("cust") % 8, kf=(pl.col("cust") // 8) % 8)
        .join(names_l, left_on="kl", right_on="k", how="left", maintain_order="left")
        .join(names_f, left_on="kf", right_on="k", how="left", maintain_order="left")
        .with_columns(title=pl.concat_str("l", "f", separator=" "))
        .select("external_id", "title", "value", "currency", "person_external_id")
    )
    persons = pl.DataFrame(
        {
            "id": pl.int_range(1_000_001, 1_000_001 + customers, eager=True, dtype=pl.Int64),
            "name": pl.repeat("x", customers, eager=True),
            "external_id": pl.int_range(1, customers + 1, eager=True).cast(pl.Utf8),
            "update_time": pl.repeat("2026-01-01T00:00:00Z", customers, eager=True),
        }
    )
    # Remote: the desired deals except the last `new`, plus `new` deals with no source row (orphans).
    kept = desired.head(rows - new).with_row_index("i")
    spacing = max(3, (rows - new) // max(1, changed))
    kind = pl.col("i") % spacing
    step = pl.col("i") // spacing
    changed_mask = (kind == 0) & (step < changed)
    changed = kept.select(changed_mask.sum()).item()
    remote = kept.with_columns(
        title=pl.when(changed_mask & (step % 3 == 0)).then(pl.col("title") + " edited").otherwise(pl.col("title")),
        value=pl.when(changed_mask & (step % 3 == 1))
        .then(pl.col("value") + 1.0)
        # noise that must NOT count as a change: float noise under a cent, extra whitespace
        .when(kind == 1)
        .then(pl.col("value") + 1e-9)
        .otherwise(pl.col("value")),
        person_external_id=pl.when(changed_mask & (step % 3 == 2))
        .then(((pl.col("person_external_id").cast(pl.Int64) % customers) + 1).cast(pl.Utf8))
        .otherwise(pl.col("person_external_id")),
    ).with_columns(
        title=pl.when(kind == 2).then("  " + pl.col("title") + " ").otherwise(pl.col("title")),
    )
    remote = remote.select(
        id=pl.col("i") + 1,
        title="title",
        value="value",
        currency="currency",
        person_id=pl.col("person_external_id").cast(pl.Int64) + 1_000_000,
        status=pl.lit("open"),
        update_time=pl.lit("2026-01-01T00:00:00Z"),
        external_id="external_id",
    )
    orphans = remote.head(new).with_columns(
        id=pl.col("id") + 10 * rows, external_id=(pl.col("id") + 10 * rows).cast(pl.Utf8)
    )
    remote = pl.concat([remote, orphans]).sample(fraction=1.0, shuffle=True, seed=seed)
    return desired, remote, persons, new, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--text-keys", action="store_true", help="non-numeric deal keys: no Int64 join fast path")
    args = parser.parse_args(argv)

    desired, remote, persons, new, changed = frames(args.rows, args.seed)
    if args.text_keys:
        desired, remote = (f.with_columns("o-" + pl.col("external_id")) for f in (desired, remote))
    gc.collect()
    base = _peak_bytes()
    times = []
    plan = None
    for _ in range(args.repeat):
        started = time.perf_counter()
        plan = diff_deals(desired, remote, persons)
        times.append(time.perf_counter() - started)
    assert plan is not None
    peak = _peak_bytes()
    ok = plan.creates.height == new and plan.updates.height == changed
    best = min(times)
    print(f"rows: desired {desired.height:,}  remote {remote.height:,}  persons {persons.height:,}")
    print(
        f"plan: creates {plan.creates.height:,} (planted {new:,})  "
        f"updates {plan.updates.height:,} (planted {changed:,})  "
        f"unchanged {plan.unchanged:,}  orphans {plan.orphans:,}  duplicates {plan.duplicates.height:,}  "
        f"-> {'OK' if ok else 'MISMATCH'}"
    )
    print(f"diff seconds: best {best:.3f}  runs {', '.join(f'{t:.3f}' for t in times)}  (target <= {TARGET_SECONDS})")
    print(
        f"peak RSS: {peak / 1024**2:,.0f} MiB total, {(peak - base) / 1024**2:,.0f} MiB above the generated frames "
        f"({base / 1024**2:,.0f} MiB)  (target <= {TARGET_BYTES / 1024**2:,.0f} MiB)"
    )
    return 0 if ok and best <= TARGET_SECONDS and peak <= TARGET_BYTES else 1


def _peak_bytes() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


if __name__ == "__main__":
    raise SystemExit(main())
