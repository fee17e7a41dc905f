"""`run --every`: run the job on an interval or a cron schedule, never overlapping, until SIGTERM."""

from __future__ import annotations

import logging
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from croniter import CroniterError, croniter

from sync_job.config import UNIT_SECONDS
from sync_job.errors import EXIT_OK, ConfigError, SyncError
from sync_job.shutdown import outer_handler

log = logging.getLogger(__name__)

_INTERVAL = re.compile(r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?")
# A longer interval is a typo, and slot arithmetic must never leave datetime's range (year 9999).
MAX_INTERVAL = timedelta(days=366)
_MAX_SKIPPED = 100_000  # bounds the catch-up walk over cron slots after a very long overrun
# The cron dialect accepted: croniter's five fields, evaluated in UTC. croniter also takes a sixth field
# as *seconds last* (Quartz puts them first) and a seventh as the year: refused, so no one's Quartz
# expression silently means something else.
CRON_DIALECT = (
    "a 5-field cron expression 'minute hour day-of-month month day-of-week' in UTC (names like mon-fri, "
    "L and # allowed; no seconds field) or @hourly, @daily, @weekly, @monthly, @yearly"
)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Either a fixed interval (slots anchored at the first run) or a cron expression (evaluated in UTC)."""

    spec: str
    interval: timedelta | None = None
    cron: str | None = None


def parse_every(spec: str, now: datetime | None = None) -> Schedule:
    """'24h', '30m', '90s', '1h30m', '2d' or a cron expression ('0 3 * * *', '@daily'); ConfigError otherwise.

    Checked up front, so the loop can never fail on its schedule: an interval is within MAX_INTERVAL and a
    cron expression has a next slot after `now` (February 31 has none).
    """
    text = spec.strip()
    if not text:
        raise ConfigError(f"--every {spec!r}: empty: give an interval like 24h or {CRON_DIALECT}")
    if match := _INTERVAL.fullmatch(text):
        return Schedule(spec=text, interval=_interval(spec, match))
    fields = text.split()
    if not text.startswith("@") and len(fields) not in (1, 5):  # one word: a mistyped interval, said below
        raise ConfigError(f"--every {spec!r}: {len(fields)} fields; expected {CRON_DIALECT}")
    if not croniter.is_valid(text):
        raise ConfigError(f"--every {spec!r}: not an interval (like 24h, 30m, 90s, 1h30m) nor {CRON_DIALECT}")
    schedule = Schedule(spec=text, cron=text)
    try:
        next_run(schedule, now or _utcnow())
    except CroniterError:
        raise ConfigError(f"--every {spec!r}: the cron expression never fires (no such date)") from None
    return schedule


def _interval(spec: str, match: re.Match[str]) -> timedelta:
    try:  # whole seconds as a Python int: timedelta itself overflows past 999,999,999 days
        seconds = sum(int(value) * UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value)
    except ValueError:  # more digits than int() converts
        seconds = MAX_INTERVAL.days * 86_400 + 1
    if seconds <= 0:
        raise ConfigError(f"--every {spec!r}: the interval must be longer than zero")
    if seconds > MAX_INTERVAL.total_seconds():
        raise ConfigError(f"--every {spec!r}: the interval must be at most {MAX_INTERVAL.days}d")
    return timedelta(seconds=seconds)


def next_run(schedule: Schedule, now: datetime) -> datetime:
    """The first slot strictly after `now` (for an interval: `now + interval`)."""
    if schedule.interval is not None:
        return now + schedule.interval
    assert schedule.cron is not None
    following: datetime = croniter(schedule.cron, now).get_next(datetime)
    return following


def next_slot_after_run(schedule: Schedule, slot: datetime, now: datetime) -> tuple[datetime, int]:
    """The slot to run next once the run scheduled at `slot` finished at `now`, and how many slots it missed.

    Slots keep their rhythm (an interval is anchored at the first run, not at the end of the previous one);
    a run that overran one or more slots skips them instead of starting late runs back to back.
    """
    following = next_run(schedule, slot)
    if following > now:
        return following, 0
    if schedule.interval is not None:
        missed = (now - following) // schedule.interval + 1
        return following + missed * schedule.interval, missed
    missed = 0
    while following <= now and missed < _MAX_SKIPPED:
        following, missed = next_run(schedule, following), missed + 1
    return (following, missed) if following > now else (next_run(schedule, now), missed)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def run_every(
    spec: str,
    job: Callable[[], int],
    *,
    clock: Callable[[], datetime] = _utcnow,
    sleep: Callable[[float], object] | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Run `job` on the schedule until SIGTERM/SIGINT (or `stop_event`); returns the last run's exit code.

    An interval runs at once, then every interval; a cron expression waits for its next match. The job runs
    in this thread, so runs never overlap. A SyncError from one run is logged and the loop goes on (the next
    run may find the source fixed); other exceptions are bugs and propagate. `sleep` defaults to waiting on
    the stop event, so a signal ends the wait at once.
    """
    schedule = parse_every(spec)
    stop = stop_event if stop_event is not None else threading.Event()
    wait = sleep if sleep is not None else stop.wait
    last = EXIT_OK
    with _stop_on_signals(stop) as signalled:
        slot = clock() if schedule.interval is not None else next_run(schedule, clock())
        log.info("running every %s: next run at %s", schedule.spec, _show(slot))
        while not (stop.is_set() or signalled()):
            remaining = (slot - clock()).total_seconds()
            if remaining > 0:
                wait(remaining)
                continue  # re-check the stop flag and the clock: a wait may end early
            log.info("run starting (slot %s)", _show(slot))
            try:
                last = job()
            except SyncError as exc:
                log.error("run failed: %s", exc)
                last = exc.exit_code
            now = clock()
            slot, missed = next_slot_after_run(schedule, slot, now)
            if missed:
                log.warning("run overran its schedule: skipped %d slot(s)", missed)
            if stop.is_set() or signalled():
                break
            log.info("run finished with exit code %d; next run at %s", last, _show(slot))
    log.info("stopping: no further runs (last exit code %d)", last)
    return last


def _show(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[Callable[[], bool]]:
    """SIGTERM/SIGINT set `stop` for the duration; yields "has a signal arrived?" (answered without locks).

    Only possible (and only needed) in the main thread.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    @outer_handler
    def handler(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            log.warning("%s received: finishing, no further runs", signal.Signals(signum).name)
        # Event.set takes a lock the interrupted main thread may hold (inside Event.wait): set it from
        # another thread so the handler can never deadlock on it.
        threading.Thread(target=stop.set, name="sync-job-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(received)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
