"""generate: deterministic jaffle-shaped CSVs with the awkward cases real data has, and its CLI command."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sync_job.cli import app
from sync_job.combined import build_combined
from sync_job.generate import CHUNK_ROWS, STATUSES, generate

FILES = ("raw_customers.csv", "raw_orders.csv", "raw_payments.csv")


def _rows(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"raw_{name}.csv").open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    generate(folder, orders=5_000, seed=7)
    return folder


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    generate(tmp_path / "a", orders=500, seed=3)
    generate(tmp_path / "b", orders=500, seed=3)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", orders=500, seed=3)
    generate(tmp_path / "b", orders=500, seed=4)
    assert (tmp_path / "a" / "raw_orders.csv").read_bytes() != (tmp_path / "b" / "raw_orders.csv").read_bytes()


def test_returns_rows_per_file_with_customers_about_orders_and_payments_about_1_15x(tmp_path: Path) -> None:
    counts = generate(tmp_path, orders=5_000, seed=1)
    assert counts["orders"] == 5_000
    assert counts["customers"] == 5_000
    assert 1.10 < counts["payments"] / counts["orders"] < 1.20
    for name, expected in counts.items():
        assert len(_rows(tmp_path, name)) == expected


def test_headers_are_the_jaffle_shop_columns(sample: Path) -> None:
    headers = [(sample / name).read_text(encoding="utf-8").splitlines()[0] for name in FILES]
    assert headers == ["id,first_name,last_name", "id,user_id,order_date,status", "id,order_id,payment_method,amount"]


def test_names_include_unicode_and_quoted_commas(sample: Path) -> None:
    names = [r["first_name"] + " " + r["last_name"] for r in _rows(sample, "customers")]
    assert any(not name.isascii() for name in names)
    assert any("," in name for name in names)
    assert '"Doe, III"' in (sample / "raw_customers.csv").read_text(encoding="utf-8")


def test_orders_cover_every_status_and_some_unknown_customers(sample: Path) -> None:
    orders = _rows(sample, "orders")
    assert {r["status"] for r in orders} == set(STATUSES)
    customer_ids = {r["id"] for r in _rows(sample, "customers")}
    assert any(r["user_id"] not in customer_ids for r in orders)


def test_payments_include_orphans_multiples_and_orders_without_any(sample: Path) -> None:
    order_ids = {r["id"] for r in _rows(sample, "orders")}
    per_order = Counter(r["order_id"] for r in _rows(sample, "payments"))
    assert any(order_id not in order_ids for order_id in per_order)
    assert any(n >= 2 for n in per_order.values())
    assert any(order_id not in per_order for order_id in order_ids)


def test_generated_data_goes_through_the_transform_with_rejects(sample: Path, tmp_path: Path) -> None:
    paths = {name: sample / f"raw_{name}.csv" for name in ("customers", "orders", "payments")}
    result = build_combined(paths, tmp_path, "amount_cents / 100")
    assert result.rows + result.rejected_orders == 5_000
    assert result.rejected_orders > 0
    assert result.rejected_payments > 0


def test_chunked_writing_is_invisible_in_the_output(tmp_path: Path) -> None:
    """Past one chunk the header appears once and ids keep counting up without a gap."""
    counts = generate(tmp_path, orders=CHUNK_ROWS + 10, seed=5)
    lines = (tmp_path / "raw_payments.csv").read_text(encoding="utf-8").splitlines()
    assert lines.count("id,order_id,payment_method,amount") == 1
    ids = [int(line.split(",", 1)[0]) for line in lines[1:]]
    assert ids == list(range(1, counts["payments"] + 1))


def test_cli_generate_writes_the_three_files_and_reports_counts(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", str(tmp_path / "out"), "--orders", "40", "--seed", "9"])
    assert result.exit_code == 0, result.output
    assert "orders: 40 rows" in result.output
    assert all((tmp_path / "out" / name).is_file() for name in FILES)


def test_cli_generate_rejects_zero_orders(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", str(tmp_path), "--orders", "0"])
    assert result.exit_code == 2
