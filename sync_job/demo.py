"""`sync-job demo`: the bundled sample synced twice into an in-process Pipedrive sandbox."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from sync_job import config, sync
from sync_job.errors import ConfigError

log = logging.getLogger(__name__)

DEMO_BURST = 200  # the sandbox's rate limit for the demo: real pacing, but a demo that takes seconds


def demo_config_path() -> Path:
    """conf/demo.yaml beside the package: in a checkout, and in the Docker image (/app)."""
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = base / "conf" / "demo.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError("conf/demo.yaml not found: run the demo from a checkout of sync-job (or the Docker image)")


def run_demo(workdir: Path, *, rich_output: bool) -> int:
    from sync_job.console import RunConsole
    from sync_job.sandbox.server import Sandbox, SandboxOptions

    settings = config.load(demo_config_path())
    settings = settings.model_copy(update={"workdir": workdir.resolve()})
    token = secrets.token_hex(20)  # a throwaway token for the throwaway sandbox
    with Sandbox(SandboxOptions(token=token, burst=DEMO_BURST)) as sandbox:
        options = sync.RunOptions(progress=RunConsole(rich_output), token=token, base_url=sandbox.url)
        log.info("demo: Pipedrive sandbox listening on %s", sandbox.url)
        first = sync.run(settings, options)
        log.info("demo: second run with unchanged sources: expect no write request")
        writes_before = _writes(sandbox.stats())
        second = sync.run(settings, options)
        writes_second = _writes(sandbox.stats()) - writes_before
        persons, deals = len(sandbox.persons()), len(sandbox.deals())
    lines = [
        f"demo: the sandbox CRM now holds {persons} persons and {deals} deals",
        f"demo: first run exit {first.exit_code}, second run exit {second.exit_code} "
        f"with {writes_second} write request(s)",
        f"demo: combined.csv -> {first.report.paths.get('combined')}",
        f"demo: results of the first run -> {first.report.paths.get('results')}",
        f"demo: report -> {second.report_path}",
        # Last, so it is what a person sees when the demo ends: the page to open in a browser.
        f"demo: HTML report -> {second.report.paths.get('html', '(not written)')}",
    ]
    for line in lines:
        log.info("%s", line)
    return max(first.exit_code, second.exit_code)


def _writes(stats: dict[str, object]) -> int:
    writes = stats.get("writes", 0)
    if isinstance(writes, dict):
        return sum(int(v) for v in writes.values())
    return int(writes) if isinstance(writes, int) else 0
