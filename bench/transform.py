"""Benchmark: the project's transform (build_combined) against a DuckDB query writing the same combined.csv.

    python bench/transform.py                 # 10,000,000 orders (generated once into bench/.data/)
    python bench/transform.py --orders 100000 --repeat 3

Each engine runs in its own subprocess, so peak RSS (ru_maxrss of that process) is its own. Runs
alternate between the engines in ABBA order, after a sync, to spread machine noise evenly. The
DuckDB side does strictly less work: it writes combined.csv only, with typed CSV reads, while
build_combined also checks missing values and duplicate keys and writes the two rejected files.

By default each engine's output folder keeps its previous output between runs, as a daily job's workdir
does: both engines then replace an existing combined.csv, and the project writes over the spare it kept
of the version before (sync_job/staging.py). `--fresh` empties the folders before every run instead,
which measures a job's first run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
SOURCES = ("customers", "orders", "payments")

DUCKDB_SQL = """
COPY (
  WITH customers AS (
    SELECT * FROM read_csv('{customers}', header = true, auto_detect = false,
      columns = {{'id': 'BIGINT', 'first_name': 'VARCHAR', 'last_name': 'VARCHAR'}})),
  orders AS (
    SELECT * FROM read_csv('{orders}', header = true, auto_detect = false, dateformat = '%Y-%m-%d',
      columns = {{'id': 'BIGINT', 'user_id': 'BIGINT', 'order_date': 'DATE', 'status': 'VARCHAR'}})),
  payments AS (
    SELECT * FROM read_csv('{payments}', header = true, auto_detect = false,
      columns = {{'id': 'BIGINT', 'order_id': 'BIGINT', 'payment_method': 'VARCHAR', 'amount': 'BIGINT'}})),
  per_order AS (
    SELECT order_id, count(*) AS payment_count, sum(amount)::BIGINT AS amount_cents
    FROM payments GROUP BY order_id)
  SELECT o.id AS order_id, o.user_id AS customer_id, c.first_name, c.last_name,
         concat_ws(' ', c.last_name, c.first_name) AS title, o.order_date, o.status,
         coalesce(p.payment_count, 0) AS payment_count, coalesce(p.amount_cents, 0) AS amount_cents,
         coalesce(p.amount_cents, 0) / 100 AS value
  FROM orders o JOIN customers c ON o.user_id = c.id LEFT JOIN per_order p ON p.order_id = o.id
) TO '{out}' (HEADER, DELIMITER ',')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000_000, help="orders to generate (default 10M)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine (alternating); the median counts")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start every run in an empty output folder (a job's first run); by default each engine's "
        "folder keeps its previous output, as a daily job's workdir does",
    )
    parser.add_argument("--worker", choices=("project", "duckdb"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.data, args.out)
        return

    data = DATA / f"orders-{args.orders}-seed-{args.seed}"
    if not all((data / f"raw_{name}.csv").exists() for name in SOURCES):
        from sync_job.generate import generate

        started = time.perf_counter()
        counts = generate(data, orders=args.orders, seed=args.seed)
        print(f"generated {counts} in {time.perf_counter() - started:.1f}s -> {data}")
    sizes = {name: (data / f"raw_{name}.csv").stat().st_size for name in SOURCES}
    print(f"machine: {os.cpu_count()} cores, {_total_memory_gb():.0f} GB RAM, {platform.platform()}")
    print(f"input: {args.orders:,} orders, {sum(sizes.values()) / 1e6:,.0f} MB of CSV")
    print("output: " + ("an empty folder per run (--fresh)" if args.fresh else "over each engine's previous output"))

    runs: dict[str, list[dict[str, float]]] = {"project": [], "duckdb": []}
    for turn in range(args.repeat):
        # ABBA order: back-to-back runs on this machine alternate fast and slow (memory the last process
        # freed is still being handed back), so each engine must go first as often as second.
        for engine in list(runs)[:: 1 if turn % 2 == 0 else -1]:
            out = DATA / f"out-{engine}"
            if args.fresh:
                shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True, exist_ok=True)
            os.sync()  # the last run's output is still being written back: not this run's cost
            started = time.perf_counter()
            completed = subprocess.run(
                [sys.executable, __file__, "--worker", engine, "--data", str(data), "--out", str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            report = json.loads(completed.stdout.strip().splitlines()[-1])
            report["wall"] = time.perf_counter() - started
            runs[engine].append(report)
            print(
                f"  {engine:8s} wall {report['wall']:6.2f}s (inside {report['seconds']:5.2f}s)  "
                f"peak RSS {report['peak_rss_mb']:7,.0f} MB"
            )

    project = {k: statistics.median(r[k] for r in runs["project"]) for k in ("wall", "peak_rss_mb")}
    duck = {k: statistics.median(r[k] for r in runs["duckdb"]) for k in ("wall", "peak_rss_mb")}
    _compare(DATA / "out-project" / "combined.csv", DATA / "out-duckdb" / "combined.csv")
    wall_ratio = project["wall"] / duck["wall"]
    rss_ratio = project["peak_rss_mb"] / duck["peak_rss_mb"]
    print(f"project: wall {project['wall']:.2f}s, peak RSS {project['peak_rss_mb']:,.0f} MB")
    print(f"duckdb:  wall {duck['wall']:.2f}s, peak RSS {duck['peak_rss_mb']:,.0f} MB")
    print(f"wall ratio project/duckdb = {wall_ratio:.3f} (target <= 0.800)")
    # Each pair ran back to back, so its ratio shows how much of the spread is the machine, not the engines.
    pairs = sorted(p["wall"] / d["wall"] for p, d in zip(runs["project"], runs["duckdb"], strict=True))
    print(f"  per-pair wall ratios: {' '.join(f'{r:.2f}' for r in pairs)}")
    print(f"peak RSS ratio project/duckdb = {rss_ratio:.2f} (target <= 1.00)")


def _worker(engine: str, data: Path, out: Path) -> None:
    """Run one engine in this process and print one JSON line with its peak RSS."""
    paths = {name: data / f"raw_{name}.csv" for name in SOURCES}
    started = time.perf_counter()
    if engine == "project":
        from sync_job.combined import build_combined

        result = build_combined(paths, out, "amount_cents / 100")
        rows = result.rows
    else:
        import duckdb

        target = out / "combined.csv"
        with duckdb.connect() as connection:
            connection.execute(DUCKDB_SQL.format(**{k: str(v) for k, v in paths.items()}, out=str(target)))
        rows = -1
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "rows": rows}))


def _compare(project_csv: Path, duckdb_csv: Path) -> None:
    """Both engines must agree: same rows and the same totals per column."""
    import polars as pl

    def totals(path: Path) -> dict[str, object]:
        frame = pl.scan_csv(path, infer_schema=False).select(
            rows=pl.len(),
            order_ids=pl.col("order_id").cast(pl.Int64).sum(),
            payments=pl.col("payment_count").cast(pl.Int64).sum(),
            cents=pl.col("amount_cents").cast(pl.Int64).sum(),
            value=(pl.col("value").cast(pl.Float64) * 100).round().cast(pl.Int64).sum(),
            titles=pl.col("title").str.len_bytes().sum(),
        )
        return frame.collect(engine="streaming").row(0, named=True)

    mine, theirs = totals(project_csv), totals(duckdb_csv)
    status = "agree" if mine == theirs else f"DIFFER: project {mine} vs duckdb {theirs}"
    print(f"outputs {status} ({mine['rows']:,} rows)")


def _total_memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


if __name__ == "__main__":
    main()
