"""Pure: the kinds of value a Pipedrive field takes, and for each how a source value becomes what is sent and compared.

One rule per kind, used by both sides of the diff: the desired value is normalised (`desired`) into the form the
field holds, the value read back is held in its `remote` form, and `differs` compares the two after the same
normalisation, so a re-run sends nothing. `to_api` turns a planned value into the JSON a v2 body carries.
A source value the field cannot hold is flagged (`desired(...).bad`): that row fails alone, naming the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from sync_job.transform import clean_text

Kind = Literal[
    "text",  # free text; compared after trimming and collapsing whitespace
    "varchar",  # text of at most 255 characters (a varchar custom field)
    "money",  # a deal value, compared and sent to the cent
    "currency",  # a 3-letter currency code
    "number",  # a double
    "integer",  # an id of an organization, pipeline or stage
    "user",  # a user id (owner)
    "date",  # YYYY-MM-DD
    "deal_status",  # open | won | lost
    "visibility",  # 1 | 3 | 5 | 7
    "marketing_status",  # no_consent | unsubscribed | subscribed | archived
    "person",  # a deal's person, planned as the person's external id, sent as the person's Pipedrive id
    "contact",  # a person's primary email address or phone number
    "enum",  # an enum custom field: planned as the option's label, sent as its id
    "set",  # a set custom field: planned as its labels (comma-separated, sorted), sent as their ids
    "monetary",  # a monetary custom field: an amount to the cent, sent with the record's currency
    "address",  # an address custom field: its text (`value`); Pipedrive fills the parts in
]

VARCHAR_LIMIT = 255  # api-reference §8.3
MONEY_DIGITS = 2  # deal values are kept to the cent
CHOICES: dict[Kind, tuple[str, ...] | tuple[int, ...]] = {
    "deal_status": ("open", "won", "lost"),
    "visibility": (1, 3, 5, 7),
    "marketing_status": ("no_consent", "unsubscribed", "subscribed", "archived"),
}
_TEXT_KINDS = frozenset({"text", "varchar"})
_FLOAT_KINDS = frozenset({"money", "number", "monetary"})
_CENT_KINDS = frozenset({"money", "monetary"})
SET_SEPARATOR = ","  # a set's labels in one source value: "red, blue" (a label cannot hold a comma)
_INT_KINDS = frozenset({"integer", "user", "visibility"})
_CURRENCY = r"^[A-Z]{3}$"

# Custom field types a mapping writes, and the kind of each (api-reference §8.2). `monetary`, `set`, `address`,
# `time`, `daterange`, `user`, `org`, `people` hold objects, lists or account ids: a mapping refuses them.
CUSTOM_KINDS: dict[str, Kind] = {
    "varchar": "varchar",
    "varchar_auto": "text",
    "text": "text",
    "phone": "text",
    "double": "number",
    "date": "date",
    "enum": "enum",
    "set": "set",
    "monetary": "monetary",
    "user": "user",  # a user's id
    "org": "integer",  # an organization's id
    "people": "integer",  # a person's id
    "address": "address",
}
# What `type:` may declare for a field the job creates.
CREATABLE_TYPES = ("varchar", "text", "double", "date", "enum", "set", "monetary", "address", "user", "org", "people")
OPTION_KINDS = frozenset({"enum", "set"})  # kinds whose values are option labels


def dtype(kind: Kind) -> pl.DataType:
    """The type of a planned (desired) value of this kind."""
    if kind in _FLOAT_KINDS:
        return pl.Float64()
    if kind in _INT_KINDS:
        return pl.Int64()
    return pl.Utf8()


def remote_dtype(kind: Kind) -> pl.DataType:
    """The type a value read back is held in (an enum's option id, a set's ids: not their labels)."""
    if kind == "enum":
        return pl.Int64()
    if kind == "set":
        return pl.List(pl.Int64())
    return dtype(kind)


@dataclass(frozen=True, slots=True)
class Desired:
    value: pl.Expr  # the normalised value, of `dtype(kind)`
    bad: pl.Expr  # true where the source gave a value this kind cannot hold


def desired(kind: Kind, expr: pl.Expr, source: pl.DataType) -> Desired:
    """A mapped expression's values normalised to the kind (see the module docstring)."""
    given = expr.is_not_null()
    if kind == "set":
        labels = (
            clean_text(_as_text(expr, source))
            .str.split(SET_SEPARATOR)
            .list.eval(pl.element().str.strip_chars().filter(pl.element() != ""))
            .list.unique()
            .list.sort()
        )
        joined = labels.list.join(SET_SEPARATOR)
        return Desired(pl.when(joined != "").then(joined), pl.lit(False))
    if kind in _TEXT_KINDS or kind == "enum":
        text = clean_text(_as_text(expr, source))
        value = text if kind != "enum" else pl.when(text != "").then(text)
        too_long = text.str.len_chars() > VARCHAR_LIMIT if kind == "varchar" else pl.lit(False)
        return Desired(value, too_long)
    if kind in _FLOAT_KINDS:
        number = expr.cast(pl.Float64, strict=False)
        bad = given & (number.is_null() | ~number.is_finite() | (number.abs() >= 1e16))
        if kind in _CENT_KINDS:  # 12.345 -> 12.35: the cent a deal holds; noise-free (see `cents`)
            # round(2) as well: Polars turns `/ 100` into `* 0.01`, and -201 * 0.01 is -2.0100000000000002
            number = (cents(pl.when(~bad).then(number)).cast(pl.Float64) / 100).round(2)
        return Desired(number, bad)
    if kind in _INT_KINDS:
        whole = _whole(expr, source)
        allowed = CHOICES.get(kind)
        bad = given & whole.is_null()
        if allowed is not None:
            bad = bad | (whole.is_not_null() & ~whole.is_in(list(allowed)))
        return Desired(whole, bad)
    if kind == "date":
        day = _day(expr, source)
        return Desired(day, given & day.is_null())
    if kind == "person":
        return Desired(_whole(expr, source).cast(pl.Utf8), given & _whole(expr, source).is_null())
    text = _as_text(expr, source).str.strip_chars()
    value = pl.when(text != "").then(text)
    if kind == "currency":
        return Desired(value, given & ~text.str.contains(_CURRENCY).fill_null(False))
    if kind in CHOICES:
        return Desired(value, value.is_not_null() & ~value.is_in(list(CHOICES[kind])))
    return Desired(value, pl.lit(False))  # contact, address


