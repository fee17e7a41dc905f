"""Past runs: the reports in WORKDIR/reports/ listed, looked up by run id, and pruned after `history.keep_days`."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sync_job.errors import DataError
from sync_job.report import RunReport

log = logging.getLogger(__name__)

# Every per-run file is named `<run_id>.<ext>` in one of these folders of the workdir.
RUN_FOLDERS = ("reports", "results", "plans")
RUN_ID_TIME = "%Y%m%dT%H%M%S.%fZ"


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of `sync-job history`."""

    run_id: str
    started_at: str
    ended_at: str
    status: str
    exit_code: int
    creates: int
    updates: int
    deletes: int
    failures: int
    tokens: int | None
    duration_seconds: float | None


def load(workdir: Path, limit: int | None = None) -> list[RunReport]:
    """The readable run reports, newest first (at most `limit`); an unreadable file is logged and left out."""
    reports: list[RunReport] = []
    for path in sorted((workdir / "reports").glob("*.json"), reverse=True):
        if limit is not None and len(reports) >= limit:
            break
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            reports.append(RunReport.from_dict(data))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("history: skipping unreadable report %s (%s)", path, type(exc).__name__)
    return reports


def find(workdir: Path, run_id: str) -> RunReport:
    """The report of one run: its full id or a unique prefix of it."""
    reports = load(workdir)
    matches = [r for r in reports if r.run_id == run_id] or [r for r in reports if r.run_id.startswith(run_id)]
    if len(matches) != 1:
        problem = "no run" if not matches else f"{len(matches)} runs match"
        raise DataError(f"{workdir / 'reports'}: {problem} '{run_id}' (`sync-job history` lists the run ids)")
    return matches[0]


def row(report: RunReport) -> HistoryRow:
    """A report reduced to one history line (pure)."""
    done: dict[str, int] = {}
    for counts in report.counts.values():
        for key, n in counts.items():
            action, _, outcome = key.partition(":")
            if outcome == "ok":
                done[action] = done.get(action, 0) + n
    tokens = report.api.get("tokens_used")
    return HistoryRow(
        run_id=report.run_id,
        started_at=report.started_at,
        ended_at=report.ended_at,
        status=report.status,
        exit_code=report.exit_code,
        creates=done.get("create", 0),
        updates=done.get("update", 0),
        deletes=done.get("delete", 0),
        failures=report.failures_total,
        tokens=tokens if isinstance(tokens, int) else None,
        duration_seconds=duration(report),
    )


def duration(report: RunReport) -> float | None:
    """Wall time from start to end; older reports without times fall back to the sum of their phases."""
    try:
        start, end = datetime.fromisoformat(report.started_at), datetime.fromisoformat(report.ended_at)
    except ValueError:
        return round(sum(report.durations.values()), 3) if report.durations else None
    return round((end - start).total_seconds(), 3)


def as_json(rows: list[HistoryRow]) -> str:
    return json.dumps([asdict(r) for r in rows], indent=2)


def table(rows: list[HistoryRow]) -> str:
    """Aligned plain text, one run per line (pure)."""
    header = (
        *("started (UTC)", "status", "exit", "creates", "updates", "deletes", "failures", "tokens", "seconds"),
        "run",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.started_at[:19].replace("T", " ") or "?",
                r.status,
                str(r.exit_code),
                str(r.creates),
                str(r.updates),
                str(r.deletes),
                str(r.failures),
                "-" if r.tokens is None else str(r.tokens),
                "-" if r.duration_seconds is None else f"{r.duration_seconds:.1f}",
                r.run_id,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 1, len(header) - 1}

    def fmt(line: tuple[str, ...]) -> str:
        cells = zip(line, widths, strict=True)
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(cells)).rstrip()

    return "\n".join(fmt(line) for line in lines)


def details(report: RunReport) -> str:
    """`sync-job show`: the run's summary and its failures as plain text (pure)."""
    r = row(report)
    message = f" - {report.message}" if report.message else ""
    lines = [
        f"run {report.run_id}: {report.status} (exit {report.exit_code}){message}",
        f"started {report.started_at or '?'}  ended {report.ended_at or '?'}  "
        f"duration {'-' if r.duration_seconds is None else f'{r.duration_seconds:.1f} s'}",
        f"destination {report.destination}{' (dry run)' if report.dry_run else ''}  version {report.version or '?'}  "
        f"config sha256 {report.config_sha256[:12] or '?'}",
    ]
    for name, source in report.sources.items():
        check = f"etag {source['etag']}" if "etag" in source else f"sha256 {str(source.get('sha256', '?'))[:12]}"
        lines.append(f"source {name}: {source.get('uri')} ({source.get('size')} bytes, {check})")
    for entity, counts in report.counts.items():
        lines.append(f"{entity}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    if report.api:
        lines.append(
            f"API: {report.api.get('requests_total', '-')} requests, {report.api.get('rate_limited_429', 0)} answered "
            f"429, {report.api.get('retries', 0)} retries, {report.api.get('tokens_used', '-')} tokens"
        )
    if report.failures_total:
        lines.append(f"failures: {report.failures_total} (first {len(report.failures)} below)")
        lines.extend(_failure_line(f) for f in report.failures)
    for name, path in report.paths.items():
        lines.append(f"{name}: {path}")
    return "\n".join(lines)


def _failure_line(failure: dict[str, Any]) -> str:
    status = failure.get("status")
    return (
        f"  {failure.get('entity')} {failure.get('external_id')} {failure.get('action')} {failure.get('outcome')}"
        f"{f' HTTP {status}' if status else ''}: {failure.get('error') or ''}".rstrip(": ")
    )


def expired(run_ids: list[str], now: datetime, keep_days: int) -> list[str]:
    """The run ids started more than keep_days before now (pure); ids that are not ours are kept."""
    cutoff = now - timedelta(days=keep_days)
    out = []
    for run_id in run_ids:
        try:
            started = datetime.strptime(run_id.partition("-")[0], RUN_ID_TIME).replace(tzinfo=UTC)
        except ValueError:
            continue
        if started < cutoff:
            out.append(run_id)
    return out


def prune(workdir: Path, keep_days: int, now: datetime | None = None) -> list[Path]:
    """Delete the reports, results and plans of runs older than keep_days; returns what was deleted."""
    files = [p for folder in RUN_FOLDERS for p in (workdir / folder).glob("*.*") if not p.name.startswith(".")]
    old = set(expired(sorted({_run_id_of(p) for p in files}), now or datetime.now(UTC), keep_days))
    deleted = []
    for path in files:
        if _run_id_of(path) in old:
            path.unlink(missing_ok=True)
            deleted.append(path)
    if deleted:
        log.info("history: pruned %d file(s) of runs older than %d days", len(deleted), keep_days)
    return deleted


def _run_id_of(path: Path) -> str:
    # A run id holds one dot (`20261202T001433.123456Z-42`): the extension follows it.
    name = path.name
    return name[: name.rfind(".")] if name.count(".") >= 2 else name.partition(".")[0]
