"""The one place that wires fetch, transform, read, diff, apply and report into a run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sync_job import __version__, fetch, lock, plans, shutdown, workdir
from sync_job import combined as combined_module
from sync_job.config import Settings, fingerprint, mapping_of
from sync_job.destinations import registry
from sync_job.destinations.base import Destination, Plan, RecordResult
from sync_job.diff import plan_summary
from sync_job.errors import BudgetExhausted, Interrupted, first_line
from sync_job.options import RunOptions as RunOptions  # re-exported: callers build sync.RunOptions
from sync_job.outcome import Failure, RunFacts, decide
from sync_job.progress import Progress
from sync_job.report import (
    Phases,
    ResultCollector,
    RunReport,
    describe_sources,
    new_run_id,
    utc_now,
    write_report,
)
from sync_job.reporters import Reporter, StandardReporter

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    report: RunReport
    report_path: Path


def transform(settings: Settings) -> combined_module.TransformResult:
    """Fetch the sources and write WORKDIR/combined.csv; no destination access."""
    with workdir.guarded(settings.workdir):
        fetched = fetch.fetch_all_sync(settings)
        paths = {name: source.path for name, source in fetched.items()}
        mapped = mapping_of(settings)
        return combined_module.build_combined(
            paths, settings.workdir, mapped.value_expression, mapped.deals.extra_columns()
        )


def run(settings: Settings, options: RunOptions) -> RunOutcome:
    """One complete run under the workdir lock; a fatal input error raises before any write.

    Taking the lock writes WORKDIR/.lock: a workdir that cannot be written fails there, before any fetch.
    """
    with workdir.guarded(settings.workdir), lock.workdir_lock(settings.workdir):
        report = RunReport(
            run_id=new_run_id(),
            destination=settings.destination.kind,
            dry_run=options.dry_run,
            started_at=utc_now(),
            version=__version__,
            config_sha256=fingerprint(settings),
        )
        reporter = options.reporter or StandardReporter()
        try:
            # Guarded inside too: a full disk must be recorded in the history as the WorkdirError it exits with.
            with workdir.guarded(settings.workdir):
                return asyncio.run(_run(settings, options, report, reporter))
        except Exception as exc:
            # A run that stopped on an error is history too, and the one people most need to hear about.
            if report.ended_at:  # it failed after the run was recorded (showing the summary): do not record twice
                raise
            try:
                _finish(report, RunFacts(error=Failure.of(exc)), settings, reporter)
            except Exception as also:  # e.g. a full disk: the run's own error is the one to report
                log.warning("could not record the failed run: %s: %s", type(also).__name__, first_line(also))
            raise


def _finish(report: RunReport, facts: RunFacts, settings: Settings, reporter: Reporter) -> Path:
    """Decide the run's outcome from what happened, hand it to the reporters and write report.json; returns its path."""
    verdict = decide(facts)
    report.status, report.message, report.exit_code = verdict.status, verdict.message, verdict.exit_code
    report.ended_at = utc_now()
    reporter.write(report, settings)
    path = write_report(report, settings.workdir)
    reporter.publish(report, settings)
    return path


