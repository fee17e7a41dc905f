"""The workdir lock: one sync-job run per workdir at a time, never a stale lock after a crash."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sync_job.errors import LockHeld

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


@contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold an exclusive flock on WORKDIR/.lock for the duration of the block.

    The kernel owns the lock, not the file: it is released when the process exits in any way (SIGKILL and
    OOM kill included), so there is no stale-lock clean-up. The file itself is kept between runs, because
    unlinking a lock file races with a run that has just opened it. A second run raises LockHeld at once,
    without waiting and without writing anything.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_NAME
    # os.open is close-on-exec by default, so child processes never inherit (and keep) the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"another sync-job run ({_holder(fd)}) holds {path}: try again when it has finished"
            ) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {started}\n".encode(), 0)
        except OSError as exc:  # a full disk shows here first: name the file, as os.open's errors do
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        log.debug("workdir lock taken: %s", path)
        try:
            yield
        finally:
            # Emptied before release so a reader never names a finished run; a crash leaves old text
            # behind, which is harmless: the next holder overwrites it and only the flock counts.
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Describe the holder from the file's 'PID START' text; it may be empty if the holder just started."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 2 and text[0].isdigit():
        return f"pid {text[0]}, started {text[1]}"
    return "pid unknown, just starting"
