"""The workdir lock, exercised with a real second process holding it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sync_job.errors import EXIT_LOCKED, LockHeld
from sync_job.lock import workdir_lock

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sync_job.lock import workdir_lock

    with workdir_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the parent closes stdin (or kills us)
    """
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A child process that holds tmp_path's lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_second_run_fails_at_once_naming_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(LockHeld) as caught, workdir_lock(tmp_path):
        pytest.fail("entered a lock another process holds")
    message = str(caught.value)
    assert f"pid {holder.pid}, started " in message
    assert str(tmp_path / ".lock") in message
    assert caught.value.exit_code == EXIT_LOCKED == 3


def test_refused_run_touches_nothing(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    lock_file = tmp_path / ".lock"
    before = (sorted(p.name for p in tmp_path.iterdir()), lock_file.read_bytes(), lock_file.stat().st_mtime_ns)
    with pytest.raises(LockHeld), workdir_lock(tmp_path):
        pass
    after = (sorted(p.name for p in tmp_path.iterdir()), lock_file.read_bytes(), lock_file.stat().st_mtime_ns)
    assert after == before


def test_lock_is_free_after_the_holder_is_sigkilled(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """A SIGKILLed run never leaves a stale lock: the kernel drops the flock with the process."""
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    with workdir_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())


def test_lock_is_free_after_the_holder_exits_normally(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait() == 0
    assert (tmp_path / ".lock").read_text() == ""  # emptied on release
    with workdir_lock(tmp_path):
        pass


def test_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    with workdir_lock(tmp_path), pytest.raises(LockHeld, match=f"pid {os.getpid()}"), workdir_lock(tmp_path):
        pass
    with workdir_lock(tmp_path):  # and released on leaving the block, even after the inner failure
        pass


def test_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), workdir_lock(tmp_path):
        raise RuntimeError("boom")
    with workdir_lock(tmp_path):
        pass


def test_lock_creates_a_missing_workdir(tmp_path: Path) -> None:
    with workdir_lock(tmp_path / "new" / "workdir"):
        assert (tmp_path / "new" / "workdir" / ".lock").is_file()


def test_holder_described_even_before_it_wrote_its_pid(tmp_path: Path) -> None:
    """A holder that has the flock but has not yet written its pid still yields a clear message."""
    import fcntl

    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockHeld, match="pid unknown"), workdir_lock(tmp_path):
            pass
    finally:
        os.close(fd)


def test_cli_run_exits_3_while_another_run_holds_the_lock(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    """`sync-job run` on a locked workdir prints one line naming the lock and exits 3, writing nothing."""
    from sync_job.cli import app

    config = tmp_path.parent / f"{tmp_path.name}-sync.yaml"
    config.write_text(
        f"sources: {{customers: c.csv, orders: o.csv, payments: p.csv}}\nworkdir: {tmp_path}\n", encoding="utf-8"
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        app, ["run", "--config", str(config), "--log-format", "json"], env={"PIPEDRIVE_API_TOKEN": "t0ken-for-test"}
    )
    assert result.exit_code == EXIT_LOCKED, result.output
    assert "another sync-job run" in result.output
    assert f"pid {holder.pid}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
