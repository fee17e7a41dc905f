"""build_combined on real files: outputs, rejects, encodings, each bad input, atomic write, jaffle figures."""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from pathlib import Path

import polars as pl
import pytest

from sync_job.combined import build_combined, read_combined, read_customers
from sync_job.errors import ConfigError, DataError
from sync_job.transform import COMBINED_SCHEMA

JAFFLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "jaffle"

CUSTOMERS = 'id,first_name,last_name\n1,Michael,P.\n2,Zoë,"Nguyễn, Jr."\n3,Kathleen,P.\n'
ORDERS = "id,user_id,order_date,status\n1,1,2018-01-01,returned\n2,2,2018-01-02,completed\n3,9,2018-01-04,placed\n"
PAYMENTS = "id,order_id,payment_method,amount\n1,1,credit_card,1000\n2,1,coupon,250\n3,7,coupon,300\n"


def write_sources(folder: Path, **texts: str | bytes) -> dict[str, Path]:
    """Write the three CSVs (defaults above, overridden by name) and return their paths."""
    defaults = {"customers": CUSTOMERS, "orders": ORDERS, "payments": PAYMENTS}
    paths = {}
    for name, text in (defaults | texts).items():
        paths[name] = folder / f"raw_{name}.csv"
        paths[name].write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return paths


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def _fails(tmp_path: Path, workdir: Path, **texts: str | bytes) -> str:
    paths = write_sources(tmp_path, **texts)
    with pytest.raises(DataError) as caught:
        build_combined(paths, workdir, "amount_cents / 100")
    assert not (workdir / "combined.csv").exists()
    return str(caught.value)


def test_writes_combined_csv_with_sums_and_reports_counts(tmp_path: Path, workdir: Path) -> None:
    result = build_combined(write_sources(tmp_path), workdir, "amount_cents / 100")
    assert (result.rows, result.customers, result.rejected_orders, result.rejected_payments) == (2, 3, 1, 1)
    assert result.combined_path == workdir / "combined.csv"
    assert result.customers_path == tmp_path / "raw_customers.csv"
    rows = read_combined(result.combined_path).sort("order_id").rows()
    assert rows[0][:5] == (1, 1, "Michael", "P.", "P. Michael")
    assert rows[0][7:] == (2, 1250, 12.5)
    assert rows[1][4] == "Nguyễn, Jr. Zoë"
    assert rows[1][7:] == (0, 0, 0.0)


def test_read_combined_returns_the_contract_schema(tmp_path: Path, workdir: Path) -> None:
    result = build_combined(write_sources(tmp_path), workdir, "amount_cents / 100 * 2")
    frame = read_combined(result.combined_path)
    assert frame.schema == COMBINED_SCHEMA
    assert frame.filter(pl.col("order_id") == 1)["value"].item() == 25.0


def test_rejected_files_carry_the_rows_and_a_reason(tmp_path: Path, workdir: Path) -> None:
    result = build_combined(write_sources(tmp_path), workdir, "amount_cents / 100")
    orders = list(csv.DictReader((result.rejected_dir / "orders.csv").open(encoding="utf-8")))
    payments = list(csv.DictReader((result.rejected_dir / "payments.csv").open(encoding="utf-8")))
    assert orders == [
        {
            "id": "3",
            "user_id": "9",
            "order_date": "2018-01-04",
            "status": "placed",
            "reason": "customer 9 does not exist",
        }
    ]
    assert payments == [
        {"id": "3", "order_id": "7", "payment_method": "coupon", "amount": "300", "reason": "order 7 does not exist"}
    ]


def test_no_rejects_gives_header_only_reject_files(tmp_path: Path, workdir: Path) -> None:
    paths = write_sources(tmp_path, orders=ORDERS.rsplit("3,9", 1)[0], payments=PAYMENTS.rsplit("3,7", 1)[0])
    result = build_combined(paths, workdir, "amount_cents / 100")
    assert (result.rejected_orders, result.rejected_payments) == (0, 0)
    assert (result.rejected_dir / "orders.csv").read_text().startswith("id,user_id,order_date,status,reason")
    assert (result.rejected_dir / "payments.csv").read_text().startswith("id,order_id,payment_method,amount,reason")


