"""SIGTERM/SIGINT for an asyncio run: stop taking new work, give in-flight requests a bounded grace.

Behaviour, which the README documents:
- first SIGTERM or SIGINT: `Shutdown.stop` is set and "interrupted: finishing in-flight requests" is logged.
  The engine stops starting requests, calls `drain(in_flight, grace_seconds)`, writes its results and
  report, and exits 1 (Kubernetes sends SIGTERM, then SIGKILL after terminationGracePeriodSeconds).
- second signal: our handlers are already gone, so it gets whatever handled it before we were installed:
  Ctrl-C twice aborts (asyncio.run cancels the run, exit 130), SIGTERM twice kills the process. A hard stop
  is safe: writes are idempotent by external id and the workdir lock dies with the process.
- a previous handler marked with `outer_handler` (`run --every`'s loop) is also called on the first
  signal, so the outer loop learns that it should not start another run. Unmarked ones (asyncio.run's
  own SIGINT handler, which would cancel the run at once) are not.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import Any, TypeVar

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 20.0
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)

_Handler = Callable[[int, FrameType | None], Any] | int | None
_F = TypeVar("_F", bound=Callable[[int, FrameType | None], Any])
_OUTER_MARK = "_sync_job_outer_handler"


class Shutdown:
    """Turns the first SIGTERM/SIGINT into `stop.set()`; use as `async with Shutdown() as stopper:`."""

    def __init__(
        self, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, signals: tuple[signal.Signals, ...] = SIGNALS
    ) -> None:
        self.stop = asyncio.Event()
        self.grace_seconds = grace_seconds
        self.signals = signals
        self.received: signal.Signals | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, _Handler] = {}

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> bool:
        """Register the handlers on `loop` (default: the running loop); False where that is impossible.

        Signal handlers can only be set from the main thread; a run started from another thread (a test,
        an embedding application) still works, it just cannot be stopped by a signal.
        """
        loop = loop or asyncio.get_running_loop()
        for sig in self.signals:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (RuntimeError, ValueError, NotImplementedError) as exc:
                log.debug("signal handlers not installed (%s): the run cannot be interrupted cleanly", exc)
                self.uninstall()
                return False
            self._previous[sig] = previous
        self._loop = loop
        return True

    def uninstall(self) -> None:
        """Remove our handlers and put back the ones that were there before; safe to call twice."""
        loop, self._loop = self._loop, None
        for sig, previous in list(self._previous.items()):
            if loop is not None and not loop.is_closed():
                loop.remove_signal_handler(sig)
            # remove_signal_handler resets to SIG_DFL; an outer Python handler must survive the run.
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def request(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask the run to stop as if `sig` had arrived (also what the signal handler calls)."""
        self._on_signal(sig)

    async def drain(self, tasks: Iterable[asyncio.Future[Any]]) -> tuple[int, int]:
        """`drain(tasks, self.grace_seconds)`."""
        return await drain(tasks, self.grace_seconds)

    async def __aenter__(self) -> Shutdown:
        self.install()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            return
        self.received = sig
        self.stop.set()
        log.warning("interrupted: finishing in-flight requests (%s; grace %.0fs)", sig.name, self.grace_seconds)
        previous = dict(self._previous)
        self.uninstall()  # the next signal goes to whoever handled it before: the hard stop
        chained = previous.get(sig)
        if callable(chained) and getattr(chained, _OUTER_MARK, False):
            chained(sig, None)


def outer_handler(handler: _F) -> _F:
    """Mark a Python signal handler so that a Shutdown installed over it also calls it on the first signal."""
    setattr(handler, _OUTER_MARK, True)
    return handler


async def drain(tasks: Iterable[asyncio.Future[Any]], grace_seconds: float) -> tuple[int, int]:
    """Wait up to `grace_seconds` for `tasks` to finish, then cancel the rest; returns (finished, cancelled).

    Waits for the cancelled tasks to unwind too, so no request is left running when the report is written.
    """
    pending = {task for task in tasks if not task.done()}
    finished = 0
    if pending:
        done, pending = await asyncio.wait(pending, timeout=max(grace_seconds, 0.0))
        finished = len(done)
    if pending:
        log.warning("grace period of %.0fs over: cancelling %d in-flight request(s)", grace_seconds, len(pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return finished, len(pending)
