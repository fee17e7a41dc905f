"""Pure: the part of a plan that fits in the tokens left today, in an order that makes a partial result useful.

The order: deals of the newest orders first (order date, then order id, descending), each deal after its person
(a person the plan creates or updates is taken with its first deal); then the person writes no taken deal needed.
The first write that does not fit ends the ration, so every day takes the next slice of one stable order.
A mirror run's deletes come after every create and update, deals' before persons', in id order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import polars as pl

from sync_job.destinations.base import EntityPlan, Plan
from sync_job.pipedrive.budget import COSTS

WRITE_TOKENS = COSTS["create"]  # a create and an update cost the same in v2
assert COSTS["update"] == WRITE_TOKENS
DELETE_TOKENS = COSTS["delete"]


@dataclass(frozen=True, slots=True)
class Ration:
    fits: Plan  # apply this today
    rest: Plan  # what is left for the next days (unchanged, duplicates and orphans stay in `fits`)

    @property
    def rest_tokens(self) -> int:
        return write_tokens(self.rest)


def write_tokens(plan: Plan) -> int:
    deletes = sum(e.deletes.height for e in plan.entities)
    return (plan.writes - deletes) * WRITE_TOKENS + deletes * DELETE_TOKENS


def days_needed(tokens: int, per_day: int, today: int | None = None) -> int:
    """Days to spend `tokens` at `per_day` a day when `today` tokens are left today (None: a whole day)."""
    if tokens <= 0:
        return 0
    first = per_day if today is None else today
    if tokens <= first:
        return 1
    return 1 + math.ceil((tokens - first) / max(1, per_day))


def ration(plan: Plan, order_dates: pl.DataFrame, tokens: int) -> Ration:
    """Split a (persons, deals) plan into what `tokens` pay for today and the rest.

    `order_dates` has the deals' `external_id` (text) and `order_date`.
    """
    persons, deals = plan.entities
    person_keys = _keys(persons).with_columns(pl.lit(True).alias("person_write"))
    deal_rows = pl.concat(
        [
            deals.creates.select("external_id", "person_external_id"),
            deals.updates.select("external_id", "person_external_id"),
        ]
    ).with_columns(pl.col("external_id").cast(pl.Utf8), pl.col("person_external_id").cast(pl.Utf8))
    dates = order_dates.select(pl.col("external_id").cast(pl.Utf8), pl.col("order_date"))
    ordered = (
        deal_rows.join(dates, on="external_id", how="left")
        .join(person_keys.rename({"external_id": "person_external_id"}), on="person_external_id", how="left")
        .with_columns(
            pl.col("person_write").fill_null(False),
            pl.col("external_id").cast(pl.Int64, strict=False).alias("__numeric"),
        )
        .sort(["order_date", "__numeric", "external_id"], descending=True, nulls_last=True)
        .with_columns((pl.col("person_write") & pl.col("person_external_id").is_first_distinct()).alias("takes_person"))
        .with_columns((WRITE_TOKENS * (1 + pl.col("takes_person").cast(pl.Int64))).cum_sum().alias("spent"))
    )
    taken = ordered.filter(pl.col("spent") <= tokens)
    left = tokens - int(taken["spent"][-1]) if taken.height else tokens
    deal_keys = set(taken["external_id"].to_list())
    person_done = set(taken.filter(pl.col("takes_person"))["person_external_id"].to_list())
    all_written = False
    if taken.height == ordered.height:  # every deal fits: persons no deal needed take what is left, in key order
        others = [k for k in sorted(_keys(persons)["external_id"].to_list(), key=_key_order) if k not in person_done]
        extra = others[: max(0, left // WRITE_TOKENS)]
        person_done.update(extra)
        left -= len(extra) * WRITE_TOKENS
        all_written = len(extra) == len(others)
    # Deletes only once every create and update fits: deals' first, so no deleted person keeps a deal.
    deal_deletes = deals.deletes.head(left // DELETE_TOKENS if all_written else 0)
    left -= deal_deletes.height * DELETE_TOKENS
    person_deletes = persons.deletes.head(left // DELETE_TOKENS if deal_deletes.height == deals.deletes.height else 0)
    fits = replace(
        plan,
        entities=(
            replace(_subset(persons, person_done, True), deletes=person_deletes),
            replace(_subset(deals, deal_keys, True), deletes=deal_deletes),
        ),
    )
    rest = replace(
        plan,
        entities=(
            replace(_subset(persons, person_done, False), deletes=persons.deletes.slice(person_deletes.height)),
            replace(_subset(deals, deal_keys, False), deletes=deals.deletes.slice(deal_deletes.height)),
        ),
    )
    return Ration(fits=fits, rest=rest)


def _keys(entity: EntityPlan) -> pl.DataFrame:
    return pl.concat(
        [
            entity.creates.select(pl.col("external_id").cast(pl.Utf8)),
            entity.updates.select(pl.col("external_id").cast(pl.Utf8)),
        ]
    )


def _key_order(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (0, key)


def _subset(entity: EntityPlan, keys: set[str], inside: bool) -> EntityPlan:
    """The entity plan with only the writes whose key is (or is not) in `keys`; counts stay with the `inside` part."""
    wanted = pl.col("external_id").cast(pl.Utf8).is_in(list(keys))
    keep = wanted if inside else ~wanted
    return replace(
        entity,
        creates=entity.creates.filter(keep),
        updates=entity.updates.filter(keep),
        unchanged=entity.unchanged if inside else 0,
        duplicates=entity.duplicates if inside else entity.duplicates.head(0),
        orphans=entity.orphans if inside else 0,
    )
