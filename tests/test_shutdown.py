"""SIGTERM/SIGINT handling for an asyncio run, with real signals sent to this process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from sync_job.errors import EXIT_INPUT, EXIT_PARTIAL
from sync_job.shutdown import Shutdown, drain, outer_handler
from tests.stalling import StallingServer

# A safety net so a broken handler fails the test instead of hanging it; not a timing assertion.
SAFETY = 10.0


def _install_recorder(*, outer: bool) -> Iterator[list[int]]:
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, outer_handler(handler) if outer else handler)
    yield calls
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def recorded_sigterm() -> Iterator[list[int]]:
    """A marked outer SIGTERM handler that records calls (stands in for `run --every`'s loop)."""
    yield from _install_recorder(outer=True)


@pytest.fixture
def unmarked_sigterm() -> Iterator[list[int]]:
    """An unmarked SIGTERM handler that records calls (stands in for asyncio.run's own SIGINT handler)."""
    yield from _install_recorder(outer=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_first_signal_sets_stop_and_logs_interrupted(
    sig: signal.Signals, recorded_sigterm: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sync_job.shutdown")
    async with Shutdown() as stopper:
        assert not stopper.stop.is_set()
        os.kill(os.getpid(), sig)
        await asyncio.wait_for(stopper.stop.wait(), SAFETY)
        assert stopper.received == sig
    assert "interrupted: finishing in-flight requests" in caplog.text


async def test_unmarked_previous_handler_is_not_called_on_the_first_signal(unmarked_sigterm: list[int]) -> None:
    """asyncio.run's SIGINT handler would cancel the run at once: only marked outer handlers are chained."""
    async with Shutdown() as stopper:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopper.stop.wait(), SAFETY)
        await asyncio.sleep(0)
        assert unmarked_sigterm == []
        os.kill(os.getpid(), signal.SIGTERM)  # the second signal goes to the previous handler: the hard stop
        await asyncio.sleep(0)
        assert unmarked_sigterm == [signal.SIGTERM]


async def test_previous_handlers_are_restored_after_the_run(recorded_sigterm: list[int]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    async with Shutdown() as stopper:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        assert not stopper.stop.is_set()
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert recorded_sigterm == []


async def test_outer_handler_hears_the_first_signal_and_gets_the_second(recorded_sigterm: list[int]) -> None:
    """The first SIGTERM stops the run and tells the outer loop; the second goes straight to the outer handler."""
    async with Shutdown() as stopper:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stopper.stop.wait(), SAFETY)
        assert recorded_sigterm == [signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0)  # Python runs signal handlers between bytecodes of the main thread
        assert recorded_sigterm == [signal.SIGTERM, signal.SIGTERM]
        assert stopper.received == signal.SIGTERM


async def test_request_stops_like_a_signal() -> None:
    async with Shutdown(grace_seconds=3) as stopper:
        stopper.request()
        assert stopper.stop.is_set()
        assert stopper.received == signal.SIGTERM


def test_install_outside_the_main_thread_degrades_to_no_handlers() -> None:
    """A run started from a worker thread still works; it just cannot be stopped by a signal."""
    results: list[Any] = []

    async def body() -> None:
        stopper = Shutdown()
        results.append(stopper.install())
        stopper.uninstall()

    thread = threading.Thread(target=asyncio.run, args=(body(),))
    thread.start()
    thread.join()
    assert results == [False]


async def test_drain_waits_for_in_flight_requests_that_finish() -> None:
    release = asyncio.Event()

    async def request() -> str:
        await release.wait()
        return "ok"

    tasks = [asyncio.create_task(request()) for _ in range(3)]
    asyncio.get_running_loop().call_soon(release.set)
    assert await drain(tasks, grace_seconds=SAFETY) == (3, 0)
    assert [t.result() for t in tasks] == ["ok"] * 3


async def test_drain_cancels_what_outlives_the_grace_period(caplog: pytest.LogCaptureFixture) -> None:
    never = asyncio.Event()
    unwound: list[str] = []

    async def stuck() -> None:
        try:
            await never.wait()
        finally:
            unwound.append("stuck")

    async def quick() -> None:
        return None

    tasks = [asyncio.create_task(stuck()), asyncio.create_task(quick())]
    finished, cancelled = await drain(tasks, grace_seconds=0.01)
    assert (finished, cancelled) == (1, 1)
    assert tasks[0].cancelled()
    assert unwound == ["stuck"]  # the cancelled task had unwound before drain returned
    assert "cancelling 1 in-flight request(s)" in caplog.text


async def test_drain_with_nothing_in_flight_returns_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    assert await drain([done], grace_seconds=SAFETY) == (0, 0)
    assert await Shutdown(grace_seconds=SAFETY).drain([]) == (0, 0)


async def test_engine_pattern_stops_taking_work_and_finishes_in_flight() -> None:
    """The pattern the sync engine follows: stop starting requests on SIGTERM, drain the in-flight ones."""
    started: list[int] = []
    completed: list[int] = []
    gate = asyncio.Event()

    async def request(n: int) -> None:
        await gate.wait()
        completed.append(n)

    async with Shutdown(grace_seconds=SAFETY) as stopper:
        in_flight: set[asyncio.Task[None]] = set()
        for n in range(1000):
            if stopper.stop.is_set():
                break
            started.append(n)
            in_flight.add(asyncio.create_task(request(n)))
            if n == 4:
                os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0)
        gate.set()
        finished, cancelled = await stopper.drain(in_flight)
    assert stopper.stop.is_set()
    assert len(started) < 1000
    assert sorted(completed) == started
    assert (finished, cancelled) == (len(started), 0)


# --- a real `sync-job run` process: no source can hold it past SIGTERM's grace ------------------------------------

SYNC_JOB = str(Path(sys.executable).with_name("sync-job"))  # the installed console script
# Far below what the stalls below last without the fixes (minutes), far above a normal exit: not a speed test.
EXIT_WITHIN = 60.0


def run_config(tmp_path: Path, endpoint: str = "http://127.0.0.1:9", **sources: str) -> Path:
    """A config whose unnamed sources are small local CSVs; `fetch` waits long, so only the signal ends a stall."""
    for name in ("customers", "orders", "payments"):
        if name not in sources:
            local = tmp_path / f"{name}.csv"
            local.write_text("id\n1\n", encoding="utf-8")
            sources[name] = str(local)
    config = {
        "sources": sources,
        "workdir": str(tmp_path / "work"),
        "fetch": {"timeout_seconds": 120, "max_attempts": 4},
        "s3": {"endpoint_url": endpoint, "region": "us-east-1"},
    }
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_run(config: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PIPEDRIVE_API_TOKEN": "shutdown-test-token",
        "PIPEDRIVE_BASE_URL": "http://127.0.0.1:9",  # never reached: the run stops while fetching
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [SYNC_JOB, "run", "--config", str(config), "--log-format", "json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> str:
    """The process's stderr once it has exited; killed (and the test failed) if it outlives EXIT_WITHIN."""
    try:
        _, err = proc.communicate(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the run was still going {EXIT_WITHIN:.0f}s later: {err[-2000:]}")
    return err


def sigterm_once_requested(proc: subprocess.Popen[str], server: StallingServer) -> str:
    if not server.got_request.wait(EXIT_WITHIN):
        proc.kill()
        pytest.fail(f"the source was never requested: {proc.communicate()[1][-2000:]}")
    proc.send_signal(signal.SIGTERM)
    return finish(proc)


@pytest.mark.parametrize("trickle", [False, True], ids=["never-answers", "trickles"])
def test_sigterm_while_an_http_source_stalls_exits_1_interrupted(tmp_path: Path, trickle: bool) -> None:
    with StallingServer(trickle=trickle) as stalling:
        proc = start_run(run_config(tmp_path, orders=f"{stalling.url}/orders.csv"), tmp_path)
        err = sigterm_once_requested(proc, stalling)
    assert proc.returncode == EXIT_PARTIAL, err[-2000:]
    assert "interrupted while fetching: nothing was written" in err
    assert "Traceback" not in err
    assert json.loads((tmp_path / "work" / "report.json").read_text(encoding="utf-8"))["status"] == "interrupted"


def test_sigterm_while_an_s3_download_hangs_exits_1_without_waiting_for_the_stuck_thread(tmp_path: Path) -> None:
    """The S3 GET runs in a thread; asyncio.run used to join it at exit, long after 'interrupted' was logged."""
    with StallingServer() as silent:
        config = run_config(tmp_path, orders="s3://jaffle/orders.csv", endpoint=silent.url)
        proc = start_run(config, tmp_path)
        err = sigterm_once_requested(proc, silent)
    assert proc.returncode == EXIT_PARTIAL, err[-2000:]
    assert "interrupted while fetching: nothing was written" in err
    assert "Traceback" not in err


def test_a_fifo_source_makes_the_run_exit_2_at_once_with_one_error_line(tmp_path: Path) -> None:
    """The FIFO's open() used to block the event loop for ever: not even SIGTERM could end the run."""
    fifo = tmp_path / "payments.csv"
    os.mkfifo(fifo)
    proc = start_run(run_config(tmp_path, payments=str(fifo)), tmp_path)
    err = finish(proc)
    assert proc.returncode == EXIT_INPUT
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: source 'payments' ({fifo}): is a named pipe (FIFO), expected a regular CSV file"
    ]
    assert not (tmp_path / "work" / "combined.csv").exists()
