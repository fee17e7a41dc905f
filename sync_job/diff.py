"""Pure diff: desired frames against remote frames, joined on the external id, give a plan (Polars only)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from sync_job import mapping
from sync_job.destinations.base import EntityPlan, Plan
from sync_job.errors import DataError
from sync_job.pipedrive import kinds
from sync_job.pipedrive.budget import COSTS
from sync_job.pipedrive.entities import Entity
from sync_job.pipedrive.kinds import Kind
from sync_job.pipedrive.pagination import PAGE_LIMIT
from sync_job.pipedrive.ratelimit import WINDOW_SECONDS

PERSON_COMPARE: dict[str, Kind] = {"name": "text"}
DEAL_COMPARE: dict[str, Kind] = {
    "title": "text",
    "value": "money",
    "currency": "currency",
    "person_external_id": "person",
}
_TWIN = "__key_int"

Frame = pl.DataFrame | pl.LazyFrame


def desired_persons(customers: Frame) -> pl.DataFrame:
    """The default mapping's persons: external_id = the customer id as text, name = "FirstName LastName".

    Accepts the validated customers frame with its id as `id` (read_customers) or `customer_id`.
    """
    frame = customers.lazy().collect()
    if "id" not in frame.columns:
        frame = frame.rename({"customer_id": "id"})
    return _default_desired("person", frame)


def desired_deals(combined: Frame, currency: str) -> pl.DataFrame:
    """The default mapping's deals: external_id = order id, title, value, currency and person by customer id."""
    return _default_desired("deal", combined.lazy().collect(), currency)


def _default_desired(entity: Entity, rows: pl.DataFrame, currency: str = "USD") -> pl.DataFrame:
    default = mapping.build({}, {"person": "", "deal": ""}, value="value", currency=currency).of(entity)
    field_kinds = {f.column: f.standard.kind for f in default.fields if f.standard is not None}
    wanted, invalid = mapping.desired(default, field_kinds, rows)
    if invalid.height:
        raise DataError(str(invalid["error"][0]))
    return wanted


def remote_deals_with_person_keys(remote_deals: Frame, remote_persons: Frame) -> pl.DataFrame:
    """Add `person_external_id` to remote deals: their person_id mapped through the remote persons' external ids."""
    persons = remote_persons.lazy().select(
        pl.col("id").cast(pl.Int64).alias("person_id"),
        pl.col("external_id").cast(pl.Utf8).str.strip_chars().alias("person_external_id"),
    )
    deals = remote_deals.lazy().with_columns(pl.col("person_id").cast(pl.Int64))
    return deals.join(persons, on="person_id", how="left", maintain_order="left").collect()


def diff(
    desired: Frame,
    remote: Frame,
    key: str = "external_id",
    compare: Sequence[str] | Mapping[str, Kind] = (),
    entity: str = "record",
    keep_when_empty: frozenset[str] = frozenset(),
) -> EntityPlan:
    """Diff desired rows against remote records on `key`; see EntityPlan for the frames it returns.

    Remote keys present twice or more are reported as duplicates and left alone (neither created nor updated).
    Remote records whose key is missing or has no desired row are orphans: counted, never touched.
    A column in `keep_when_empty` is left as it is where the desired value is empty (the API cannot empty it).
    """
    compare_kinds = dict(compare) if isinstance(compare, Mapping) else {c: _guess_kind(c) for c in compare}
    compare = list(compare_kinds)
    want = desired.lazy()
    columns = want.collect_schema().names()
    if key not in columns or any(c not in columns for c in compare):
        raise DataError(f"{entity}: desired frame lacks the key '{key}' or a compared column of {list(compare)}")
    desired_df = want.collect()
    remote_all = remote.lazy().select(
        pl.col("id").cast(pl.Int64), pl.col(key).cast(pl.Utf8).str.strip_chars(), *[pl.col(c) for c in compare]
    )
    remote_df = remote_all.filter(pl.col(key).is_not_null()).collect()
    null_keys = remote_all.select(pl.len()).collect().item() - remote_df.height  # not ours: orphans, untouched

    # Hashing text dominates the joins and uniqueness checks. When every desired key is a canonical integer (order
    # and customer ids are), use an Int64 twin; a remote key that is not one ("007", "7.0") gets a null twin and
    # matches nothing, exactly as the text would not.
    on = key
    twin = desired_df.select(_canonical_int(pl.col(key))).to_series()
    if twin.null_count() == 0:
        on = _TWIN
        desired_df = desired_df.with_columns(twin.alias(on))
        remote_df = remote_df.with_columns(_canonical_int(pl.col(key)).alias(on))
    if desired_df[on].n_unique() != desired_df.height:
        repeated = desired_df.filter(pl.col(key).is_duplicated())[key][0]
        raise DataError(f"{entity}: key '{key}' {repeated!r} occurs more than once in the source rows")

    duplicates, unique_remote, dup_records = _split_duplicates(remote_df, key, on)
    old = unique_remote.rename({c: f"old_{c}" for c in compare})
    right = old if on == key else old.drop(key)
    joined = desired_df.join(right, on=on, how="left", maintain_order="left").drop(_TWIN, strict=False)
    creates = joined.filter(pl.col("id").is_null()).select(columns)
    dup_in_source = 0
    if duplicates.height:
        dup_keys = duplicates.select(pl.col("key").alias(key))
        creates = creates.join(dup_keys, on=key, how="anti", maintain_order="left")
        dup_in_source = dup_records.join(desired_df.select(key), on=key, how="semi").height
    n_matched = joined.height - joined["id"].null_count()
    updates = _updates(joined, key, columns, compare_kinds, keep_when_empty)
    return EntityPlan(
        entity=entity,
        key=key,
        creates=creates,
        updates=updates,
        unchanged=n_matched - updates.height,
        duplicates=duplicates,
        orphans=remote_df.height - n_matched - dup_in_source + null_keys,
    )


