"""What a run shows a person: rich progress bars and tables on a terminal, one JSON log line per event otherwise."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sync_job.plans import sample_lines
from sync_job.report import RunReport

log = logging.getLogger("sync_job.run")


class RunConsole:
    """The CLI's `progress.Progress`: rich bars and tables on a terminal, JSON events otherwise."""

    def __init__(self, rich_output: bool) -> None:
        self.rich = rich_output
        self.console = Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, Any] = {}

    def event(self, message: str, **fields: Any) -> None:
        """A structured event: a JSON line in a CronJob, a log line on a terminal."""
        log.info(message, extra={"fields": {"event": message, **fields}})

    @contextmanager
    def progress(self) -> Iterator[None]:
        if not self.rich:
            yield
            return
        with Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        ) as progress:
            self._progress = progress
            try:
                yield
            finally:
                self._progress, self._tasks = None, {}

    def advance(self, name: str, n: int = 1, total: int | None = None) -> None:
        """Move the named bar by n (reading pages or applying records); a no-op off a terminal."""
        if self._progress is None:
            return
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total)
        elif total is not None:
            self._progress.update(self._tasks[name], total=total)
        self._progress.advance(self._tasks[name], n)

    def show_plan(self, summary: dict[str, Any]) -> None:
        if not self.rich:
            self.event("plan", **summary)
            return
        table = Table(title="Plan (dry run: nothing sent)")
        for column in ("entity", "creates", "updates", "deletes", "unchanged", "remote duplicates", "remote only"):
            table.add_column(column, justify="right" if column != "entity" else "left")
        for entity in summary.get("entities", []):
            table.add_row(
                entity["entity"],
                str(entity["creates"]),
                str(entity["updates"]),
                str(entity.get("deletes", 0) + entity.get("held_deletes", 0)),
                str(entity["unchanged"]),
                str(entity["duplicates"]),
                str(entity.get("orphans", 0)),
            )
        self.console.print(table)
        for line in sample_lines(summary):
            self.console.print(f"  {line}", markup=False, highlight=False, no_wrap=True, overflow="ellipsis")
        for note in summary.get("notes", []):  # fields to create, options to add, rows that will fail, ...
            self.console.print(f"Note: {note}", markup=False, highlight=False)
        if summary.get("estimated_tokens") is not None:
            self.console.print(
                f"Estimated API tokens: {summary['estimated_tokens']}, "
                f"time at the rate limit: {summary.get('estimated_seconds', 0):.0f} s"
            )
        if summary.get("delete_tokens"):
            self.console.print(f"Deletes cost {summary['delete_tokens']} API tokens")
        if summary.get("held_deletes"):
            self.console.print(summary["held_deletes"], markup=False, highlight=False)
        if summary.get("days_needed") is not None:
            self.console.print(
                f"Days needed: {summary['days_needed']} at {summary.get('tokens_per_day')} API tokens a day"
            )

    def show_summary(self, report: RunReport) -> None:
        if not self.rich:
            self.event(
                "run finished",
                status=report.status,
                exit_code=report.exit_code,
                counts=report.counts,
                failures=report.failures_total,
                report=report.paths.get("report"),
                html_report=report.paths.get("html"),
                plan=report.paths.get("plan"),
            )
            return
        if report.dry_run:
            self.console.print(f"Dry run: no write request was sent. Report: {report.paths.get('report')}")
            if report.paths.get("plan"):
                self.console.print(f"The whole plan: {report.paths['plan']}")
            if report.paths.get("html"):
                self.console.print(f"HTML report: {report.paths['html']}")
            return
        title = f"{report.status.upper()}  (run {report.run_id})"
        table = Table(title=title, min_width=len(title) + 4)  # wide enough that the title does not wrap
        table.add_column("entity")
        table.add_column("action:outcome")
        table.add_column("records", justify="right")
        for entity, counts in report.counts.items():
            for key, n in counts.items():
                table.add_row(entity, key, str(n))
        for entity in report.plan.get("entities", []):
            if entity["unchanged"]:
                table.add_row(entity["entity"], "unchanged", str(entity["unchanged"]))
            if entity["duplicates"]:
                table.add_row(entity["entity"], "remote duplicates (left alone)", str(entity["duplicates"]))
            if entity.get("skipped"):
                table.add_row(entity["entity"], "not in Pipedrive (mode update: skipped)", str(entity["skipped"]))
            if entity.get("held_deletes"):
                table.add_row(entity["entity"], "deletes held (max_delete_fraction)", str(entity["held_deletes"]))
        self.console.print(table)
        if report.failures_total:
            self.console.print(
                f"[red]{report.failures_total} record(s) failed[/red] "
                f"({report.repeated_failures} also failed in the previous run); see {report.paths.get('results')}"
            )
        if report.message:
            self.console.print(report.message)
        api = report.api
        if api:
            self.console.print(
                f"API: {api.get('requests_total', '?')} requests, {api.get('rate_limited_429', 0)} answered 429, "
                f"{api.get('retries', 0)} retries, {api.get('tokens_used', '?')} tokens"
            )
        self.console.print(f"Report: {report.paths.get('report')}")
        if report.paths.get("html"):
            self.console.print(f"HTML report: {report.paths['html']}")
