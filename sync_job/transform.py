"""Pure transform: customers, orders and payments LazyFrames -> the combined frame, rejects and checks."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from sync_job.errors import ConfigError, first_line

CUSTOMERS_SCHEMA = pl.Schema({"id": pl.Int64, "first_name": pl.String, "last_name": pl.String})
ORDERS_SCHEMA = pl.Schema({"id": pl.Int64, "user_id": pl.Int64, "order_date": pl.Date, "status": pl.String})
PAYMENTS_SCHEMA = pl.Schema({"id": pl.Int64, "order_id": pl.Int64, "payment_method": pl.String, "amount": pl.Int64})
COMBINED_SCHEMA = pl.Schema(
    {
        "order_id": pl.Int64,
        "customer_id": pl.Int64,
        "first_name": pl.String,
        "last_name": pl.String,
        "title": pl.String,
        "order_date": pl.Date,
        "status": pl.String,
        "payment_count": pl.Int64,
        "amount_cents": pl.Int64,
        "value": pl.Float64,
    }
)
SCHEMAS: Mapping[str, pl.Schema] = {
    "customers": CUSTOMERS_SCHEMA,
    "orders": ORDERS_SCHEMA,
    "payments": PAYMENTS_SCHEMA,
}
# Columns that must hold a value on every line; the names may be empty (a person can be "Smith" alone).
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "customers": ("id",),
    "orders": ("id", "user_id", "order_date"),
    "payments": ("id", "order_id", "amount"),
}
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# A deal value must be a finite number below this in size: what the PostgreSQL destination's numeric(18,2)
# holds, and small enough that the diff's whole cents stay within Int64.
VALUE_LIMIT = 1e16
KEY = "id"  # the primary key of every source
# `combine(label_dates=True)` writes dates as labels looked up in a table of ISO texts (an Enum) where
# the CSV writer would format each Date anew: ~0.3 CPU-s less per 10M orders. The table holds every
# day in this range (110k labels, built in ~10 ms); a date outside it has no label.
LABELLED_DAYS = (date(1900, 1, 1), date(2199, 12, 31))
_HASH_SEED = 20180101  # any fixed seed: both sides of the comparison are hashed in one process
REASON = "reason"


@dataclass(frozen=True, slots=True)
class Combined:
    """The lazy outputs of `combine`: nothing is computed until a sink or collect runs them.

    `unknown_orders` (order_id, payment_count) lists the order ids payments point at that are not in
    orders; it is tiny, so the I/O edge collects it with the combined sink and then writes
    `rejected_payments_for(payments, unknown_orders)` without a second large join. `checks` holds, per
    source, one row of `source_checks` facts computed in the same pass as the joins.

    `values` is one row of `value_facts` about the combined rows' deal values, from the same pass.

    `beyond_orders` is set when `combine` was given a guess of the orders' id range: the payments whose
    order_id lies outside it, with the reason, streamed in the same pass. `beyond_range_is_exact`
    tells afterwards whether they are exactly the rejected payments, so the second read is not needed.
    """

    combined: pl.LazyFrame
    rejected_orders: pl.LazyFrame
    rejected_payments: pl.LazyFrame
    unknown_orders: pl.LazyFrame
    checks: Mapping[str, pl.LazyFrame]
    values: pl.LazyFrame
    beyond_orders: pl.LazyFrame | None = None


def value_expression(text: str) -> pl.Expr:
    """Parse the configured deal value (SQL syntax over combined columns) into a Float64 expression.

    `amount_cents / 100` is true division (12.5, not 12); an unknown column, a syntax error or a
    non-numeric result is a ConfigError naming the expression.
    """
    try:
        parsed = pl.sql_expr(text)
    except Exception as exc:  # polars raises several SQL error types; all mean "not an expression"
        raise ConfigError(f"value expression {text!r} is not valid SQL: {first_line(exc)}") from None
    assert isinstance(parsed, pl.Expr)
    unknown = [name for name in parsed.meta.root_names() if name not in COMBINED_SCHEMA]
    if unknown:
        raise ConfigError(
            f"value expression {text!r} uses unknown column {unknown[0]!r} "
            f"(columns: {', '.join(n for n in COMBINED_SCHEMA if n != 'value')})"
        )
    probe = pl.LazyFrame(schema=COMBINED_SCHEMA).select(parsed.alias("value"))
    try:
        dtype = probe.collect_schema()["value"]
        probe.collect()  # type errors (e.g. upper() of a number) only surface on execution
    except Exception as exc:
        raise ConfigError(f"value expression {text!r} cannot be evaluated: {first_line(exc)}") from None
    if not (dtype.is_numeric() or dtype == pl.Null):
        raise ConfigError(f"value expression {text!r} must give a number, not {dtype}")
    # Polars rewrites `x / 100` as `x * 0.01`, so 1999 cents would become 19.990000000000002;
    # 15 significant digits (what a float64 holds exactly) gives back 19.99.
    return parsed.cast(pl.Float64).round_sig_figs(15)


def combine(
    customers: pl.LazyFrame,
    orders: pl.LazyFrame,
    payments: pl.LazyFrame,
    value: pl.Expr,
    *,
    repetitive_names: Sequence[str] = (),
    order_range: tuple[int, int] | None = None,
    label_dates: bool = False,
    passthrough: Sequence[str] = (),
) -> Combined:
    """One row per order whose customer exists, with its payments summed; orphans go to the rejects.

    Inputs must already satisfy their schemas and unique keys (the I/O edge checks `checks` before
    it keeps any output). The plan is shaped for the streaming engine's memory: the payment sums and
    the customers are the only hash-join build sides, orders stream past both, and one full join finds
    orders without payments and payments without orders at once (no anti-join table).

    `label_dates` makes the combined `order_date` a `day_label` (an Enum of ISO texts, for the CSV
    writer) and adds `unlabelled` to the orders checks: combined rows dated outside LABELLED_DAYS,
    whose label is null, so that a caller can run the plan again without labels.

    `passthrough` names source columns beyond the schemas (kept by the scans as text) that the combined rows carry
    after their own columns, for the field mapping's expressions.
    """
    # Names are held in the customers hash table. Name columns known to repeat a lot (see
    # `repetitive_names`) go in as categoricals, a 4-byte code each: half the memory of text. Mostly
    # distinct names would only grow the global category pool, so they stay text.
    customers = customers.with_columns(pl.col(repetitive_names).cast(pl.Categorical)).cache()
    payments = payments.cache()  # one read feeds the sums and the checks
    per_order = payments.group_by("order_id").agg(
        payment_count=pl.len().cast(pl.Int64), amount_cents=pl.col("amount").sum()
    )
    names = customers.with_columns(_known=pl.lit(True))
    everything = (
        orders.with_columns(_order=pl.lit(True))
        # build_side is forced: by default the engine samples up to 10M rows of BOTH inputs to choose,
        # which buffers the whole orders file at this size.
        .join(names, left_on="user_id", right_on=KEY, how="left", build_side="force_right")
        .join(per_order, left_on=KEY, right_on="order_id", how="full", coalesce=False, build_side="force_right")
        .cache()  # one execution shared by every output; otherwise pushdown rewrites each branch apart
    )
    is_order = pl.col("_order").is_not_null()
    known = pl.col("_known").is_not_null()
    first, last = pl.col("first_name").cast(pl.String), pl.col("last_name").cast(pl.String)
    combined = (
        everything.filter(is_order & known)
        .select(
            *[pl.col(name) for name in passthrough],
            order_id=pl.col(KEY),
            customer_id=pl.col("user_id"),
            first_name=first,
            last_name=last,
            title=display_name(last, first),
            order_date=day_label(pl.col("order_date")) if label_dates else pl.col("order_date"),
            status=pl.col("status"),
            payment_count=pl.col("payment_count").fill_null(0),
            amount_cents=pl.col("amount_cents").fill_null(0),
        )
        .with_columns(value=value)
        .select(*COMBINED_SCHEMA.names(), *passthrough)
    )
    rejected_orders = (
        everything.filter(is_order & ~known)
        .select(ORDERS_SCHEMA.names())
        .with_columns(pl.format("customer {} does not exist", pl.col("user_id")).alias(REASON))
    )
    unknown_orders = everything.filter(~is_order).select("order_id", "payment_count")
    beyond: dict[str, pl.Expr] = {}
    beyond_orders = None
    if order_range is not None:
        outside = ~pl.col("order_id").is_between(*order_range)
        beyond = {"beyond": outside.sum().cast(pl.Int64)}
        beyond_orders = payments.filter(outside).with_columns(_orphan_reason())
    # Every order's payment count bounds its sum with the largest amount in size (a refund is negative):
    # `sums_fit` proves from these facts that no Int64 sum wrapped, without summing again in a wider type.
    order_facts = {"rejected": (is_order & ~known).sum(), "most_payments": pl.col("payment_count").max()}
    if label_dates:
        undated = is_order & known & ~pl.col("order_date").is_between(*LABELLED_DAYS)
        order_facts["unlabelled"] = undated.sum().cast(pl.Int64)
    checks = {
        "customers": source_checks("customers", customers),
        "orders": source_checks("orders", everything, rows=is_order, **order_facts),
        "payments": source_checks(
            "payments", payments, largest=pl.col("amount").max(), smallest=pl.col("amount").min(), **beyond
        ),
    }
    return Combined(
        combined=combined,
        rejected_orders=rejected_orders,
        rejected_payments=rejected_payments_for(payments, unknown_orders),
        unknown_orders=unknown_orders,
        checks=checks,
        values=value_facts(combined),
        beyond_orders=beyond_orders,
    )


# Whitespace that `clean_text` changes: at an end, two in a row, or any but a plain space. Most names have
# none, and testing for it costs half of rewriting every title (~0.15 CPU-s per million orders), so only
# the text that has some is rewritten.
_UNTIDY = r"^\s|\s$|\s\s|[^\S ]"


def clean_text(text: pl.Expr) -> pl.Expr:
    """Trim and collapse whitespace runs, newlines included (Unicode-aware); missing becomes empty."""
    tidy = text.str.strip_chars().str.replace_all(r"\s+", " ")
    return pl.when(text.str.contains(_UNTIDY)).then(tidy).otherwise(text).fill_null("")


def display_name(*parts: pl.Expr) -> pl.Expr:
    """The one rule for a person's name and a deal's title: the parts joined by a space, then `clean_text`."""
    return clean_text(pl.concat_str(parts, separator=" ", ignore_nulls=True))


# What `value_facts` looks for, in the order a message names them when one order has several.
UNUSABLE_VALUES: Mapping[str, str] = {
    "missing": "no value (NULL)",
    "nan": "NaN",
    "infinite": "an infinite value",
    "too_large": "too large a value",
}


def value_facts(combined: pl.LazyFrame) -> pl.LazyFrame:
    """One row: for each kind of unusable deal value (UNUSABLE_VALUES), the lowest order id that has it, or null.

    Streaming aggregates over the combined rows, so they ride along in the pass that writes them.
    """
    value, order = pl.col("value"), pl.col("order_id")
    kinds = {
        "missing": value.is_null(),
        "nan": value.is_nan(),
        "infinite": value.is_infinite(),
        "too_large": value.is_finite() & (value.abs() >= VALUE_LIMIT),
    }
    return combined.select(**{kind: order.filter(bad).min() for kind, bad in kinds.items()})


def first_unusable_value(facts: Mapping[str, int | None]) -> tuple[int, str] | None:
    """From `value_facts`: (the lowest order id with an unusable value, what is wrong with it), or None."""
    found = [(order, UNUSABLE_VALUES[kind]) for kind, order in facts.items() if order is not None]
    return min(found, key=lambda item: item[0]) if found else None


def sums_fit(orders: Mapping[str, int | None], payments: Mapping[str, int | None]) -> bool:
    """From the checks' facts: True when no order's amount sum can leave Int64.

    A sum is at most the order's payment count times the largest amount in size (refunds are negative);
    only when that bound fails does `overflowing_sums` look for the order exactly.
    """
    most, largest, smallest = orders["most_payments"], payments["largest"], payments.get("smallest")
    if most is None or largest is None:
        return True
    size = max(abs(largest), abs(smallest if smallest is not None else 0))
    return most * size <= INT64_MAX


def overflowing_sums(payments: pl.LazyFrame) -> pl.LazyFrame:
    """Error path: the orders whose amounts sum beyond Int64 (order_id, amount_cents as Int128), by id."""
    total = pl.col("amount").cast(pl.Int128).sum()
    return (
        payments.group_by("order_id")
        .agg(amount_cents=total)
        .filter(~pl.col("amount_cents").is_between(INT64_MIN, INT64_MAX))
        .sort("order_id")
    )


def day_label(day: pl.Expr) -> pl.Expr:
    """A Date as its ISO text (YYYY-MM-DD) from the LABELLED_DAYS table, an Enum; null outside it."""
    offset = (LABELLED_DAYS[0] - date(1970, 1, 1)).days
    return (day.cast(pl.Int32) - offset).cast(pl.UInt32, strict=False).cat.to(_day_labels(), strict=False)


@functools.cache
def _day_labels() -> pl.Enum:
    return pl.Enum(pl.date_range(*LABELLED_DAYS, eager=True).dt.to_string("%Y-%m-%d"))


def beyond_range_is_exact(
    order_range: tuple[int, int], orders: Mapping[str, int | None], beyond: int, rejected_payments: int
) -> bool:
    """Whether the payments outside a guessed orders id range are exactly those whose order is missing.

    `orders` holds the orders' `source_checks` facts. If the guess is the true key range, every payment
    outside it has a missing order; if as many fall outside as payments have a missing order
    (`rejected_payments`, counted by the join), none inside it does.
    """
    return (orders["lo"], orders["hi"]) == order_range and beyond == rejected_payments


def source_checks(name: str, frame: pl.LazyFrame, rows: pl.Expr | None = None, **extra: pl.Expr) -> pl.LazyFrame:
    """One row of order-free streaming facts about a source's lines (those where `rows` holds).

    `rows`; `invalid`: lines lacking a required value; `lo`, `hi`: the key range; `key_hash`: the wrapping
    sum of the keys' hashes. `keys_unique` turns the last four into a uniqueness proof without holding a key
    set in memory. `extra` aggregates ride along in the same row.
    """
    keep = pl.lit(True) if rows is None else rows
    key = pl.col(KEY) if rows is None else pl.col(KEY).filter(rows)
    return frame.select(
        rows=(pl.len() if rows is None else rows.sum()).cast(pl.Int64),
        invalid=(keep & pl.any_horizontal(pl.col(c).is_null() for c in REQUIRED[name])).sum().cast(pl.Int64),
        lo=key.min(),
        hi=key.max(),
        key_hash=key.hash(_HASH_SEED).sum(),
        **extra,
    )


def keys_unique(facts: Mapping[str, int | None]) -> bool | None:
    """From `source_checks` facts (no missing keys): True if the keys are surely unique, False if some
    key surely repeats, None if only an exact search can tell.

    n keys within [lo, hi] with n = hi - lo + 1 are all distinct exactly when they are that whole
    range, which the hash sum confirms (a false match needs a 64-bit collision); more keys than the
    range holds must repeat. Sparse keys (n < hi - lo + 1) prove nothing.
    """
    rows, lo, hi = facts["rows"], facts["lo"], facts["hi"]
    if not rows or lo is None or hi is None:
        return True
    span = hi - lo + 1
    if rows > span:
        return False
    if rows < span:
        return None
    expected = pl.int_range(lo, hi + 1, dtype=pl.Int64, eager=True).hash(_HASH_SEED).sum()
    return bool(expected == facts["key_hash"])


def repetitive_names(sample: pl.DataFrame, *, most_distinct: float = 0.2) -> tuple[str, ...]:
    """The name columns of a customers sample whose values repeat enough to store as categoricals."""
    if sample.is_empty():
        return ()
    return tuple(
        name for name in ("first_name", "last_name") if sample[name].n_unique() <= most_distinct * sample.height
    )


def rejected_payments_for(payments: pl.LazyFrame, unknown_orders: pl.LazyFrame) -> pl.LazyFrame:
    """The payments whose order_id is among `unknown_orders`, with the reason."""
    return payments.join(unknown_orders.select("order_id"), on="order_id", how="semi").with_columns(_orphan_reason())


def _orphan_reason() -> pl.Expr:
    return pl.format("order {} does not exist", pl.col("order_id")).alias(REASON)


def first_duplicate(keys: pl.Series) -> int | None:
    """The first key that occurs twice, or None; sorted keys (the usual export) skip the hash pass."""
    if keys.is_sorted():
        repeated = keys.filter(keys.diff() == 0)
    elif keys.n_unique() == keys.len():
        return None
    else:
        repeated = keys.filter(keys.is_duplicated())
    return None if repeated.is_empty() else int(repeated[0])


def first_bad_value(name: str, text_frame: pl.LazyFrame) -> pl.LazyFrame:
    """Error path: the first row (with `row`, `column`, `problem`, `found`) whose text is missing, will
    not parse; `problem` says which.

    `text_frame` is the source scanned as strings with a `row` index column.
    """
    schema = SCHEMAS[name]
    columns: list[pl.Expr] = []
    problems: list[pl.Expr] = []
    for column, dtype in schema.items():
        text = pl.col(column)
        parsed = _parse(text, dtype)
        rules: list[tuple[pl.Expr, str]] = []
        if column in REQUIRED[name]:
            rules.append((text.is_null(), MISSING))
        if dtype != pl.String:
            rules.append((text.is_not_null() & parsed.is_null(), _PARSE_PROBLEMS.get(dtype, "not a whole number")))
        for bad, problem in rules:
            columns.append(pl.when(bad).then(pl.lit(column)))
            problems.append(pl.when(bad).then(pl.lit(problem)))
    return (
        text_frame.with_columns(column=pl.coalesce(columns), problem=pl.coalesce(problems))
        .filter(pl.col("column").is_not_null())
        .head(1)
        .select("row", "column", "problem", found=pl.struct(schema.names()))
    )


MISSING = "missing value"
_PARSE_PROBLEMS: Mapping[pl.DataType | type[pl.DataType], str] = {pl.Date: "not a date (YYYY-MM-DD)"}


def _parse(text: pl.Expr, dtype: pl.DataType | type[pl.DataType]) -> pl.Expr:
    if dtype == pl.Date:
        return text.str.to_date("%Y-%m-%d", strict=False)
    return text.cast(dtype, strict=False)
