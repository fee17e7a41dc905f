"""Pure sync-mode decisions: which records mirror deletes, the delete guard, and persons a staying deal keeps."""

from __future__ import annotations

import polars as pl

from sync_job import modes
from sync_job.config import EntitySettings
from sync_job.destinations.base import NO_DELETES, EntityPlan, Plan


def entity_plan(entity: str, creates: int = 0, deletes: list[tuple[str, int]] | None = None) -> EntityPlan:
    rows = pl.DataFrame({"external_id": [str(i) for i in range(creates)]}, schema={"external_id": pl.Utf8})
    gone = pl.DataFrame(deletes or [], schema=NO_DELETES.schema, orient="row")
    return EntityPlan(entity, "external_id", rows, rows.head(0), 0, pl.DataFrame(), deletes=gone)


MIRROR = {"person": EntitySettings(mode="mirror"), "deal": EntitySettings(mode="mirror")}


def test_gone_lists_only_remote_records_with_an_external_id_no_source_row_has() -> None:
    desired = pl.DataFrame({"external_id": ["1", "2"]})
    remote = pl.DataFrame({"id": [10, 11, 12, 13, 14], "external_id": ["1", " 2 ", "3", None, ""]})
    assert modes.gone(desired, remote).rows() == [("3", 12)]


def test_carrying_ids_counts_records_with_a_non_blank_external_id() -> None:
    remote = pl.DataFrame({"id": [1, 2, 3, 4], "external_id": ["1", None, " ", "9"]})
    assert modes.carrying_ids(remote) == 2


def test_update_mode_turns_creates_into_skips_and_upsert_keeps_them() -> None:
    plan = entity_plan("deal", creates=3)
    updated = modes.with_mode(plan, "update", NO_DELETES)
    assert (updated.creates.height, updated.skipped) == (0, 3)
    assert modes.with_mode(plan, "upsert", pl.DataFrame({"external_id": ["x"], "id": [1]})).deletes.is_empty()


def test_the_guard_lets_deletes_up_to_the_fraction_through() -> None:
    plan = Plan((entity_plan("person"), entity_plan("deal", deletes=[("1", 1), ("2", 2)])))
    assert modes.guard(plan, {"person": 20, "deal": 20}, MIRROR, allow=False) == plan


def test_the_guard_holds_every_delete_when_one_entity_exceeds_its_fraction() -> None:
    persons = entity_plan("person", deletes=[("5", 50)])
    deals = entity_plan("deal", deletes=[("1", 1), ("2", 2), ("3", 3)])
    held = modes.guard(Plan((persons, deals)), {"person": 20, "deal": 20}, MIRROR, allow=False)
    assert [e.deletes.height for e in held.entities] == [0, 0]
    assert [e.held.height for e in held.entities] == [1, 3]
    assert held.held_line == (
        "mirror would delete 1 of 20 persons (max_delete_fraction 0.1) and 3 of 20 deals (max_delete_fraction 0.1): "
        "more than allowed, so every delete is held back (creates and updates go on); if the source is complete, "
        "accept them with `sync-job run --allow-deletes`"
    )


def test_allow_deletes_lets_the_guard_pass_everything() -> None:
    plan = Plan((entity_plan("person"), entity_plan("deal", deletes=[("1", 1), ("2", 2), ("3", 3)])))
    assert modes.guard(plan, {"person": 0, "deal": 3}, MIRROR, allow=True) == plan


def test_a_fraction_of_zero_holds_any_delete() -> None:
    settings = {"person": EntitySettings(mode="mirror", max_delete_fraction=0), "deal": MIRROR["deal"]}
    plan = Plan((entity_plan("person", deletes=[("1", 1)]), entity_plan("deal")))
    assert modes.guard(plan, {"person": 1000, "deal": 0}, settings, allow=False).held_line


def test_a_person_a_staying_deal_links_to_is_not_deleted() -> None:
    persons = entity_plan("person", deletes=[("1", 100), ("2", 200)])
    deals = entity_plan("deal", deletes=[("9", 900)])
    remote_deals = pl.DataFrame({"id": [900, 901], "person_id": [100, 200]})  # 901: made by hand, stays
    kept, stay = modes.keep_linked_persons(persons, deals, remote_deals)
    assert kept.deletes.rows() == [("1", 100)]
    assert stay == 1
