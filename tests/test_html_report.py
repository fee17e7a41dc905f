"""The HTML run report: self-contained, and working in a real headless Chromium (console, charts, table)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from sync_job import html_report, sync
from sync_job.report import RunReport, write_report
from sync_job.sandbox.server import Sandbox
from tests import browser
from tests.e2e import TOKEN, settings_for, write_sources
from tests.pushgateway import require

SCREENSHOT_ENV = "SYNC_JOB_SCREENSHOT"  # where the screenshot test leaves its picture (default: pytest's tmp dir)


def _failure(i: int, outcome: str = "failed") -> dict[str, Any]:
    return {
        "entity": "deal" if i % 3 else "person",
        "external_id": str(1000 + i),
        "action": "update" if i % 2 else "create",
        "outcome": outcome,
        "destination_id": None,
        "status": 400 if outcome == "failed" else None,
        "error": f"value: must be a number (row {i})" if outcome == "failed" else "daily budget exhausted",
        "consecutive_failures": i % 4,
    }


def rich_report(run_id: str = "20260301T030000.000000Z-42", *, dry_run: bool = False) -> RunReport:
    """A partial run with everything the page can show: failures, 429s, retries, a token budget, phases."""
    report = RunReport(run_id=run_id, destination="pipedrive", dry_run=dry_run, status="partial", exit_code=1)
    report.started_at, report.ended_at = "2026-03-01T03:00:00.000+00:00", "2026-03-01T03:01:04.500+00:00"
    report.version, report.config_sha256 = "0.1.0", "ab" * 32
    report.message = "partial: 12 record(s) failed"
    report.sources = {"orders": {"uri": "https://exports.example.com/raw_orders.csv", "size": 8377, "etag": '"e1"'}}
    report.counts = {
        "person": {"create:ok": 120, "update:ok": 14, "create:failed": 4},
        "deal": {"create:ok": 230, "update:ok": 31, "update:failed": 6, "create:skipped": 2},
    }
    report.failures = [_failure(i) for i in range(10)] + [_failure(10, "skipped"), _failure(11, "skipped")]
    report.failures_total, report.repeated_failures = 12, 5
    report.durations = {"fetch": 1.2, "transform": 0.4, "read_and_diff": 6.8, "apply": 55.6}
    report.api = {
        "requests_total": 1460,
        "rate_limited_429": 3,
        "retries": 5,
        "tokens_used": 7420,
        "daily_remaining": 22580,
        "rate_limit_per_2s": 80,
        "rate_limit_wait_seconds": 12.5,
        "timeline": [[s, 38 + (s * 7) % 5, 1 if s in (9, 31, 50) else 0, 1 if s in (20, 44) else 0] for s in range(64)],
    }
    report.plan = {
        "entities": [
            {
                "entity": "deal",
                "creates": 232,
                "updates": 37,
                "unchanged": 0,
                "duplicates": 0,
                "sample_creates": [{"OrderID": "1201", "title": "Lovelace Ada", "value": 12.5}],
                "sample_updates": [{"key": "1002", "id": 77, "changes": {"value": {"old": 9.99, "new": 12.5}}}],
            }
        ]
    }
    return report


def earlier_runs(workdir: Path, n: int) -> None:
    """n earlier reports in WORKDIR/reports/ (the trend), each a little different."""
    for i in range(n):
        r = RunReport(run_id=f"202602{i + 1:02d}T030000.000000Z-{i}", destination="pipedrive", status="ok")
        r.started_at = f"2026-02-{i + 1:02d}T03:00:00+00:00"
        r.ended_at = f"2026-02-{i + 1:02d}T03:00:{20 + i:02d}+00:00"
        r.counts = {"deal": {"update:ok": 10 + (i * 5) % 17}}
        r.failures_total = i % 3
        r.api = {"tokens_used": 500 + 40 * i}
        write_report(r, workdir)


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    found = browser.find()
    require(found, browser.NO_BROWSER_REASON)
    assert found is not None
    with browser.chromium(*found) as session:
        yield session


def open_page(session: webdriver.Chrome, path: Path) -> None:
    session.get_log("browser")  # drop what earlier pages logged
    session.get(path.as_uri())


def severe_console_messages(session: webdriver.Chrome) -> list[str]:
    return [e["message"] for e in session.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def visible_rows(session: webdriver.Chrome) -> list[list[str]]:
    rows = session.find_elements(By.CSS_SELECTOR, "#failure-table tbody tr")
    return [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows if r.is_displayed()]


# ---- the page as text (no browser) --------------------------------------------------------------------------


def test_the_page_loads_nothing_from_outside_the_file() -> None:
    page = html_report.render(rich_report(), [], {})
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", page)
    assert "default-src 'none'" in page  # and the browser is told to refuse any request


def test_text_from_the_data_is_escaped_not_executed() -> None:
    report = rich_report()
    report.failures[0]["error"] = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    page = html_report.render(report, [], {"orders": [{"id": "<b>1</b>", "reason": "customer <i>9</i>"}]})
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert" in page
    assert "&lt;b&gt;1&lt;/b&gt;" in page


def test_a_run_writes_its_page_and_the_latest_copy(tmp_path: Path, sandbox: Sandbox) -> None:
    orders = [(10, 1, "2024-01-02", "placed"), (11, 9, "2024-01-02", "placed")]  # customer 9 does not exist
    write_sources(tmp_path, [(1, "Ada", "Lovelace")], orders, [(100, 10, "card", 1250)])
    settings = settings_for(tmp_path, sandbox.url)
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    page = settings.workdir / "reports" / f"{outcome.report.run_id}.html"
    assert outcome.report.paths["html"] == str(page)
    assert (settings.workdir / "report.html").read_text(encoding="utf-8") == page.read_text(encoding="utf-8")
    saved = json.loads((settings.workdir / "report.json").read_text(encoding="utf-8"))
    assert saved["paths"]["html"] == str(page)
    assert "customer 9 does not exist" in page.read_text(encoding="utf-8")  # a rejected row's sample
    # The requests/s chart's data: every request of the run, counted in the second it was answered.
    api = saved["api"]
    assert sum(answered for _, answered, _, _ in api["timeline"]) == api["requests_total"] > 0
    assert api["rate_limit_per_2s"] == 1000  # the sandbox fixture's burst, from x-ratelimit-limit


# ---- in a real browser --------------------------------------------------------------------------------------


def test_the_page_renders_its_charts_without_console_errors(chromium: webdriver.Chrome, tmp_path: Path) -> None:
    earlier_runs(tmp_path, 6)
    html_report.write(rich_report(), tmp_path)
    open_page(chromium, tmp_path / "report.html")
    assert severe_console_messages(chromium) == []
    charts = chromium.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 8  # counts, phases, requests/s, tokens, four trend lines
    for chart in charts:
        assert chart.size["width"] > 100
        assert chart.size["height"] > 20
    assert len(chromium.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")) > 64
    assert len(chromium.find_elements(By.CSS_SELECTOR, "svg circle.mark429")) == 3
    assert len(chromium.find_elements(By.CSS_SELECTOR, "svg rect.markretry")) == 2
    assert "rate limit 40/s" in chromium.find_element(By.CSS_SELECTOR, "svg line.limit + text").text
    trend_points = chromium.find_elements(By.CSS_SELECTOR, ".trend svg polyline")
    assert [len(p.get_attribute("points").split()) for p in trend_points] == [7, 7, 7, 7]  # 6 earlier + this run
    resources = chromium.execute_script("return performance.getEntriesByType('resource').length")
    assert resources == 0


def test_the_failure_table_filters_and_sorts(chromium: webdriver.Chrome, tmp_path: Path) -> None:
    html_report.write(rich_report(), tmp_path)
    open_page(chromium, tmp_path / "report.html")
    assert len(visible_rows(chromium)) == 12
    assert chromium.find_element(By.ID, "failure-count").text == "12 of 12 shown"

    chromium.find_element(By.ID, "failure-filter").send_keys("row 7")
    assert [r[1] for r in visible_rows(chromium)] == ["1007"]
    chromium.find_element(By.ID, "failure-filter").clear()
    chromium.find_element(By.ID, "failure-filter").send_keys(" ")  # clear() fires no input event
    Select(chromium.find_element(By.ID, "failure-outcome")).select_by_visible_text("skipped")
    assert sorted(r[1] for r in visible_rows(chromium)) == ["1010", "1011"]
    assert chromium.find_element(By.ID, "failure-count").text == "2 of 12 shown"

    Select(chromium.find_element(By.ID, "failure-outcome")).select_by_index(0)
    header = chromium.find_element(By.CSS_SELECTOR, "#failure-table th[data-col='6']")  # consecutive failures
    header.click()
    streaks = [int(r[6]) for r in visible_rows(chromium)]
    assert streaks == sorted(streaks)
    header.click()
    assert [int(r[6]) for r in visible_rows(chromium)] == sorted(streaks, reverse=True)
    assert severe_console_messages(chromium) == []


def test_a_dry_run_page_shows_the_planned_changes_old_to_new(chromium: webdriver.Chrome, tmp_path: Path) -> None:
    html_report.write(rich_report(dry_run=True), tmp_path)
    open_page(chromium, tmp_path / "report.html")
    plan = chromium.find_element(By.ID, "plan").text
    assert "deal 1002 update value 9.99 → 12.5" in plan
    assert "deal 1201 create" in plan


def test_screenshot_of_a_partial_run_for_a_person_to_look_at(chromium: webdriver.Chrome, tmp_path: Path) -> None:
    """Leaves a PNG (SYNC_JOB_SCREENSHOT or pytest's tmp dir); docs/report.png in the README is one of these."""
    earlier_runs(tmp_path, 29)
    html_report.write(rich_report(), tmp_path)
    open_page(chromium, tmp_path / "report.html")
    height = chromium.execute_script("return document.documentElement.scrollHeight")
    chromium.set_window_size(1280, min(int(height) + 200, 4000))  # the window's frame takes some of it
    target = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "report.png")
    assert chromium.save_screenshot(str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert severe_console_messages(chromium) == []


def test_a_real_runs_page_loads_cleanly(chromium: webdriver.Chrome, tmp_path: Path, sandbox: Sandbox) -> None:
    write_sources(tmp_path, [(1, "Ada", "Lovelace")], [(10, 1, "2024-01-02", "placed")], [(100, 10, "card", 1250)])
    settings = settings_for(tmp_path, sandbox.url)
    for _ in range(2):
        sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    open_page(chromium, settings.workdir / "report.html")
    assert severe_console_messages(chromium) == []
    assert chromium.find_element(By.ID, "outcome").text.startswith("OK · exit 0")
    assert len(chromium.find_elements(By.CSS_SELECTOR, ".trend svg polyline")) == 4


def test_the_demo_ends_by_printing_the_html_reports_path(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sync_job.cli import app

    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "demo"), "--log-format", "json"])
    assert result.exit_code == 0, result.stderr
    last = json.loads(result.stderr.strip().splitlines()[-1])["message"]
    assert last.startswith("demo: HTML report -> ")
    page = Path(last.removeprefix("demo: HTML report -> "))
    assert page.is_file()
    assert page.parent == tmp_path / "demo" / "reports"


def test_a_long_runs_requests_per_second_are_drawn_in_at_most_600_averaged_columns() -> None:
    from sync_job import charts

    three_hours = [[s, 40, 1 if s == 5000 else 0, 0] for s in range(3 * 3600)]
    svg = str(charts.rate(three_hours, 50.0, "requests"))
    titles = re.findall(r"<title>(\d+) s: ([\d.]+) requests/s</title>", svg)
    assert len(titles) == 600
    assert {rate for _, rate in titles} == {"40"}  # 18 s per column, 40 requests in each second
    assert svg.count('class="mark429"') == 1
