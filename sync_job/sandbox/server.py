"""Run the sandbox: in a background thread for tests and the demo (Sandbox), or blocking for the CLI (serve)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from sync_job.sandbox import state
from sync_job.sandbox.app import Runtime, make_app
from sync_job.sandbox.faults import Faults
from sync_job.sandbox.options import SandboxOptions
from sync_job.sandbox.ratelimit import RateLimiter
from sync_job.sandbox.stats import Stats
from sync_job.sandbox.store import Store

__all__ = ["Sandbox", "SandboxOptions", "serve"]

log = logging.getLogger(__name__)

SAVE_EVERY_SECONDS = 1.0


def _runtime(options: SandboxOptions) -> Runtime:
    store = Store()
    store.search_lag_seconds = options.search_lag_seconds
    if options.state_file is not None:
        state.load(store, Path(options.state_file))
    limiter = RateLimiter(options.burst, options.search_burst, options.window_seconds, options.daily_budget)
    faults = Faults(options.seed, options.fail_rate, options.drop_after_commit_rate)
    return Runtime(options, store, limiter, faults, Stats())


def _configure(rt: Runtime, changes: dict[str, Any]) -> None:
    """Apply option changes to the live components (thread-safe: each component takes its own lock)."""
    names = {f.name for f in dataclasses.fields(SandboxOptions)}
    unknown = set(changes) - names
    if unknown:
        raise TypeError(f"unknown sandbox option(s): {sorted(unknown)}")
    for name, value in changes.items():
        setattr(rt.options, name, value)
    o = rt.options
    with rt.limiter._lock:
        rt.limiter.burst, rt.limiter.search_burst = o.burst, o.search_burst
        rt.limiter.window, rt.limiter.daily_budget = o.window_seconds, o.daily_budget
    rt.faults.fail_rate, rt.faults.drop_after_commit_rate = o.fail_rate, o.drop_after_commit_rate
    if "seed" in changes:
        rt.faults.reseed(o.seed)
    with rt.store.lock:
        rt.store.search_lag_seconds = o.search_lag_seconds


async def _saver(rt: Runtime) -> None:
    """Rewrite the state file shortly after writes (off the event loop), so a person can watch it."""
    saved = rt.store.version
    while True:
        await asyncio.sleep(SAVE_EVERY_SECONDS)
        path = rt.options.state_file
        if path is not None and rt.store.version != saved:
            saved = await asyncio.to_thread(state.save, rt.store, Path(path))


async def _start(rt: Runtime, port: int) -> tuple[web.AppRunner, int, asyncio.Task[None]]:
    runner = web.AppRunner(make_app(rt), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound), asyncio.get_running_loop().create_task(_saver(rt))


async def _stop(rt: Runtime, runner: web.AppRunner, saver: asyncio.Task[None]) -> None:
    saver.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await saver
    await runner.cleanup()
    if rt.options.state_file is not None:
        state.save(rt.store, Path(rt.options.state_file))


class Sandbox:
    """A sandbox on 127.0.0.1 with a free port, served by its own event loop in a daemon thread."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self._rt = _runtime(self.options)
        self.store: Store = self._rt.store
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._saver: asyncio.Task[None] | None = None

    def start(self) -> Sandbox:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._runner, port, self._saver = loop.run_until_complete(_start(self._rt, 0))
                self.url = f"http://127.0.0.1:{port}"
            except BaseException as exc:  # surfaced in the caller's thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="pipedrive-sandbox", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, runner, saver = self._loop, self._runner, self._saver
        if loop is None or runner is None or saver is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(_stop(self._rt, runner, saver), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=30)
        self._loop = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def persons(self) -> list[dict[str, Any]]:
        """Every non-deleted person, v2-shaped, in id order."""
        return self.store.live("person")

    def deals(self) -> list[dict[str, Any]]:
        return self.store.live("deal")

    def stats(self) -> dict[str, Any]:
        return self._rt.stats.snapshot(self._rt.limiter.used)

    def configure(self, **changes: Any) -> None:
        """Change options at runtime, e.g. configure(fail_rate=0, drop_after_commit_rate=0)."""
        _configure(self._rt, changes)

    def reset_budget(self) -> None:
        self._rt.limiter.reset_budget()


def serve(options: SandboxOptions, port: int, ready: Callable[[str], object] | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM); the state file is written on the way out.

    `ready` is called with the base URL once the port is bound (a program that starts the sandbox learns it there,
    not by parsing a log line).
    """
    rt = _runtime(options)

    async def main() -> None:
        runner, bound, saver = await _start(rt, port)
        url = f"http://127.0.0.1:{bound}"
        log.info("Pipedrive sandbox on %s  (API v2 under /api/v2; Ctrl-C stops)", url)
        if ready is not None:
            ready(url)
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await _stop(rt, runner, saver)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
