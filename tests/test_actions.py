"""Actions: requests read strictly into validated actions, executed against a real SQLite store with a
fixed clock, fired on time by the timer loop, and rung through a real PulseAudio output."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from assistant.errors import ActionError
from assistant.skills import answer
from assistant.skills.actions import action
from assistant.skills.executor import Executor, next_occurrence
from assistant.store import open_store
from assistant.store import timers as tt

from pulse import pulse_server, warm_output  # noqa: F401 - fixture

# A Sunday evening, in UTC (the executor takes the time zone as an argument; None is the system's).
NOW = datetime(2026, 12, 6, 22, 0, tzinfo=timezone.utc)


def act(text: str):
    got = answer(text, NOW)
    return None if got is None else (got.reply, None if got.action is None else got.action.to_dict())


@pytest.mark.parametrize("text, reply, name, slots", [
    ("set a timer for five minutes", "Timer set for five minutes.", "timer.start", {"duration_s": 300, "label": None}),
    ("could you set a pasta timer for ten minutes please", "Pasta timer set for ten minutes.", "timer.start",
     {"duration_s": 600, "label": "pasta"}),
    ("start a five minute timer", "Timer set for five minutes.", "timer.start", {"duration_s": 300, "label": None}),
    ("set a one hour timer", "Timer set for an hour.", "timer.start", {"duration_s": 3600, "label": None}),
    ("set a timer for an hour and a half for the laundry", "Laundry timer set for an hour and a half.",
     "timer.start", {"duration_s": 5400, "label": "laundry"}),
    ("time two minutes and thirty seconds", "Timer set for two minutes and thirty seconds.", "timer.start",
     {"duration_s": 150, "label": None}),
    ("Set a 5-minute timer.", "Timer set for 5 minutes.", "timer.start", {"duration_s": 300, "label": None}),
    ("add five minutes to the rice timer", "Added five minutes to the rice timer.", "timer.add",
     {"duration_s": 300, "label": "rice"}),
    ("stop the eggs timer", "Stopping the eggs timer.", "timer.cancel", {"label": "eggs", "all": False}),
    ("cancel all timers", "Cancelling all timers.", "timer.cancel", {"label": None, "all": True}),
    ("how much time is left on the pasta timer", "Checking the pasta timer.", "timer.status",
     {"label": "pasta", "all": False}),
    ("wake me up at quarter to eight in the morning tomorrow", "Alarm set for quarter to eight in the morning "
     "tomorrow.", "alarm.set", {"time": "07:45", "ampm_known": True, "repeat": "tomorrow"}),
    ("set an alarm for seven thirty", "Alarm set for seven thirty.", "alarm.set",
     {"time": "07:30", "ampm_known": False, "repeat": "once"}),
    ("set an alarm at six every weekday", "Alarm set for six every weekday.", "alarm.set",
     {"time": "06:00", "ampm_known": False, "repeat": "weekdays"}),
    ("set an alarm for 7:30 p.m.", "Alarm set for 7 30 p m.", "alarm.set",
     {"time": "19:30", "ampm_known": True, "repeat": "once"}),
    ("move my seven thirty alarm to eight", "Your alarm is now at eight.", "alarm.move",
     {"time": "07:30", "to": "08:00", "ampm_known": False}),
    ("snooze", "Snoozing for nine minutes.", "alarm.snooze", {"duration_s": 540}),
    ("okay stop", "Alarms off.", "alarm.stop", {}),
    ("cancel my alarm for seven thirty", "Your alarm for seven thirty is off.", "alarm.cancel",
     {"time": "07:30", "all": False}),
    ("what time is it", "It's ten o'clock p m.", "time.now", {}),
    ("what's today's date", "Today is Sunday, December sixth.", "date.today", {}),
    ("what's the date next friday", "Friday is December eleventh.", "date.today", {}),
    ("what day is it in three days", "In three days it will be Wednesday, December ninth.", "date.today", {}),
])
def test_requests_become_validated_actions_with_the_templates_replies(text, reply, name, slots):
    assert act(text) == (reply, {"name": name, "slots": slots})


@pytest.mark.parametrize("text", [
    "set a timer for five minutes and three",  # a stray number: not read whole
    "set an alarm for seven tomorrow for my meeting",  # words after the time that mean something
    "set a timer for five",  # no unit
    "turn on the kitchen lights",
])
def test_what_is_not_fully_read_is_not_acted_on(text):
    got = answer(text, NOW)
    assert got is None or got.action is None, got


def test_out_of_range_and_incomplete_requests_are_answered_without_acting():
    assert act("set a timer for ninety hours") == (
        "I can't do that: a timer runs for one second to twenty four hours.", None)
    assert act("set a timer") == ("For how long?", None)


def test_an_action_off_its_schema_is_refused_naming_the_slot():
    with pytest.raises(ActionError, match="duration_s"):
        action("timer.start", label=None)
    with pytest.raises(ActionError, match="'all' is int"):
        action("timer.cancel", label=None, all=1)
    with pytest.raises(ActionError, match="HH:MM"):
        action("alarm.set", time="25:00", ampm_known=True, repeat="once")
    with pytest.raises(ActionError, match="unknown action"):
        action("door.unlock")


@pytest.fixture()
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run(executor: Executor, text: str, clock: Clock):
    got = answer(text, clock.now)
    return executor.run(got.action, got.reply)


def test_timers_are_rows_that_the_requests_change(store):
    clock = Clock(NOW)
    changes = []
    ex = Executor(store, tz=timezone.utc, clock=clock, on_change=lambda: changes.append(1))
    assert run(ex, "set a pasta timer for ten minutes", clock).status == "done"
    assert run(ex, "set a timer for five minutes", clock).timer_id == 2
    assert run(ex, "how much time is left", clock).reply == \
        "Your timer has five minutes left; the pasta timer has ten minutes left."
    assert run(ex, "cancel the timer", clock).reply == "You have two timers: say which one, or say all timers."
    clock.now = NOW + timedelta(minutes=1)
    run(ex, "pause the pasta timer", clock)
    clock.now = NOW + timedelta(minutes=5)  # paused: no time passes for it
    assert run(ex, "how much time is left on the pasta timer", clock).reply == \
        "The pasta timer is paused with nine minutes left."
    run(ex, "add five minutes to the pasta timer", clock)
    run(ex, "resume the pasta timer", clock)
    with store.session() as s:
        pasta = tt.find_active(s, kind="timer", label="pasta")[0]
        assert pasta.due_at == clock.now + timedelta(minutes=14) and pasta.duration_s == 900
    assert run(ex, "stop the eggs timer", clock).reply == "There is no eggs timer."
    assert run(ex, "cancel all timers", clock).reply == "Cancelling all timers."
    assert run(ex, "how much time is left", clock).status == "not_found"
    assert len(changes) == 6  # every change that was done (not the questions) told the scheduler


def test_alarms_resolve_the_spoken_time_and_repeat(store):
    clock = Clock(NOW)  # 22:00 on a Sunday
    ex = Executor(store, tz=timezone.utc, clock=clock)
    run(ex, "set an alarm for seven thirty", clock)  # 07:30 tomorrow comes before 19:30 tomorrow
    run(ex, "wake me at six every weekday", clock)
    run(ex, "set an alarm for ten thirty", clock)  # 22:30 tonight comes first
    with store.session() as s:
        rows = {r.time_of_day: r for r in tt.find_active(s, kind="alarm")}
    assert set(rows) == {"07:30", "06:00", "22:30"}
    assert rows["22:30"].due_at == NOW + timedelta(minutes=30)
    assert rows["06:00"].due_at == datetime(2026, 12, 7, 6, 0, tzinfo=timezone.utc) and rows["06:00"].repeat == "weekdays"
    assert run(ex, "what alarms do i have", clock).reply == (
        "You have three alarms: ten thirty p m, six o'clock a m on weekdays and seven thirty a m.")
    assert run(ex, "move my seven thirty alarm to eight", clock).reply == "Your alarm is now at eight."
    assert run(ex, "cancel my alarm for nine", clock).reply == "You have no alarm for nine o'clock a m."
    assert run(ex, "stop the alarm", clock).reply == "Nothing is ringing."
    assert run(ex, "turn off all my alarms", clock).reply == "Alarms off."
    with store.session() as s:
        assert tt.find_active(s, kind="alarm") == []
    friday = datetime(2026, 12, 11, 6, 30, tzinfo=timezone.utc)  # the next weekday 06:00 after Friday 06:30
    assert next_occurrence("06:00", "weekdays", friday, timezone.utc) == datetime(2026, 12, 14, 6, 0,
                                                                                  tzinfo=timezone.utc)


def test_a_failed_action_changes_nothing_and_says_why(store, monkeypatch):
    clock = Clock(NOW)
    ex = Executor(store, tz=timezone.utc, clock=clock)
    monkeypatch.setattr(tt, "MAX_ACTIVE", 2)
    run(ex, "set a timer for one minute", clock)
    run(ex, "set a timer for two minutes", clock)
    out = run(ex, "set a timer for three minutes", clock)
    assert out.status == "failed" and out.reply == "Sorry, I couldn't do that: 2 timers and alarms are already set."
    with store.session() as s:  # the turn's transaction goes on: only the action's savepoint rolled back
        rows = tt.list_timers(s)
        assert [r.duration_s for r in rows] == [60.0, 120.0]


def test_the_timer_loop_fires_due_rows_late_ones_marked_and_repeating_alarms_moved(store):
    from assistant_services.timers import Ringer, TimerService

    clock = Clock(NOW)
    with store.session() as s:
        missed = tt.add_timer(s, kind="timer", due_at=NOW - timedelta(minutes=3), duration_s=60.0).id
        daily = tt.add_timer(s, kind="alarm", due_at=NOW - timedelta(seconds=1), time_of_day="21:59",
                             repeat="daily").id
        later = tt.add_timer(s, kind="timer", due_at=NOW + timedelta(minutes=1), duration_s=60.0).id
    rings = []
    svc = TimerService(store, publish=lambda *a, **k: None,
                       ringer=Ringer(enabled=True, seconds=1, play=lambda stop, s: rings.append(s)),
                       tz=timezone.utc, clock=clock)
    events, next_due = svc.fire_due()
    assert [(e["id"], e["late"]) for e in events] == [(missed, True), (daily, False)]
    assert events[1]["next_due_at"] == "2026-12-07T21:59:00+00:00"
    assert next_due == NOW + timedelta(minutes=1)
    with store.session() as s:
        assert tt.get_timer(s, timer_id=missed).state == "fired"
        assert tt.get_timer(s, timer_id=missed).late_s == 180.0
        assert tt.get_timer(s, timer_id=daily).state == "pending"
        assert tt.get_timer(s, timer_id=later).state == "pending"


def test_the_timer_loop_rings_a_new_timer_on_time():
    """Real clock: a timer set while the loop sleeps wakes it (changed()), fires within its second."""
    import tempfile

    from assistant_services.timers import Ringer, TimerService

    async def main():
        with tempfile.TemporaryDirectory() as d:
            store = open_store(d)
            fired = asyncio.Event()
            events = []

            def publish(kind, /, **event):
                events.append((kind, event))
                fired.set()

            rang = threading.Event()
            svc = TimerService(store, publish, Ringer(enabled=True, seconds=1, play=lambda stop, s: rang.set()))
            task = asyncio.create_task(svc.run())
            ex = Executor(store, on_change=svc.changed)
            t0 = datetime.now(timezone.utc)
            ex.run(action("timer.start", duration_s=1, label="tea"), "Tea timer set for one second.")
            await asyncio.wait_for(fired.wait(), 10)
            took = (datetime.now(timezone.utc) - t0).total_seconds()
            task.cancel()
            store.close()
            assert await asyncio.to_thread(rang.wait, 5)
            return events, took

    events, took = asyncio.run(main())
    assert [(k, e["label"], e["late"]) for k, e in events] == [("timer_fired", "tea", False)]
    assert 0.9 <= took < 3.0  # not before it is due, and not at the loop's 30 s sleep


def test_the_ring_plays_through_the_output_device_and_stops_at_once(pulse_server):  # noqa: F811 - fixture
    """PulseAudio's null sink is the output; its monitor is the virtual microphone, so what rings is heard."""
    import sounddevice as sd

    from assistant_services.timers import Ringer

    warm_output()
    ringer = Ringer(enabled=True, seconds=20, device="pulse")
    heard = []
    with sd.InputStream(device="pulse", samplerate=16000, channels=1, dtype="float32",
                        callback=lambda data, *_: heard.append(data[:, 0].copy())):
        ringer.ring()
        assert ringer.ringing
        deadline = threading.Event()
        deadline.wait(1.5)  # listen to 1.5 s of the ring (a recording length, not a synchronisation)
        t0 = datetime.now()
        assert ringer.stop() is True
        stopped_in = (datetime.now() - t0).total_seconds()
    assert not ringer.ringing and stopped_in < 0.5
    x = np.concatenate(heard)
    spectrum = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    peak = freqs[np.argmax(spectrum)]
    assert min(abs(peak - 880), abs(peak - 1320)) < 20, peak
    assert ringer.stop() is False  # nothing rings any more