def _rejected_payment_ids(
    tmp_path: Path, workdir: Path, caplog: pytest.LogCaptureFixture, orders: str, payments: str
) -> tuple[list[str], bool]:
    """Run on the given orders and payments; the rejected payment ids, and whether payments were read twice."""
    caplog.set_level(logging.DEBUG, logger="sync_job")
    result = build_combined(write_sources(tmp_path, orders=orders, payments=payments), workdir, "amount_cents / 100")
    rows = list(csv.DictReader((result.rejected_dir / "payments.csv").open(encoding="utf-8")))
    assert result.rejected_payments == len(rows)
    return sorted(row["id"] for row in rows), "reading again" in caplog.text


def test_payments_beyond_the_last_order_are_rejected_without_a_second_read(
    tmp_path: Path, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    orders = ORDERS.replace("\n", "\r\n")  # the last line is found past a CRLF too
    payments = PAYMENTS + "4,8,coupon,100\n"
    assert _rejected_payment_ids(tmp_path, workdir, caplog, orders, payments) == (["3", "4"], False)


@pytest.mark.parametrize(
    ("orders", "payments", "expected"),
    [
        pytest.param(ORDERS.replace("\n3,9,", "\n5,9,"), PAYMENTS + "4,3,coupon,100\n", ["3", "4"],
                     id="orphan-inside-the-range"),
        pytest.param(ORDERS.replace("\n1,1,", "\n4,1,"), PAYMENTS, ["1", "2", "3"], id="unsorted-orders"),
        pytest.param(ORDERS.replace("placed", '"placed\n9,1,2018-01-05,late"'), PAYMENTS, ["3"],
                     id="last-line-inside-a-quoted-field"),
        pytest.param(ORDERS.replace("placed", '"placed\nlate"'), PAYMENTS, ["3"], id="last-line-not-a-record"),
    ],
)  # fmt: skip
def test_payments_of_missing_orders_the_range_cannot_find_are_read_again(
    tmp_path: Path, workdir: Path, caplog: pytest.LogCaptureFixture, orders: str, payments: str, expected: list[str]
) -> None:
    assert _rejected_payment_ids(tmp_path, workdir, caplog, orders, payments) == (expected, True)


def test_orders_dated_outside_the_label_table_are_written_by_a_second_pass(
    tmp_path: Path, workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sync_job")
    orders = ORDERS.replace("2018-01-01", "1850-06-01").replace("2018-01-02", "9999-12-31")
    result = build_combined(write_sources(tmp_path, orders=orders), workdir, "amount_cents / 100")
    rows = {row["order_id"]: row["order_date"] for row in csv.DictReader(result.combined_path.open())}
    assert rows == {"1": "1850-06-01", "2": "9999-12-31"}
    assert "writing combined.csv again" in caplog.text


def test_read_customers_returns_every_customer_with_or_without_orders(tmp_path: Path) -> None:
    customers = read_customers(write_sources(tmp_path)["customers"])
    assert customers.columns == ["id", "first_name", "last_name"]
    assert customers["id"].to_list() == [1, 2, 3]


def test_read_customers_rejects_a_duplicate_id(tmp_path: Path) -> None:
    path = write_sources(tmp_path, customers=CUSTOMERS + "2,Again,X\n")["customers"]
    with pytest.raises(DataError, match=r"duplicate customers id 2 on lines 3 and 5"):
        read_customers(path)


def test_bom_crlf_and_quoted_commas_are_read(tmp_path: Path, workdir: Path) -> None:
    bom_crlf = {name: b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode() for name, text in
                {"customers": CUSTOMERS, "orders": ORDERS, "payments": PAYMENTS}.items()}  # fmt: skip
    result = build_combined(write_sources(tmp_path, **bom_crlf), workdir, "amount_cents / 100")
    frame = read_combined(result.combined_path).sort("order_id")
    assert frame["last_name"].to_list() == ["P.", "Nguyễn, Jr."]
    assert frame["status"].to_list() == ["returned", "completed"]  # no stray \r


def test_extra_columns_and_reordered_columns_are_accepted(tmp_path: Path, workdir: Path) -> None:
    customers = "last_name,id,email,first_name\nP.,1,a@x,Michael\nM.,2,b@x,Shawn\nQ.,3,,Kate\n"
    result = build_combined(write_sources(tmp_path, customers=customers), workdir, "amount_cents / 100")
    assert read_combined(result.combined_path).sort("order_id")["title"].to_list() == ["P. Michael", "M. Shawn"]


def test_invalid_value_expression_fails_before_reading_anything(tmp_path: Path, workdir: Path) -> None:
    with pytest.raises(ConfigError, match="'amount_cents / '"):
        build_combined(write_sources(tmp_path), workdir, "amount_cents / ")
    assert not workdir.exists()


def test_misnamed_column_names_expected_and_found(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, payments=PAYMENTS.replace("amount", "amont", 1))
    assert "raw_payments.csv" in message
    assert "line 1" in message
    assert "missing column 'amount'" in message
    assert "found id, order_id, payment_method, amont" in message
    assert "'amont' meant to be 'amount'" in message


def test_missing_column_is_named(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, orders="id,user_id,status\n1,1,placed\n")
    assert "raw_orders.csv" in message
    assert "missing column 'order_date'" in message


def test_non_numeric_amount_names_line_and_value(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, payments=PAYMENTS.replace("2,1,coupon,250", "2,1,coupon,2.5O"))
    assert message.endswith("raw_payments.csv: line 3: amount: not a whole number: '2.5O'")


def test_non_numeric_id_names_line_and_value(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, customers=CUSTOMERS.replace("3,Kathleen", "C3,Kathleen"))
    assert message.endswith("raw_customers.csv: line 4: id: not a whole number: 'C3'")


def test_unparsable_date_names_line_and_value(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, orders=ORDERS.replace("2018-01-02", "02/01/2018"))
    assert message.endswith("raw_orders.csv: line 3: order_date: not a date (YYYY-MM-DD): '02/01/2018'")


def test_missing_required_value_names_line(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, payments=PAYMENTS.replace("1,1,credit_card,1000", "1,1,credit_card,"))
    assert message.endswith("raw_payments.csv: line 2: amount: missing value")


def test_line_numbers_count_the_lines_of_a_quoted_field_spanning_several(tmp_path: Path, workdir: Path) -> None:
    """A name holding a line break makes its row two lines long: later rows are named by their real line."""
    customers = 'id,first_name,last_name\r\n1,"Mi\r\nchael",P.\r\n2,Zoë,"Nguyễn,\nJr."\r\nC3,Kathleen,P.\r\n'
    message = _fails(tmp_path, workdir, customers=customers)
    assert message.endswith("raw_customers.csv: line 6: id: not a whole number: 'C3'")


def test_duplicate_lines_count_the_lines_of_a_quoted_field_spanning_several(tmp_path: Path, workdir: Path) -> None:
    customers = 'id,first_name,last_name\n1,"Mi\nchael",P.\n2,Zoë,X\n1,Twice,"A\nB"\n2,Again,Y\n'
    message = _fails(tmp_path, workdir, customers=customers)
    assert message.endswith("raw_customers.csv: duplicate customers id 1 on lines 2 and 5")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("customers", CUSTOMERS + "2,Twice,X\n", "raw_customers.csv: duplicate customers id 2 on lines 3 and 5"),
        ("orders", ORDERS + "1,2,2018-02-01,placed\n", "raw_orders.csv: duplicate orders id 1 on lines 2 and 5"),
        ("payments", PAYMENTS.replace("2,1,coupon", "1,1,coupon"), "duplicate payments id 1 on lines 2 and 3"),
    ],
)
def test_duplicate_primary_key_names_key_and_lines(
    tmp_path: Path, workdir: Path, name: str, text: str, expected: str
) -> None:
    assert expected in _fails(tmp_path, workdir, **{name: text})


