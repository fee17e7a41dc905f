"""Pure parts of the safe-create re-read: which records to list, and which one carries the external id."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from sync_job.pipedrive.field_types import NEW_FIELD_TYPE, canonical

# How far before the lost POST the consistent re-read starts: our clock vs the server's `update_time`.
SKEW_WITH_DATE = 5.0  # the server's Date header (1 s resolution) told us its clock
SKEW_WITHOUT_DATE = 120.0


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_clock(local_epoch: float, date_header: str | None, received_at: float | None) -> float | None:
    """Our wall-clock instant in the server's clock, from its last Date header; None without a usable one."""
    if date_header is None or received_at is None:
        return None
    try:
        offset = parsedate_to_datetime(date_header).timestamp() - received_at
    except (TypeError, ValueError):
        return None
    return local_epoch + offset


def server_since(local_epoch: float, date_header: str | None, received_at: float | None) -> float:
    """Our wall-clock instant in the server's clock (from its last Date header), minus a safety margin."""
    server = server_clock(local_epoch, date_header, received_at)
    if server is not None:
        return server - SKEW_WITH_DATE
    return local_epoch - SKEW_WITHOUT_DATE


def reread_params(since: float, field_code: str) -> dict[str, str]:
    """List parameters for "everything updated since the POST was sent", oldest first (the list is consistent)."""
    return {
        "updated_since": rfc3339(since),
        "sort_by": "update_time",
        "sort_direction": "asc",
        "custom_fields": field_code,
    }


def find_external_id(
    records: list[dict[str, Any]], field_code: str, external_id: str, field_type: str = NEW_FIELD_TYPE
) -> int | None:
    """The id of the first record whose custom field holds `external_id` (compared as field_types.canonical)."""
    for record in records:
        fields = record.get("custom_fields")
        if isinstance(fields, dict) and canonical(field_type, fields.get(field_code)) == external_id:
            return int(record["id"])
    return None
