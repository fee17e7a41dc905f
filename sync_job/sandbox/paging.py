"""Cursor pagination over sorted keys (pure): base64url JSON cursors like Pipedrive's, bisect seeks."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sync_job.sandbox.envelope import bad_request

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


def us_to_rfc3339(us: int) -> str:
    """Microsecond epoch -> RFC 3339 with 6 fractional digits, so updated_since never misses a write."""
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dt_to_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_limit(raw: str | None, maximum: int = MAX_LIMIT) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value for 'limit': {raw!r} is not an integer") from None
    if limit < 1 or limit > maximum:
        raise bad_request(f"Invalid value for 'limit': {limit} (allowed 1..{maximum})")
    return limit


def encode_cursor(field: str, field_value: object, direction: str, last_id: int) -> str:
    payload = {"field": field, "fieldValue": field_value, "sortDirection": direction, "id": last_id}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, field: str, direction: str) -> dict[str, Any]:
    """Decode and check that the cursor belongs to this sort; 400 otherwise (clients treat it as opaque)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad_request("Invalid value for 'cursor': not a cursor returned by this endpoint") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), int):
        raise bad_request("Invalid value for 'cursor': not a cursor returned by this endpoint")
    if payload.get("field") != field or payload.get("sortDirection") != direction:
        raise bad_request("Invalid value for 'cursor': it was issued for a different sort_by/sort_direction")
    return payload


def page(
    keys: Sequence[Any],
    *,
    after: Any,
    descending: bool,
    accept: Callable[[Any], bool],
    limit: int,
    lo: Any = None,
    hi: Any = None,
) -> tuple[list[Any], bool]:
    """Up to `limit` accepted keys after `after` (sort direction) within [lo, hi); and whether more exist.

    O(page + rejected keys skipped): the seek is a bisect, not a scan.
    """
    out: list[Any] = []
    n = len(keys)
    if not descending:
        i = 0 if after is None else bisect_right(keys, after)
        if lo is not None:
            i = max(i, bisect_left(keys, lo))
        while i < n:
            key = keys[i]
            if hi is not None and not key < hi:
                break
            if accept(key):
                if len(out) == limit:
                    return out, True
                out.append(key)
            i += 1
        return out, False
    i = (n if after is None else bisect_left(keys, after)) - 1
    if hi is not None:
        i = min(i, bisect_left(keys, hi) - 1)
    while i >= 0:
        key = keys[i]
        if lo is not None and key < lo:
            break
        if accept(key):
            if len(out) == limit:
                return out, True
            out.append(key)
        i -= 1
    return out, False
