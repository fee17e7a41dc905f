"""The API token never leaves the x-api-token header: not in output, logs, reports, results or any workdir file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from sync_job import sync
from sync_job.errors import EXIT_INPUT, EXIT_OK, EXIT_PARTIAL
from sync_job.sandbox.server import Sandbox, SandboxOptions
from tests.e2e import settings_for, write_sources

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))
SECRET = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0-LEAK-CANARY"  # distinctive, so any copy of it is found
WRONG = "tok-0a1b2c3d4e5f60718293a4b5c6d7e8f9-WRONG-CANARY"

CUSTOMERS = [(i, f"First{i}", f"Last{i}") for i in range(1, 21)]
ORDERS = [(i, (i % 20) + 1, "2018-01-01", "completed") for i in range(1, 31)]
PAYMENTS = [(i, i, "coupon", 100 * i) for i in range(1, 31)]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_sources(tmp_path, CUSTOMERS, ORDERS, PAYMENTS)
    config = {
        "sources": {name: str(tmp_path / f"raw_{name}.csv") for name in ("customers", "orders", "payments")},
        "workdir": str(tmp_path / "work"),
        "pipedrive": {"max_attempts": 2, "concurrency": 8},
    }
    (tmp_path / "sync.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # Faults on: the runs go through 5xx retries, dropped connections and record failures.
    options = SandboxOptions(token=SECRET, burst=1000, search_burst=1000, fail_rate=0.3, drop_after_commit_rate=0.1)
    with Sandbox(options) as sb:
        yield sb


def cli(folder: Path, sandbox: Sandbox, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIPEDRIVE_API_TOKEN": token, "PIPEDRIVE_BASE_URL": sandbox.url}
    return subprocess.run(
        [SYNC_JOB, "run", "--config", str(folder / "sync.yaml"), "--verbose", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [name for name, secret in (("token", SECRET), ("wrong token", WRONG)) if secret.encode() in data]


@pytest.mark.slow
def test_token_appears_nowhere_after_runs_with_failures_retries_and_a_401(folder: Path, sandbox: Sandbox) -> None:
    runs = [
        cli(folder, sandbox, SECRET, "--log-format", "json"),  # faults: retries and failed records
        cli(folder, sandbox, SECRET, "--log-format", "text"),  # the terminal rendering, still debug
        cli(folder, sandbox, WRONG, "--log-format", "json"),  # rejected: 401
    ]
    assert runs[0].returncode == EXIT_PARTIAL, runs[0].stderr[-2000:]
    assert runs[2].returncode == EXIT_INPUT
    assert "401" in runs[2].stderr
    assert sandbox.stats()["injected_5xx"] > 0
    assert "retr" in runs[0].stderr.lower() or "fail" in runs[0].stderr.lower()
    for i, proc in enumerate(runs):
        assert leaks(proc.stdout) == [], f"run {i} stdout"
        assert leaks(proc.stderr) == [], f"run {i} stderr"
    files = [p for p in (folder / "work").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "report.json" in names
    assert any(p.parent.name == "results" for p in files)
    for path in files:
        assert leaks(path.read_bytes()) == [], path


class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the sandbox over real HTTP and keeps every request's URL and headers."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_token_travels_only_in_the_x_api_token_header(folder: Path) -> None:
    with Sandbox(SandboxOptions(token=SECRET, burst=1000, search_burst=1000)) as sb:
        recorder = Recorder()
        settings = settings_for(folder, sb.url)
        outcome = sync.run(settings, sync.RunOptions(token=SECRET, base_url=sb.url, transport=recorder))
    assert outcome.exit_code == EXIT_OK
    assert recorder.requests
    for request in recorder.requests:
        assert request.headers["x-api-token"] == SECRET
        others = [v for k, v in request.headers.items() if k != "x-api-token"]
        assert leaks(str(request.url)) == []
        assert leaks(" ".join(others)) == []
        assert leaks(request.content) == []
