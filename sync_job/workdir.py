"""The workdir: created before a run; an OS error while writing it becomes one WorkdirError (exit 2), not a bug."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sync_job.errors import WorkdirError

# Failures of the machine, not of our code, wherever they happen: a human must make room or remount.
_ENVIRONMENT = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
}
_RUST_ERRNO = re.compile(r"\(os error (\d+)\)")  # Polars' I/O errors carry the errno only in their text


def prepare(workdir: Path, role: str = "workdir") -> None:
    """Create the workdir (and its parents); WorkdirError naming the path when that is impossible.

    `role` names the folder in messages: another command's output folder gets the same treatment.
    """
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WorkdirError(f"{role} {workdir}: exists and is not a folder") from None
    except NotADirectoryError:
        raise WorkdirError(f"{role} {workdir}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise WorkdirError(f"{role} {workdir}: cannot be created ({_reason(exc)})") from None


@contextmanager
def guarded(workdir: Path, role: str = "workdir") -> Iterator[None]:
    """Create `workdir` (`prepare`), then turn an OSError writing under it (or a full or read-only disk
    anywhere) into a WorkdirError.

    Other OS errors pass through: they belong to the sources (already SourceError) or are bugs.
    """
    prepare(workdir, role)
    try:
        yield
    except OSError as exc:
        error = classify(exc, workdir, role)
        if error is None:
            raise
        raise error from None


def classify(exc: OSError, workdir: Path, role: str = "workdir") -> WorkdirError | None:
    """The WorkdirError an OS error stands for, or None when it is not about the workdir or the disk."""
    code = _errno(exc)
    path = _path_in(exc, workdir)
    if code in _ENVIRONMENT:
        where = f"writing {path}" if path is not None else f"writing the {role} {workdir}"
        advice = "free some space" if code != errno.EROFS else f"point the {role} at a writable folder"
        return WorkdirError(f"{_ENVIRONMENT[code]} while {where}: {advice}")
    if path is not None:
        return WorkdirError(f"{role} {workdir}: cannot write {path} ({_reason(exc)})")
    return None


def _errno(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    match = _RUST_ERRNO.search(str(exc))
    return int(match.group(1)) if match else None


def _path_in(exc: OSError, workdir: Path) -> Path | None:
    for name in (exc.filename, exc.filename2):
        if isinstance(name, str | bytes) and name:
            path = Path(name.decode(errors="replace") if isinstance(name, bytes) else name)
            if path == workdir or workdir in path.parents:
                return path
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or _ENVIRONMENT.get(_errno(exc) or 0) or type(exc).__name__
