"""One fleet clock: times that processes compare come from the database's clock.

The end-to-end test runs real workers whose clocks are 20 s fast and 20 s slow (tests/skewed.py)
beside this test process's correct clock."""

from __future__ import annotations

import asyncio
from collections import deque
from datetime import datetime, timedelta, timezone

import pytest
from freezegun import freeze_time

from pgsched import clock
from tests.waiting import wait_for

SKEWED = {"fast": 20.0, "slow": -20.0}
#: How far a claim's reading of the database clock may run ahead of it (clock.latest): the
#: offset's uncertainty, at most the slowest round trip clock.observe accepts.
EARLY = timedelta(seconds=clock.MAX_ROUND_TRIP)


def test_utcnow_follows_the_measured_offset_and_ignores_it_under_freezegun() -> None:
    before = clock.offset()
    try:
        wall = datetime.now(timezone.utc)
        db_now = wall + timedelta(seconds=20)
        tick = timedelta(milliseconds=1)
        assert clock.observe(db_now, wall - tick, wall + tick) == timedelta(seconds=20)
        assert abs(clock.utcnow() - datetime.now(timezone.utc) - timedelta(seconds=20)) < \
            timedelta(seconds=1)
        second = timedelta(seconds=1)
        assert clock.observe(db_now, wall - second, wall + second) is None  # too slow to tell
        with freeze_time("2026-03-29 00:00", tz_offset=0):
            assert clock.utcnow() == datetime(2026, 3, 29, tzinfo=timezone.utc)
            assert clock.observe(db_now, wall, wall) is None  # a frozen test owns time
    finally:
        wall = datetime.now(timezone.utc)
        clock.observe(wall + before, wall, wall)


@pytest.fixture
def fresh_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """No samples yet; the process's own measured offset is back after the test."""
    monkeypatch.setattr(clock, "_samples", deque(maxlen=clock.SAMPLES))
    monkeypatch.setattr(clock, "_observed_at", None)
    monkeypatch.setattr(clock, "_offset", timedelta(0))
    monkeypatch.setattr(clock, "_uncertainty", clock.MIN_UNCERTAINTY)
    monkeypatch.setattr(clock, "_warned", False)


def sample(at: datetime, offset_ms: float, trip_ms: float) -> timedelta | None:
    """Observe the database clock ``offset_ms`` ahead, read halfway through a round trip of
    ``trip_ms`` centred on the local time ``at``."""
    half = timedelta(milliseconds=trip_ms / 2)
    return clock.observe(at + timedelta(milliseconds=offset_ms), at - half, at + half)


def margin_ms() -> float:
    """What claims add to the offset, how far ``latest`` runs ahead of ``utcnow``, to the
    tenth of a millisecond (a sample's bound has grown by its drift since it was read)."""
    return round(clock._uncertainty / timedelta(milliseconds=1), 1)


@pytest.mark.parametrize(("after_s", "offset_ms", "trip_ms", "used_ms", "margin"), [
    # A busy worker's heartbeat 5 s later: a 200 ms round trip, read 80 ms from the truth
    # (within its 100 ms bound, so both samples can be true). The first sample stays.
    (5, 90, 200, 10, 4.0),
    # 200 s later the first sample's bound has grown to 1 ms + 200 s x 100 ppm = 21 ms: a
    # fresh sample with a 10 ms round trip (5 ms bound) is the better one.
    (200, 12, 10, 12, 10.0),
], ids=["a slow round trip neither moves the offset nor widens the margin",
        "an old sample gives way once its drift bound passes a fresh one's"])
def test_the_offset_comes_from_the_sample_with_the_smallest_error_bound(
        fresh_clock, after_s: float, offset_ms: float, trip_ms: float, used_ms: float,
        margin: float) -> None:
    t0 = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    assert sample(t0, offset_ms=10, trip_ms=2) == timedelta(milliseconds=10)
    assert sample(t0 + timedelta(seconds=after_s), offset_ms=offset_ms, trip_ms=trip_ms) == \
        timedelta(milliseconds=used_ms)
    assert margin_ms() == margin


def test_a_stepped_clock_is_followed_at_once(fresh_clock) -> None:
    t0 = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    sample(t0, offset_ms=10, trip_ms=2)
    # NTP stepped this machine's clock by 5 s: no error bound covers the difference.
    assert sample(t0 + timedelta(seconds=5), offset_ms=-4990, trip_ms=100) == \
        timedelta(milliseconds=-4990)
    assert margin_ms() == 100.0
    assert sample(t0 + timedelta(seconds=10), offset_ms=-4991, trip_ms=2) == \
        timedelta(milliseconds=-4991)


def test_only_the_last_samples_are_kept(fresh_clock) -> None:
    t0 = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)
    sample(t0, offset_ms=10, trip_ms=2)
    for n in range(1, clock.SAMPLES + 1):
        offset = sample(t0 + timedelta(seconds=n), offset_ms=10 + n, trip_ms=40)
    assert offset == timedelta(milliseconds=10 + clock.SAMPLES)