@pytest.mark.parametrize("text", ["", "\ufeff", "\n\n"])
def test_empty_file_is_a_data_error(tmp_path: Path, workdir: Path, text: str) -> None:
    message = _fails(tmp_path, workdir, orders=text)
    assert "raw_orders.csv: empty file" in message


def test_header_only_file_is_a_data_error(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, payments="id,order_id,payment_method,amount\r\n")
    assert message.endswith("raw_payments.csv: header only, no data rows")


def test_missing_file_is_a_data_error(tmp_path: Path, workdir: Path) -> None:
    paths = write_sources(tmp_path)
    paths["orders"].unlink()
    with pytest.raises(DataError, match=r"raw_orders\.csv: orders file not found"):
        build_combined(paths, workdir, "amount_cents / 100")


def test_failed_run_keeps_the_previous_output_and_leaves_no_temp_files(tmp_path: Path, workdir: Path) -> None:
    paths = write_sources(tmp_path)
    build_combined(paths, workdir, "amount_cents / 100")
    before = (workdir / "combined.csv").read_bytes()
    paths["payments"].write_text(PAYMENTS + "4,1,cash,lots\n")
    with pytest.raises(DataError, match="line 5: amount"):
        build_combined(paths, workdir, "amount_cents / 100")
    assert (workdir / "combined.csv").read_bytes() == before
    leftovers = [p.name for p in workdir.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_successful_run_replaces_the_output_and_leaves_no_temp_files(tmp_path: Path, workdir: Path) -> None:
    """The replaced combined.csv stays as the spare the next run writes over; nothing else is left."""
    paths = write_sources(tmp_path)
    build_combined(paths, workdir, "amount_cents / 100")
    build_combined(paths, workdir, "amount_cents / 100 * 2")
    assert read_combined(workdir / "combined.csv").filter(pl.col("order_id") == 1)["value"].item() == 25.0
    files = sorted(p.name for p in workdir.rglob("*") if p.is_file())
    assert files == [".combined.csv.spare", "combined.csv", "orders.csv", "payments.csv"]


def test_a_run_over_a_longer_previous_output_writes_exactly_the_new_one(tmp_path: Path, workdir: Path) -> None:
    """combined.csv written over the spare of a larger earlier run, twice (second pass), has no stale tail."""
    many = "id,user_id,order_date,status\n" + "".join(f"{i},1,2018-01-01,placed\n" for i in range(1, 2001))
    (tmp_path / "big").mkdir()
    big = write_sources(tmp_path / "big", orders=many)
    build_combined(big, workdir, "amount_cents / 100")
    build_combined(big, workdir, "amount_cents / 100")
    orders = ORDERS.replace("2018-01-01", "1850-06-01")  # outside the label table: a second pass
    build_combined(write_sources(tmp_path, orders=orders), workdir, "amount_cents / 100")
    fresh = tmp_path / "fresh"
    build_combined(write_sources(tmp_path, orders=orders), fresh, "amount_cents / 100")
    lines = [sorted((folder / "combined.csv").read_bytes().splitlines()) for folder in (workdir, fresh)]
    assert lines[0] == lines[1]  # the row order is free
    assert len((workdir / ".combined.csv.spare").read_bytes()) > 2000 * 20


def test_jaffle_shop_figures_match_an_independent_computation(workdir: Path) -> None:
    """The real jaffle-shop seeds through the transform equal a plain-Python csv-module computation."""
    if not (JAFFLE / "raw_payments.csv").is_file():
        pytest.skip(f"jaffle-shop seed CSVs not available at {JAFFLE} (../shared is absent)")
    paths = {name: JAFFLE / f"raw_{name}.csv" for name in ("customers", "orders", "payments")}
    result = build_combined(paths, workdir, "amount_cents / 100")

    def rows(name: str) -> list[dict[str, str]]:
        with paths[name].open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle))

    customers = {int(r["id"]): r for r in rows("customers")}
    sums: dict[int, int] = defaultdict(int)
    counts: dict[int, int] = defaultdict(int)
    for payment in rows("payments"):
        sums[int(payment["order_id"])] += int(payment["amount"])
        counts[int(payment["order_id"])] += 1
    expected = {}
    for order in rows("orders"):
        customer = customers.get(int(order["user_id"]))
        if customer is not None:
            oid = int(order["id"])
            title = f"{customer['last_name']} {customer['first_name']}"
            expected[oid] = (int(order["user_id"]), title, order["status"], counts[oid], sums[oid], sums[oid] / 100)

    combined = read_combined(result.combined_path)
    actual = {
        r["order_id"]: (r["customer_id"], r["title"], r["status"], r["payment_count"], r["amount_cents"], r["value"])
        for r in combined.iter_rows(named=True)
    }
    assert actual == expected
    assert result.customers == len(customers)
    assert result.rows == len(expected)
    assert combined["amount_cents"].sum() == sum(sums[oid] for oid in expected)


