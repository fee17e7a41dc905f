"""Alerts: one JSON POST to SYNC_JOB_WEBHOOK_URL per run whose status is in notify.on; never logged, never fatal."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from pytest_httpx import HTTPXMock
from typer.testing import CliRunner

from sync_job import notify
from sync_job.cli import app
from sync_job.config import WEBHOOK_URL_ENV, NotifySettings
from sync_job.errors import EXIT_INPUT, EXIT_OK
from sync_job.report import RunReport
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, config_file, write_sources

HOOK = "http://127.0.0.1:{port}/services/T000/B000/secret-hook-path-4f2a"
CUSTOMERS = [(1, "Ada", "Lovelace")]
ORDERS = [(10, 1, "2024-01-02", "placed")]
PAYMENTS = [(100, 10, "card", 1250)]


def _report(status: str = "partial", exit_code: int = 1) -> RunReport:
    report = RunReport(run_id="20260101T030000.000000Z-7", destination="pipedrive", status=status, exit_code=exit_code)
    report.message = "partial: 1 record(s) failed"
    report.counts = {"deal": {"create:ok": 4, "create:failed": 1}}
    report.failures_total = 1
    report.failures = [{"entity": "deal", "external_id": "11", "action": "create", "outcome": "failed"}]
    report.paths = {"report": "/w/report.json", "html": "/w/reports/20260101T030000.000000Z-7.html"}
    return report


@pytest.fixture
def no_waits() -> Iterator[None]:
    """stamina's testing mode: the configured attempts, without the waits between them."""
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def test_a_partial_run_posts_one_json_message_with_a_slack_text_and_the_summary(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "https://hooks.example.com/services/secret"
    monkeypatch.setenv(WEBHOOK_URL_ENV, url)
    httpx_mock.add_response(url=url, method="POST", text="ok")
    assert notify.notify(_report(), NotifySettings()) is True
    (request,) = httpx_mock.get_requests()
    assert request.headers["content-type"] == "application/json"
    body = json.loads(request.content)
    assert body["text"].startswith(":large_orange_circle: sync-job run 20260101T030000.000000Z-7: *partial* (exit 1)")
    assert "1 record(s) failed" in body["text"]
    assert "/w/reports/20260101T030000.000000Z-7.html" in body["text"]
    run = body["run"]
    assert (run["status"], run["exit_code"], run["failures_total"]) == ("partial", 1, 1)
    assert run["counts"] == {"deal": {"create:ok": 4, "create:failed": 1}}
    assert run["failures"][0]["external_id"] == "11"
    assert run["html_report"] == "/w/reports/20260101T030000.000000Z-7.html"


@pytest.mark.parametrize(("status", "sent"), [("ok", False), ("dry_run", False), ("partial", True), ("failed", True)])
def test_by_default_every_status_but_ok_and_dry_run_alerts(status: str, sent: bool) -> None:
    assert notify.wanted(status, NotifySettings()) is sent


def test_no_webhook_in_the_environment_sends_nothing(httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEBHOOK_URL_ENV, raising=False)
    assert notify.notify(_report(), NotifySettings()) is False
    assert httpx_mock.get_requests() == []


def test_a_5xx_is_retried_and_the_alert_delivered(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, no_waits: None
) -> None:
    url = "https://hooks.example.com/services/secret"
    monkeypatch.setenv(WEBHOOK_URL_ENV, url)
    httpx_mock.add_response(url=url, status_code=503)
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=url)
    httpx_mock.add_response(url=url, status_code=200)
    assert notify.notify(_report(), NotifySettings()) is True
    assert len(httpx_mock.get_requests()) == 3


def test_retries_are_bounded_and_a_lost_alert_is_logged_without_the_url(
    httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_waits: None
) -> None:
    url = "https://hooks.example.com/services/T0/B0/secret-part"
    monkeypatch.setenv(WEBHOOK_URL_ENV, url)
    httpx_mock.add_response(url=url, status_code=500, is_reusable=True)
    with caplog.at_level(logging.INFO):
        assert notify.notify(_report(), NotifySettings()) is False
    assert len(httpx_mock.get_requests()) == notify.ATTEMPTS
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("sync_job"))
    assert "not sent: the webhook answered HTTP 500 (tried 3 times)" in ours
    assert "secret-part" not in ours


def test_a_4xx_is_not_retried(httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, no_waits: None) -> None:
    url = "https://hooks.example.com/services/secret"
    monkeypatch.setenv(WEBHOOK_URL_ENV, url)
    httpx_mock.add_response(url=url, status_code=404)
    assert notify.notify(_report(), NotifySettings()) is False
    assert len(httpx_mock.get_requests()) == 1


# ---- a real webhook server, a real run ----------------------------------------------------------------------


class Hook:
    """A local HTTP server that records each POSTed JSON body and answers with the given status codes."""

    def __init__(self, statuses: list[int]) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses = statuses
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = HOOK.format(port=self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _files_text(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.rglob("*") if p.is_file())


def test_a_run_stopped_by_bad_input_alerts_a_real_webhook_and_keeps_exit_2(tmp_path: Path, sandbox: Sandbox) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, [(100, 10, "card", "ten")])
    with Hook([500]) as hook:  # the first attempt fails: the retry delivers it
        env = {"PIPEDRIVE_API_TOKEN": TOKEN, WEBHOOK_URL_ENV: hook.url}
        # --verbose: httpx then logs every request URL; the redaction must catch the webhook's.
        result = CliRunner().invoke(
            app,
            ["run", "--config", str(config_file(tmp_path, sandbox.url)), "--log-format", "json", "--verbose"],
            env=env,
        )
    assert result.exit_code == EXIT_INPUT
    assert len(hook.bodies) == 2
    body = hook.bodies[-1]
    assert (body["run"]["status"], body["run"]["exit_code"]) == ("failed", EXIT_INPUT)
    assert "not a whole number" in body["text"]
    assert "secret-hook-path" not in result.stdout + result.stderr + _files_text(tmp_path / "work")


def test_an_alert_that_cannot_be_sent_never_changes_the_exit_code(tmp_path: Path, sandbox: Sandbox) -> None:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    url = HOOK.format(port=9)  # the discard port: nothing listens there, every attempt is refused
    env = {"PIPEDRIVE_API_TOKEN": TOKEN, WEBHOOK_URL_ENV: url}
    config = config_file(tmp_path, sandbox.url, "notify:\n  on: [ok]\n")
    with stamina.set_testing(True, attempts=100, cap=True):
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--log-format", "json"], env=env)
    assert result.exit_code == EXIT_OK
    assert "alert for run" in result.stderr
    assert "not sent: ConnectError (tried 3 times)" in result.stderr
    assert "secret-hook-path" not in result.stdout + result.stderr + _files_text(tmp_path / "work")


def test_an_unquoted_yaml_on_key_configures_the_alerting_statuses(tmp_path: Path) -> None:
    from sync_job import config

    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    path = config_file(tmp_path, "http://127.0.0.1:9", "notify:\n  on: [ok, failed]\n")
    assert config.load(path).notify.on == ["ok", "failed"]
