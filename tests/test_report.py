"""Failure streaks across runs, kept in WORKDIR/state/failure_streaks.json by the ResultCollector."""

from __future__ import annotations

import json
from pathlib import Path

from sync_job.destinations.base import Outcome, RecordResult
from sync_job.report import ResultCollector, RunReport, new_run_id


def _run(workdir: Path, *outcomes: tuple[str, Outcome]) -> dict[str, int]:
    """One run's results through a fresh collector; returns consecutive_failures per external id."""
    collector = ResultCollector(workdir / "state")
    for external_id, outcome in outcomes:
        collector(RecordResult("deal", external_id, "update", outcome, 7, 400 if outcome == "failed" else None))
    run_id = new_run_id()
    collector.write(workdir / "results", run_id, RunReport(run_id, "pipedrive"))
    return {r.external_id: collector.streak(r) for r in collector.results}


def _saved(workdir: Path) -> dict[str, int]:
    return dict(json.loads((workdir / "state" / "failure_streaks.json").read_text(encoding="utf-8")))


def test_a_streak_grows_while_the_record_keeps_failing_and_ends_when_it_succeeds(tmp_path: Path) -> None:
    assert _run(tmp_path, ("1", "failed")) == {"1": 1}
    assert _run(tmp_path, ("1", "failed")) == {"1": 2}
    assert _run(tmp_path, ("1", "ok")) == {"1": 0}
    assert _saved(tmp_path) == {}


def test_a_skipped_record_keeps_its_streak_without_growing_it(tmp_path: Path) -> None:
    _run(tmp_path, ("1", "failed"))
    assert _run(tmp_path, ("1", "skipped")) == {"1": 1}
    assert _saved(tmp_path) == {"deal:1": 1}
    assert _run(tmp_path, ("1", "failed")) == {"1": 2}


def test_a_record_no_longer_planned_loses_its_streak(tmp_path: Path) -> None:
    """Fixed by hand or gone from the source: no result this run, so a later failure starts a new streak."""
    _run(tmp_path, ("1", "failed"), ("2", "failed"))
    assert _run(tmp_path, ("2", "failed")) == {"2": 2}
    assert _saved(tmp_path) == {"deal:2": 2}
    assert _run(tmp_path, ("1", "failed")) == {"1": 1}