def test_sparse_unsorted_unique_ids_are_accepted(tmp_path: Path, workdir: Path) -> None:
    customers = "id,first_name,last_name\n900,Ann,A.\n5,Bob,B.\n70,Cy,C.\n"
    orders = "id,user_id,order_date,status\n40,5,2018-01-01,placed\n7,900,2018-01-02,placed\n"
    payments = "id,order_id,payment_method,amount\n300,40,coupon,100\n2,7,coupon,200\n"
    paths = write_sources(tmp_path, customers=customers, orders=orders, payments=payments)
    result = build_combined(paths, workdir, "amount_cents / 100")
    assert (result.rows, result.customers) == (2, 3)


def test_duplicate_among_sparse_ids_is_found(tmp_path: Path, workdir: Path) -> None:
    customers = "id,first_name,last_name\n900,Ann,A.\n5,Bob,B.\n70,Cy,C.\n5,Bo,B.\n"
    assert "duplicate customers id 5 on lines 3 and 5" in _fails(tmp_path, workdir, customers=customers)


# ---- deal values and amount sums (issue 16) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "what", "order"),
    [
        ("amount_cents / 0", "an infinite value", 1),
        ("sqrt(0 - amount_cents)", "NaN", 1),
        ("NULL", "no value (NULL)", 1),
        ("amount_cents / payment_count", "NaN", 2),  # 0 / 0: order 2 alone has no payments
        ("amount_cents * 1e20", "too large a value", 1),
    ],
)
def test_value_expression_giving_an_unusable_value_names_the_order_and_writes_nothing(
    tmp_path: Path, workdir: Path, expression: str, what: str, order: int
) -> None:
    orders = ORDERS.replace("1,1,2018-01-01", "2,1,2018-01-01").replace("2,2,2018-01-02", "1,2,2018-01-02")
    with pytest.raises(ConfigError) as caught:
        build_combined(write_sources(tmp_path, orders=orders), workdir, expression)
    assert str(caught.value) == (  # the lowest order id with the problem, though order 2 is read first
        f"value expression {expression!r} gives {what} for order {order}: "
        "every order needs a finite deal value below 1e+16 in size"
    )
    assert not (workdir / "combined.csv").exists()


