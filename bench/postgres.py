"""Benchmark: sync 1,000,000 combined orders into an empty PostgreSQL table, then re-sync with 1% changed.

Usage: .venv/bin/python bench/postgres.py [--rows N] [--seed S] [--dsn DSN]
Without --dsn it starts a throwaway server (tests/pg_server.py, default durability: fsync on). The reference is a
plain `COPY` of the same rows into an empty table of the same definition (primary key included), in one
transaction. Prints time and rows written for each run and the ratio to the reference.

`--faults` instead runs `sync-job run` (a child process, N generated orders) against failures: a table with an extra
NOT NULL column, one whose CHECK rejects the INSERT, and SIGTERM while the INSERT is at 99.8%. It prints each run's
exit code, stderr lines and bytes, results-file bytes, peak memory and time (after the signal, for SIGTERM).
`--code DIR` runs the child from another checkout (e.g. `git archive` of an older commit) to measure before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import polars as pl
import psycopg
import yaml
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: bench reuses tests/pg_server.py
from sync_job.destinations.base import RecordResult
from sync_job.destinations.postgres import PostgresDestination
from sync_job.destinations.postgres_sql import COLUMNS, KEY
from sync_job.generate import generate
from tests.pg_server import PgServer, find_bin_dir

NO_CUSTOMERS = pl.DataFrame(schema={"id": pl.Int64, "first_name": pl.Utf8, "last_name": pl.Utf8})


def combined_frame(rows: int, seed: int) -> pl.DataFrame:
    """A combined frame shaped like the transform's output, seeded and built in memory."""
    first = pl.Series(["Ann", "Bob", "Zoë", "Émile", "Li", "Mary Jo", "Jürgen", "O'Neil"])
    last = pl.Series(["Lee", "Ray", "Ünal", "Dubois", "Wang", "Smith-Jones", "Müller", "Nguyen"])
    statuses = pl.Series(["completed", "shipped", "placed", "returned", "return_pending"])
    n = pl.int_range(0, rows, eager=True, dtype=pl.Int64)
    customer = (n.hash(seed) % max(1, rows // 5)).cast(pl.Int64)
    amount = (n.hash(seed + 4) % 100_000).cast(pl.Int64)
    frame = pl.DataFrame(
        {
            "order_id": n + 1,
            "customer_id": customer + 1,
            "first_name": first.gather(customer % 8),
            "last_name": last.gather((customer // 8) % 8),
            "order_date": (n.hash(seed + 1) % 700).cast(pl.Int32) + 19723,  # days since 1970: from 2024-01-01
            "status": statuses.gather((n.hash(seed + 2) % statuses.len()).cast(pl.Int64)),
            "payment_count": (n.hash(seed + 3) % 4).cast(pl.UInt32),
            "amount_cents": amount,
            "value": amount / 100,
        }
    ).with_columns(pl.col("order_date").cast(pl.Date))
    return frame.select(
        "order_id", "customer_id", "first_name", "last_name",
        pl.concat_str("last_name", "first_name", separator=" ").alias("title"),
        "order_date", "status", "payment_count", "amount_cents", "value",
    )  # fmt: skip


def change(frame: pl.DataFrame, fraction: float, seed: int) -> tuple[pl.DataFrame, int]:
    """The frame with `fraction` of its rows changed (status and value), and how many rows that is."""
    pick = (pl.col("order_id").hash(seed + 99) % round(1 / fraction)) == 0
    changed = frame.with_columns(
        status=pl.when(pick).then(pl.lit("returned")).otherwise("status"),
        value=pl.when(pick).then(pl.col("value") + 1).otherwise("value"),
    )
    return changed, frame.filter(pick).height


async def reference_copy(dsn: str, frame: pl.DataFrame) -> float:
    """Seconds for a plain COPY of the rows into an empty table with the same definition, committed."""
    table = sql.Identifier("bench_reference")
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items())
    names = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        await conn.execute(
            sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(table, columns, sql.Identifier(KEY))
        )
        await conn.commit()
        started = time.perf_counter()
        async with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, names)) as copy,
        ):
            for chunk in frame.iter_slices(100_000):
                await copy.write(chunk.write_csv(None, include_header=False))
        await conn.commit()
        return time.perf_counter() - started


async def sync_once(dsn: str, table: str, frame: pl.DataFrame) -> tuple[float, dict[str, object], Counter[str]]:
    outcomes: Counter[str] = Counter()

    def on_result(result: RecordResult) -> None:
        outcomes[f"{result.action}:{result.outcome}"] += 1

    destination = PostgresDestination(dsn, table)
    started = time.perf_counter()
    try:
        plan = await destination.plan(frame, NO_CUSTOMERS)
        await destination.apply(plan, on_result, asyncio.Event())
    finally:
        await destination.aclose()
    return time.perf_counter() - started, destination.usage(), outcomes


