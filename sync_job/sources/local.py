"""Local sources: a path or a file:// URL, read in place (never copied)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from sync_job.errors import SourceError
from sync_job.sources.base import FetchedSource, display_uri, label

# What a path may be instead of a regular file. Each would stall or never end a read: a FIFO blocks on open until
# a writer appears, /dev/zero and /dev/urandom never reach end-of-file, and neither can be re-read by the transform.
_NOT_A_FILE = (
    (stat.S_ISDIR, "is a directory"),
    (stat.S_ISFIFO, "is a named pipe (FIFO)"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
    (stat.S_ISSOCK, "is a socket"),
)


def local_path(name: str, uri: str) -> Path:
    """The filesystem path a local source names (pure: no I/O)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return Path(uri)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"{label(name, uri)}: file:// URLs must name a local file (file:///path), not a host")
    return Path(url2pathname(unquote(parts.path)))


def not_a_regular_file(mode: int) -> str | None:
    """Why a file of this st_mode cannot be a source, or None for a regular file (pure)."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _NOT_A_FILE if test(mode)), "is not a regular file")


def _require_regular(where: str, mode: int) -> None:
    problem = not_a_regular_file(mode)
    if problem:
        raise SourceError(f"{where}: {problem}, expected a regular CSV file")


class LocalSource:
    """Checks the path is a regular, readable file; the transform reads it where it lies."""

    async def fetch(self, name: str, uri: str) -> FetchedSource:
        where = label(name, uri)
        path = local_path(name, uri)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise SourceError(f"{where}: file not found") from None
        except OSError as exc:  # e.g. a symlink loop (ELOOP), a path through a file (ENOTDIR), no permission
            raise SourceError(f"{where}: cannot read file ({exc.strerror})") from None
        except ValueError:  # os.stat refuses paths with a NUL byte
            raise SourceError(f"{where}: the path contains a NUL byte") from None
        _require_regular(where, mode)
        try:
            # O_NONBLOCK: should the path have become a FIFO since the stat, the open must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SourceError(f"{where}: cannot read file ({exc.strerror})") from None
        try:
            status = os.fstat(fd)
        finally:
            os.close(fd)
        _require_regular(where, status.st_mode)
        return FetchedSource(name=name, uri=display_uri(uri), path=path, downloaded=False, size=status.st_size)
