"""What the core tells a person while it runs, as an interface: the terminal UI is one implementation, null another.

The sync engine, the destinations and the remote reader talk to a `Progress` and never import the terminal UI
(rich): a library caller or a test gets `NullProgress`, the CLI passes its `console.RunConsole`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol

if TYPE_CHECKING:
    from sync_job.report import RunReport


class Progress(Protocol):
    def event(self, message: str, **fields: Any) -> None:
        """A structured event of the run (sources fetched, frames transformed)."""
        ...

    def progress(self) -> AbstractContextManager[None]:
        """The span in which `advance` moves bars (reading and applying)."""
        ...

    def advance(self, name: str, n: int = 1, total: int | None = None) -> None:
        """Move the named bar by n; `total` once it is known."""
        ...

    def show_plan(self, summary: dict[str, Any]) -> None:
        """A dry run's plan (diff.plan_summary)."""
        ...

    def show_summary(self, report: RunReport) -> None:
        """The finished run."""
        ...


class NullProgress:
    """Shows nothing: the default, so that using sync-job as a library prints nothing of its own."""

    def event(self, message: str, **fields: Any) -> None:
        pass

    @contextmanager
    def progress(self) -> Iterator[None]:
        yield

    def advance(self, name: str, n: int = 1, total: int | None = None) -> None:
        pass

    def show_plan(self, summary: dict[str, Any]) -> None:
        pass

    def show_summary(self, report: RunReport) -> None:
        pass


# It holds no state, so one instance serves every default (a dataclass field's default must not be a call).
NULL_PROGRESS: Final[Progress] = NullProgress()