@pytest.mark.parametrize("expression", ["amount_cents / 0.0", "amount_cents * 1.0 / payment_count"])
def test_decimal_division_by_zero_in_the_value_expression_names_the_expression(
    tmp_path: Path, workdir: Path, expression: str
) -> None:
    """SQL reads 0.0 as a Decimal, whose division by zero raises inside the pass (it once blamed the sources)."""
    with pytest.raises(ConfigError) as caught:
        build_combined(write_sources(tmp_path), workdir, expression)
    assert str(caught.value) == (
        f"value expression {expression!r} cannot be computed for every order: division by zero Decimal"
    )
    assert not (workdir / "combined.csv").exists()


def test_a_usable_value_expression_after_a_failed_one_writes_normally(tmp_path: Path, workdir: Path) -> None:
    paths = write_sources(tmp_path)
    with pytest.raises(ConfigError):
        build_combined(paths, workdir, "amount_cents / 0")
    assert build_combined(paths, workdir, "amount_cents / 100").rows == 2


def test_payment_sums_beyond_64_bits_are_a_data_error_naming_the_order(tmp_path: Path, workdir: Path) -> None:
    payments = "id,order_id,payment_method,amount\n1,2,coupon,5\n2,1,coupon,9223372036854775807\n3,1,cash,1\n"
    message = _fails(tmp_path, workdir, payments=payments)
    assert message.endswith(
        "raw_payments.csv: order 1: its payments sum to 9223372036854775808 cents, "
        "beyond what a 64-bit amount holds (-9223372036854775808 to 9223372036854775807)"
    )


