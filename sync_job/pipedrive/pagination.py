"""Pure cursor pagination state for v2 list endpoints: what to ask next, when to stop, loop detection."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sync_job.errors import Unavailable

PAGE_LIMIT = 500  # the v2 maximum; tokens are charged per request, not per item

# Pipedrive never sends an empty page that is not the last; a few in a row are tolerated (a filter may skip
# records deleted between two pages), more mean the server pages for ever and every page costs tokens.
MAX_EMPTY_PAGES = 3


class PagingBroken(Unavailable):
    """The server's cursor paging does not end (a repeated cursor, empty pages that keep a cursor): exit 1."""


@dataclass(slots=True)
class CursorPaginator:
    """Follows `next_cursor` until it is null; a cursor seen twice or a run of empty pages is an error."""

    where: str  # e.g. "GET /api/v2/persons", used in the error message only
    limit: int = PAGE_LIMIT
    cursor: str | None = None
    done: bool = False
    pages: int = 0
    empty_streak: int = 0
    _seen: set[str] = field(default_factory=set)

    def params(self) -> dict[str, str | int]:
        """Query parameters for the next page."""
        if self.done:
            raise RuntimeError(f"{self.where}: pagination already finished")
        params: dict[str, str | int] = {"limit": self.limit}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        return params

    def advance(self, cursor: str | None, items: int) -> None:
        """Record the page just read (`items` records) and the cursor it returned."""
        self.pages += 1
        if cursor is None:
            self.done = True
            self.cursor = None
            return
        self.empty_streak = self.empty_streak + 1 if items == 0 else 0
        if self.empty_streak >= MAX_EMPTY_PAGES:
            raise PagingBroken(
                f"{self.where}: {self.empty_streak} pages in a row had no records but a next cursor "
                f"(after {self.pages} pages); stopping instead of paging for ever, a later run may pass"
            )
        if cursor in self._seen:
            shown = cursor if len(cursor) <= 40 else cursor[:37] + "..."
            raise PagingBroken(
                f"{self.where}: the server returned cursor {shown!r} twice (after {self.pages} pages); "
                "stopping instead of looping, a later run may pass"
            )
        self._seen.add(cursor)
        self.cursor = cursor


def next_cursor(body: Any) -> str | None:
    """`additional_data.next_cursor` of a v2 list response; None (end) when absent or null."""
    if not isinstance(body, dict):
        return None
    extra = body.get("additional_data")
    if not isinstance(extra, dict):
        return None
    cursor = extra.get("next_cursor")
    return cursor if isinstance(cursor, str) and cursor else None
