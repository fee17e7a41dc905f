"""Pure cursor pagination state for v2 list endpoints: what to ask next, when to stop, loop detection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_job.errors import SourceError

PAGE_LIMIT = 500  # the v2 maximum; tokens are charged per request, not per item


def next_cursor(body: Any) -> str | None:
    """`additional_data.next_cursor` of a v2 list response; None (end) when absent or null."""
    if not isinstance(body, dict):
        return None
    extra = body.get("additional_data")
    if not isinstance(extra, dict):
        return None
    cursor = extra.get("next_cursor")
    return cursor if isinstance(cursor, str) and cursor else None


@dataclass(slots=True)
class CursorPaginator:
    """Follows `next_cursor` until it is null; a cursor seen twice means the server loops, which is an error."""

    where: str  # e.g. "GET /api/v2/persons", used in the error message only
    limit: int = PAGE_LIMIT
    cursor: str | None = None
    done: bool = False
    pages: int = 0
    _seen: set[str] = field(default_factory=set)

    def params(self) -> dict[str, str | int]:
        """Query parameters for the next page."""
        if self.done:
            raise RuntimeError(f"{self.where}: pagination already finished")
        params: dict[str, str | int] = {"limit": self.limit}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        return params

    def advance(self, cursor: str | None) -> None:
        """Record the page just read and the cursor it returned."""
        self.pages += 1
        if cursor is None:
            self.done = True
            self.cursor = None
            return
        if cursor in self._seen:
            shown = cursor if len(cursor) <= 40 else cursor[:37] + "..."
            raise SourceError(
                f"{self.where}: the server returned cursor {shown!r} twice (after {self.pages} pages); "
                "stopping instead of looping"
            )
        self._seen.add(cursor)
        self.cursor = cursor