def test_payment_sums_up_to_the_64_bit_limit_are_kept_exactly(tmp_path: Path, workdir: Path) -> None:
    """The bound (most payments x largest amount) fails here, so the exact search runs and finds nothing."""
    payments = "id,order_id,payment_method,amount\n1,1,coupon,9223372036854775800\n2,1,cash,7\n3,2,cash,9\n"
    result = build_combined(write_sources(tmp_path, payments=payments), workdir, "payment_count")
    sums = dict(read_combined(result.combined_path).select("order_id", "amount_cents").iter_rows())
    assert sums == {1: 9223372036854775807, 2: 9}


def test_a_negative_amount_is_a_refund_that_lowers_the_order_sum(tmp_path: Path, workdir: Path) -> None:
    payments = "id,order_id,payment_method,amount\n1,1,card,1000\n2,1,refund,-250\n3,2,cash,9\n"
    result = build_combined(write_sources(tmp_path, payments=payments), workdir, "payment_count")
    sums = dict(read_combined(result.combined_path).select("order_id", "amount_cents").iter_rows())
    assert sums == {1: 750, 2: 9}


def test_refunds_summing_below_64_bits_are_a_data_error_naming_the_order(tmp_path: Path, workdir: Path) -> None:
    payments = f"id,order_id,payment_method,amount\n1,1,refund,{-(2**63)}\n2,1,refund,-1\n3,2,cash,9\n"
    message = _fails(tmp_path, workdir, payments=payments)
    assert f"order 1: its payments sum to {-(2**63) - 1} cents, beyond what a 64-bit amount holds" in message


def test_a_huge_bad_value_is_shown_by_its_start_and_length(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, payments=PAYMENTS.replace("2,1,coupon,250", "2,1,coupon," + "9" * 300 + "x"))
    assert message.endswith(f"line 3: amount: not a whole number: '{'9' * 40}... (301 characters)'")


# ---- names and titles (issue 16) ---------------------------------------------------------------------------


def _titles(tmp_path: Path, workdir: Path, customers: str) -> list[str]:
    """The deal titles build_combined writes for these customers and the default orders, by order id."""
    result = build_combined(write_sources(tmp_path, customers=customers), workdir, "amount_cents / 100")
    return list(read_combined(result.combined_path).sort("order_id")["title"])


def test_titles_are_trimmed_and_collapsed_like_person_names(tmp_path: Path, workdir: Path) -> None:
    customers = 'id,first_name,last_name\n1,"  Ann  ","  Lee "\n2,"Bob\nX",Ray\n3,"\t",Solo\n'
    assert _titles(tmp_path, workdir, customers) == ["Lee Ann", "Ray Bob X"]


