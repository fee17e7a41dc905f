"""What is done with a finished run's report beyond report.json: a protocol, a null one, and the standard set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from sync_job.config import Settings
from sync_job.errors import first_line
from sync_job.report import RunReport

log = logging.getLogger(__name__)


class Reporter(Protocol):
    """The sync engine hands every finished run to one of these; it never changes the run's exit code."""

    def write(self, report: RunReport, settings: Settings) -> None:
        """Local files derived from the report (the HTML page), before report.json is written; prune history."""
        ...

    def publish(self, report: RunReport, settings: Settings) -> None:
        """Tell the outside world (alert webhook, metrics), after report.json is written."""
        ...


class NullReporter:
    """Does nothing: for tests and tools that want only report.json."""

    def write(self, report: RunReport, settings: Settings) -> None:
        return None

    def publish(self, report: RunReport, settings: Settings) -> None:
        return None


class StandardReporter:
    """The HTML report and history pruning, then the alert and the metrics; each failure is logged, not raised."""

    def write(self, report: RunReport, settings: Settings) -> None:
        from sync_job import history, html_report

        _safely("the HTML report", lambda: html_report.write(report, settings.workdir))
        _safely("pruning old runs", lambda: history.prune(settings.workdir, settings.history.keep_days))

    def publish(self, report: RunReport, settings: Settings) -> None:
        from sync_job import metrics, notify

        _safely("the alert", lambda: notify.notify(report, settings.notify))
        _safely("the metrics push", lambda: metrics.push(report, settings.metrics))  # a no-op without a URL


def _safely(what: str, step: Callable[[], object]) -> None:
    # An observer's failure must never turn a good run into a failed one; the messages name no secret
    # (notify and metrics build their own messages without the webhook or gateway URL's credentials).
    try:
        step()
    except Exception as exc:
        log.warning("%s failed: %s: %s", what, type(exc).__name__, first_line(exc))
