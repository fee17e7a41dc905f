"""A hostile environment: unusable tokens, workdirs and disks, odd invocations. One line, the right code, no writes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from sync_job import cli, sync
from sync_job.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK
from sync_job.generate import generate
from sync_job.sandbox.server import Sandbox
from tests import test_bad_input
from tests.e2e import TOKEN
from tests.test_bad_input import config_file, error_line, nothing_requested

# The bad-input corpus's fixtures: three good sources in a folder, and logging put back after each CLI run.
folder = test_bad_input.folder
_restore_logging = test_bad_input._restore_logging

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))  # the installed console script


def run_cli(config: Path, base_url: str, *args: str, token: str = TOKEN) -> Result:
    env = {"PIPEDRIVE_API_TOKEN": token, "PIPEDRIVE_BASE_URL": base_url}
    return CliRunner().invoke(cli.app, ["run", "--config", str(config), "--log-format", "json", *args], env=env)


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The console script's own entry point in this process: usage errors are handled there, not by Click."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a small tmpfs (a real full or read-only disk); skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(size: str = "64k", read_only: bool = False) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        target.mkdir()
        options = f"size={size},mode=0777" + (",ro" if read_only else "")
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


def fill(disk: Path) -> None:
    """Write a file until the disk is full, leaving not one free block."""
    with (disk / "filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    assert shutil.disk_usage(disk).free == 0


# ---- the API token and the currency: refused before the first request ---------------------------------


@pytest.mark.parametrize("token", ["e2e-token\u00e9x", "e2e-token\n0123"], ids=["non-ascii", "inner-newline"])
def test_a_token_that_cannot_be_a_header_is_exit_2_before_any_request(
    folder: Path, sandbox: Sandbox, token: str
) -> None:
    result = run_cli(config_file(folder), sandbox.url, token=token)
    line = error_line(result, "PIPEDRIVE_API_TOKEN contains", "at position 10")
    assert "e2e-token" not in result.stdout + result.stderr
    assert "e2e-token" not in line
    nothing_requested(sandbox)
    assert not (folder / "work" / "combined.csv").exists()  # refused before minutes of fetching


def test_a_lower_case_currency_is_exit_2_before_any_request(folder: Path, sandbox: Sandbox) -> None:
    result = run_cli(config_file(folder, pipedrive={"currency": "usd"}), sandbox.url)
    error_line(result, "'pipedrive.currency'", "did you mean 'USD'?")
    nothing_requested(sandbox)


# ---- a workdir that cannot be written ------------------------------------------------------------------


def test_a_workdir_that_is_an_existing_file_is_exit_2(folder: Path, sandbox: Sandbox) -> None:
    (folder / "taken").write_text("not a folder\n", encoding="utf-8")
    result = run_cli(config_file(folder, workdir=str(folder / "taken")), sandbox.url)
    error_line(result, f"workdir {folder / 'taken'}: exists and is not a folder")
    nothing_requested(sandbox)


def test_a_workdir_under_a_file_is_exit_2(folder: Path, sandbox: Sandbox) -> None:
    (folder / "taken").write_text("not a folder\n", encoding="utf-8")
    result = run_cli(config_file(folder, workdir=str(folder / "taken" / "work")), sandbox.url)
    error_line(result, f"workdir {folder / 'taken' / 'work'}: a parent of it is a file")
    nothing_requested(sandbox)


def test_a_workdir_under_proc_is_exit_2(folder: Path, sandbox: Sandbox) -> None:
    result = run_cli(config_file(folder, workdir="/proc/sync-job-work"), sandbox.url)
    error_line(result, "workdir /proc/sync-job-work: cannot be created (")
    nothing_requested(sandbox)


def test_the_transform_command_refuses_an_unwritable_workdir_in_one_line(folder: Path) -> None:
    (folder / "taken").write_text("", encoding="utf-8")
    config = config_file(folder, workdir=str(folder / "taken"))
    result = CliRunner().invoke(cli.app, ["transform", "--config", str(config), "--log-format", "json"])
    error_line(result, "exists and is not a folder")


def test_a_workdir_on_a_read_only_disk_is_exit_2(
    folder: Path, sandbox: Sandbox, mount_tmpfs: Callable[..., Path]
) -> None:
    disk = mount_tmpfs(read_only=True)
    result = run_cli(config_file(folder, workdir=str(disk)), sandbox.url)
    error_line(result, f"read-only file system while writing {disk / '.lock'}")
    nothing_requested(sandbox)
    result = run_cli(config_file(folder, workdir=str(disk / "work")), sandbox.url)
    error_line(result, f"workdir {disk / 'work'}: cannot be created (Read-only file system)")


def test_a_full_disk_fails_at_the_lock_before_any_fetch(
    folder: Path, sandbox: Sandbox, mount_tmpfs: Callable[..., Path]
) -> None:
    disk = mount_tmpfs()
    fill(disk)
    result = run_cli(config_file(folder, workdir=str(disk)), sandbox.url)
    error_line(result, f"no space left on device while writing {disk / '.lock'}: free some space")
    nothing_requested(sandbox)


def test_a_disk_that_fills_up_during_the_transform_is_exit_2_and_nothing_is_sent(
    tmp_path: Path, sandbox: Sandbox, mount_tmpfs: Callable[..., Path]
) -> None:
    generate(tmp_path, orders=3000, seed=1)  # a combined.csv of ~200 KB, on a 64 KB disk
    disk = mount_tmpfs(size="64k")
    result = run_cli(config_file(tmp_path, workdir=str(disk)), sandbox.url)
    error_line(result, f"no space left on device while writing the workdir {disk}: free some space")
    nothing_requested(sandbox)
    assert not (disk / "combined.csv").exists()


def test_a_full_disk_while_writing_the_results_leaves_the_previous_files_whole(
    folder: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC injected (as Polars raises it) into the results file after a real apply: exit 2, one line."""
    config = config_file(folder)
    assert run_cli(config, sandbox.url).exit_code == EXIT_OK
    state = folder / "work" / "state"
    before = {path.name: path.read_bytes() for path in sorted((folder / "work" / "results").iterdir())}
    streaks = (state / "failure_streaks.json").read_bytes()
    (folder / "raw_payments.csv").write_text(
        "id,order_id,payment_method,amount\n1,1,credit_card,1500\n2,2,coupon,2050\n3,3,credit_card,1\n",
        encoding="utf-8",
    )
    write_csv = pl.DataFrame.write_csv

    def full_disk(frame: pl.DataFrame, file: object = None, **kwargs: object) -> object:
        if isinstance(file, Path) and file.parent.name == "results":
            file.write_bytes(b"entity,external_id,act")  # half a file, then the disk is full
            raise OSError("No space left on device (os error 28)")
        return write_csv(frame, file, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pl.DataFrame, "write_csv", full_disk)
    result = run_cli(config, sandbox.url)
    error_line(result, "no space left on device while writing the workdir")
    after = {path.name: path.read_bytes() for path in sorted((folder / "work" / "results").iterdir())}
    assert after == before  # no new results file, and no half-written temporary one either
    assert (state / "failure_streaks.json").read_bytes() == streaks


