"""Alerts: one JSON POST per run whose status is in `notify.on`, to the webhook in SYNC_JOB_WEBHOOK_URL.

The webhook URL is a credential (a Slack incoming-webhook URL lets anyone post): it comes only from the
environment and never appears in a log line, an error or a file. An alert that cannot be sent is logged
and never changes the run's exit code.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import stamina

from sync_job.config import NotifySettings, webhook_url
from sync_job.report import RunReport

log = logging.getLogger(__name__)

ATTEMPTS = 3
TIMEOUT_SECONDS = 10.0  # per attempt; all attempts together stay under ATTEMPTS * TIMEOUT_SECONDS
FAILURES_IN_ALERT = 20
ICONS = {"ok": ":large_green_circle:", "dry_run": ":white_circle:", "failed": ":red_circle:"}


class AlertNotSent(Exception):
    """The webhook did not accept the alert; the message names the status or error kind, never the URL."""


class _Retriable(Exception):
    pass


def wanted(status: str, settings: NotifySettings) -> bool:
    return status in settings.on


def message(report: RunReport) -> dict[str, Any]:
    """The alert body (pure): a Slack-compatible `text` line plus the structured summary."""
    icon = ICONS.get(report.status, ":large_orange_circle:")
    where = report.paths.get("html") or report.paths.get("report") or ""
    text = (
        f"{icon} sync-job run {report.run_id}: *{report.status}* (exit {report.exit_code})"
        f"{': ' + report.message if report.message else ''}"
        f"{f' - {report.failures_total} record(s) failed' if report.failures_total else ''}"
        f"{f' - report: {where}' if where else ''}"
    )
    return {
        "text": text,
        "run": {
            "run_id": report.run_id,
            "status": report.status,
            "exit_code": report.exit_code,
            "message": report.message,
            "destination": report.destination,
            "started_at": report.started_at,
            "ended_at": report.ended_at,
            "counts": report.counts,
            "failures_total": report.failures_total,
            "failures": report.failures[:FAILURES_IN_ALERT],
            "report": report.paths.get("report"),
            "html_report": report.paths.get("html"),
        },
    }


def send(url: str, body: dict[str, Any], *, transport: httpx.BaseTransport | None = None) -> int:
    """POST the body, retrying timeouts, dropped connections, 429 and 5xx a bounded number of times.

    Returns the attempts used; raises AlertNotSent (without the URL) when the webhook never accepted it.
    """
    tried = 0
    try:
        with httpx.Client(timeout=TIMEOUT_SECONDS, transport=transport, follow_redirects=False) as client:
            for attempt in stamina.retry_context(
                on=(_Retriable, httpx.TransportError), attempts=ATTEMPTS, timeout=ATTEMPTS * TIMEOUT_SECONDS
            ):
                with attempt:
                    tried = attempt.num
                    status = client.post(url, json=body).status_code
                    if status == 429 or status >= 500:
                        raise _Retriable(f"HTTP {status}")
                    if status >= 300:
                        raise AlertNotSent(f"the webhook answered HTTP {status}")
    except _Retriable as exc:
        raise AlertNotSent(f"the webhook answered {exc} (tried {tried} times)") from None
    except httpx.TransportError as exc:
        # httpx's messages and requests carry the URL: name only the kind of failure.
        raise AlertNotSent(f"{type(exc).__name__} (tried {tried} times)") from None
    except httpx.HTTPError as exc:  # an invalid URL and the like
        raise AlertNotSent(type(exc).__name__) from None
    return tried


def notify(report: RunReport, settings: NotifySettings, *, transport: httpx.BaseTransport | None = None) -> bool:
    """Send the run's alert when a webhook is set and its status is wanted; True when one was delivered."""
    url = webhook_url()
    if url is None or not wanted(report.status, settings):
        return False
    try:
        send(url, message(report), transport=transport)
    except AlertNotSent as exc:
        log.warning("alert for run %s (%s) not sent: %s", report.run_id, report.status, exc)
        return False
    log.info("alert for run %s (%s) sent", report.run_id, report.status)
    return True