def canonical_remote(kind: Kind, column: pl.Expr, labels: Mapping[int, str] | None = None) -> pl.Expr:
    """A value read back in its comparable form: an enum's option id becomes its label (renames follow), a set's
    ids their labels sorted and joined."""
    table = dict(labels or {})
    if kind == "set":
        named = column.list.eval(
            pl.element().replace_strict(list(table), list(table.values()), default=None, return_dtype=pl.Utf8)
        )
        joined = named.list.sort().list.join(SET_SEPARATOR)
        return pl.when(joined != "").then(joined)
    if kind != "enum":
        return column
    # An option id the field no longer has (its option was deleted) compares unequal to every label.
    return column.replace_strict(list(table), list(table.values()), default=None, return_dtype=pl.Utf8)


def differs(kind: Kind, new: pl.Expr, old: pl.Expr) -> pl.Expr:
    """True where a planned value and the value read back differ after the kind's normalisation."""
    if kind == "money":
        return cents(new) != cents(old)
    if kind == "monetary":  # unlike a deal's value, an empty monetary field is empty, not 0
        return cents(new).ne_missing(cents(old)) | (new.is_null() != old.is_null())
    if kind in _TEXT_KINDS:
        return clean_text(new.cast(pl.Utf8)) != clean_text(old.cast(pl.Utf8))
    if kind in OPTION_KINDS:
        return clean_text(new).ne_missing(clean_text(old)) & (new.is_not_null() | old.is_not_null())
    if kind == "number":
        return new.round_sig_figs(15).ne_missing(old.round_sig_figs(15))
    return new.ne_missing(old)


def cents(value: pl.Expr) -> pl.Expr:
    """Money to whole cents, half away from zero; round(6) first removes float noise (12.345*100 = 1234.4999…)."""
    return (value.cast(pl.Float64).fill_null(0.0) * 100).round(6).round(0, mode="half_away_from_zero").cast(pl.Int64)