# ---- stderr is one line: usage errors, folders as configs, JSON logs with --verbose ----------------------


def test_a_config_path_that_is_a_folder_is_one_line_not_a_usage_box(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(capsys, "run", "--config", str(tmp_path))
    assert (code, out) == (EXIT_INPUT, "")
    assert err == f"error: {tmp_path}: is a directory, expected a YAML config file\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "error: Missing option '--config' / '-c'. (see 'sync-job run --help')\n"),
        (["run", "-c", "x.yaml", "--colour"], "error: No such option: --colour (see 'sync-job run --help')\n"),
        (
            ["run", "-c", "x.yaml", "--max-tokens", "0"],
            "error: Invalid value for '--max-tokens': Input should be greater than or equal to 1",
        ),
        (["sync"], "error: No such command 'sync'. (see 'sync-job --help')\n"),
    ],
    ids=["missing-config", "unknown-option", "out-of-range", "unknown-command"],
)
def test_a_usage_error_is_one_line_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_main(capsys, *argv)
    assert (code, out) == (EXIT_INPUT, "")
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_a_usage_error_in_a_real_process_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([SYNC_JOB, "run", "--config", str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == EXIT_INPUT
    assert proc.stderr == f"error: {tmp_path}: is a directory, expected a YAML config file\n"


def test_an_internal_error_with_json_logs_and_verbose_carries_the_traceback_in_one_json_line(
    folder: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def bug(*_: object) -> None:
        raise ZeroDivisionError(f"a bug near {TOKEN}\nwith a second line")

    monkeypatch.setattr(sync, "run", bug)
    result = run_cli(config_file(folder), sandbox.url, "--verbose")
    assert result.exit_code == EXIT_INTERNAL
    *logs, last = [line for line in result.stderr.splitlines() if line.strip()]
    assert last == "internal error: ZeroDivisionError: a bug near *** (see the traceback above)"
    events = [json.loads(line) for line in logs]  # every other line is one JSON object
    (failure,) = [event for event in events if event["message"] == "internal error"]
    assert failure["level"] == "error"
    assert "Traceback (most recent call last)" in failure["traceback"]
    assert "ZeroDivisionError: a bug near ***" in failure["traceback"]
    assert TOKEN not in result.stderr


def test_a_billion_laughs_config_ends_at_once_in_a_real_process(tmp_path: Path) -> None:
    from tests.test_config import BILLION_LAUGHS

    path = tmp_path / "sync.yaml"
    path.write_text(BILLION_LAUGHS, encoding="utf-8")
    env = {**os.environ, "PIPEDRIVE_API_TOKEN": TOKEN}
    # The timeout only bounds a failure (expanded, this file is 10^9 strings); it passes in about a second.
    proc = subprocess.run(
        [SYNC_JOB, "run", "--config", str(path)], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == EXIT_INPUT
    assert proc.stderr.count("\n") == 1
    assert "YAML anchors and aliases expand to more than 10,000 values" in proc.stderr


# ---- the CLI's polish: flags without a value label, shell completion ------------------------------------


def test_help_shows_no_value_label_on_boolean_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(capsys, "run", "--help")
    assert code == EXIT_OK
    assert "<bool>" not in out
    assert "--dry-run " in out
    assert "--config FILE" in out


def test_shell_completion_is_offered_and_installs_into_the_users_shell_config(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    shown = subprocess.run([SYNC_JOB, "--show-completion", "bash"], env=env, capture_output=True, text=True, check=True)
    assert "_sync_job_completion" in shown.stdout
    proc = subprocess.run(
        [SYNC_JOB, "--install-completion", "bash"], env=env, capture_output=True, text=True, check=True
    )
    assert "bash completion installed" in proc.stdout
    assert "_sync_job_completion" in (tmp_path / ".bash_completions" / "sync-job.sh").read_text(encoding="utf-8")
    completed = subprocess.run(
        [SYNC_JOB],
        env={**env, "_SYNC_JOB_COMPLETE": "complete_bash", "COMP_WORDS": "sync-job ru", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert completed.stdout.split() == ["run"]


# ---- run --every: a schedule that cannot work is refused before the first run ---------------------------


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("", "--every '': empty"),
        ("0 0 31 2 *", "--every '0 0 31 2 *': the cron expression never fires"),
        ("999999999999d", "--every '999999999999d': the interval must be at most 366d"),
        ("0 0 3 * * *", "--every '0 0 3 * * *': 6 fields; expected a 5-field cron expression"),
    ],
    ids=["empty", "february-31", "overflow", "quartz-seconds"],
)
def test_a_bad_every_is_exit_2_before_any_run(folder: Path, sandbox: Sandbox, every: str, message: str) -> None:
    error_line(run_cli(config_file(folder), sandbox.url, "--every", every), message)
    nothing_requested(sandbox)
    assert not (folder / "work").exists()


def test_generate_into_a_folder_that_cannot_be_created_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["generate", str(tmp_path / "taken"), "--orders", "3"])
    assert result.exit_code == EXIT_INPUT
    assert result.stderr == f"error: output folder {tmp_path / 'taken'}: exists and is not a folder\n"
