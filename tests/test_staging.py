"""Atomic output files: staged temp paths, and `recycled` writing over the spare of the version before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sync_job.staging import recycled, spare_path, staged


def _write(target: Path, content: bytes) -> None:
    with recycled(target) as handle:
        handle.write(content)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_recycled_keeps_the_replaced_version_as_spare(tmp_path: Path) -> None:
    target = tmp_path / "combined.csv"
    _write(target, b"first version\n")
    assert _names(tmp_path) == ["combined.csv"]
    _write(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert spare_path(target).read_bytes() == b"first version\n"
    assert _names(tmp_path) == [".combined.csv.spare", "combined.csv"]


def test_recycled_writes_over_the_spare_in_place_and_cuts_it_to_the_new_length(tmp_path: Path) -> None:
    """The third version lands in the first version's file (same inode), with none of its longer tail."""
    target = tmp_path / "combined.csv"
    _write(target, b"a long first version\n" * 100)
    first_inode = target.stat().st_ino
    _write(target, b"second\n")
    _write(target, b"third\n")
    assert target.read_bytes() == b"third\n"
    assert target.stat().st_ino == first_inode
    assert spare_path(target).read_bytes() == b"second\n"


def test_recycled_rewrites_from_the_start_after_seek(tmp_path: Path) -> None:
    target = tmp_path / "combined.csv"
    with recycled(target) as handle:
        handle.write(b"a first attempt that is longer\n")
        handle.seek(0)
        handle.write(b"retry\n")
    assert target.read_bytes() == b"retry\n"


def test_recycled_failure_keeps_the_target_and_leaves_only_the_spare(tmp_path: Path) -> None:
    target = tmp_path / "combined.csv"
    _write(target, b"good\n")

    def fail_halfway() -> None:
        with recycled(target) as handle:
            handle.write(b"half")
            raise RuntimeError("the pass failed")

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert target.read_bytes() == b"good\n"
    assert _names(tmp_path) == [".combined.csv.spare", "combined.csv"]
    _write(target, b"next\n")  # the half-written spare is simply written over
    assert target.read_bytes() == b"next\n"


@pytest.mark.parametrize("link", ["spare", "target"])
def test_recycled_never_writes_through_a_symlink(tmp_path: Path, link: str) -> None:
    """A symlink in place of the spare or of the target is replaced; the file it points to is not written."""
    target, outside = tmp_path / "combined.csv", tmp_path / "precious.txt"
    outside.write_bytes(b"precious\n")
    _write(target, b"v1\n")
    (spare_path(target) if link == "spare" else target).unlink(missing_ok=True)
    (spare_path(target) if link == "spare" else target).symlink_to(outside)
    _write(target, b"v2\n")
    _write(target, b"v3\n")
    assert outside.read_bytes() == b"precious\n"
    assert target.read_bytes() == b"v3\n"
    assert not target.is_symlink()


def test_recycled_never_writes_over_a_spare_that_has_another_name(tmp_path: Path) -> None:
    """A spare hard-linked elsewhere (someone kept the old version) is left intact, not overwritten."""
    target = tmp_path / "combined.csv"
    _write(target, b"v1\n")
    _write(target, b"v2\n")
    keep = tmp_path / "kept-v1.csv"
    os.link(spare_path(target), keep)
    _write(target, b"v3\n")
    assert keep.read_bytes() == b"v1\n"
    assert target.read_bytes() == b"v3\n"


def test_recycled_without_a_spare_starts_a_new_file(tmp_path: Path) -> None:
    """A writer that finds no spare (a concurrent one claimed it) writes a file of its own."""
    target = tmp_path / "combined.csv"
    _write(target, b"v1\n")
    _write(target, b"v2\n")
    spare_path(target).unlink()
    _write(target, b"v3\n")
    assert target.read_bytes() == b"v3\n"
    assert spare_path(target).read_bytes() == b"v2\n"


def test_staged_renames_every_temp_onto_its_target_on_success(tmp_path: Path) -> None:
    targets = [tmp_path / "a.csv", tmp_path / "b.csv"]
    with staged(targets) as temps:
        for temp, text in zip(temps, ("a", "b"), strict=True):
            temp.write_text(text)
    assert [t.read_text() for t in targets] == ["a", "b"]
    assert _names(tmp_path) == ["a.csv", "b.csv"]


def test_staged_failure_leaves_the_targets_and_no_temps(tmp_path: Path) -> None:
    target = tmp_path / "a.csv"
    target.write_text("old")

    def fail_halfway() -> None:
        with staged([target]) as temps:
            temps[0].write_text("new")
            raise RuntimeError("failed")

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert target.read_text() == "old"
    assert _names(tmp_path) == ["a.csv"]
