"""The account's fixed users, pipelines and stages (pure): the seed that owner_id, pipeline_id and stage_id name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sync_job.sandbox.envelope import bad_request, not_found
from sync_job.sandbox.paging import decode_cursor, encode_cursor, parse_limit

# Constant, so every sandbox (and every test run) has the same ids and timestamps.
SEED_TIME = "2024-01-01T00:00:00Z"
TOKEN_USER_ID = 1  # the token's own user: the default owner and the creator of everything written through the API


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: int
    name: str
    order_nr: int

    def to_v2(self) -> dict[str, Any]:
        """GET /api/v2/pipelines item."""
        return {
            "id": self.id, "name": self.name, "order_nr": self.order_nr, "is_deleted": False,
            "is_deal_probability_enabled": False, "add_time": SEED_TIME, "update_time": SEED_TIME,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Stage:
    id: int
    pipeline_id: int
    name: str
    order_nr: int
    deal_probability: int

    def to_v2(self) -> dict[str, Any]:
        """GET /api/v2/stages item."""
        return {
            "id": self.id, "order_nr": self.order_nr, "name": self.name, "is_deleted": False,
            "deal_probability": self.deal_probability, "pipeline_id": self.pipeline_id, "is_deal_rot_enabled": False,
            "days_to_rotten": None, "add_time": SEED_TIME, "update_time": SEED_TIME,
        }  # fmt: skip


USERS = (
    User(TOKEN_USER_ID, "Sandbox Owner", "owner@sandbox.invalid"),
    User(2, "Second User", "second@sandbox.invalid"),
)
PIPELINES = (Pipeline(1, "Sales", 1), Pipeline(2, "Partners", 2))
# Pipeline 1 is the default one (a deal created without pipeline or stage lands in stage 1, like a new account).
STAGES: tuple[Stage, ...] = (
    Stage(1, 1, "Lead In", 1, 100),
    Stage(2, 1, "Contact Made", 2, 100),
    Stage(3, 1, "Proposal Made", 3, 100),
    Stage(4, 1, "Negotiations Started", 4, 100),
    Stage(5, 2, "Qualified", 1, 100),
    Stage(6, 2, "Signed", 2, 100),
)
USER_IDS = frozenset(u.id for u in USERS)
PIPELINE_BY_ID = {p.id: p for p in PIPELINES}
STAGE_BY_ID = {s.id: s for s in STAGES}
DEFAULT_PIPELINE_ID = PIPELINES[0].id


def first_stage(pipeline_id: int) -> Stage:
    return min((s for s in STAGES if s.pipeline_id == pipeline_id), key=lambda s: s.order_nr)


def placement(pipeline_id: int, stage_id: int, changes: dict[str, Any]) -> tuple[int, int]:
    """The deal's (pipeline_id, stage_id) after `changes`, from its current ones; ids are known to exist.

    The v2 spec is silent; Pipedrive's v1 documentation of the same fields says a pipeline "will be assigned
    automatically based on the stage_id" and that pipeline_id alone puts the deal in that pipeline's first stage.
    It also says pipeline_id is ignored when both are sent; the sandbox refuses a contradicting pair instead, so a
    mapping that sends both learns of the mismatch rather than having one value silently dropped.
    """
    if "stage_id" in changes:
        stage = STAGE_BY_ID[changes["stage_id"]]
        wanted = changes.get("pipeline_id", stage.pipeline_id)
        if wanted != stage.pipeline_id:
            raise bad_request(
                f"Invalid value for 'stage_id': stage {stage.id} belongs to pipeline {stage.pipeline_id}, not {wanted}"
            )
        return stage.pipeline_id, stage.id
    if "pipeline_id" in changes:
        wanted = changes["pipeline_id"]
        current = STAGE_BY_ID.get(stage_id)  # a hand-seeded deal may sit in a stage the catalog lacks
        if current is not None and current.pipeline_id == wanted:
            return wanted, stage_id  # already in that pipeline: the stage stays
        return wanted, first_stage(wanted).id
    return pipeline_id, stage_id


def _sorted(items: list[dict[str, Any]], query: Mapping[str, str], sort_keys: tuple[str, ...]) -> list[dict[str, Any]]:
    sort_by, direction = query.get("sort_by", "id"), query.get("sort_direction", "asc")
    if sort_by not in sort_keys:
        raise bad_request(f"Invalid value for 'sort_by': {sort_by!r} ({', '.join(sort_keys)})")
    if direction not in ("asc", "desc"):
        raise bad_request(f"Invalid value for 'sort_direction': {direction!r} (asc or desc)")
    # add_time and update_time are the same seed instant for every item: id breaks the tie
    return sorted(items, key=lambda item: (item[sort_by], item["id"]), reverse=direction == "desc")


def _page(items: list[dict[str, Any]], query: Mapping[str, str], name: str) -> tuple[list[dict[str, Any]], str | None]:
    """An offset cursor over a handful of items; `name` keeps one list's cursor out of the other."""
    limit = parse_limit(query.get("limit"))
    offset = int(decode_cursor(query["cursor"], name, "asc")["id"]) if query.get("cursor") else 0
    more = offset + limit < len(items)
    return items[offset : offset + limit], encode_cursor(name, offset + limit, "asc", offset + limit) if more else None


def list_pipelines(query: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    """GET /api/v2/pipelines."""
    items = _sorted([p.to_v2() for p in PIPELINES], query, ("id", "update_time", "add_time"))
    return _page(items, query, "pipelines")


def list_stages(query: Mapping[str, str]) -> tuple[list[dict[str, Any]], str | None]:
    """GET /api/v2/stages, optionally of one pipeline (an unknown pipeline has no stages, like a filter)."""
    stages = STAGES
    if "pipeline_id" in query:
        try:
            pipeline_id = int(query["pipeline_id"])
        except ValueError:
            raise bad_request(f"Invalid value for 'pipeline_id': {query['pipeline_id']!r} is not an integer") from None
        stages = tuple(s for s in STAGES if s.pipeline_id == pipeline_id)
    items = _sorted([s.to_v2() for s in stages], query, ("id", "update_time", "add_time", "order_nr"))
    return _page(items, query, "stages")


def get_pipeline(pipeline_id: int) -> dict[str, Any]:
    if pipeline_id not in PIPELINE_BY_ID:
        raise not_found("pipeline", pipeline_id)
    return PIPELINE_BY_ID[pipeline_id].to_v2()


def get_stage(stage_id: int) -> dict[str, Any]:
    if stage_id not in STAGE_BY_ID:
        raise not_found("stage", stage_id)
    return STAGE_BY_ID[stage_id].to_v2()