async def _run(settings: Settings, options: RunOptions, report: RunReport, reporter: Reporter) -> RunOutcome:
    ui = options.progress
    phases = Phases()
    # Credentials are checked first: a missing token must fail before minutes of fetching.
    destination = _open_destination(settings, options, ui)
    facts = RunFacts()  # every way through the block below says what happened; this value is never the verdict
    try:
        async with shutdown.Shutdown(grace_seconds=options.grace_seconds) as stopper:
            with phases.timed("fetch"):
                fetched = await _unless_stopped(fetch.fetch_all(settings), stopper.stop, "fetching")
            ui.event(
                "fetched", sources={n: {"path": str(s.path), "downloaded": s.downloaded} for n, s in fetched.items()}
            )
            report.sources = await asyncio.to_thread(describe_sources, fetched)
            with phases.timed("transform"):
                paths = {name: source.path for name, source in fetched.items()}
                mapped = mapping_of(settings)
                deal_columns, person_columns = mapped.deals.extra_columns(), mapped.persons.extra_columns()
                result = await asyncio.to_thread(
                    combined_module.build_combined, paths, settings.workdir, mapped.value_expression, deal_columns
                )
                combined = await asyncio.to_thread(combined_module.read_combined, result.combined_path, deal_columns)
                customers = await asyncio.to_thread(
                    combined_module.read_customers, result.customers_path, person_columns
                )
            report.transform = {
                "orders": result.rows,
                "customers": result.customers,
                "rejected_orders": result.rejected_orders,
                "rejected_payments": result.rejected_payments,
            }
            report.paths.update(combined=str(result.combined_path), rejected=str(result.rejected_dir))
            ui.event("transformed", **report.transform, combined=str(result.combined_path))
            with ui.progress():
                try:
                    with phases.timed("read_and_diff"):
                        plan = await _unless_stopped(destination.plan(combined, customers), stopper.stop, "reading")
                except BudgetExhausted as exc:
                    # Not even the reading fits in the budget: nothing was written, the report says why.
                    facts = RunFacts(budget_before_plan=str(exc))
                    log.warning("partial: nothing applied: %s", exc)
                else:
                    report.plan = plan_summary(plan)
                    if options.dry_run:
                        plan_path = await asyncio.to_thread(plans.write, plan, settings.workdir, report.run_id)
                        report.paths["plan"] = str(plan_path)
                        ui.show_plan(report.plan)
                        facts = RunFacts(dry_run=True)
                    else:
                        facts = await _apply(destination, plan, report, settings, phases, ui, stopper)
    except Interrupted as exc:
        # A signal before any write: nothing to drain, the report says the run did nothing.
        facts = RunFacts(interrupted=str(exc))
        log.warning("%s", exc)
    finally:
        report.api = destination.usage()
        await destination.aclose()
        report.durations = phases.durations
    path = _finish(report, facts, settings, reporter)
    ui.show_summary(report)
    return RunOutcome(report.exit_code, report, path)


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event, doing: str) -> T:
    """Await `work` unless a signal arrives first: then cancel it (reads only, nothing to lose) and say so."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise Interrupted(f"interrupted while {doing}: nothing was written")


async def _apply(
    destination: Destination,
    plan: Plan,
    report: RunReport,
    settings: Settings,
    phases: Phases,
    ui: Progress,
    stopper: shutdown.Shutdown,
) -> RunFacts:
    """Apply the plan, write the per-record results, and say what happened."""
    collector = ResultCollector(settings.workdir / "state")
    total = plan.writes

    def on_result(result: RecordResult) -> None:
        collector(result)
        ui.advance("applying", 1, total=total)
        if result.outcome == "failed":
            log.warning(
                "%s %s %s failed: %s",
                result.entity,
                result.action,
                result.external_id,
                result.error,
                extra={
                    "fields": {
                        "entity": result.entity,
                        "external_id": result.external_id,
                        "action": result.action,
                        "status": result.status,
                    }
                },
            )

    budget_message: str | None = None
    with phases.timed("apply"):
        try:
            await destination.apply(plan, on_result, stopper.stop)
        except BudgetExhausted as exc:
            budget_message = str(exc)
    results_path = collector.write(settings.workdir / "results", report.run_id, report)
    report.paths["results"] = str(results_path)
    for entity in plan.entities:
        if entity.skipped:
            log.info("%d %s(s) not in the destination were skipped (mode update)", entity.skipped, entity.entity)
    if plan.held_line:  # whatever else happened, the held deletes need a human's yes: say so on its own line
        log.warning("%s", plan.held_line)
    return RunFacts(
        stopped=stopper.stop.is_set(),
        budget_while_applying=budget_message,
        failed_records=collector.failed,
        held_line=plan.held_line,
        duplicates=sum(e.duplicates.height for e in plan.entities),
    )


def _open_destination(settings: Settings, options: RunOptions, ui: Progress) -> Destination:
    """The destination the config's `destination.kind` registered, opened with its own settings."""
    return registry.open_destination(settings, options, ui)
