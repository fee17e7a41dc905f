"""The pure transform on small literal frames: sums, joins, rejects, title, value expression, checks."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from sync_job.diff import desired_persons
from sync_job.errors import ConfigError
from sync_job.transform import (
    COMBINED_SCHEMA,
    CUSTOMERS_SCHEMA,
    LABELLED_DAYS,
    ORDERS_SCHEMA,
    PAYMENTS_SCHEMA,
    beyond_range_is_exact,
    combine,
    day_label,
    first_bad_value,
    first_duplicate,
    first_unusable_value,
    keys_unique,
    overflowing_sums,
    repetitive_names,
    source_checks,
    sums_fit,
    value_expression,
    value_facts,
)

CUSTOMERS = pl.LazyFrame(
    {"id": [1, 2, 3], "first_name": ["Michael", "Zoë", "Jean, Jr."], "last_name": ["P.", "Nguyễn", "Smith"]},
    schema=CUSTOMERS_SCHEMA,
)
ORDERS = pl.LazyFrame(
    {
        "id": [10, 11, 12, 13],
        "user_id": [1, 2, 1, 99],
        "order_date": [date(2018, 1, 1), date(2018, 1, 2), date(2018, 1, 3), date(2018, 1, 4)],
        "status": ["returned", "completed", "placed", "shipped"],
    },
    schema=ORDERS_SCHEMA,
)
PAYMENTS = pl.LazyFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "order_id": [10, 10, 11, 13, 500],
        "payment_method": ["credit_card", "coupon", "gift_card", "coupon", "bank_transfer"],
        "amount": [1000, 250, 1999, 100, 700],
    },
    schema=PAYMENTS_SCHEMA,
)


def _combined(expression: str = "amount_cents / 100") -> pl.DataFrame:
    result = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression(expression))
    return result.combined.collect(engine="streaming").sort("order_id")


def test_combined_has_exactly_the_contract_columns_and_types() -> None:
    assert _combined().schema == COMBINED_SCHEMA


def test_payments_are_summed_and_counted_per_order() -> None:
    rows = {r["order_id"]: r for r in _combined().iter_rows(named=True)}
    assert (rows[10]["payment_count"], rows[10]["amount_cents"], rows[10]["value"]) == (2, 1250, 12.5)
    assert (rows[11]["payment_count"], rows[11]["amount_cents"], rows[11]["value"]) == (1, 1999, 19.99)


def test_order_without_payments_has_zero_count_and_amount() -> None:
    row = _combined().filter(pl.col("order_id") == 12).row(0, named=True)
    assert (row["payment_count"], row["amount_cents"], row["value"]) == (0, 0, 0.0)


def test_one_row_per_order_whose_customer_exists() -> None:
    assert _combined()["order_id"].to_list() == [10, 11, 12]


def test_title_is_last_name_then_first_name_with_unicode_kept() -> None:
    titles = dict(_combined().select("order_id", "title").iter_rows())
    assert titles == {10: "P. Michael", 11: "Nguyễn Zoë", 12: "P. Michael"}


def test_title_without_a_first_name_is_the_last_name_alone() -> None:
    customers = pl.LazyFrame({"id": [1], "first_name": [None], "last_name": ["Solo"]}, schema=CUSTOMERS_SCHEMA)
    result = combine(customers, ORDERS, PAYMENTS, value_expression("amount_cents / 100"))
    assert set(result.combined.collect()["title"]) == {"Solo"}


@pytest.mark.parametrize(
    ("first", "last", "title", "name"),
    [
        ("  Ann  ", "  Lee ", "Lee Ann", "Ann Lee"),
        ("Bob\nX", "Ray", "Ray Bob X", "Bob X Ray"),
        ("\t", "Solo", "Solo", "Solo"),
        ("Mary  Ann", "Lee", "Lee Mary Ann", "Mary Ann Lee"),
        ("Jean Paul", "Le Pen", "Le Pen Jean Paul", "Jean Paul Le Pen"),  # already tidy: kept as it is
        ("Zoë\u00a0\u2003", " Nguyễn\r\n", "Nguyễn Zoë", "Zoë Nguyễn"),
        (None, None, "", ""),
    ],
)
def test_title_is_normalised_by_the_same_rule_as_the_person_name(
    first: str | None, last: str | None, title: str, name: str
) -> None:
    """Trimmed, inner whitespace (newlines, tabs, no-break spaces) collapsed to one space, in both."""
    customers = pl.LazyFrame({"id": [1], "first_name": [first], "last_name": [last]}, schema=CUSTOMERS_SCHEMA)
    result = combine(customers, ORDERS, PAYMENTS, value_expression("amount_cents / 100"))
    assert set(result.combined.collect()["title"]) == {title}
    assert desired_persons(customers)["name"].to_list() == [name]


def test_order_of_unknown_customer_is_rejected_with_reason() -> None:
    rejected = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents")).rejected_orders.collect()
    assert rejected.columns == [*ORDERS_SCHEMA.names(), "reason"]
    assert rejected.select("id", "reason").rows() == [(13, "customer 99 does not exist")]


def test_payment_of_unknown_order_is_rejected_with_reason() -> None:
    result = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents"))
    rejected = result.rejected_payments.collect()
    assert rejected.columns == [*PAYMENTS_SCHEMA.names(), "reason"]
    assert rejected.select("id", "reason").rows() == [(5, "order 500 does not exist")]
    assert result.unknown_orders.collect().rows() == [(500, 1)]


def test_payments_of_a_rejected_order_are_not_rejected_payments() -> None:
    """Order 13 exists (its customer does not): its payment is not an orphan."""
    rejected = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents")).rejected_payments.collect()
    assert 13 not in rejected["order_id"].to_list()


def test_payments_beyond_a_guessed_order_range_stream_out_with_reason_and_count() -> None:
    result = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents"), order_range=(10, 13))
    assert result.beyond_orders is not None
    beyond = result.beyond_orders.collect()
    assert beyond.columns == [*PAYMENTS_SCHEMA.names(), "reason"]
    assert beyond.select("id", "reason").rows() == [(5, "order 500 does not exist")]
    assert result.checks["payments"].collect()["beyond"].item() == 1


def test_without_a_guessed_order_range_nothing_streams_beyond_it() -> None:
    result = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents"))
    assert result.beyond_orders is None
    assert "beyond" not in result.checks["payments"].collect().columns


@pytest.mark.parametrize(
    ("guess", "beyond", "rejected", "exact"),
    [
        ((10, 13), 1, 1, True),  # the true range, and every orphan lies outside it
        ((10, 13), 1, 2, False),  # one orphan points into a gap inside the range
        ((10, 12), 2, 2, False),  # the guess missed order 13: its payment was counted as beyond
        ((11, 13), 0, 0, False),  # the guess missed order 10, even with no orphans at all
    ],
)
def test_beyond_range_is_exact_only_for_the_true_range_and_all_orphans_outside(
    guess: tuple[int, int], beyond: int, rejected: int, exact: bool
) -> None:
    orders = {"rows": 4, "invalid": 0, "lo": 10, "hi": 13}
    assert beyond_range_is_exact(guess, orders, beyond, rejected) is exact


def test_day_label_is_the_iso_text_inside_the_table_and_null_outside() -> None:
    first, last = LABELLED_DAYS
    days = [first, date(1999, 12, 31), date(2024, 2, 29), last, date(1899, 12, 31), date(2200, 1, 1), None]
    labels = pl.select(day_label(pl.lit(pl.Series(days, dtype=pl.Date)))).to_series()
    assert labels.cast(pl.String).to_list() == [
        "1900-01-01", "1999-12-31", "2024-02-29", "2199-12-31", None, None, None
    ]  # fmt: skip


def test_labelled_dates_write_the_same_text_and_count_orders_outside_the_table() -> None:
    dates = [date(2018, 1, 1), date(1850, 6, 1), date(2018, 1, 3), date(2018, 1, 4)]
    orders = ORDERS.with_columns(order_date=pl.Series(dates))
    result = combine(CUSTOMERS, orders, PAYMENTS, value_expression("amount_cents"), label_dates=True)
    labelled = result.combined.collect().sort("order_id")["order_date"].cast(pl.String).to_list()
    assert labelled == ["2018-01-01", None, "2018-01-03"]  # order 11 is dated 1850
    assert result.checks["orders"].collect()["unlabelled"].item() == 1


def test_value_expression_can_scale_the_amount() -> None:
    assert _combined("amount_cents / 100 * 2").filter(pl.col("order_id") == 10)["value"].item() == 25.0


def test_value_expression_of_integers_is_float64() -> None:
    assert _combined("payment_count")["value"].dtype == pl.Float64


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("amount_cents +", "not valid SQL"),
        ("amount / 100", "unknown column 'amount'"),
        ("upper(status)", "must give a number"),
        ("", "not valid SQL"),
    ],
)
def test_invalid_value_expression_is_a_config_error_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        value_expression(text)
    assert repr(text) in str(caught.value)


def test_value_facts_give_the_lowest_order_with_each_kind_of_unusable_value() -> None:
    combined = pl.LazyFrame(
        {"order_id": [7, 3, 5, 4, 9, 2, 8], "value": [None, float("nan"), float("inf"), -1e16, None, 12.5, 9.9e15]}
    )
    facts = value_facts(combined).collect().row(0, named=True)
    assert facts == {"missing": 7, "nan": 3, "infinite": 5, "too_large": 4}
    assert first_unusable_value(facts) == (3, "NaN")


def test_value_facts_of_usable_values_find_nothing() -> None:
    facts = value_facts(pl.LazyFrame({"order_id": [1, 2], "value": [0.0, -9.9e15]})).collect().row(0, named=True)
    assert first_unusable_value(facts) is None


def test_checks_bound_the_amount_sums_by_the_most_payments_times_the_largest_amount() -> None:
    facts = _facts()
    assert (facts["orders"]["most_payments"], facts["payments"]["largest"]) == (2, 1999)
    assert sums_fit(facts["orders"], facts["payments"])
    assert sums_fit({"most_payments": 2}, {"largest": 2**62 - 1})
    assert not sums_fit({"most_payments": 2}, {"largest": 2**62})
    assert sums_fit({"most_payments": None}, {"largest": None})  # no rows at all
    assert not sums_fit({"most_payments": 2}, {"largest": 5, "smallest": -(2**62) - 1})  # refunds count by size


def test_overflowing_sums_are_found_exactly_beyond_int64() -> None:
    payments = PAYMENTS.with_columns(amount=pl.Series([2**62, 2**62 - 1, 2**63 - 1, 1, 0]))
    assert overflowing_sums(payments.with_columns(order_id=pl.Series([10, 10, 11, 11, 12]))).collect().rows() == [
        (11, 2**63)
    ]
    assert overflowing_sums(payments).collect().is_empty()  # order 10: 2^62 + 2^62 - 1, the largest that fits


def test_checks_count_a_negative_amount_as_valid_and_keep_the_smallest() -> None:
    payments = PAYMENTS.with_columns(amount=pl.Series([1000, -1, 1999, 100, 700]))
    facts = _facts(payments=payments)["payments"]
    assert (facts["invalid"], facts["smallest"]) == (0, -1)


def test_overflowing_sums_are_found_below_int64_too() -> None:
    payments = PAYMENTS.with_columns(amount=pl.Series([-(2**63), -1, 5, 1, 0]))
    found = overflowing_sums(payments.with_columns(order_id=pl.Series([10, 10, 11, 11, 12]))).collect().rows()
    assert found == [(10, -(2**63) - 1)]


def _facts(orders: pl.LazyFrame = ORDERS, payments: pl.LazyFrame = PAYMENTS) -> dict[str, dict[str, int]]:
    checks = combine(CUSTOMERS, orders, payments, value_expression("amount_cents")).checks
    return {name: frame.collect().row(0, named=True) for name, frame in checks.items()}


def test_checks_count_rows_key_ranges_and_rejected_orders() -> None:
    facts = _facts()
    assert {name: (f["rows"], f["invalid"], f["lo"], f["hi"]) for name, f in facts.items()} == {
        "customers": (3, 0, 1, 3),
        "orders": (4, 0, 10, 13),
        "payments": (5, 0, 1, 5),
    }
    assert facts["orders"]["rejected"] == 1


@pytest.mark.parametrize(
    ("column", "values"),
    [("id", [10, None, 12, 13]), ("user_id", [1, None, 1, 99]), ("order_date", [date(2018, 1, 1), None, None, None])],
)
def test_checks_count_orders_missing_a_required_value(column: str, values: list[object]) -> None:
    orders = ORDERS.with_columns(pl.Series(column, values, dtype=ORDERS_SCHEMA[column]))
    assert _facts(orders=orders)["orders"]["invalid"] == values.count(None)


@pytest.mark.parametrize(("column", "values"), [("order_id", [10, None, 11, 13, 500]), ("amount", [1, 2, None, 4, 5])])
def test_checks_count_payments_missing_a_required_value(column: str, values: list[object]) -> None:
    payments = PAYMENTS.with_columns(pl.Series(column, values, dtype=PAYMENTS_SCHEMA[column]))
    assert _facts(payments=payments)["payments"]["invalid"] == 1


def _keys(*keys: int) -> dict[str, int | None]:
    frame = pl.LazyFrame({"id": list(keys)}, schema={"id": pl.Int64})
    return source_checks("customers", frame).collect().row(0, named=True)


@pytest.mark.parametrize(
    ("keys", "unique"),
    [
        ((1, 2, 3, 4), True),  # a dense range, in order
        ((4, 2, 3, 1), True),  # a dense range, shuffled: order does not matter
        ((1, 2, 2, 4), False),  # n keys in a span of n, not the whole range: a repeat
        ((1, 2, 2), False),  # more keys than the span holds
        ((1, 5, 9), None),  # sparse keys prove nothing: the exact search decides
        ((1, 5, 5), None),
    ],
)
def test_keys_unique_proves_or_disproves_dense_keys_and_defers_sparse_ones(
    keys: tuple[int, ...], unique: bool | None
) -> None:
    assert keys_unique(_keys(*keys)) is unique


def test_source_checks_count_a_missing_key() -> None:
    frame = pl.LazyFrame({"id": [3, None, 4]}, schema={"id": pl.Int64})
    assert source_checks("customers", frame).collect()["invalid"].item() == 1


@pytest.mark.parametrize(
    ("keys", "duplicate"),
    [([1, 2, 3], None), ([3, 1, 2], None), ([1, 2, 2, 3], 2), ([5, 1, 5, 2], 5), ([], None)],
)
def test_first_duplicate_finds_a_repeated_key_sorted_or_not(keys: list[int], duplicate: int | None) -> None:
    assert first_duplicate(pl.Series(keys, dtype=pl.Int64)) == duplicate


def test_first_bad_value_names_row_column_and_text() -> None:
    text = pl.LazyFrame(
        {
            "row": [0, 1, 2],
            "id": ["1", "2", "3"],
            "order_id": ["1", "1", "1"],
            "payment_method": ["a", "b", "c"],
            "amount": ["10", "1O", None],
        }
    )
    row, column, problem, found = first_bad_value("payments", text).collect().row(0)
    assert (row, column, problem, found["amount"]) == (1, "amount", "not a whole number", "1O")


def test_first_bad_value_reports_a_missing_required_value() -> None:
    text = pl.LazyFrame(
        {"row": [0], "id": ["1"], "user_id": ["2"], "order_date": [None], "status": ["placed"]},
        schema={c: pl.String for c in ("id", "user_id", "order_date", "status")} | {"row": pl.UInt32},
    ).select("row", "id", "user_id", "order_date", "status")
    assert first_bad_value("orders", text).collect().select("row", "column").row(0) == (0, "order_date")


def test_repetitive_names_picks_name_columns_that_repeat_in_the_sample() -> None:
    sample = pl.DataFrame(
        {"id": range(10), "first_name": ["Ann", "Bob"] * 5, "last_name": [f"Name{i}" for i in range(10)]}
    )
    assert repetitive_names(sample) == ("first_name",)
    assert repetitive_names(sample.head(0)) == ()


def test_categorical_names_give_the_same_combined_rows() -> None:
    plain = combine(CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents")).combined.collect()
    compact = combine(
        CUSTOMERS, ORDERS, PAYMENTS, value_expression("amount_cents"), repetitive_names=("first_name", "last_name")
    ).combined.collect()
    assert compact.schema == COMBINED_SCHEMA
    assert compact.sort("order_id").equals(plain.sort("order_id"))