def test_no_output_device_is_a_warning_not_a_crash(caplog):
    from assistant_services.timers import Ringer

    ringer = Ringer(enabled=True, seconds=1, device="no such device 42")
    ringer.ring()
    ringer.stop()
    assert "could not ring" in caplog.text and "[output] device" in caplog.text


@pytest.mark.parametrize("text, reply, slots", [
    ("remind me to buy milk tomorrow at five thirty", "Okay, I'll remind you to buy milk tomorrow at five thirty.",
     {"text": "buy milk", "delay_s": None, "day": "tomorrow", "time": "05:30", "ampm_known": False}),
    ("don't let me forget to take my medicine in twenty minutes",
     "Okay, I'll remind you to take your medicine in twenty minutes.",
     {"text": "take my medicine", "delay_s": 1200, "day": None, "time": None, "ampm_known": False}),
    ("remind me tomorrow at twenty to ten to put the bins out",
     "Okay, I'll remind you to put the bins out tomorrow at twenty to ten.",
     {"text": "put the bins out", "delay_s": None, "day": "tomorrow", "time": "09:40", "ampm_known": False}),
    ("set a reminder to call the dentist tonight", "Okay, I'll remind you to call the dentist tonight.",
     {"text": "call the dentist", "delay_s": None, "day": "today", "time": "20:00", "ampm_known": True}),
])
def test_reminders_are_read_with_their_time(text, reply, slots):
    assert act(text) == (reply, {"name": "reminder.set", "slots": slots})


