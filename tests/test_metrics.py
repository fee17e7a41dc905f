"""Run metrics pushed to a real Prometheus Pushgateway, scraped back and checked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync_job import metrics, sync
from sync_job.config import MetricsSettings
from sync_job.report import RunReport
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, settings_for, write_sources
from tests.pushgateway import NO_PUSHGATEWAY_REASON, Pushgateway, find_binary, require

CUSTOMERS = [(1, "Ada", "Lovelace"), (2, "Alan", "Turing")]
ORDERS = [(10, 1, "2024-01-02", "placed"), (11, 2, "2024-01-03", "shipped"), (12, 2, "2024-01-04", "placed")]
PAYMENTS = [(100, 10, "card", 1250), (101, 11, "cash", 999)]


@pytest.fixture(scope="module")
def gateway() -> Iterator[Pushgateway]:
    binary = find_binary()
    require(binary, NO_PUSHGATEWAY_REASON)
    assert binary is not None
    with Pushgateway(binary) as gw:
        yield gw


def scrape(gw: Pushgateway, job: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the gateway exposes for `job`, keyed by name and its labels (job and instance left out)."""
    out = {}
    for family in text_string_to_metric_families(gw.metrics()):
        for sample in family.samples:
            if sample.labels.get("job") != job or not sample.name.startswith("sync_job_"):
                continue
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("job", "instance")))
            out[(sample.name, labels)] = sample.value
    return out


def _report(status: str, exit_code: int, ended: str) -> RunReport:
    report = RunReport(run_id=f"r-{status}", destination="pipedrive", status=status, exit_code=exit_code)
    report.started_at, report.ended_at = "2026-01-01T03:00:00+00:00", ended
    report.durations = {"fetch": 0.5, "apply": 9.25}
    report.counts = {"deal": {"create:ok": 7, "update:failed": 2}}
    report.failures_total = 2
    report.api = {
        "statuses": {"200": 40, "201": 7, "429": 3},
        "rate_limited_429": 3,
        "retries": 5,
        "tokens_used": 123,
        "daily_remaining": 9877,
    }
    return report


def test_pushed_metrics_are_scraped_back_with_their_values(gateway: Pushgateway) -> None:
    job = "sync_job_values"
    report = _report("partial", 1, "2026-01-01T03:00:12+00:00")
    metrics.push(report, MetricsSettings(pushgateway_url=gateway.url, job=job))
    got = scrape(gateway, job)
    ended = datetime.fromisoformat("2026-01-01T03:00:12+00:00").timestamp()
    assert got[("sync_job_last_run_timestamp_seconds", ())] == ended
    assert got[("sync_job_last_run_duration_seconds", ())] == 12.0
    assert got[("sync_job_last_run_exit_code", ())] == 1
    assert got[("sync_job_last_run_status", (("status", "partial"),))] == 1
    assert got[("sync_job_last_run_status", (("status", "ok"),))] == 0
    assert got[("sync_job_last_run_phase_duration_seconds", (("phase", "apply"),))] == 9.25
    records = (("action", "create"), ("entity", "deal"), ("outcome", "ok"))
    assert got[("sync_job_last_run_records", records)] == 7
    assert got[("sync_job_last_run_failed_records", ())] == 2
    assert got[("sync_job_last_run_api_requests", (("status", "429"),))] == 3
    assert got[("sync_job_last_run_api_rate_limited_responses", ())] == 3
    assert got[("sync_job_last_run_api_retries", ())] == 5
    assert got[("sync_job_last_run_api_tokens_used", ())] == 123
    assert got[("sync_job_api_tokens_remaining", ())] == 9877
    assert ("sync_job_last_success_timestamp_seconds", ()) not in got  # a partial run is no success


def test_the_last_success_survives_a_later_failed_run(gateway: Pushgateway) -> None:
    job = "sync_job_success"
    settings = MetricsSettings(pushgateway_url=gateway.url, job=job)
    metrics.push(_report("ok", 0, "2026-01-01T03:00:12+00:00"), settings)
    metrics.push(_report("failed", 2, "2026-01-02T03:00:05+00:00"), settings)
    got = scrape(gateway, job)
    assert (
        got[("sync_job_last_success_timestamp_seconds", ())]
        == datetime.fromisoformat("2026-01-01T03:00:12+00:00").timestamp()
    )
    assert (
        got[("sync_job_last_run_timestamp_seconds", ())]
        == datetime.fromisoformat("2026-01-02T03:00:05+00:00").timestamp()
    )
    assert got[("sync_job_last_run_exit_code", ())] == 2
    assert got[("sync_job_last_run_status", (("status", "failed"),))] == 1
    assert got[("sync_job_last_run_status", (("status", "ok"),))] == 0


def test_a_run_with_a_pushgateway_url_pushes_what_it_did(
    tmp_path: Path, sandbox: Sandbox, gateway: Pushgateway
) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = settings_for(tmp_path, sandbox.url, metrics={"pushgateway_url": gateway.url, "job": "sync_job_e2e"})
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    assert outcome.exit_code == 0
    got = scrape(gateway, "sync_job_e2e")
    assert got[("sync_job_last_run_records", (("action", "create"), ("entity", "person"), ("outcome", "ok")))] == 2
    assert got[("sync_job_last_run_records", (("action", "create"), ("entity", "deal"), ("outcome", "ok")))] == 3
    assert (
        got[("sync_job_last_success_timestamp_seconds", ())]
        == datetime.fromisoformat(outcome.report.ended_at).timestamp()
    )
    assert got[("sync_job_last_run_api_tokens_used", ())] == outcome.report.api["tokens_used"]
    assert (
        sum(v for (name, _), v in got.items() if name == "sync_job_last_run_api_requests")
        == outcome.report.api["requests_total"]
    )


def test_an_unreachable_pushgateway_is_logged_and_never_changes_the_exit_code(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    settings = settings_for(tmp_path, sandbox.url, metrics={"pushgateway_url": "http://127.0.0.1:9"})
    outcome = sync.run(settings, sync.RunOptions(token=TOKEN, base_url=sandbox.url))
    assert outcome.exit_code == 0
    assert "the metrics push failed" in caplog.text
