"""Local sources: a path or a file:// URL, read in place (never copied)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from sync_job.errors import SourceError
from sync_job.sources.base import FetchedSource, display_uri, label


def local_path(name: str, uri: str) -> Path:
    """The filesystem path a local source names (pure: no I/O)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return Path(uri)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(f"{label(name, uri)}: file:// URLs must name a local file (file:///path), not a host")
    return Path(url2pathname(unquote(parts.path)))


class LocalSource:
    """Checks the file is there and readable; the transform reads it where it lies."""

    async def fetch(self, name: str, uri: str) -> FetchedSource:
        path = local_path(name, uri)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise SourceError(f"{label(name, uri)}: file not found") from None
        except OSError as exc:
            raise SourceError(f"{label(name, uri)}: cannot read file ({exc.strerror})") from None
        if path.is_dir():
            raise SourceError(f"{label(name, uri)}: is a directory, expected a CSV file")
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise SourceError(f"{label(name, uri)}: cannot read file ({exc.strerror})") from None
        return FetchedSource(name=name, uri=display_uri(uri), path=path, downloaded=False, size=stat.st_size)
