"""Pure: each value kind's normalisation; what is sent reads back as unchanged, and bad values are flagged."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from sync_job.pipedrive import kinds
from sync_job.pipedrive.kinds import Kind

OPTIONS = {"paid": 1, "shipped": 2, "Big deal": 3}
LABELS = {option: label for label, option in OPTIONS.items()}

# kind -> source values of one type, each of which a field of that kind can hold
GOOD: dict[Kind, list[Any]] = {
    "text": ["  Ann   Lee ", "Zoë", None],
    "varchar": ["x" * 255, ""],
    "money": [12.345, 2.675, 0.125, 19.99, None],
    "monetary": [12.345, 0.1 + 0.2, -3.0],
    "number": [1.0, 2.5, 1e15 + 0.5, None],
    "integer": [1, 7, None],
    "user": [1, 2],
    "date": ["2024-02-29", " 2024-01-01 ", None],
    "deal_status": ["open", "won", "lost"],
    "visibility": [1, 3, 5, 7],
    "marketing_status": ["subscribed", "no_consent"],
    "currency": ["USD", "EUR"],
    "contact": ["ann@example.com", None],
    "enum": ["paid", "  Big   deal ", None],
    "set": ["shipped, paid", "paid", None, ""],
    "address": [" 1 Main St, Springfield ", None],
}
BAD: dict[Kind, list[Any]] = {
    "varchar": ["x" * 256],
    "money": ["abc"],
    "number": ["1e400"],
    "integer": ["x", "1.5"],
    "date": ["2024-02-30", "soon"],
    "deal_status": ["done", "Won"],
    "visibility": [2],
    "marketing_status": ["maybe"],
    "currency": ["usd", "EURO"],
}


def normalise(kind: Kind, values: list[Any]) -> pl.DataFrame:
    source = pl.DataFrame({"x": values}, strict=False)
    result = kinds.desired(kind, pl.col("x"), source.schema["x"])
    return source.select(value=result.value.cast(kinds.dtype(kind)), bad=result.bad.fill_null(False))


@pytest.mark.parametrize("kind", list(GOOD))
def test_a_sent_value_reads_back_as_unchanged(kind: Kind) -> None:
    planned = normalise(kind, GOOD[kind])
    assert not planned["bad"].any()
    sent = [kinds.to_api(kind, v, OPTIONS) for v in planned["value"].to_list()]
    read_back = pl.Series("old", [kinds.from_api(kind, v) for v in sent], dtype=kinds.remote_dtype(kind))
    frame = planned.with_columns(read_back).with_columns(
        old=kinds.canonical_remote(kind, pl.col("old"), LABELS) if kind in kinds.OPTION_KINDS else pl.col("old")
    )
    changed = frame.select(kinds.differs(kind, pl.col("value"), pl.col("old")).fill_null(False))
    assert not changed.to_series().any(), frame


@pytest.mark.parametrize("kind", list(BAD))
def test_a_value_the_kind_cannot_hold_is_flagged(kind: Kind) -> None:
    assert normalise(kind, BAD[kind])["bad"].all()


def test_money_is_kept_to_the_cent_half_away_from_zero() -> None:
    assert normalise("money", [12.345, -2.005, 0.1 + 0.2])["value"].to_list() == [12.35, -2.01, 0.3]


def test_a_set_is_its_labels_trimmed_unique_and_sorted() -> None:
    assert normalise("set", [" shipped ,paid,paid", ",", None])["value"].to_list() == ["paid,shipped", None, None]


def test_a_renamed_enum_option_follows_and_a_deleted_one_differs() -> None:
    remote = pl.DataFrame({"old": [1, 9]})
    labels = remote.select(kinds.canonical_remote("enum", pl.col("old"), {1: "Paid in full"}))["old"].to_list()
    assert labels == ["Paid in full", None]
    differs = pl.DataFrame({"new": ["Paid in full", "x"], "old": labels}).select(
        kinds.differs("enum", pl.col("new"), pl.col("old"))
    )
    assert differs.to_series().to_list() == [False, True]


def test_an_unknown_option_label_cannot_be_sent() -> None:
    with pytest.raises(KeyError):
        kinds.to_api("enum", "refunded", OPTIONS)
    with pytest.raises(KeyError):
        kinds.to_api("set", "paid,refunded", OPTIONS)


def test_a_monetary_value_carries_the_currency_and_an_empty_one_clears_the_field() -> None:
    assert kinds.to_api("monetary", 12.345, currency="EUR") == {"value": 12.35, "currency": "EUR"}
    assert kinds.to_api("monetary", None) is None
    assert kinds.from_api("monetary", {"value": 2300, "currency": "EUR"}) == 2300.0
