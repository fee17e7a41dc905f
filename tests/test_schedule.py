"""`run --every`: schedule parsing, slot arithmetic, the loop with a fake clock, and SIGTERM in a real process."""

from __future__ import annotations

import logging
import select
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest

from sync_job.errors import ConfigError, DataError
from sync_job.schedule import Schedule, next_run, next_slot_after_run, parse_every, run_every

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SAFETY = 30.0  # a safety net against hangs in the subprocess tests, not a timing assertion


@pytest.mark.parametrize(
    ("spec", "interval"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        (" 45m ", timedelta(minutes=45)),
    ],
)
def test_intervals_parse(spec: str, interval: timedelta) -> None:
    assert parse_every(spec) == Schedule(spec=spec.strip(), interval=interval)


@pytest.mark.parametrize("spec", ["0 3 * * *", "*/15 * * * *", "@daily", "30 2 * * 1-5"])
def test_cron_expressions_parse(spec: str) -> None:
    assert parse_every(spec) == Schedule(spec=spec, cron=spec)


@pytest.mark.parametrize("spec", ["", "0h", "24x", "h", "every day", "1.5h", "61 * * * *", "30m1h", "-5m"])
def test_invalid_spec_is_a_config_error_naming_it(spec: str) -> None:
    with pytest.raises(ConfigError, match="--every") as caught:
        parse_every(spec)
    assert repr(spec) in str(caught.value)


def test_next_run_of_an_interval_is_now_plus_interval() -> None:
    assert next_run(parse_every("1h30m"), T0) == T0 + timedelta(hours=1, minutes=30)


def test_next_run_of_cron_is_strictly_after_now() -> None:
    daily = parse_every("0 3 * * *")
    assert next_run(daily, T0) == datetime(2025, 3, 2, 3, 0, tzinfo=UTC)
    assert next_run(daily, datetime(2025, 3, 2, 3, 0, tzinfo=UTC)) == datetime(2025, 3, 3, 3, 0, tzinfo=UTC)
    assert next_run(daily, datetime(2025, 3, 2, 2, 59, tzinfo=UTC)) == datetime(2025, 3, 2, 3, 0, tzinfo=UTC)


def test_a_run_within_its_slot_keeps_the_rhythm() -> None:
    """Interval slots are anchored at the first run, not at the end of the previous run."""
    assert next_slot_after_run(parse_every("24h"), T0, T0 + timedelta(minutes=7)) == (T0 + timedelta(hours=24), 0)


def test_an_overrunning_run_skips_the_missed_interval_slots() -> None:
    slot, missed = next_slot_after_run(parse_every("1h"), T0, T0 + timedelta(hours=2, minutes=30))
    assert (slot, missed) == (T0 + timedelta(hours=3), 2)


def test_an_overrun_ending_exactly_on_a_slot_skips_it() -> None:
    assert next_slot_after_run(parse_every("1h"), T0, T0 + timedelta(hours=1)) == (T0 + timedelta(hours=2), 1)


def test_an_overrunning_run_skips_the_missed_cron_slots() -> None:
    every_15 = parse_every("*/15 * * * *")
    slot, missed = next_slot_after_run(every_15, T0, T0 + timedelta(minutes=40))
    assert (slot, missed) == (T0 + timedelta(minutes=45), 2)