def test_a_reminder_for_a_place_is_not_read():
    got = answer("remind me to feed the cat when i get home", NOW)
    assert got is None or got.action is None


def test_reminders_ring_at_their_time_and_are_said(store):
    from assistant_services.timers import Ringer, TimerService

    clock = Clock(NOW)  # Sunday 22:00
    ex = Executor(store, tz=timezone.utc, clock=clock)
    run(ex, "remind me to buy milk tomorrow at five thirty", clock)  # no a.m./p.m. on another day: 17:30
    run(ex, "remind me to stretch in twenty minutes", clock)
    run(ex, "remind me to call mum on friday", clock)  # a day alone: 9 a.m.
    with store.session() as s:
        due = {r.label: r.due_at for r in tt.find_active(s, kind="reminder")}
    assert due == {"buy milk": datetime(2026, 12, 7, 17, 30, tzinfo=timezone.utc),
                   "stretch": NOW + timedelta(minutes=20), "call mum": datetime(2026, 12, 11, 9, 0, tzinfo=timezone.utc)}
    assert run(ex, "set a reminder to call the dentist this afternoon", clock).reply.startswith("That time has passed")
    assert run(ex, "what did i ask you to remind me", clock).reply.startswith("You have three reminders: to stretch")
    assert run(ex, "cancel my reminder to call mum", clock).reply == "Your reminder to call mum is off."
    said, rang = [], []
    svc = TimerService(store, publish=lambda *a, **k: None, tz=timezone.utc, clock=clock,
                       ringer=Ringer(enabled=True, seconds=1, play=lambda stop, s: rang.append(s)),
                       say=lambda text: said.append(text) or True)
    clock.now = NOW + timedelta(minutes=21)

    async def loop_once():
        task = asyncio.create_task(svc.run())
        deadline = asyncio.get_running_loop().time() + 10
        while not said:  # bounded: the loop's first pass fires what is due
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(loop_once())
    assert said == ["Reminder: stretch."] and rang == []  # said aloud instead of the chime
