"""Run metrics pushed to a Prometheus Pushgateway at the end of a run (the standard pattern for batch jobs).

Every value describes the last run, so all are gauges. They are pushed with POST (`pushadd`), which replaces
only the metric families pushed now: `sync_job_last_success_timestamp_seconds` is pushed by successful runs
only and survives the failed ones in between, which is what a "no success in 26 h" alert needs.
"""

from __future__ import annotations

import logging
import typing
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from sync_job.config import MetricsSettings, RunStatus
from sync_job.report import RunReport

log = logging.getLogger(__name__)

PUSH_TIMEOUT_SECONDS = 10.0
STATUSES: tuple[str, ...] = typing.get_args(RunStatus)  # one label per status the config knows


def registry(report: RunReport) -> CollectorRegistry:
    """The run's metrics in a fresh registry (no I/O)."""
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=reg)

    ended = _timestamp(report.ended_at)
    gauge("sync_job_last_run_timestamp_seconds", "When the last run ended (Unix time).").set(ended)
    if report.status == "ok":  # a dry run or a partial run does not leave the destination in sync
        gauge("sync_job_last_success_timestamp_seconds", "When the last run that left everything in sync ended.").set(
            ended
        )
    gauge("sync_job_last_run_exit_code", "The last run's exit code (0 in sync, 1 partial, 2 input, 70 bug).").set(
        report.exit_code
    )
    status = gauge("sync_job_last_run_status", "1 for the last run's status, 0 for the others.", ("status",))
    for name in STATUSES:
        status.labels(name).set(1 if name == report.status else 0)
    started = _timestamp(report.started_at)
    gauge("sync_job_last_run_duration_seconds", "Wall time of the last run.").set(max(0.0, ended - started))
    phases = gauge("sync_job_last_run_phase_duration_seconds", "Wall time per phase of the last run.", ("phase",))
    for phase, seconds in report.durations.items():
        phases.labels(phase).set(seconds)
    records = gauge("sync_job_last_run_records", "Records written by the last run.", ("entity", "action", "outcome"))
    for entity, counts in report.counts.items():
        for key, n in counts.items():
            action, _, outcome = key.partition(":")
            records.labels(entity, action, outcome).set(n)
    gauge("sync_job_last_run_failed_records", "Records that failed in the last run.").set(report.failures_total)
    api = report.api
    requests = gauge("sync_job_last_run_api_requests", "API requests of the last run by HTTP status.", ("status",))
    statuses = api.get("statuses")
    if isinstance(statuses, dict):
        for code, n in statuses.items():
            requests.labels(str(code)).set(n)
    for name, key, doc in (
        ("sync_job_last_run_api_rate_limited_responses", "rate_limited_429", "API answers 429 in the last run."),
        ("sync_job_last_run_api_retries", "retries", "API requests retried in the last run."),
        ("sync_job_last_run_api_tokens_used", "tokens_used", "API tokens the last run spent."),
        ("sync_job_api_tokens_remaining", "daily_remaining", "The day's API token budget left after the last run."),
    ):
        value = api.get(key)
        if isinstance(value, int | float):
            gauge(name, doc).set(value)
    return reg


def push(report: RunReport, settings: MetricsSettings) -> None:
    """Push the run's metrics to the configured Pushgateway (grouped by job)."""
    if not settings.pushgateway_url:
        return
    pushadd_to_gateway(
        settings.pushgateway_url, job=settings.job, registry=registry(report), timeout=PUSH_TIMEOUT_SECONDS
    )
    log.info("metrics of run %s pushed to the Pushgateway (job %s)", report.run_id, settings.job)


def _timestamp(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0
