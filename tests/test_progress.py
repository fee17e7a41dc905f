"""Progress goes through an interface: the core never loads the terminal UI, and shows nothing unless given one."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sync_job import sync
from sync_job.console import RunConsole
from sync_job.progress import NULL_PROGRESS, NullProgress, Progress
from sync_job.sandbox.server import Sandbox
from tests.e2e import TOKEN, run_in, write_sources

UI_MODULES = ("rich", "sync_job.console")
# httpx imports rich for its own command line whenever rich is installed, and does without it on an ImportError:
# kept out, so that what remains is what sync-job itself imports.
NO_HTTPX_CLI = """
import json, sys
class NoHttpxCli:
    def find_spec(self, name, path=None, target=None):
        if name == "httpx._main":
            raise ImportError(name)
sys.meta_path.insert(0, NoHttpxCli())
"""


def modules_loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`, out of UI_MODULES."""
    code = f"{NO_HTTPX_CLI}\n{statement}\nprint(json.dumps(sorted(set(sys.modules) & {set(UI_MODULES)!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "module", ["sync_job.sync", "sync_job.destinations.pipedrive", "sync_job.pipedrive.remote", "sync_job.progress"]
)
def test_the_core_does_not_import_the_terminal_ui(module: str) -> None:
    assert modules_loaded_by(f"import {module}") == set()


def test_the_console_is_the_one_that_imports_rich() -> None:
    """The check above would pass vacuously if nothing ever imported rich."""
    assert modules_loaded_by("import sync_job.console") == set(UI_MODULES)


def test_both_the_console_and_the_null_progress_are_progress() -> None:
    shown: list[Progress] = [RunConsole(rich_output=False), NullProgress(), NULL_PROGRESS]
    for progress in shown:
        with progress.progress():
            progress.advance("applying", 1, total=2)
        progress.event("fetched", sources={})


def test_a_run_without_a_progress_syncs_and_shows_no_events(
    tmp_path: Path, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Its log lines remain (logging decides about those); the console events ("fetched", "run finished") do not."""
    assert isinstance(sync.RunOptions(token=TOKEN).progress, NullProgress)
    write_sources(tmp_path, [(1, "Ada", "L.")], [(1, 1, "2018-01-01", "placed")], [(1, 1, "credit_card", 1000)])
    with caplog.at_level(logging.INFO):
        outcome = run_in(tmp_path, sandbox)
        with_console = run_in(tmp_path, sandbox, progress=RunConsole(rich_output=False))
    assert (outcome.exit_code, outcome.report.counts["deal"]) == (0, {"create:ok": 1})
    events = [r.getMessage() for r in caplog.records if r.name == "sync_job.run"]
    assert with_console.exit_code == 0
    assert events == ["fetched", "transformed", "run finished"]  # all from the second run, the one with a console
