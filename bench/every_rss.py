"""Memory of the `run --every` loop: does the idle process grow from run to run?

    python bench/every_rss.py                      # 200 runs of 2,000 orders, nothing changes after run 1
    python bench/every_rss.py --runs 100 --changes 50   # 50 payments change before every run: real writes

Starts `sync-job run --every 1s` as its own process against an in-process sandbox, waits for each
"run finished" log line, lets the loop go idle, and samples the process's RSS (psutil). A single sample
swings by ~15 MB with the allocators' high-water marks (Python's, and Polars' own), so the summary is per
window of runs: a leak shows as a rising median and a rising minimum, noise as a flat one.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from sync_job.generate import generate
from sync_job.sandbox.server import Sandbox, SandboxOptions

TOKEN = "b" * 40
FINISHED = "run finished with exit code"


def change_payments(path: Path, count: int, run: int) -> None:
    """Add `run` cents to the first `count` payments, so that many deals differ from the CRM."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for row in rows[1 : count + 1]:
        row[3] = str(int(row[3]) + run)
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--changes", type=int, default=0, help="payments changed before every run")
    parser.add_argument("--window", type=int, default=25, help="runs per line of the summary")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="every-rss-") as tmp:
        folder = Path(tmp)
        generate(folder, orders=args.orders, seed=3)
        config = folder / "sync.yaml"
        sources = "\n".join(f"  {name}: {folder / f'raw_{name}.csv'}" for name in ("customers", "orders", "payments"))
        config.write_text(f"sources:\n{sources}\nworkdir: {folder / 'work'}\n", encoding="utf-8")
        samples = measure(args, folder, config)
    print(f"{'runs':>9}  {'median MB':>9}  {'min MB':>7}  {'max MB':>7}")
    for start in range(0, len(samples), args.window):
        window = samples[start : start + args.window]
        print(
            f"{start + 1:>4}-{start + len(window):<4}  {statistics.median(window):>9.1f}  "
            f"{min(window):>7.1f}  {max(window):>7.1f}"
        )


def measure(args: argparse.Namespace, folder: Path, config: Path) -> list[float]:
    samples: list[float] = []
    with Sandbox(SandboxOptions(token=TOKEN, burst=100_000, search_burst=100_000)) as sandbox:
        env = {**os.environ, "PIPEDRIVE_API_TOKEN": TOKEN, "PIPEDRIVE_BASE_URL": sandbox.url}
        command = [str(Path(sys.executable).with_name("sync-job")), "run", "--config", str(config)]
        loop = subprocess.Popen(
            [*command, "--every", "1s", "--log-format", "json"], env=env, stderr=subprocess.PIPE, text=True
        )
        assert loop.stderr is not None
        process = psutil.Process(loop.pid)
        try:
            for line in loop.stderr:
                if FINISHED not in line:
                    continue
                if args.changes:  # before the next slot, a second from now
                    change_payments(folder / "raw_payments.csv", args.changes, len(samples) + 1)
                time.sleep(0.3)  # idle between runs, as it is for hours in production
                samples.append(process.memory_info().rss / 2**20)
                if len(samples) >= args.runs:
                    break
        finally:
            loop.terminate()
            loop.wait(60)
    return samples


if __name__ == "__main__":
    main()
