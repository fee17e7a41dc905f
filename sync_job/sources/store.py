"""WORKDIR/raw/: downloads go to a temp file that becomes <name>.csv only by atomic rename; validators beside it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Validators:
    """What a conditional request needs to ask "has it changed since?"."""

    etag: str | None
    last_modified: str | None


def _uri_key(uri: str) -> str:
    # A hash, not the URI itself: a configured URL may carry a token in its query string.
    return hashlib.sha256(uri.encode("utf-8")).hexdigest()


class PartFile:
    """A temp file next to its target; it replaces the target only on commit() and is deleted otherwise."""

    def __init__(self, target: Path) -> None:
        self.target = target
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        self.path = Path(tmp)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self.size = 0
        self._done = False

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self) -> None:
        """Make the bytes durable, then swap them in: readers see the old file or the new one, never a mix."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.path, self.target)
        self._done = True

    def discard(self) -> None:
        if not self._done:
            self._file.close()
            self.path.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> PartFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


class RawStore:
    """The download folder: one `<name>.csv` per remote source plus `<name>.csv.meta.json` (ETag, Last-Modified)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "raw"

    def target(self, name: str) -> Path:
        return self.dir / f"{name}.csv"

    def _meta(self, name: str) -> Path:
        return self.dir / f"{name}.csv.meta.json"

    def validators(self, name: str, uri: str) -> Validators | None:
        """The stored validators, only if they belong to this URI and the file on disk is the one they describe."""
        target, meta_path = self.target(name), self._meta(name)
        try:
            meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
            size = target.stat().st_size
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("uri_sha256") != _uri_key(uri) or meta.get("size") != size:
            return None
        etag, modified = meta.get("etag"), meta.get("last_modified")
        if not isinstance(etag, str | None) or not isinstance(modified, str | None) or not (etag or modified):
            return None
        return Validators(etag=etag, last_modified=modified)

    def part(self, name: str) -> PartFile:
        """A fresh temp file for `name`; leftovers of an interrupted earlier run are removed first."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob(f".{name}.csv.*.part"):
            stale.unlink(missing_ok=True)
        return PartFile(self.target(name))

    def commit(self, part: PartFile, name: str, uri: str, validators: Validators) -> Path:
        """Swap the completed download in and record its validators.

        The old metadata goes first: if we die between the two renames, the next run simply downloads
        unconditionally instead of trusting validators that describe a different file.
        """
        meta_path = self._meta(name)
        meta_path.unlink(missing_ok=True)
        part.commit()
        meta = {
            "uri_sha256": _uri_key(uri),
            "etag": validators.etag,
            "last_modified": validators.last_modified,
            "size": part.size,
        }
        tmp = meta_path.with_name(meta_path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, meta_path)
        return part.target
