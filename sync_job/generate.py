"""Jaffle-shop shaped CSVs of any size, deterministic for a seed, written chunk by chunk in bounded memory."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

CHUNK_ROWS = 500_000  # rows per write: bounds memory (~100 MB a chunk) whatever the total size
FIRST_DAY = date(2018, 1, 1)
DAYS = 3 * 365

FIRST_NAMES = (
    "Michael", "Shawn", "Kathleen", "Jimmy", "Katherine", "Sarah", "Martin", "Frank", "Jennifer", "Henry",
    "Fred", "Amy", "Kevin", "Anna", "Zoë", "José", "Łukasz", "Søren", "Ngọc", "Amélie", "Björn", "Chloé",
    "Иван", "李", "Ana María", "D'Arcy", "Jean-Luc", "Siobhán", "François", "Åsa",
)  # fmt: skip
LAST_NAMES = (
    "P.", "M.", "C.", "R.", "H.", "W.", "Smith", "Jones", "Müller", "Nguyễn", "García", "Øster", "O'Brien",
    "Kowalski", "Dvořák", "Smith, Jr.", "Doe, III", 'Stone "Rocky"', "Петров", "王", "Núñez", "Lefèvre",
    "Brontë", "Çelik", "Yılmaz", "Van der Berg", "MacLeod", "Håkansson",
)  # fmt: skip
STATUSES = ("placed", "shipped", "completed", "return_pending", "returned")
STATUS_WEIGHTS = (10, 12, 70, 3, 5)
METHODS = ("credit_card", "coupon", "bank_transfer", "gift_card")
METHOD_WEIGHTS = (55, 20, 18, 7)
# Payments per order: mean 0*0.10 + 1*0.70 + 2*0.15 + 3*0.05 = 1.15; one order in ten has none.
PAYMENTS_PER_ORDER = (0, 1, 2, 3)
PAYMENT_WEIGHTS = (10, 70, 15, 5)
AMOUNTS = (*range(0, 3100, 100), 250, 499, 1250, 1999, 3333)  # cents; mostly whole currency units like jaffle
UNKNOWN_CUSTOMER_RATE = 0.002  # orders pointing at a customer id that does not exist
UNKNOWN_ORDER_RATE = 0.002  # extra payments pointing at an order id that does not exist


def generate(outdir: Path, *, orders: int, seed: int) -> dict[str, int]:
    """Write raw_customers.csv, raw_orders.csv, raw_payments.csv into outdir; return rows per file.

    Customers ≈ orders, payments ≈ 1.15 × orders. Same seed and size, same bytes.
    """
    if orders < 1:
        raise ValueError("orders must be at least 1")
    outdir.mkdir(parents=True, exist_ok=True)
    customers = orders
    counts = {
        "customers": _write(outdir / "raw_customers.csv", _customer_chunks(customers, random.Random(f"{seed}/c"))),
        "orders": _write(outdir / "raw_orders.csv", _order_chunks(orders, customers, random.Random(f"{seed}/o"))),
        "payments": _write(outdir / "raw_payments.csv", _payment_chunks(orders, random.Random(f"{seed}/p"))),
    }
    log.info("generated %s in %s", counts, outdir)
    return counts


def _write(path: Path, chunks: Iterator[pl.DataFrame]) -> int:
    """Append chunks to a temp file, header once, then rename: a crash leaves no half file."""
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    with tmp.open("wb") as handle:
        for i, chunk in enumerate(chunks):
            chunk.write_csv(handle, include_header=i == 0)
            rows += chunk.height
    os.replace(tmp, path)
    return rows


def _spans(total: int) -> Iterator[tuple[int, int]]:
    """1-based [start, stop) id ranges of at most CHUNK_ROWS."""
    for start in range(1, total + 1, CHUNK_ROWS):
        yield start, min(start + CHUNK_ROWS, total + 1)


def _customer_chunks(total: int, rng: random.Random) -> Iterator[pl.DataFrame]:
    for start, stop in _spans(total):
        n = stop - start
        yield pl.DataFrame(
            {
                "id": pl.int_range(start, stop, dtype=pl.Int64, eager=True),
                "first_name": rng.choices(FIRST_NAMES, k=n),
                "last_name": rng.choices(LAST_NAMES, k=n),
            }
        )


def _order_chunks(total: int, customers: int, rng: random.Random) -> Iterator[pl.DataFrame]:
    for start, stop in _spans(total):
        n = stop - start
        users = rng.choices(range(1, customers + 1), k=n)
        # At least one order per chunk points at a missing customer, so even tiny samples show rejects.
        for position in rng.sample(range(n), max(1, round(n * UNKNOWN_CUSTOMER_RATE))):
            users[position] = customers + rng.randint(1, 1000)
        yield pl.DataFrame(
            {
                "id": pl.int_range(start, stop, dtype=pl.Int64, eager=True),
                "user_id": pl.Series(users, dtype=pl.Int64),
                "order_date": pl.Series(rng.choices(range(DAYS), k=n), dtype=pl.Int64),
                "status": rng.choices(STATUSES, weights=STATUS_WEIGHTS, k=n),
            }
        ).with_columns(order_date=pl.lit(FIRST_DAY, dtype=pl.Date) + pl.duration(days=pl.col("order_date")))


def _payment_chunks(orders: int, rng: random.Random) -> Iterator[pl.DataFrame]:
    next_id = 1
    for start, stop in _spans(orders):
        n = stop - start
        per_order = rng.choices(PAYMENTS_PER_ORDER, weights=PAYMENT_WEIGHTS, k=n)
        order_ids = (
            pl.DataFrame(
                {"order_id": range(start, stop), "n": per_order}, schema={"order_id": pl.Int64, "n": pl.UInt32}
            )
            .select(pl.col("order_id").repeat_by("n").explode().drop_nulls())
            .to_series()
        )
        orphans = [orders + rng.randint(1, 1000) for _ in range(max(1, round(n * UNKNOWN_ORDER_RATE)))]
        # Orphan payments go at the end of each chunk: unsorted enough to look real, still deterministic.
        order_ids = order_ids.append(pl.Series("order_id", orphans, dtype=pl.Int64))
        k = order_ids.len()
        yield pl.DataFrame(
            {
                "id": pl.int_range(next_id, next_id + k, dtype=pl.Int64, eager=True),
                "order_id": order_ids,
                "payment_method": rng.choices(METHODS, weights=METHOD_WEIGHTS, k=k),
                "amount": pl.Series(rng.choices(AMOUNTS, k=k), dtype=pl.Int64),
            }
        )
        next_id += k