def money(value: float | int | None) -> float:
    """Currency units rounded to the cent exactly as `cents` compares them (half away from zero)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0.0
    scaled = round(float(value) * 100, 6)
    whole = math.floor(abs(scaled) + 0.5)
    return math.copysign(whole, scaled) / 100 if whole else 0.0


def to_api(kind: Kind, value: Any, options: Mapping[str, int] | None = None, currency: str = "USD") -> Any:
    """The JSON value a v2 body carries for a planned value (None clears a field)."""
    if kind == "money":
        return money(value)
    if value is None:
        return [] if kind == "contact" else None
    if kind == "monetary":
        return {"value": money(value), "currency": currency}
    if kind == "set":
        ids = [(options or {}).get(label(part)) for part in str(value).split(SET_SEPARATOR)]
        if None in ids:
            raise KeyError(value)
        return sorted(i for i in ids if i is not None)
    if kind in _TEXT_KINDS:
        return str(value)
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind in _INT_KINDS:
        return int(value)
    if kind == "contact":
        return [{"value": str(value), "primary": True, "label": "work"}]
    if kind == "address":
        return {"value": str(value)}
    if kind == "enum":
        option = (options or {}).get(label(value))
        if option is None:
            raise KeyError(value)
        return option
    return str(value)


def from_api(kind: Kind, value: Any) -> Any:
    """A value as the API sends it back, in the kind's remote form (see `remote_dtype`)."""
    if value is None:
        return None
    if kind == "contact":
        entries = [e for e in value if isinstance(e, dict)] if isinstance(value, list) else []
        primary = next((e for e in entries if e.get("primary")), entries[0] if entries else None)
        return None if primary is None else str(primary.get("value") or "") or None
    if kind == "enum":
        if isinstance(value, dict):  # include_option_labels=true: {id, label}
            value = value.get("id")
        return _int_or_none(value)
    if kind == "set":
        items = value if isinstance(value, list) else str(value).split(",")
        ids = [_int_or_none(i.get("id") if isinstance(i, dict) else i) for i in items]
        return sorted(i for i in ids if i is not None) or None
    if kind == "monetary":
        value = value.get("value") if isinstance(value, dict) else value
    if kind in _FLOAT_KINDS:
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    if kind in _INT_KINDS:
        if isinstance(value, dict):  # v1-style {id, name, value} objects
            value = value.get("id", value.get("value"))
        return _int_or_none(value)
    if kind == "date":
        return str(value)[:10]
    if kind == "address" and isinstance(value, dict):
        value = value.get("value")
        return None if value is None else str(value)
    return value if isinstance(value, str) else str(value)


def label(value: object) -> str:
    """An enum option's label as compared: trimmed, whitespace runs collapsed (what `clean_text` does)."""
    return " ".join(str(value).split())


def _int_or_none(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _as_text(expr: pl.Expr, source: pl.DataType) -> pl.Expr:
    if source == pl.Date:
        return expr.dt.strftime("%Y-%m-%d")
    if source.is_float():  # 3.0 is the number 3 to a person reading it: no trailing ".0" in a text field
        return (
            pl.when(expr == expr.round(0))
            .then(expr.cast(pl.Int64, strict=False).cast(pl.Utf8))
            .otherwise(expr.cast(pl.Utf8))
        )
    return expr.cast(pl.Utf8)


def _whole(expr: pl.Expr, source: pl.DataType) -> pl.Expr:
    """An integer, from an integer, an integral float or the text of either; null otherwise."""
    if source.is_integer():
        return expr.cast(pl.Int64)
    number = expr.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False) if not source.is_numeric() else expr
    number = number.cast(pl.Float64)
    return pl.when(number.is_finite() & (number == number.round(0)) & (number.abs() < 2**53)).then(
        number.cast(pl.Int64, strict=False)
    )


def _day(expr: pl.Expr, source: pl.DataType) -> pl.Expr:
    if source == pl.Date:
        return expr.dt.strftime("%Y-%m-%d")
    if isinstance(source, pl.Datetime):
        return expr.dt.date().dt.strftime("%Y-%m-%d")
    text = expr.cast(pl.Utf8).str.strip_chars()
    return text.str.to_date("%Y-%m-%d", strict=False).dt.strftime("%Y-%m-%d")
