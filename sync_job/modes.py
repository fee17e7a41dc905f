"""Pure: sync modes (upsert, update, mirror) turn a diff's plan into what a run may do, with mirror's delete guard."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import polars as pl

from sync_job.config import EntitySettings, Mode
from sync_job.destinations.base import NO_DELETES, EntityPlan, Plan

ALLOW_DELETES_HINT = "sync-job run --allow-deletes"


def gone(desired: pl.DataFrame, remote: pl.DataFrame, key: str = "external_id") -> pl.DataFrame:
    """Remote records that carry an external id no desired row has: (external_id, id), in id order.

    A record without an external id (made by hand) is never one of them.
    """
    ours = remote.lazy().filter(_carries(key)).select(_external_id(key), pl.col("id").cast(pl.Int64))
    wanted = desired.lazy().select(pl.col(key).cast(pl.Utf8).alias("external_id"))
    return ours.join(wanted, on="external_id", how="anti").sort("id").collect()


def carrying_ids(remote: pl.DataFrame, key: str = "external_id") -> int:
    """How many remote records carry an external id: the guard's denominator."""
    return remote.select(_carries(key).sum()).item() or 0


def _external_id(key: str) -> pl.Expr:
    return pl.col(key).cast(pl.Utf8).str.strip_chars().alias("external_id")


def _carries(key: str) -> pl.Expr:
    """Whether a remote record carries an external id (a record made by hand has none)."""
    text = _external_id(key)
    return text.is_not_null() & (text != "")


def with_mode(plan: EntityPlan, mode: Mode, deletes: pl.DataFrame) -> EntityPlan:
    """The entity plan a mode allows: `update` turns creates into skips, `mirror` adds `deletes`."""
    if mode == "update":
        return replace(plan, creates=plan.creates.head(0), skipped=plan.creates.height)
    if mode == "mirror":
        return replace(plan, deletes=deletes.select("external_id", "id"))
    return plan


def keep_linked_persons(persons: EntityPlan, deals: EntityPlan, remote_deals: pl.DataFrame) -> tuple[EntityPlan, int]:
    """Persons still linked to a deal that stays (one made by hand, or one not deleted) are not deleted.

    Deleting the person would leave that deal pointing at a deleted contact. Returns the plan and how many stay.
    """
    if persons.deletes.is_empty():
        return persons, 0
    staying = remote_deals.lazy().select(pl.col("id").cast(pl.Int64), pl.col("person_id").cast(pl.Int64))
    staying = staying.join(deals.deletes.lazy().select("id"), on="id", how="anti").filter(
        pl.col("person_id").is_not_null()
    )
    linked = staying.select(pl.col("person_id").alias("id")).unique().collect()
    kept = persons.deletes.join(linked, on="id", how="anti", maintain_order="left")
    return replace(persons, deletes=kept), persons.deletes.height - kept.height


def guard(plan: Plan, carrying: Mapping[str, int], modes: Mapping[str, EntitySettings], allow: bool) -> Plan:
    """Hold every delete back when any entity's deletes exceed its max_delete_fraction (unless `allow`).

    The run then deletes nothing, applies the rest and ends partial with `held_line`, which says how many it
    would have deleted of how many and how to accept it.
    """
    over = [
        e
        for e in plan.entities
        if e.deletes.height and e.deletes.height > modes[e.entity].delete_fraction * carrying.get(e.entity, 0)
    ]
    if allow or not over:
        return plan
    parts = [
        f"{e.deletes.height} of {carrying.get(e.entity, 0)} {e.entity}s "
        f"(max_delete_fraction {modes[e.entity].delete_fraction:g})"
        for e in plan.entities
        if e.deletes.height
    ]
    line = (
        f"mirror would delete {' and '.join(parts)}: more than allowed, so every delete is held back (creates "
        f"and updates go on); if the source is complete, accept them with `{ALLOW_DELETES_HINT}`"
    )
    held = tuple(replace(e, deletes=NO_DELETES, held=e.deletes) for e in plan.entities)
    return replace(plan, entities=held, held_line=line)


def pipedrive_modes(
    persons: EntityPlan,
    deals: EntityPlan,
    desired: Mapping[str, pl.DataFrame],
    remote: Mapping[str, pl.DataFrame],
    modes: Mapping[str, EntitySettings],
) -> tuple[EntityPlan, EntityPlan, tuple[str, ...]]:
    """Persons and deals plans under their modes, plus notes; deletes of deals come before those of persons."""

    def deletes(entity: str) -> pl.DataFrame:  # only mirror deletes: spare the other modes an anti-join of the CRM
        return gone(desired[entity], remote[entity]) if modes[entity].mode == "mirror" else NO_DELETES

    deals = with_mode(deals, modes["deal"].mode, deletes("deal"))
    persons = with_mode(persons, modes["person"].mode, deletes("person"))
    persons, kept = keep_linked_persons(persons, deals, remote["deal"])
    notes = (
        (f"{kept} person(s) whose customer is gone stay: a deal that is not deleted still links to them",)
        if kept
        else ()
    )
    return persons, deals, notes
