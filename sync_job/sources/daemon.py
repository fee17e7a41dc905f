"""Blocking work (boto3's streaming GET) run in a daemon thread that a cancelled run abandons instead of joining."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(work: Callable[[], T], name: str) -> T:
    """Run blocking `work` in a daemon thread and await it; cancelling the await returns at once.

    Not asyncio.to_thread: asyncio.run joins its executor's threads on exit (for up to 300 s, then the
    interpreter joins them again), so a socket read stuck in boto3 held SIGTERM's exit hostage. A cancelled
    `work` is abandoned instead: it stops at its next cancel check (or read timeout) or dies with the process.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody is waiting any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:  # handed over to the awaiting task, whatever it is
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