class FakeTime:
    """A clock that only moves when the loop sleeps or a fake job 'works'."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_run_every_runs_three_times_on_schedule(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sync_job.schedule")
    fake, stop = FakeTime(T0), threading.Event()
    started: list[datetime] = []

    def job() -> int:
        started.append(fake.now)
        fake.now += timedelta(minutes=10)  # the run takes ten minutes
        if len(started) == 3:
            stop.set()
        return len(started) % 2  # 1, 0, 1: the last run's code is returned

    code = run_every("1h", job, clock=fake.clock, sleep=fake.sleep, stop_event=stop)
    assert code == 1
    assert started == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert fake.sleeps == [50 * 60.0, 50 * 60.0]
    assert "next run at 2025-03-01T13:00:00+00:00" in caplog.text
    assert "next run at 2025-03-01T14:00:00+00:00" in caplog.text
    assert "stopping: no further runs" in caplog.text


def test_run_every_never_overlaps_and_skips_missed_slots(caplog: pytest.LogCaptureFixture) -> None:
    fake, stop = FakeTime(T0), threading.Event()
    spans: list[tuple[datetime, datetime]] = []

    def job() -> int:
        begin = fake.now
        fake.now += timedelta(hours=2, minutes=30) if not spans else timedelta(minutes=1)
        spans.append((begin, fake.now))
        if len(spans) == 2:
            stop.set()
        return 0

    assert run_every("1h", job, clock=fake.clock, sleep=fake.sleep, stop_event=stop) == 0
    assert spans[1][0] == T0 + timedelta(hours=3)  # the 13:00 and 14:00 slots were skipped, not run late
    assert spans[0][1] <= spans[1][0]
    assert "skipped 2 slot(s)" in caplog.text


def test_run_every_with_cron_waits_for_the_first_match() -> None:
    fake, stop = FakeTime(datetime(2025, 3, 1, 2, 30, tzinfo=UTC)), threading.Event()
    started: list[datetime] = []

    def job() -> int:
        started.append(fake.now)
        stop.set()
        return 0

    run_every("0 3 * * *", job, clock=fake.clock, sleep=fake.sleep, stop_event=stop)
    assert started == [datetime(2025, 3, 1, 3, 0, tzinfo=UTC)]


def test_a_failed_run_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    fake, stop = FakeTime(T0), threading.Event()
    calls: list[int] = []

    def job() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise DataError("raw_orders.csv: line 3: amount is not a number")
        stop.set()
        return 0

    assert run_every("30m", job, clock=fake.clock, sleep=fake.sleep, stop_event=stop) == 0
    assert len(calls) == 2
    assert "run failed: raw_orders.csv: line 3" in caplog.text


def test_a_failed_last_run_returns_its_exit_code() -> None:
    fake, stop = FakeTime(T0), threading.Event()

    def job() -> int:
        stop.set()
        raise DataError("raw_orders.csv: empty file")

    assert run_every("30m", job, clock=fake.clock, sleep=fake.sleep, stop_event=stop) == 2


def test_stop_before_the_first_slot_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    ran: list[int] = []

    def job() -> int:
        ran.append(1)
        return 0

    assert run_every("24h", job, stop_event=stop) == 0
    assert ran == []


def test_invalid_spec_fails_before_running_anything() -> None:
    ran: list[int] = []

    def job() -> int:
        ran.append(1)
        return 0

    with pytest.raises(ConfigError, match="'soon'"):
        run_every("soon", job)
    assert ran == []


def test_signal_handlers_are_restored_after_the_loop() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()
    stop.set()
    run_every("1h", lambda: 0, stop_event=stop)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def _spawn(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], SAFETY)
    assert ready, "child printed nothing"
    return proc.stdout.readline().strip()


def test_sigterm_while_waiting_stops_the_loop_cleanly() -> None:
    proc = _spawn(
        """
        import logging, sys
        from sync_job.schedule import run_every
        logging.basicConfig(level=logging.INFO)
        def job():
            print("ran", flush=True)
            return 0
        sys.exit(run_every("1h", job))
        """
    )
    try:
        assert _read_line(proc) == "ran"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=SAFETY)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert "stopping: no further runs" in stderr


def test_sigterm_during_a_run_ends_the_run_and_the_loop() -> None:
    """The run stops gracefully (exit 1, interrupted) and the loop starts no further run."""
    proc = _spawn(
        """
        import asyncio, logging, sys
        from sync_job.schedule import run_every
        from sync_job.shutdown import Shutdown
        logging.basicConfig(level=logging.INFO)
        async def one_run():
            async with Shutdown() as stopper:
                print("in run", flush=True)
                await stopper.stop.wait()
                return 1
        sys.exit(run_every("1s", lambda: asyncio.run(one_run())))
        """
    )
    try:
        assert _read_line(proc) == "in run"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=SAFETY)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    assert "in run" not in stdout  # no second run started
    assert "interrupted: finishing in-flight requests" in stderr
    assert "stopping: no further runs" in stderr


# ---- --every values that could never work: refused up front, one line, exit 2 ---------------------------


@pytest.mark.parametrize("spec", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6 *"])
def test_a_cron_expression_that_never_fires_is_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"the cron expression never fires \(no such date\)"):
        parse_every(spec, now=T0)


def test_a_cron_expression_that_fires_rarely_is_accepted() -> None:
    assert next_run(parse_every("0 0 29 2 *", now=T0), T0) == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["999999999999d", "3000000d", "367d", "9" * 5000 + "s", "8785h"])
def test_an_interval_longer_than_a_year_is_refused_instead_of_overflowing(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"the interval must be at most 366d"):
        parse_every(spec)


def test_the_longest_interval_keeps_its_slots_within_range_for_years() -> None:
    schedule = parse_every("366d")
    slot, missed = next_slot_after_run(schedule, T0, T0 + timedelta(days=3 * 366 + 1))
    assert (slot, missed) == (T0 + 4 * timedelta(days=366), 3)


@pytest.mark.parametrize("spec", ["", "   "])
def test_an_empty_every_is_refused_naming_what_is_accepted(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"empty: give an interval like 24h or a 5-field cron expression"):
        parse_every(spec)


@pytest.mark.parametrize(
    ("spec", "fields"), [("0 0 3 * * *", 6), ("*/10 * * * * *", 6), ("0 3 * * * 0 2030", 7), ("0 3 * *", 4)]
)
def test_a_cron_expression_without_exactly_five_fields_is_refused(spec: str, fields: int) -> None:
    """croniter reads a sixth field as seconds *last*; a Quartz user means seconds first: refuse both."""
    with pytest.raises(ConfigError, match=rf"{fields} fields; expected a 5-field cron expression .* in UTC"):
        parse_every(spec)


def test_cron_names_and_shortcuts_of_the_accepted_dialect_parse() -> None:
    for spec in ("0 3 * * mon-fri", "0 3 L * *", "0 3 * * 1#2", "@hourly", "@weekly", "@yearly"):
        assert parse_every(spec, now=T0).cron == spec


@pytest.mark.parametrize("spec", ["1.5h", "24x", "daily"])
def test_a_mistyped_interval_is_named_as_one_not_as_a_cron_with_one_field(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"not an interval \(like 24h, 30m, 90s, 1h30m\) nor a 5-field cron"):
        parse_every(spec)
