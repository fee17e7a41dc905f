"""Pure cursor paginator: what it asks for, when it stops, and loop detection."""

from __future__ import annotations

import pytest

from sync_job.errors import SourceError
from sync_job.pipedrive.pagination import PAGE_LIMIT, CursorPaginator, next_cursor


def test_first_page_asks_for_500_without_cursor() -> None:
    assert CursorPaginator(where="GET /api/v2/persons").params() == {"limit": PAGE_LIMIT}
    assert PAGE_LIMIT == 500


def test_follows_the_cursor_and_stops_on_null() -> None:
    pager = CursorPaginator(where="GET /api/v2/deals")
    pager.advance("c1")
    assert pager.params() == {"limit": 500, "cursor": "c1"}
    pager.advance("c2")
    assert pager.params() == {"limit": 500, "cursor": "c2"}
    pager.advance(None)
    assert pager.done
    assert pager.pages == 3


def test_a_cursor_seen_twice_is_a_loop_error() -> None:
    pager = CursorPaginator(where="GET /api/v2/deals")
    pager.advance("c1")
    pager.advance("c2")
    with pytest.raises(SourceError, match=r"GET /api/v2/deals: the server returned cursor 'c1' twice"):
        pager.advance("c1")


def test_asking_after_the_end_is_a_bug() -> None:
    pager = CursorPaginator(where="x")
    pager.advance(None)
    with pytest.raises(RuntimeError):
        pager.params()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"additional_data": {"next_cursor": "abc"}}, "abc"),
        ({"additional_data": {"next_cursor": None}}, None),
        ({"additional_data": {"next_cursor": ""}}, None),
        ({"additional_data": None}, None),
        ({"data": []}, None),
        ([], None),
    ],
)
def test_next_cursor_reads_additional_data(body: object, expected: str | None) -> None:
    assert next_cursor(body) == expected