@pytest.mark.parametrize("client", ["sync", "async"])
def test_a_process_that_only_enqueues_follows_a_clock_stepped_after_its_pool_opened(
        fresh_clock, monkeypatch: pytest.MonkeyPatch, load_app_module, sql, client: str) -> None:
    module = load_app_module("clock_app.py")
    module.app.migrate()
    real = clock.local_now
    loop = asyncio.new_event_loop()  # one loop, so one async pool, across the step

    async def enqueue_async(label: str) -> str:
        return (await module.fast.enqueue_async(module.stamp, label)).workflow_id

    def enqueue(*labels: str) -> list[str]:
        if client == "async":
            return [loop.run_until_complete(enqueue_async(label)) for label in labels]
        return [module.fast.enqueue(module.stamp, label).workflow_id for label in labels]

    def lead(workflow_id: str) -> float:
        """How far the run's due time is ahead of the database's clock now, in seconds."""
        [(ahead,)] = sql("SELECT extract(epoch FROM not_before - clock_timestamp()) "
                         "FROM workflows WHERE id = %s", (workflow_id,))
        return float(ahead)

    try:
        [before] = enqueue("before the step")
        assert lead(before) < 0.5
        # NTP steps this machine's clock two minutes ahead; the process has no heartbeat. The
        # enqueue that notices the step computed its due time before it took a connection,
        # so it still carries the old offset; every one after it is on the database's clock.
        monkeypatch.setattr(clock, "local_now", lambda: real() + timedelta(minutes=2))
        *_, after = enqueue("notices the step", "after the step")
        assert lead(after) < 0.5, "the run is due two minutes late"
        assert abs(clock.offset() + timedelta(minutes=2)) < timedelta(seconds=1)
    finally:
        loop.run_until_complete(module.app.close_async())
        loop.close()


def test_workers_with_skewed_clocks_agree_on_ticks_delays_and_rate_limits(
        load_app_module, workers, sql) -> None:
    module = load_app_module("clock_app.py")
    module.app.migrate()
    sql("CREATE TABLE ticks (scheduled_at timestamptz, started timestamptz, pid int)")
    sql("CREATE TABLE starts (label text, started timestamptz, pid int)")
    procs = {}
    for name, skew in SKEWED.items():
        procs[name] = workers.start("clock_app.py", "--queues", f"{name},rated,default",
                                    skew=skew)
    workers.wait_registered(sql, 2)
    (begin,) = sql("SELECT clock_timestamp()")[0]

    enqueued = {}
    for name in SKEWED:
        queue = getattr(module, name)
        handle = queue.enqueue(module.stamp, f"delayed-{name}", delay=timedelta(seconds=3))
        (enqueued[name],) = sql("SELECT created_at FROM workflows WHERE id = %s",
                                (handle.workflow_id,))[0]
    for index in range(15):
        module.rated.enqueue(module.stamp, f"rated-{index}")
    wait_for(lambda: sql("SELECT count(*) FROM starts WHERE label LIKE 'rated-%'")[0][0] == 15,
             30, what="15 rate-limited jobs", logs=workers.logs)
    wait_for(lambda: sql("SELECT count(*) FROM ticks WHERE scheduled_at > %s",
                         (begin + timedelta(seconds=2),))[0][0] >= 6, 30,
             what="six ticks after the first two seconds", logs=workers.logs)
    (end,) = sql("SELECT clock_timestamp()")[0]

    for name in SKEWED:
        [(started,)] = sql("SELECT started FROM starts WHERE label = %s", (f"delayed-{name}",))
        late = (started - (enqueued[name] + timedelta(seconds=3))).total_seconds()
        # Claims may run a hair early, by as much as the offset is uncertain (clock.latest),
        # never by the 20 s the worker's clock is off.
        assert -EARLY.total_seconds() <= late < 0.5, \
            f"the {name} worker started a 3 s-delayed job {late:+.3f}s from its due time"
    ticks = sql("SELECT scheduled_at, started, pid FROM ticks "
                "WHERE scheduled_at BETWEEN %s AND %s ORDER BY 1",
                (begin + timedelta(seconds=2), end - timedelta(seconds=2)))
    early = [(s, t) for s, t, _ in ticks if t < s]
    assert not early, f"ticks ran before their time: {early[:3]}"
    seconds = [s for s, _, _ in ticks]
    assert len(seconds) == len(set(seconds)), "a tick ran twice"
    gaps = [b - a for a, b in zip(seconds, seconds[1:], strict=False)
            if b - a != timedelta(seconds=1)]
    assert len(seconds) >= 3 and not gaps, f"ticks were dropped: {gaps}"
    # The rate limit governs claims, stamped with the claiming worker's reading of the fleet
    # clock (workflows.started_at). The job's own first statement runs a little later, by as
    # much as the machine is busy, so its time can crowd the next window; it only proves here
    # that the stamps were taken on the database's clock and not on a worker's skewed one.
    rated = sql("SELECT w.started_at, s.started FROM workflows w JOIN starts s "
                "ON w.inputs->'args'->>0 = s.label WHERE w.queue = 'rated' ORDER BY 1")
    assert len(rated) == 15
    off = [(claimed, ran) for claimed, ran in rated
           if not -EARLY <= ran - claimed < timedelta(seconds=1)]
    assert not off, f"claims stamped off the database's clock (claimed, ran): {off[:3]}"
    claims = [claimed for claimed, _ in rated]
    crowded = [t for t in claims if sum(t <= u < t + timedelta(seconds=2) for u in claims) > 5]
    assert not crowded, f"more than 5 claims within 2 s from {crowded[0]}"
    for proc in procs.values():
        assert proc.poll() is None
    for proc in procs.values():
        assert "s off the database's" in proc.log_path.read_text()
