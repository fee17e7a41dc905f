"""Benchmark: a full `sync-job run` of N orders into an empty sandbox, against the ideal at the rate limit.

The ideal is the number of requests the run sent divided by the allowed rate (burst / 2 s): a run can go no
faster without bouncing off 429s. Usage:

    .venv/bin/python bench/sync_run.py [--orders 10000] [--burst 100] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync_job import config, generate, sync
from sync_job.sandbox.server import Sandbox, SandboxOptions

TOKEN = "bench-token-000000000000000000000000000000"  # noqa: S105 -- the throwaway sandbox's token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=100, help="sandbox requests per rolling 2 s window")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="sync-bench-") as tmp:
        folder = Path(tmp)
        counts = generate.generate(folder / "data", orders=args.orders, seed=args.seed)
        settings = config.parse(
            {
                "sources": {
                    "customers": str(folder / "data" / "raw_customers.csv"),
                    "orders": str(folder / "data" / "raw_orders.csv"),
                    "payments": str(folder / "data" / "raw_payments.csv"),
                },
                "workdir": str(folder / "work"),
                "pipedrive": {"concurrency": args.concurrency},
            },
            origin=folder / "bench.yaml",
        )
        with Sandbox(SandboxOptions(token=TOKEN, burst=args.burst)) as sandbox:
            options = sync.RunOptions(token=TOKEN, base_url=sandbox.url)
            started = time.perf_counter()
            outcome = sync.run(settings, options)
            wall = time.perf_counter() - started
            stats = sandbox.stats()
    requests = int(stats["requests_total"])
    allowed_rate = args.burst / 2.0
    ideal = requests / allowed_rate
    apply_seconds = outcome.report.durations.get("apply", 0.0)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {_machine()}")
    print(f"input: {counts}")
    print(f"run: exit {outcome.exit_code}, status {outcome.report.status}, counts {outcome.report.counts}")
    print(f"requests sent: {requests}, answered 429: {stats['rate_limited']}, allowed rate {allowed_rate:.0f}/s")
    print(f"durations: {outcome.report.durations}")
    print(f"wall: {wall:.1f} s, ideal at the rate limit: {ideal:.1f} s, ratio wall/ideal: {wall / ideal:.3f}")
    print(f"achieved: {requests / wall:.1f} req/s = {requests / wall / allowed_rate:.1%} of the allowed rate")
    print(f"apply phase: {apply_seconds:.1f} s; peak RSS (job + in-process sandbox): {peak_mib:.0f} MiB")


def _machine() -> str:
    import os
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
