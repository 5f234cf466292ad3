"""Every bad input gets a pgsched error type, a message that says what to do, and writes no
row. One table, so a new kind of bad input is one more line."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest

import pgsched
from pgsched.errors import (
    ConfigurationError,
    InvalidSchedule,
    NotRegistered,
    SerializationError,
    UnknownQueue,
)
from pgsched.scheduler import Scheduler


def _circular() -> list:
    a: list = []
    a.append(a)
    return a


def _circular_dict() -> dict:
    d: dict = {"inner": {"items": [1]}}
    d["inner"]["items"].append(d)
    return d


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


class _Apps:
    """A migrated app with one workflow of each interesting signature."""

    def __init__(self, app: pgsched.App) -> None:
        self.app = app

        @app.workflow()
        def greet(who: Any) -> None: ...

        @app.workflow()
        def add(a: int, b: int = 0, *, scale: int = 1) -> int:
            return (a + b) * scale

        def plain(x: int) -> None: ...

        self.greet, self.add, self.plain = greet, add, plain


# (id, call, error type, message fragment)
CASES: list[tuple[str, Callable[[_Apps], Any], type[Exception], str]] = [
    ("circular list", lambda t: t.app.start(t.greet, _circular()),
     SerializationError, r"argument\[0\]\[0\] refers back to argument\[0\] \(a circular"),
    ("circular dict", lambda t: t.app.start(t.greet, who=_circular_dict()),
     SerializationError, r"keyword\['who'\]\['inner'\]\['items'\]\[1\] refers back to"),
    ("100,000-deep nesting", lambda t: t.app.start(t.greet, _deep(100_000)),
     SerializationError, r"nested 100\d+ levels deep.*flatten it"),
    ("NUL byte in an argument", lambda t: t.app.start(t.greet, "a\x00b"),
     SerializationError, r"argument\[0\] contains a NUL character \(U\+0000\).*remove it"),
    ("NUL byte deep in a keyword", lambda t: t.app.start(t.greet, who={"k": ["ok", "\x00"]}),
     SerializationError, r"keyword\['who'\]\['k'\]\[1\] contains a NUL"),
    ("NUL byte in a dict key", lambda t: t.app.start(t.greet, {"bad\x00key": 1}),
     SerializationError, r"a key of argument\[0\] contains a NUL"),
    ("lone surrogate", lambda t: t.app.start(t.greet, "x\ud800"),
     SerializationError, r"argument\[0\] contains a lone surrogate \(U\+D800\)"),
    ("a lock", lambda t: t.app.start(t.greet, threading.Lock()),
     SerializationError, r"argument\[0\] is a lock.*Pass plain data"),
    ("non-string key", lambda t: t.app.start(t.greet, {1: "x"}),
     SerializationError, "non-string key 1; JSON objects need string keys"),
    ("10,000-character workflow id", lambda t: t.app.start(t.greet, 1, workflow_id="w" * 10_000),
     ConfigurationError, r"workflow_id is 10000 bytes long \(UTF-8\), more than the 2000"),
    ("10,000-character dedup key",
     lambda t: t.app.queues["default"].enqueue(t.greet, 1, dedup_key="d" * 10_000),
     ConfigurationError, r"dedup_key is 10000 bytes long .*use a shorter one"),
    ("multi-byte id over the byte limit", lambda t: t.app.start(t.greet, 1, workflow_id="é" * 1001),
     ConfigurationError, "workflow_id is 2002 bytes long"),
    ("empty workflow id", lambda t: t.app.start(t.greet, 1, workflow_id=""),
     ConfigurationError, "workflow_id must be a non-empty string"),
    ("NUL in a workflow id", lambda t: t.app.start(t.greet, 1, workflow_id="a\x00"),
     ConfigurationError, r"workflow_id contains a NUL character"),
    ("too few arguments", lambda t: t.app.start(t.add),
     ConfigurationError, r"add' cannot be called with 0 positional argument\(s\): missing a "
     r"required argument: 'a'; its signature is .*add\(a: .*, b: .*= 0.*Nothing was enqueued"),
    ("too many arguments", lambda t: t.app.start(t.add, 1, 2, 3),
     ConfigurationError, "too many positional arguments"),
    ("unknown keyword", lambda t: t.app.start(t.add, 1, scael=2),
     ConfigurationError, "unexpected keyword argument 'scael'"),
    ("wrong count in enqueue_many",
     lambda t: t.app.queues["default"].enqueue_many([(t.add, (1,), {}), (t.add, (), {})]),
     ConfigurationError, "missing a required argument: 'a'"),
    ("not a workflow", lambda t: t.app.start(t.plain, 1),
     NotRegistered, "decorate it with @app.workflow"),
    ("unknown queue", lambda t: t.app.start(t.greet, 1, queue="nope"),
     UnknownQueue, r"define it with app.queue\('nope'"),
    ("negative delay", lambda t: t.app.start(t.greet, 1, delay=-1),
     ConfigurationError, "delay must not be negative"),
    ("zero max_attempts", lambda t: t.app.start(t.greet, 1, max_attempts=0),
     ConfigurationError, "max_attempts must be >= 1"),
    ("unknown schedule to pause", lambda t: t.app.pause_schedule("nope"),
     ConfigurationError, "no schedule named 'nope'; list them with `pgsched schedules`"),
]


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_a_typed_error_and_writes_nothing(make_app, sql, call, error, message):
    target = _Apps(make_app())
    target.app.migrate()
    with pytest.raises(error, match=message):
        call(target)
    assert sql("SELECT count(*) FROM workflows") == [(0,)]
    assert sql("SELECT count(*) FROM schedules WHERE paused") == [(0,)]


# (id, construct, error type, message fragment): nothing connects, so nothing can be written.
DEFINITIONS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("typo in an App keyword", lambda: pgsched.App("x", concurency=3),
     ConfigurationError, r"unknown setting\(s\) 'concurency' \(did you mean 'concurrency'\?\)"),
    ("App keyword that is no setting", lambda: pgsched.App("x", colour="red"),
     ConfigurationError, r"unknown setting\(s\) 'colour'; the settings are the PGSCHED_\*"),
    ("bad App value", lambda: pgsched.App("x", concurrency=0),
     ConfigurationError, "PGSCHED_CONCURRENCY"),
    ("7-field cron", lambda: pgsched.App("x").cron("0 0 * * * * 2026")(lambda at: None),
     InvalidSchedule, r"expected 5 fields .* 6 with a leading seconds field.*got 7 field"),
    ("4-field cron", lambda: pgsched.App("x").cron("* * * *")(lambda at: None),
     InvalidSchedule, r"got 4 field\(s\)"),
    ("never-matching cron", lambda: pgsched.App("x").cron("0 0 31 2 *")(lambda at: None),
     InvalidSchedule, r"day-of-month '31' never occurs in month '2'"),
    ("bad time zone", lambda: pgsched.App("x").cron("* * * * *", tz="Mars/Base")(lambda at: None),
     InvalidSchedule, "unknown time zone tz='Mars/Base'; use an IANA name"),
    ("bad queue name", lambda: pgsched.App("x").queue("no spaces"),
     ConfigurationError, "queue name 'no spaces' is invalid"),
]


@pytest.mark.parametrize(("construct", "error", "message"), [c[1:] for c in DEFINITIONS],
                         ids=[c[0] for c in DEFINITIONS])
def test_bad_definitions_are_typed_errors(env, construct, error, message):
    with pytest.raises(error, match=message):
        construct()


def test_documented_app_keywords_work(env, schema):
    """``schema_name`` was silently dropped (only its alias was read); every spelling of a
    setting that the README shows must take effect."""
    for keyword in ("schema_name", "schema", "PGSCHED_SCHEMA"):
        assert pgsched.App("x", **{keyword: "elsewhere"}).settings.schema_name == "elsewhere"
    assert pgsched.App("x", concurrency=3, log_diagnose=True).settings.concurrency == 3


def test_valid_enqueues_still_pass_the_signature_check(make_app, sql):
    target = _Apps(make_app())
    target.app.start(target.add, 1)
    target.app.start(target.add, 1, b=2, scale=3)
    target.app.start(target.greet, "emoji 😀 and a literal \\u0000 are fine")
    target.app.start(target.greet, 1, workflow_id="w" * 2000)
    assert sql("SELECT count(*) FROM workflows") == [(4,)]


def test_pause_and_resume_a_schedule_from_python(make_app, sql):
    app = make_app()

    @app.cron("0 * * * *", name="hourly")
    def hourly(scheduled_at: datetime) -> None: ...

    app.migrate()
    Scheduler(app).register(datetime(2026, 1, 1, tzinfo=timezone.utc))
    app.pause_schedule("hourly")
    assert sql("SELECT paused FROM schedules WHERE name = 'hourly'") == [(True,)]
    app.resume_schedule("hourly")
    assert sql("SELECT paused FROM schedules WHERE name = 'hourly'") == [(False,)]


@pytest.mark.parametrize(("value", "fragment"), [
    ("a\x00b", r"result of step 'x' contains a NUL character \(U\+0000\)"),
    ({"ok": ["fine", {"deep": "\x00"}]},
     r"result of step 'x'\['ok'\]\[1\]\['deep'\] contains a NUL"),
    ({"key\x00": 1}, r"a key of result of step 'x' contains a NUL"),
    ({"nested": {"\ud800": 1}},
     r"a key of result of step 'x'\['nested'\] contains a lone surrogate"),
    (("tuple", "\udfff"), r"result of step 'x'\[1\] contains a lone surrogate \(U\+DFFF\)"),
    (_circular(), r"result of step 'x'\[0\] refers back to result of step 'x' \(a circular"),
    (_deep(5000), r"result of step 'x' is nested 500\d levels deep"),
])
def test_results_that_jsonb_cannot_hold_raise_serialization_error(value, fragment):
    """The run path stores results with ``dumps``; it relies on exactly this error."""
    from pgsched.serialization import dumps

    with pytest.raises(SerializationError, match=fragment):
        dumps(value, "result of step 'x'")
