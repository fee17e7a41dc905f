"""Run history: what a report records, `sync-job history` and `show`, pruning after history.keep_days."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sync_job import __version__, history, sync
from sync_job.cli import app
from sync_job.config import fingerprint
from sync_job.errors import EXIT_INPUT, DataError
from sync_job.report import RunReport, describe_sources
from sync_job.sandbox.server import Sandbox
from sync_job.sources.base import FetchedSource
from tests.e2e import TOKEN, config_file, settings_for, write_sources, writes

CUSTOMERS = [(1, "Ada", "Lovelace"), (2, "Alan", "Turing")]
ORDERS = [(10, 1, "2024-01-02", "placed"), (11, 2, "2024-01-03", "shipped")]
PAYMENTS = [(100, 10, "card", 1250), (101, 11, "cash", 999)]


def _report(run_id: str, **changes: object) -> RunReport:
    report = RunReport(run_id=run_id, destination="pipedrive", started_at="2026-01-01T03:00:00+00:00")
    report.ended_at = "2026-01-01T03:00:12.500+00:00"
    for key, value in changes.items():
        setattr(report, key, value)
    return report


def test_a_report_records_utc_times_version_config_hash_and_each_sources_size_and_checksum(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = settings_for(tmp_path, sandbox.url)
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    saved = json.loads((settings.workdir / "reports" / f"{outcome.report.run_id}.json").read_text(encoding="utf-8"))
    started, ended = datetime.fromisoformat(saved["started_at"]), datetime.fromisoformat(saved["ended_at"])
    assert started.utcoffset() == ended.utcoffset() == UTC.utcoffset(None)
    assert started <= ended
    assert saved["version"] == __version__
    assert saved["config_sha256"] == fingerprint(settings)
    orders = tmp_path / "raw_orders.csv"
    assert saved["sources"]["orders"] == {
        "uri": str(orders),
        "size": orders.stat().st_size,
        "sha256": hashlib.sha256(orders.read_bytes()).hexdigest(),
    }


def test_a_downloaded_source_is_identified_by_its_etag_instead_of_a_checksum(tmp_path: Path) -> None:
    path = tmp_path / "raw_orders.csv"
    path.write_bytes(b"id,user_id,order_date,status\n")
    fetched = {
        "orders": FetchedSource("orders", "https://exports.example.com/raw_orders.csv", path, True, 29, etag='"abc123"')
    }
    facts = describe_sources(fetched)
    assert facts == {"orders": {"uri": "https://exports.example.com/raw_orders.csv", "size": 29, "etag": '"abc123"'}}


def test_history_lists_runs_newest_first_with_their_writes_and_show_prints_one_run(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    config = config_file(tmp_path, sandbox.url)
    env = {"PIPEDRIVE_API_TOKEN": TOKEN}
    runner = CliRunner()
    assert runner.invoke(app, ["run", "--config", str(config), "--log-format", "json"], env=env).exit_code == 0
    assert runner.invoke(app, ["run", "--config", str(config), "--log-format", "json"], env=env).exit_code == 0

    listed = runner.invoke(app, ["history", "--config", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["creates"] for r in rows] == [0, 4]  # newest first: the second run had nothing to do
    assert rows[0]["started_at"] > rows[1]["started_at"]
    assert all(r["status"] == "ok" and r["exit_code"] == 0 and r["tokens"] > 0 for r in rows)

    table = runner.invoke(app, ["history", "--config", str(config), "--limit", "1"])
    lines = table.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["started", "(UTC)", "status"]
    assert rows[0]["run_id"] in lines[1]

    shown = runner.invoke(app, ["show", rows[1]["run_id"], "--config", str(config)])
    assert shown.exit_code == 0
    assert f"run {rows[1]['run_id']}: ok (exit 0)" in shown.stdout
    assert "person: create:ok 2" in shown.stdout
    assert TOKEN not in listed.stdout + table.stdout + shown.stdout


def test_show_of_an_unknown_run_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    result = CliRunner().invoke(app, ["show", "19990101", "--config", str(config_file(tmp_path, "http://127.0.0.1:9"))])
    assert result.exit_code == EXIT_INPUT
    assert result.stderr.count("\n") == 1
    assert "no run '19990101'" in result.stderr


def test_a_run_stopped_by_bad_input_is_in_the_history_as_failed_with_its_reason(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, [(100, 10, "card", "ten")])
    settings = settings_for(tmp_path, sandbox.url)
    with pytest.raises(DataError, match="not a whole number"):
        sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    (only,) = history.load(settings.workdir)
    assert (only.status, only.exit_code) == ("failed", EXIT_INPUT)
    assert "not a whole number" in only.message
    assert writes(sandbox) == 0


def test_show_lists_the_runs_failures() -> None:
    failure = {"entity": "deal", "external_id": "11", "action": "create", "outcome": "failed", "status": 400}
    report = _report("20260101T030000.000000Z-1", status="partial", exit_code=1, failures_total=1)
    report.failures = [{**failure, "error": "value: must be a number"}]
    text = history.details(report)
    assert "run 20260101T030000.000000Z-1: partial (exit 1)" in text
    assert "duration 12.5 s" in text
    assert "  deal 11 create failed HTTP 400: value: must be a number" in text


def test_expired_picks_runs_older_than_keep_days_and_ignores_foreign_names() -> None:
    now = datetime(2026, 4, 1, tzinfo=UTC)
    ids = ["20251231T235959.000000Z-1", "20260102T000000.000000Z-2", "20260331T000000.000000Z-3", "notes"]
    assert history.expired(ids, now, keep_days=90) == ["20251231T235959.000000Z-1"]


def test_prune_deletes_reports_results_and_plans_of_old_runs_only(tmp_path: Path) -> None:
    old, new = "20250101T000000.000000Z-1", "20260301T000000.000000Z-2"
    kept_files = [tmp_path / "report.json", tmp_path / "state" / "failure_streaks.json"]
    run_files = {
        run: [
            tmp_path / "reports" / f"{run}.json",
            tmp_path / "reports" / f"{run}.html",
            tmp_path / "results" / f"{run}.csv",
            tmp_path / "plans" / f"{run}.csv",
        ]
        for run in (old, new)
    }
    for path in [*kept_files, *run_files[old], *run_files[new]]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")
    deleted = history.prune(tmp_path, keep_days=90, now=datetime(2026, 3, 2, tzinfo=UTC))
    assert sorted(deleted) == sorted(run_files[old])
    assert all(p.exists() for p in [*kept_files, *run_files[new]])


def test_history_keep_days_must_be_positive(tmp_path: Path) -> None:
    from sync_job.errors import ConfigError

    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    with pytest.raises(ConfigError, match=r"history\.keep_days"):
        settings_for(tmp_path, "http://127.0.0.1:9", history={"keep_days": 0})


def test_an_unreadable_report_is_left_out_of_the_history_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from sync_job.report import write_report

    write_report(_report("20260101T030000.000000Z-1", status="ok"), tmp_path)
    (tmp_path / "reports" / "20260102T030000.000000Z-2.json").write_text("{not json", encoding="utf-8")
    assert [r.run_id for r in history.load(tmp_path)] == ["20260101T030000.000000Z-1"]
    assert "skipping unreadable report" in caplog.text


def test_a_run_with_the_null_reporter_writes_only_the_json_report(tmp_path: Path, sandbox: Sandbox) -> None:
    from sync_job.reporters import NullReporter

    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = settings_for(tmp_path, sandbox.url)
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url, reporter=NullReporter()))
    assert outcome.exit_code == 0
    assert sorted(p.name for p in (settings.workdir / "reports").iterdir()) == [f"{outcome.report.run_id}.json"]
    assert not (settings.workdir / "report.html").exists()


def test_a_run_is_handed_to_the_reporter_once_even_when_the_reporter_fails(tmp_path: Path, sandbox: Sandbox) -> None:
    from sync_job.config import Settings

    class Failing:
        def __init__(self) -> None:
            self.written: list[str] = []

        def write(self, report: RunReport, settings: Settings) -> None:
            self.written.append(report.status)

        def publish(self, report: RunReport, settings: Settings) -> None:
            raise RuntimeError("the reporter broke")

    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    reporter = Failing()
    with pytest.raises(RuntimeError, match="the reporter broke"):
        sync.run(
            settings_for(tmp_path, sandbox.url), sync.RunOptions(token=TOKEN, base_url=sandbox.url, reporter=reporter)
        )
    assert reporter.written == ["ok"]
