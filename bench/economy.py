"""Benchmark: what a steady-state day costs in API tokens, incremental read vs full read, against the sandbox.

A CRM of N orders already in sync is seeded directly into the sandbox (not through N writes), and a first run
takes the snapshot. Then one day: 1% of the orders re-valued in the source plus 4 hand edits in the CRM (a value,
a title, a person's name, a deleted deal). The same day is run twice from the same start, once incrementally
(the default) and once with --full-read, and a day with nothing new follows the incremental one. Printed: tokens
spent against the writes' own cost (writes x 5), and wall time.

Targets (issue #13): a steady-state day costs <= 1.1 x its writes' tokens + 100, with every hand edit put back;
a day with nothing new costs <= 100 tokens. Usage:

    .venv/bin/python bench/economy.py [--orders 100000] [--burst 100]
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl

from sync_job import combined, config, diff, generate, sync
from sync_job.errors import EXIT_OK
from sync_job.sandbox.server import Sandbox, SandboxOptions

TOKEN = "bench-token-000000000000000000000000000000"  # noqa: S105 -- the throwaway sandbox's token
WRITE_TOKENS = 5


@dataclass(frozen=True, slots=True)
class Day:
    name: str
    tokens: int
    writes: int
    seconds: float

    def line(self) -> str:
        own = self.writes * WRITE_TOKENS
        ratio = f"{self.tokens / own:.2f}x" if own else "-"
        return f"{self.name:<28} {self.tokens:>8} {self.writes:>7} {own:>8} {ratio:>7} {self.seconds:>8.1f}"


def settings_for(folder: Path, url: str, concurrency: int) -> config.Settings:
    data = folder / "data"
    raw: dict[str, Any] = {
        "sources": {name: str(data / f"raw_{name}.csv") for name in ("customers", "orders", "payments")},
        "workdir": str(folder / "work"),
        "pipedrive": {"base_url": url, "concurrency": concurrency},
    }
    return config.parse(raw, origin=folder / "sync.yaml")


by_key = pl.col("external_id").cast(pl.Int64)


def seed_in_sync(sandbox: Sandbox, settings: config.Settings) -> None:
    """Put every person and deal the sources ask for straight into the sandbox's store, as a past run would have."""
    result = sync.transform(settings)
    frame = combined.read_combined(result.combined_path)
    # In id order: combined.csv's row order varies from run to run (the streaming engine), and the store's record
    # order decides which records the seeded hand edits pick, so the day's writes would too.
    persons = diff.desired_persons(combined.read_customers(result.customers_path)).sort(by_key)
    deals = diff.desired_deals(frame, settings.pipedrive.currency).sort(by_key)
    store = sandbox.store
    person_code = store.add_field("person", settings.pipedrive.person_id_field)
    deal_code = store.add_field("deal", settings.pipedrive.deal_id_field)
    # Written by "yesterday's" run: a day before the snapshot's overlap window, as in a daily schedule.
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    stamp = {"add_time": yesterday, "update_time": yesterday}
    ids: dict[str, int] = {}
    for row in persons.iter_rows(named=True):
        ids[row["external_id"]] = store.add_record(
            "person", {"name": row["name"], "custom_fields": {person_code: row["external_id"]}, **stamp}
        )
    for row in deals.iter_rows(named=True):
        store.add_record(
            "deal",
            {
                "title": row["title"],
                "value": row["value"],
                "currency": row["currency"],
                "person_id": ids[row["person_external_id"]],
                "custom_fields": {deal_code: row["external_id"]},
                **stamp,
            },
        )


def revalue(folder: Path, share: float, rng: random.Random) -> int:
    """Change the amount of `share` of the payments in the source; returns how many changed."""
    path = folder / "data" / "raw_payments.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    picked = rng.sample(range(len(body)), max(1, int(len(body) * share)))
    for i in picked:
        body[i][3] = str(int(body[i][3]) + 100)
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([header, *body])
    return len(picked)


def hand_edits(sandbox: Sandbox, rng: random.Random) -> None:
    """Four edits a person might make in the UI, each of which the next run must put back."""
    deals = rng.sample(sandbox.store.live("deal"), 3)
    person = rng.choice(sandbox.store.live("person"))
    sandbox.store.patch_record("deal", deals[0]["id"], {"value": 1.0})
    sandbox.store.patch_record("deal", deals[1]["id"], {"title": "edited by hand"})
    sandbox.store.patch_record("person", person["id"], {"name": "Edited ByHand"})
    sandbox.store.delete("deal", deals[2]["id"])


def day(name: str, settings: config.Settings, sandbox: Sandbox, **options: Any) -> Day:
    started = time.perf_counter()
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url, **options))
    seconds = time.perf_counter() - started
    if outcome.exit_code != EXIT_OK:
        raise SystemExit(f"{name}: exit {outcome.exit_code}: {outcome.report.message}")
    api = outcome.report.api
    writes = sum(e["creates"] + e["updates"] for e in outcome.report.plan["entities"])
    return Day(name, int(api["tokens_used"]), writes, seconds)  # type: ignore[call-overload]


def one_world(folder: Path, args: argparse.Namespace, full_read: bool) -> list[Day]:
    options = SandboxOptions(token=TOKEN, burst=args.burst, search_burst=args.burst)
    with Sandbox(options) as sandbox:
        settings = settings_for(folder, sandbox.url, args.concurrency)
        generate.generate(folder / "data", orders=args.orders, seed=args.seed)
        seed_in_sync(sandbox, settings)
        days = [day("first run (takes snapshot)", settings, sandbox)]
        rng = random.Random(args.seed)
        revalue(folder, args.share, rng)
        hand_edits(sandbox, rng)
        label = "steady day, --full-read" if full_read else "steady day, incremental"
        days.append(day(label, settings, sandbox, full_read=full_read))
        if not full_read:
            days.append(day("day with nothing new", settings, sandbox))
        return days


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--share", type=float, default=0.01, help="share of payments re-valued in the day")
    parser.add_argument("--burst", type=int, default=100, help="sandbox requests per rolling 2 s window")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rows: list[Day] = []
    for full_read in (False, True):
        with tempfile.TemporaryDirectory(prefix="sync-economy-") as tmp:
            rows += one_world(Path(tmp), args, full_read)
    print(f"{args.orders} orders in sync; a day re-values {args.share:.0%} of the payments, plus 4 hand edits")
    print(f"{'day':<28} {'tokens':>8} {'writes':>7} {'writes*5':>8} {'ratio':>7} {'seconds':>8}")
    for row in rows:
        print(row.line())
    steady, quiet = rows[1], rows[2]
    ok = steady.tokens <= 1.1 * steady.writes * WRITE_TOKENS + 100 and quiet.tokens <= 100
    print(f"target: steady <= 1.1 x writes*5 + 100 = {1.1 * steady.writes * WRITE_TOKENS + 100:.0f}; quiet <= 100")
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