# ---- hostile files (issue 16): one line naming the file and the problem, read no further than needed ---------


def _bytes_read() -> int:
    """Bytes this process has read through system calls so far (every thread, the Polars engine's too)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["rchar"])


def test_a_first_data_row_with_a_field_beyond_the_csv_modules_limit_is_read(tmp_path: Path, workdir: Path) -> None:
    """The header check once parsed the first row with the csv module (131,072 characters at most): exit 70."""
    long_name = "x" * 200_000
    customers = f"id,first_name,last_name\n1,Michael,{long_name}\n2,Shawn,M.\n3,Kathleen,P.\n"
    assert _titles(tmp_path, workdir, customers) == [f"{long_name} Michael", "M. Shawn"]


@pytest.mark.parametrize("valid_start", [False, True])
def test_a_huge_sparse_file_of_nuls_fails_at_once_without_reading_it(
    tmp_path: Path, workdir: Path, valid_start: bool
) -> None:
    """10 GB of NULs (a hole), alone or after 100 KB of valid orders: found from a few blocks, not read."""
    rows = "".join(f"{i},1,2018-01-01,placed\n" for i in range(1, 5000)) if valid_start else ""
    paths = write_sources(tmp_path, orders="id,user_id,order_date,status\n" + rows if valid_start else "")
    size = paths["orders"].stat().st_size
    os.truncate(paths["orders"], 10 * 1024**3)
    before = _bytes_read()
    with pytest.raises(DataError) as caught:
        build_combined(paths, workdir, "amount_cents / 100")
    assert _bytes_read() - before < 16 * 1024**2
    if valid_start:
        assert str(caught.value) == (
            f"{paths['orders']}: NUL bytes from byte {size} (a sparse, preallocated or damaged file): not CSV text"
        )
    else:
        assert str(caught.value) == f"{paths['orders']}: line 1: NUL byte (byte 0): a binary file, not CSV text"
    assert not (workdir / "combined.csv").exists()


def test_a_hole_soon_after_the_header_block_is_named_by_its_first_nul_not_the_data_after_it(
    tmp_path: Path, workdir: Path
) -> None:
    """Once named a byte of the rows after the hole: the block read ran past the hole into them."""
    rows = "".join(f"{i},1,2018-01-01,placed\n" for i in range(1, 3500))
    prefix = ("id,user_id,order_date,status\n" + rows).encode()
    assert 64 * 1024 < len(prefix) < 100 * 1024  # past the header check's first read, within a block of the hole
    paths = write_sources(tmp_path, orders=prefix)
    with paths["orders"].open("r+b") as handle:
        handle.seek(len(prefix) + 16 * 1024)  # leaves a hole: the file system stores no block for it
        handle.write("".join(f"{i},1,2018-01-01,placed\n" for i in range(3500, 6000)).encode())
    with paths["orders"].open("rb") as handle:
        if os.lseek(handle.fileno(), 0, os.SEEK_HOLE) >= paths["orders"].stat().st_size:
            pytest.skip("this file system keeps no holes")
    with pytest.raises(DataError) as caught:
        build_combined(paths, workdir, "amount_cents / 100")
    assert str(caught.value) == (
        f"{paths['orders']}: NUL bytes from byte {len(prefix)} (a sparse, preallocated or damaged file): not CSV text"
    )


def test_nul_bytes_written_at_the_end_of_a_file_are_found_in_its_last_block(tmp_path: Path, workdir: Path) -> None:
    rows = "".join(f"{i},1,2018-01-01,placed\n" for i in range(1, 5000))
    text = ("id,user_id,order_date,status\n" + rows).encode() + b"\0" * 1000
    message = _fails(tmp_path, workdir, orders=text)
    assert message.endswith(
        f"NUL bytes from byte {len(text) - 1000} (a sparse, preallocated or damaged file): not CSV text"
    )


def test_a_first_line_without_an_end_is_not_read_as_a_header(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, customers="id," * 100_000)
    assert message.endswith("raw_customers.csv: line 1 is longer than 64 KiB: not a CSV header")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_text_is_named_as_such(tmp_path: Path, workdir: Path, encoding: str) -> None:
    message = _fails(tmp_path, workdir, customers=CUSTOMERS.encode(encoding))
    if encoding == "utf-16":  # with a byte order mark
        assert message.endswith(
            "raw_customers.csv: UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8"
        )
    else:
        assert message.endswith("raw_customers.csv: line 1: NUL byte (byte 0): a binary file, not CSV text")


def test_a_latin1_name_among_utf8_ones_names_its_line_and_byte(tmp_path: Path, workdir: Path) -> None:
    rows = "".join(f"{i},Ann,Lee\n" for i in range(1, 3000)).encode()
    customers = b"id,first_name,last_name\n" + rows + "3000,Zoë,Ray\n".encode("latin-1")
    message = _fails(tmp_path, workdir, customers=customers)
    byte = customers.index(b"\xeb")
    assert message.endswith(f"raw_customers.csv: line 3001: not UTF-8 text (byte {byte}): save the file as UTF-8")


def test_a_character_cut_by_a_read_block_is_not_taken_for_bad_utf8(tmp_path: Path, workdir: Path) -> None:
    """The search reads 1 MiB blocks: a 'ë' split between two of them is fine, the Latin-1 one after it is not."""
    head = b"id,first_name,last_name\n"
    filler = b"".join(b"%d,Ann,Lee\n" % i for i in range(1, 200_000))
    split = (1 << 20) - len(head) - 1  # the 'ë' of the next row starts on the last byte of the first block
    rows = filler[: filler.rfind(b"\n", 0, split - 10) + 1]
    rows += b"200000," + b"x" * (split - len(rows) - 7) + "ë,Ray\n".encode()
    customers = head + rows + "200001,Zoë,Ray\n".encode("latin-1")
    assert customers[(1 << 20) - 1 : (1 << 20) + 1] == "ë".encode()
    message = _fails(tmp_path, workdir, customers=customers)
    line, byte = customers.count(b"\n"), customers.rindex(b"\xeb")
    assert message.endswith(f"raw_customers.csv: line {line}: not UTF-8 text (byte {byte}): save the file as UTF-8")


def test_a_header_that_is_not_utf8_is_named(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, customers="id,first_name,last_nâme\n1,A,B\n".encode("latin-1"))
    assert message.endswith("raw_customers.csv: line 1: not UTF-8 text (byte 20): save the file as UTF-8")


def test_a_header_repeating_a_column_is_named(tmp_path: Path, workdir: Path) -> None:
    message = _fails(tmp_path, workdir, orders="id,user_id,order_date,status,id\n1,1,2018-01-01,placed,2\n")
    assert message.endswith("raw_orders.csv: line 1: column 'id' appears twice in the header")


@pytest.mark.parametrize("amount", ["12.50", "1e3", "0x10", "9223372036854775808"])
def test_an_amount_that_is_not_a_whole_number_of_cents_is_named(tmp_path: Path, workdir: Path, amount: str) -> None:
    message = _fails(tmp_path, workdir, payments=PAYMENTS.replace("2,1,coupon,250", f"2,1,coupon,{amount}"))
    assert message.endswith(f"raw_payments.csv: line 3: amount: not a whole number: {amount!r}")


def test_crlf_file_with_a_quoted_line_break_in_a_name_gives_a_one_line_title(tmp_path: Path, workdir: Path) -> None:
    customers = 'id,first_name,last_name\r\n1,"Mi\r\nchael",P.\r\n2,Zoë,"Nguyễn,\r\nJr."\r\n3,K,P.\r\n'
    assert _titles(tmp_path, workdir, customers) == ["P. Mi chael", "Nguyễn, Jr. Zoë"]
