"""Deal rules that need the record as it was (pure): status times, archiving, the pipeline that follows the stage."""

from __future__ import annotations

from typing import Any

from sync_job.sandbox import catalog
from sync_job.sandbox.envelope import bad_request
from sync_job.sandbox.paging import us_to_rfc3339


def apply_rules(record: dict[str, Any], changes: dict[str, Any], now: int) -> None:
    """Check `changes` against the deal's resulting state; set what follows in `record` and `changes` (both mutated).

    Status rules are the spec's field descriptions (lost_reason "can only be set if deal status is lost", and so on).
    """
    status = changes.get("status", record["status"])
    if changes.get("lost_reason") is not None and status != "lost":
        raise bad_request("'lost_reason' can only be set when the deal status is lost")
    if "won_time" in changes and status != "won":
        raise bad_request("'won_time' can only be set when the deal status is won")
    if "lost_time" in changes and status != "lost":
        raise bad_request("'lost_time' can only be set when the deal status is lost")
    if changes.get("close_time") is not None and status == "open":
        raise bad_request("'close_time' can only be set when the deal status is won or lost")
    if "status" in changes and changes["status"] != record["status"]:
        # A deal carries only the times of its current status: a lost deal has no won_time left over.
        record.update(won_time=None, lost_time=None, close_time=None, lost_reason=None)
        if status != "open":
            stamp = us_to_rfc3339(now)
            record.update(close_time=stamp, **{f"{status}_time": stamp})
    if f"{status}_time" in changes and "close_time" not in changes:
        changes["close_time"] = changes[f"{status}_time"]  # a given won/lost time is also when the deal closed
    _archive(record, changes, now)
    if "pipeline_id" in changes or "stage_id" in changes:
        changes["pipeline_id"], changes["stage_id"] = catalog.placement(
            record["pipeline_id"], record["stage_id"], changes
        )
        if changes["stage_id"] != record["stage_id"]:
            record["stage_change_time"] = us_to_rfc3339(now)


def _archive(record: dict[str, Any], changes: dict[str, Any], now: int) -> None:
    """archive_time goes with is_archived; when omitted it is "set to the current date and time" (spec)."""
    archived = changes.get("is_archived", record["is_archived"])
    if changes.get("archive_time") is not None and not archived:
        raise bad_request("'archive_time' can only be set when the deal is archived (is_archived true)")
    if "is_archived" in changes and changes["is_archived"] != record["is_archived"]:
        stamp = us_to_rfc3339(now)
        record["archive_time"] = f"{stamp[:10]} {stamp[11:19]}" if archived else None  # the spec's format