def _canonical_int(text: pl.Expr) -> pl.Expr:
    """The key as Int64 where it reads back identically ("42"), else null ("042", "4.2", "x")."""
    number = text.cast(pl.Int64, strict=False)
    return pl.when(number.cast(pl.Utf8) == text).then(number)


def _split_duplicates(remote: pl.DataFrame, key: str, on: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(duplicates[key, ids], remote records with a unique key, records sharing a key); `on` hashes faster."""
    if remote[on].null_count():  # some keys are not canonical integers: group the text itself
        on = key
    if remote[on].n_unique() == remote.height:  # the common case, without building groups
        empty = pl.DataFrame(schema={"key": pl.Utf8, "ids": pl.List(pl.Int64)})
        return empty, remote, remote.head(0)
    counts = remote.group_by(on).agg(pl.len().alias("n")).filter(pl.col("n") > 1).select(on)
    shared = remote.join(counts, on=on, how="semi")
    duplicates = shared.group_by(key).agg(pl.col("id").sort().alias("ids")).sort(key)
    return duplicates.select(pl.col(key).alias("key"), "ids"), remote.join(counts, on=on, how="anti"), shared


def _guess_kind(column: str) -> Kind:
    return "money" if column == "value" else "text"


def diff_persons(
    desired: Frame,
    remote_persons: Frame,
    compare: Mapping[str, Kind] = PERSON_COMPARE,
    keep_when_empty: frozenset[str] = frozenset(),
) -> EntityPlan:
    """Persons compared on their mapped fields (by default the name)."""
    return diff(desired, remote_persons, compare=compare, entity="person", keep_when_empty=keep_when_empty)


def diff_deals(
    desired: Frame,
    remote_deals: Frame,
    remote_persons: Frame,
    compare: Mapping[str, Kind] = DEAL_COMPARE,
    keep_when_empty: frozenset[str] = frozenset(),
) -> EntityPlan:
    """Deals compared on their mapped fields (by default title, value to the cent, currency and the person)."""
    needed = ["id", "external_id", "person_id", *[c for c in compare if c != "person_external_id"]]
    remote = remote_deals.lazy().select(needed)
    if "person_external_id" in compare:
        remote = remote_deals_with_person_keys(remote, remote_persons).lazy()
    return diff(desired, remote, compare=compare, entity="deal", keep_when_empty=keep_when_empty)


def person_id_map(remote_persons: Frame, created: Frame | None = None) -> pl.DataFrame:
    """external_id -> Pipedrive person id, from the remote persons plus persons created in this run.

    A duplicated remote external id maps to its lowest id, so deals of that customer link deterministically.
    """
    frames = [
        remote_persons.lazy().select(pl.col("external_id").cast(pl.Utf8).str.strip_chars(), pl.col("id").cast(pl.Int64))
    ]
    if created is not None:
        frames.append(created.lazy().select(pl.col("external_id").cast(pl.Utf8), pl.col("id").cast(pl.Int64)))
    return (
        pl.concat(frames)
        .filter(pl.col("external_id").is_not_null() & pl.col("id").is_not_null())
        .group_by("external_id")
        .agg(pl.col("id").min())
        .collect()
    )


def resolve_person_ids(deal_rows: pl.DataFrame, person_ids: pl.DataFrame) -> pl.DataFrame:
    """Fill `person_id` on deal rows from `person_external_id` (null where the person has no id yet)."""
    ids = person_ids.select(
        pl.col("external_id").alias("person_external_id"), pl.col("id").cast(pl.Int64).alias("person_id")
    ).unique("person_external_id", keep="first")
    rows = deal_rows.drop("person_id", strict=False)
    return rows.join(ids, on="person_external_id", how="left", maintain_order="left")


def estimate(plan: Plan, remote_counts: Mapping[str, int], burst: int) -> tuple[int, float]:
    """API tokens and seconds the plan costs: reading every remote entity in pages of 500, then each write.

    `burst` is the account's request limit per 2-second window.
    """
    pages = sum(max(1, math.ceil(n / PAGE_LIMIT)) for n in remote_counts.values())
    creates = sum(e.creates.height for e in plan.entities)
    updates = sum(e.updates.height for e in plan.entities)
    deletes = sum(e.deletes.height for e in plan.entities)
    tokens = pages * COSTS["list"] + creates * COSTS["create"] + updates * COSTS["update"] + deletes * COSTS["delete"]
    requests = pages + creates + updates + deletes
    seconds = requests * WINDOW_SECONDS / max(1, burst)
    return tokens, seconds


def plan_summary(plan: Plan, sample: int = 5) -> dict[str, Any]:
    """Counts per entity and samples of creates and of updates (each changed field's old -> new), JSON-ready."""
    entities = []
    for e in plan.entities:
        updates = []
        for row in e.updates.head(sample).iter_rows(named=True):
            changes = {c: {"old": _json(row.get(f"old_{c}")), "new": _json(row.get(c))} for c in row["changed"]}
            updates.append({"key": row[e.key], "id": row["id"], "changes": changes})
        entities.append(
            {
                "entity": e.entity,
                "creates": e.creates.height,
                "updates": e.updates.height,
                "unchanged": e.unchanged,
                "duplicates": e.duplicates.height,
                "orphans": e.orphans,
                "deletes": e.deletes.height,
                "held_deletes": e.held.height,
                "skipped": e.skipped,
                "sample_creates": [
                    {k: _json(v) for k, v in row.items()} for row in e.creates.head(sample).iter_rows(named=True)
                ],
                "sample_updates": updates,
                "sample_deletes": [
                    {"key": r["external_id"], "id": r["id"]}
                    for r in pl.concat([e.deletes, e.held]).head(sample).iter_rows(named=True)
                ],
                "invalid": e.invalid.height,
                "sample_invalid": [r["error"] for r in e.invalid.head(sample).iter_rows(named=True)],
                "sample_duplicates": [
                    {"key": r["key"], "ids": list(r["ids"])} for r in e.duplicates.head(sample).iter_rows(named=True)
                ],
            }
        )
    return {
        "writes": plan.writes,
        "estimated_tokens": plan.estimated_tokens,
        "estimated_seconds": plan.estimated_seconds,
        "tokens_per_day": plan.tokens_per_day,
        "days_needed": plan.days_needed,
        "notes": list(plan.notes),
        "held_deletes": plan.held_line,
        # every delete listed, held ones included: what accepting them with --allow-deletes costs
        "delete_tokens": sum(e.deletes.height + e.held.height for e in plan.entities) * COSTS["delete"],
        "entities": entities,
    }


def _updates(
    joined: pl.DataFrame, key: str, columns: list[str], compare: Mapping[str, Kind], keep: frozenset[str]
) -> pl.DataFrame:
    """Rows found remotely whose compared fields differ after normalising; `changed` lists those fields."""
    out = [key, "id", *[c for c in columns if c != key], *[f"old_{c}" for c in compare]]
    if not compare:
        return joined.head(0).select(*out, pl.lit([], dtype=pl.List(pl.Utf8)).alias("changed")).head(0)
    # A cheap raw comparison first: only rows with some raw difference pay for normalisation.
    raw_diff = pl.any_horizontal([pl.col(c).ne_missing(pl.col(f"old_{c}")) for c in compare])
    flags = {
        f"__changed_{c}": kinds.differs(k, pl.col(c), pl.col(f"old_{c}")) & (pl.col(c).is_not_null() | (c not in keep))
        for c, k in compare.items()
    }
    changed = pl.concat_list([pl.when(pl.col(f)).then(pl.lit(c)) for f, c in zip(flags, compare, strict=True)])
    return (
        joined.lazy()
        .filter(pl.col("id").is_not_null() & raw_diff)
        .with_columns(**flags)
        .filter(pl.any_horizontal(list(flags)))
        .select(*out, changed.list.drop_nulls().alias("changed"))
        .collect()
    )


def _json(value: object) -> object:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 2)
    return value
