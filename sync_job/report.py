"""The run report (JSON file + terminal summary) and the per-record results file."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from sync_job.destinations.base import RecordResult
from sync_job.sources.base import FetchedSource

log = logging.getLogger(__name__)

MAX_FAILURES_IN_REPORT = 200
RESULTS_SCHEMA = {
    "entity": pl.Utf8,
    "external_id": pl.Utf8,
    "action": pl.Utf8,
    "outcome": pl.Utf8,
    "destination_id": pl.Int64,
    "status": pl.Int64,
    "error": pl.Utf8,
    "consecutive_failures": pl.Int64,
}


@dataclass
class RunReport:
    """Everything a run did; serialised to WORKDIR/report.json (and a copy per run id)."""

    run_id: str
    destination: str
    dry_run: bool = False
    started_at: str = ""  # UTC, ISO 8601
    ended_at: str = ""
    version: str = ""  # sync-job's version
    config_sha256: str = ""  # of the effective settings, so a change of config shows in the history
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> uri, size, sha256 or etag
    status: str = "running"  # ok | partial | interrupted | budget_exhausted | dry_run | failed
    exit_code: int = 0
    message: str = ""
    transform: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> "action:outcome" -> n
    failures: list[dict[str, Any]] = field(default_factory=list)
    failures_total: int = 0
    repeated_failures: int = 0  # records that also failed in the previous run(s)
    durations: dict[str, float] = field(default_factory=dict)
    api: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        """A report read back from disk; keys this version does not know (or older files lack) are tolerated."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Phases:
    """Wall time per phase, in seconds."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {}

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, phases: Phases, name: str) -> None:
        self.phases, self.name, self.start = phases, name, 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.phases.durations[self.name] = round(self.phases.durations.get(self.name, 0.0) + elapsed, 3)


class ResultCollector:
    """Collects per-record outcomes as they arrive and keeps the failure streaks across runs."""

    def __init__(self, state_dir: Path) -> None:
        self.results: list[RecordResult] = []
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._streak_path = state_dir / "failure_streaks.json"
        self._previous = _load_streaks(self._streak_path)

    def __call__(self, result: RecordResult) -> None:
        self.results.append(result)
        self.counts[(result.entity, result.action, result.outcome)] += 1

    @property
    def failed(self) -> int:
        return sum(n for (_, _, outcome), n in self.counts.items() if outcome != "ok")

    def streak(self, result: RecordResult) -> int:
        if result.outcome == "ok":
            return 0
        previous = self._previous.get(_streak_key(result), 0)
        # A skipped record (budget, signal) was not tried: its streak neither grows nor ends.
        return previous if result.outcome == "skipped" else previous + 1

    def by_entity(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (entity, action, outcome), n in sorted(self.counts.items()):
            out.setdefault(entity, {})[f"{action}:{outcome}"] = n
        return out

    def write(self, results_dir: Path, run_id: str, report: RunReport) -> Path:
        """Write results/<run_id>.csv, update the streaks, fill the report's failure fields."""
        results_dir.mkdir(parents=True, exist_ok=True)
        rows = [{**asdict(r), "consecutive_failures": self.streak(r)} for r in self.results]
        frame = pl.DataFrame(rows, schema=RESULTS_SCHEMA) if rows else pl.DataFrame(schema=RESULTS_SCHEMA)
        path = results_dir / f"{run_id}.csv"
        atomic_write(path, lambda tmp: frame.write_csv(tmp))
        # Every planned record has a result, skipped ones included (they keep their streak). A record
        # with no result was not planned: it already matches the source or left it, so its streak ends.
        streaks = {_streak_key(r): s for r in self.results if (s := self.streak(r)) > 0}
        self._streak_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._streak_path, lambda tmp: tmp.write_text(json.dumps(streaks), encoding="utf-8"))
        failures = frame.filter(pl.col("outcome") != "ok")
        report.failures_total = failures.height
        report.repeated_failures = failures.filter(
            (pl.col("outcome") == "failed") & (pl.col("consecutive_failures") > 1)
        ).height
        report.failures = failures.head(MAX_FAILURES_IN_REPORT).to_dicts()
        report.counts = self.by_entity()
        return path


def write_report(report: RunReport, workdir: Path) -> Path:
    """Write WORKDIR/reports/<run_id>.json and WORKDIR/report.json (the latest run)."""
    reports = workdir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    text = report.to_json()
    atomic_write(reports / f"{report.run_id}.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    latest = workdir / "report.json"
    atomic_write(latest, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    report.paths["report"] = str(latest)
    return latest


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def describe_sources(fetched: dict[str, FetchedSource]) -> dict[str, dict[str, Any]]:
    """What each source was: its (display) URI, size and ETag when the server gave one, else the file's SHA-256."""
    out: dict[str, dict[str, Any]] = {}
    for name, source in fetched.items():
        fact: dict[str, Any] = {"uri": source.uri, "size": source.size}
        if source.etag:
            fact["etag"] = source.etag
        else:
            fact["sha256"] = _sha256(source.path)
        out[name] = fact
    return out


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def new_run_id() -> str:
    """Sortable and unique: two runs in the same second (tests, --every) must not share a results file."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%S.%fZ") + f"-{os.getpid()}"


def _streak_key(result: RecordResult) -> str:
    return f"{result.entity}:{result.external_id}"


def _load_streaks(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write `path` through a temporary file beside it, replaced in one rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:  # a write cut short (a full disk) leaves no half file behind, and frees its blocks
        tmp.unlink(missing_ok=True)