async def bench(dsn: str, rows: int, seed: int) -> None:
    frame = combined_frame(rows, seed)
    changed, expected = change(frame, 0.01, seed)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_orders")
    copy_seconds = await reference_copy(dsn, frame)
    print(f"reference: plain COPY of {rows:,} rows into an empty table: {copy_seconds:.2f} s")
    runs = [("initial sync into an empty table", frame), (f"re-sync, 1% changed ({expected:,} rows)", changed),
            ("re-sync, nothing changed", changed)]  # fmt: skip
    for label, desired in runs:
        seconds, usage, outcomes = await sync_once(dsn, "bench_orders", desired)
        written = int(str(usage["rows_inserted"])) + int(str(usage["rows_updated"]))
        print(
            f"{label}: {seconds:.2f} s ({seconds / copy_seconds:.2f}x COPY), rows written {written:,} "
            f"(inserted {usage['rows_inserted']:,}, updated {usage['rows_updated']:,}, "
            f"unchanged {usage['rows_unchanged']:,}); phases {usage['seconds']}; results {dict(outcomes)}"
        )


def fault_runs(dsn: str, rows: int, seed: int, code: Path | None) -> None:
    """`sync-job run` against a table that rejects every row, then SIGTERM during a large INSERT."""
    definition = ", ".join(f"{c} {t}" for c, t in COLUMNS.items()) + f", PRIMARY KEY ({KEY})"
    sleeper = round(rows * 0.998)
    scenarios = {
        "extra NOT NULL column": f"CREATE TABLE {{t}} ({definition}, region text NOT NULL)",
        "CHECK rejecting every row": f"CREATE TABLE {{t}} ({definition}, CHECK (order_id < 0))",
        f"SIGTERM during the INSERT, at order {sleeper:,}": (
            f"CREATE TABLE {{t}} ({definition}); CREATE FUNCTION {{t}}_slow() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN IF NEW.order_id = {sleeper} THEN PERFORM pg_sleep(600); END IF; RETURN NEW; END $$; "
            "CREATE TRIGGER slow BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_slow()"
        ),
    }
    with tempfile.TemporaryDirectory(prefix="bench-pg-faults-") as tmp:
        folder = Path(tmp)
        generate(folder, orders=rows, seed=seed)
        env = {**os.environ, "SYNC_JOB_POSTGRES_DSN": dsn}
        if code is not None:
            env["PYTHONPATH"] = str(code)
        for number, (label, setup) in enumerate(scenarios.items()):
            table, work = f"bench_faults_{number}", folder / f"work{number}"
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}; " + setup.format(t=table))  # type: ignore[call-overload]
            config = folder / f"sync{number}.yaml"
            sources = {n: str(folder / f"raw_{n}.csv") for n in ("customers", "orders", "payments")}
            destination = {"kind": "postgres", "table": table}
            config.write_text(yaml.safe_dump({"sources": sources, "workdir": str(work), "destination": destination}))
            stderr_path = folder / f"stderr{number}.txt"
            with stderr_path.open("wb") as stderr:
                started = time.perf_counter()
                child = subprocess.Popen(
                    [sys.executable, "-m", "sync_job.cli", "run", "--config", str(config), "--log-format", "json"],
                    env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=stderr,
                )  # fmt: skip
                ended = _await_sleeping_insert(dsn, child.pid) if "SIGTERM" in label else None
                if "SIGTERM" in label and ended is None:
                    started = time.perf_counter()
                    child.send_signal(signal.SIGTERM)
                _, status, usage = ended or os.wait4(child.pid, 0)
                seconds = time.perf_counter() - started
            text = stderr_path.read_bytes()
            lines = text.count(b"\n")
            results = sum(p.stat().st_size for p in (work / "results").glob("*")) if (work / "results").exists() else 0
            print(
                f"{label}: exit {os.waitstatus_to_exitcode(status)}, stderr {lines:,} lines "
                f"({len(text):,} bytes), results {results:,} bytes, peak RSS {usage.ru_maxrss / 1024:,.0f} MB, "
                f"{'after SIGTERM ' if 'SIGTERM' in label and not ended else ''}{seconds:.2f} s"
                f"{' (ended before the signal)' if 'SIGTERM' in label and ended else ''}"
            )


def _await_sleeping_insert(dsn: str, pid: int) -> tuple[int, int, resource.struct_rusage] | None:
    """Wait until the INSERT sleeps in the trigger (None), or return the child's wait4() if it ended first."""
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while True:
            ended = os.wait4(pid, os.WNOHANG)
            if ended[0]:
                return ended
            query = "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'INSERT %' AND wait_event = 'PgSleep'"
            if watcher.execute(query).fetchone():
                return None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dsn", help="an existing server's connection string (default: start a throwaway one)")
    parser.add_argument("--faults", action="store_true", help="measure the failure runs instead (see above)")
    parser.add_argument("--code", type=Path, help="with --faults: run the child from this checkout's sync_job")
    args = parser.parse_args()

    def measure(dsn: str) -> None:
        if args.faults:
            fault_runs(dsn, args.rows, args.seed, args.code)
        else:
            asyncio.run(bench(dsn, args.rows, args.seed))

    if args.dsn:
        measure(args.dsn)
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        sys.exit("bench/postgres.py: no PostgreSQL server binary found; pass --dsn or install `postgresql`")
    with PgServer(bin_dir, durable=True) as server:
        measure(server.dsn)


if __name__ == "__main__":
    main()
