"""Pure cursor paginator: what it asks for, when it stops, and loop detection."""

from __future__ import annotations

import pytest

from sync_job.errors import EXIT_PARTIAL
from sync_job.pipedrive.pagination import MAX_EMPTY_PAGES, PAGE_LIMIT, CursorPaginator, PagingBroken, next_cursor


def test_first_page_asks_for_500_without_cursor() -> None:
    assert CursorPaginator(where="GET /api/v2/persons").params() == {"limit": PAGE_LIMIT}
    assert PAGE_LIMIT == 500


def test_follows_the_cursor_and_stops_on_null() -> None:
    pager = CursorPaginator(where="GET /api/v2/deals")
    pager.advance("c1", 10)
    assert pager.params() == {"limit": 500, "cursor": "c1"}
    pager.advance("c2", 10)
    assert pager.params() == {"limit": 500, "cursor": "c2"}
    pager.advance(None, 10)
    assert pager.done
    assert pager.pages == 3


def test_a_cursor_seen_twice_is_a_loop_error_worth_a_later_run() -> None:
    pager = CursorPaginator(where="GET /api/v2/deals")
    pager.advance("c1", 10)
    pager.advance("c2", 10)
    with pytest.raises(PagingBroken, match=r"GET /api/v2/deals: the server returned cursor 'c1' twice") as caught:
        pager.advance("c1", 10)
    assert caught.value.exit_code == EXIT_PARTIAL


def test_empty_pages_that_keep_a_new_cursor_stop_the_paging() -> None:
    pager = CursorPaginator(where="GET /api/v2/persons")
    for n in range(MAX_EMPTY_PAGES - 1):
        pager.advance(f"c{n}", 0)
    with pytest.raises(PagingBroken, match=r"3 pages in a row had no records but a next cursor"):
        pager.advance("fresh", 0)


def test_an_empty_page_between_full_ones_is_tolerated() -> None:
    pager = CursorPaginator(where="GET /api/v2/persons")
    for n in range(3 * MAX_EMPTY_PAGES):
        pager.advance(f"c{n}", 0 if n % 2 else 500)
    pager.advance(None, 0)
    assert pager.done


def test_asking_after_the_end_is_a_bug() -> None:
    pager = CursorPaginator(where="x")
    pager.advance(None, 10)
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
