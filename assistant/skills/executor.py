"""Executing actions: timers and alarms in the store, answers from the clock, the outcome to say.

``Executor.execute(action, reply)`` does what the action asks, all of it or nothing (one store
transaction), and returns an ``Outcome``: what happened and the reply to say, which is the skill's
reply when the action was done as asked and a truthful one otherwise ("There is no pasta timer.").
What rings, and when, is the daemon's (services/timers.py); it is told through ``on_change`` that the
next due time may have moved.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any, Callable

from assistant.errors import AssistantError
from assistant.skills.actions import Action
from assistant.skills.calendar import WEEKDAYS
from assistant.skills.handoff import NOT_SET_UP, Handler
from assistant.skills.spoken_time import clock_words, duration_words
from assistant.skills.words import number_words
from assistant.store import timers as tt

log = logging.getLogger(__name__)
_READ_ONLY = ("timer.status", "alarm.list", "alarm.stop", "reminder.list")  # nothing due moves
_EVERY = {"daily": range(7), "weekdays": range(5), "weekends": (5, 6)}


@dataclass(frozen=True)
class Outcome:
    status: str  # "done", "not_found", "refused" (nothing was changed) or "failed" (an error; nothing changed)
    reply: str
    detail: str | None = None
    timer_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def local_at(day: date, hhmm: str, tz: tzinfo | None) -> datetime:
    """``hhmm`` on ``day`` in ``tz`` (None: the system's local time rules, DST included), aware."""
    t = time(int(hhmm[:2]), int(hhmm[3:]))
    return datetime.combine(day, t).astimezone() if tz is None else datetime.combine(day, t, tzinfo=tz)


def next_occurrence(hhmm: str, repeat: str, after: datetime, tz: tzinfo | None) -> datetime:
    """The first time after ``after`` that an alarm at local ``hhmm`` with ``repeat`` rings."""
    today = after.astimezone(tz).date() if tz is not None else after.astimezone().date()
    if repeat == "tomorrow":
        return local_at(today + timedelta(days=1), hhmm, tz)
    days = _EVERY.get(repeat) or ((WEEKDAYS.index(repeat.split()[-1]),) if repeat != "once" else range(7))
    for ahead in range(0, 9):
        d = today + timedelta(days=ahead)
        at = local_at(d, hhmm, tz)
        if d.weekday() in days and at > after:
            return at
    raise AssertionError("unreachable: a week always holds the next occurrence")


def resolve_time(hhmm: str, ampm_known: bool, repeat: str, after: datetime, tz: tzinfo | None) -> str:
    """A 24-hour time for a spoken one: "seven thirty" is whichever of 07:30 and 19:30 comes first."""
    if ampm_known:
        return hhmm
    hh, mm = int(hhmm[:2]) % 12, hhmm[3:]
    options = [f"{hh:02d}:{mm}", f"{hh + 12:02d}:{mm}"]
    return min(options, key=lambda o: next_occurrence(o, repeat, after, tz))


def _alarm_words(row) -> str:
    hh, mm = (int(x) for x in row.time_of_day.split(":"))
    when = {None: "", "daily": " every day", "weekdays": " on weekdays", "weekends": " on weekends"}.get(
        row.repeat, f" {row.repeat}" if row.repeat and row.repeat.startswith("every") else f" on {row.repeat}")
    return f"{clock_words(hh * 60 + mm)}{when}"


def _timer_name(row) -> str:
    return f"the {row.label} timer" if row.label else "your timer"


def _count_words(n: int, what: str) -> str:
    return f"{'one' if n == 1 else number_words(n)} {what}{'' if n == 1 else 's'}"


class Executor:
    """Runs actions against ``store``. ``stop_ringing()`` silences what rings (True if anything did);
    ``on_change()`` tells the scheduler the timers changed; ``tz`` None: the system's local time;
    ``handoff``: where hand-off actions go (None: the reply says that is not set up)."""

    def __init__(self, store, *, stop_ringing: Callable[[], bool] = lambda: False,
                 on_change: Callable[[], None] = lambda: None, tz: tzinfo | None = None,
                 clock: Callable[[], datetime] | None = None, handoff: Handler | None = None) -> None:
        self.store, self.stop_ringing, self.on_change, self.tz = store, stop_ringing, on_change, tz
        self.handoff = handoff
        self.clock = clock or (lambda: datetime.now(self.tz).astimezone(self.tz))

    def execute(self, session, action: Action, reply: str, *, utterance_id: int | None = None) -> Outcome:
        """Do ``action`` inside the caller's transaction (the turn's row is written in the same one, so
        a crash can neither lose an acknowledged timer nor set it twice when the turn is replayed). A
        failed action is rolled back to a savepoint alone; call ``changed(outcome)`` after the commit.
        An action that ``uses_store`` nothing (a hand-off: network I/O) takes no session: call it before
        opening one, so no write lock is held while another service answers."""
        if not self.uses_store(action):
            return self._handoff(reply, **action.slots)
        handler = getattr(self, "_" + action.name.replace(".", "_"), None)
        if handler is None:  # an action with no executor here is not pretended done
            return Outcome("refused", "I can't do that here.", detail=f"no executor for {action.name}")
        try:
            with session.begin_nested():
                return handler(session, self.clock(), reply, utterance_id=utterance_id, **action.slots)
        except AssistantError as exc:  # nothing was changed: said so
            log.warning("action %s failed: %s", action.name, exc)
            return Outcome("failed", f"Sorry, I couldn't do that: {exc.problem}.", detail=str(exc))

    @staticmethod
    def uses_store(action: Action) -> bool:
        return action.name != "handoff"

    def run(self, action: Action, reply: str, *, utterance_id: int | None = None) -> Outcome:
        """``execute`` in a transaction of its own, committed, then ``changed``."""
        if not self.uses_store(action):
            return self.execute(None, action, reply)
        with self.store.session() as s:
            outcome = self.execute(s, action, reply, utterance_id=utterance_id)
        self.changed(action, outcome)
        return outcome

    def changed(self, action: Action, outcome: Outcome) -> None:
        """After the commit: tell the scheduler when a timer or alarm may have moved."""
        if outcome.status == "done" and action.name.split(".")[0] in ("timer", "alarm", "reminder") \
                and action.name not in _READ_ONLY:
            self.on_change()

    # --- hand-off ---------------------------------------------------------------------------------
    def _handoff(self, reply: str, *, domain: str, request: str) -> Outcome:
        if self.handoff is None:
            return Outcome("refused", NOT_SET_UP[domain], detail="no [actions] handoff configured")
        try:
            done, said, detail = self.handoff.send(domain, request, reply)
        except Exception as exc:  # noqa: BLE001 - a handler's bug must not fail the turn
            log.exception("hand-off to %s failed", self.handoff.name)
            done, said, detail = False, None, f"{type(exc).__name__}: {exc}"
        if done:
            return Outcome("done", said or reply, detail=detail)
        return Outcome("failed", said or f"Sorry, {self.handoff.name} could not do that.", detail=detail)

    # --- clock ------------------------------------------------------------------------------------
    def _time_now(self, s, now, reply, **_) -> Outcome:
        return Outcome("done", reply)

    _date_today = _time_now

    # --- timers -----------------------------------------------------------------------------------
    def _timer_start(self, s, now, reply, *, duration_s, label, utterance_id) -> Outcome:
        row = tt.add_timer(s, kind="timer", due_at=now + timedelta(seconds=duration_s), label=label,
                           duration_s=float(duration_s), utterance_id=utterance_id)
        return Outcome("done", reply, timer_id=row.id)

    def _targets(self, s, label, every):
        rows = tt.find_active(s, kind="timer", label=label)
        if not rows:
            return None, Outcome("not_found", f"There is no {label} timer." if label else "You have no timers.")
        if len(rows) > 1 and not every and label is None:
            return None, Outcome("refused", f"You have {_count_words(len(rows), 'timer')}: say which one, "
                                            "or say all timers.")
        return rows, None

    def _timer_add(self, s, now, reply, *, duration_s, label, utterance_id) -> Outcome:
        rows, miss = self._targets(s, label, False)
        if miss:
            return miss
        row = rows[0]
        if row.state == "paused":
            row.remaining_s = (row.remaining_s or 0.0) + duration_s
        else:
            row.due_at = row.due_at + timedelta(seconds=duration_s)
        row.duration_s = (row.duration_s or 0.0) + duration_s
        return Outcome("done", reply, timer_id=row.id)

    def _each_timer(self, s, reply, label, every, change) -> Outcome:
        """``change(row)`` on every timer the request names (cancel, pause, resume, restart)."""
        rows, miss = self._targets(s, label, every)
        if miss:
            return miss
        for row in rows:
            change(row)
        return Outcome("done", reply, timer_id=rows[0].id if len(rows) == 1 else None)

    def _timer_cancel(self, s, now, reply, *, label, all, utterance_id) -> Outcome:
        return self._each_timer(s, reply, label, all, lambda row: tt.cancel_timer(s, timer_id=row.id))

    def _timer_pause(self, s, now, reply, *, label, all, utterance_id) -> Outcome:
        return self._each_timer(s, reply, label, all, lambda row: tt.pause_timer(s, row=row, now=now))

    def _timer_resume(self, s, now, reply, *, label, all, utterance_id) -> Outcome:
        return self._each_timer(s, reply, label, all, lambda row: tt.resume_timer(s, row=row, now=now))

    def _timer_restart(self, s, now, reply, *, label, all, utterance_id) -> Outcome:
        def restart(row) -> None:
            row.due_at, row.state, row.remaining_s = now + timedelta(seconds=row.duration_s or 0), "pending", None

        return self._each_timer(s, reply, label, all, restart)

    def _timer_status(self, s, now, reply, *, label, all, utterance_id) -> Outcome:
        rows = tt.find_active(s, kind="timer", label=label)
        if not rows:
            return Outcome("not_found", f"There is no {label} timer." if label else "You have no timers.")
        parts = []
        for row in rows:
            left = tt.timer_to_dict(row, now=now)["remaining_s"] or 0.0
            state = " is paused with" if row.state == "paused" else " has"
            parts.append(f"{_timer_name(row)}{state} {duration_words(left)} left")
        said = parts[0] if len(parts) == 1 else "; ".join(parts)
        return Outcome("done", said[0].upper() + said[1:] + ".")

    # --- reminders --------------------------------------------------------------------------------
    def _reminder_due(self, now: datetime, delay_s, day, time, ampm_known) -> datetime:
        """When a reminder rings: after its delay, or on its day at its time (local). An hour said
        without a.m./p.m. is today's next one, and on another day the waking one (7 to 6: "at five" on
        Friday is 5 p.m.)."""
        if delay_s is not None:
            return now + timedelta(seconds=delay_s)
        local = now.astimezone(self.tz) if self.tz is not None else now.astimezone()
        today = local.date()
        if day == "today" and not ampm_known:  # "at five thirty": the next one
            return next_occurrence(resolve_time(time, ampm_known, "once", now, self.tz), "once", now, self.tz)
        if day == "today":  # "this afternoon", "at seven p m": today's, even if it has passed (then refused)
            return local_at(today, time, self.tz)
        if day == "tomorrow":
            date_ = today + timedelta(days=1)
        elif day == "next week":
            date_ = today + timedelta(days=7 - today.weekday())  # next Monday
        elif day == "weekend":
            date_ = today + timedelta(days=(5 - today.weekday()) % 7 or 7)
        elif day in WEEKDAYS:
            date_ = today + timedelta(days=(WEEKDAYS.index(day) - today.weekday() - 1) % 7 + 1)
        else:  # "MM-DD": this year's, or next year's once it has passed
            month, dom = int(day[:2]), int(day[3:])
            date_ = date(today.year, month, min(dom, 28 if month == 2 else dom))
            if date_ <= today:
                date_ = date_.replace(year=today.year + 1)
        if not ampm_known:
            hh = int(time[:2]) % 12
            time = f"{hh + 12 if hh < 7 else hh:02d}:{time[3:]}"  # twelve (0) is noon, one to six p.m.
        return local_at(date_, time, self.tz)

    def _reminder_set(self, s, now, reply, *, text, delay_s, day, time, ampm_known, utterance_id) -> Outcome:
        due = self._reminder_due(now, delay_s, day, time, ampm_known)
        if due <= now:
            return Outcome("refused", f"That time has passed today; say another for the reminder to {text}.")
        hhmm = None if delay_s is not None else due.astimezone(self.tz).strftime("%H:%M")
        row = tt.add_timer(s, kind="reminder", due_at=due, label=text, time_of_day=hhmm, utterance_id=utterance_id)
        return Outcome("done", reply, timer_id=row.id)

    def _reminder_list(self, s, now, reply, **_) -> Outcome:
        rows = tt.find_active(s, kind="reminder")
        if not rows:
            return Outcome("done", "You have no reminders.")
        said = [f"to {r.label} in {duration_words((r.due_at - now).total_seconds())}" for r in rows]
        head = "You have a reminder" if len(rows) == 1 else f"You have {_count_words(len(rows), 'reminder')}:"
        return Outcome("done", f"{head} {'; '.join(said)}.")

    def _reminder_cancel(self, s, now, reply, *, text, utterance_id) -> Outcome:
        rows = [r for r in tt.find_active(s, kind="reminder") if r.label == text]
        if not rows:
            return Outcome("not_found", f"You have no reminder to {text}.")
        for row in rows:
            tt.cancel_timer(s, timer_id=row.id)
        return Outcome("done", f"Your reminder to {text} is off.", timer_id=rows[0].id)

    # --- alarms -----------------------------------------------------------------------------------
    def _alarm_set(self, s, now, reply, *, time, ampm_known, repeat, utterance_id) -> Outcome:
        hhmm = resolve_time(time, ampm_known, repeat, now, self.tz)
        due = next_occurrence(hhmm, repeat, now, self.tz)
        row = tt.add_timer(s, kind="alarm", due_at=due, time_of_day=hhmm,
                           repeat=None if repeat in ("once", "tomorrow") else repeat, utterance_id=utterance_id)
        return Outcome("done", reply, timer_id=row.id)

    def _alarm_cancel(self, s, now, reply, *, time, all, utterance_id) -> Outcome:
        rows = tt.find_active(s, kind="alarm", time_of_day=None if all else time)
        if not rows:
            spoken = "" if all or time is None else " for " + clock_words(int(time[:2]) * 60 + int(time[3:]))
            return Outcome("not_found", f"You have no alarm{spoken}." if spoken else "You have no alarms.")
        for row in rows:
            tt.cancel_timer(s, timer_id=row.id)
        self.stop_ringing()
        return Outcome("done", reply, timer_id=rows[0].id if len(rows) == 1 else None)

    def _alarm_move(self, s, now, reply, *, time, to, ampm_known, utterance_id) -> Outcome:
        rows = tt.find_active(s, kind="alarm", time_of_day=time)
        if len(rows) != 1:
            spoken = clock_words(int(time[:2]) * 60 + int(time[3:]))
            return Outcome("not_found" if not rows else "refused",
                           f"You have no alarm at {spoken}." if not rows else f"You have several alarms at {spoken}.")
        row = rows[0]
        repeat = row.repeat or "once"
        row.time_of_day = resolve_time(to, ampm_known, repeat, now, self.tz)
        row.due_at = next_occurrence(row.time_of_day, repeat, now, self.tz)
        return Outcome("done", reply, timer_id=row.id)

    def _alarm_snooze(self, s, now, reply, *, duration_s, utterance_id) -> Outcome:
        self.stop_ringing()
        row = tt.add_timer(s, kind="alarm", label="snooze", due_at=now + timedelta(seconds=duration_s),
                           duration_s=float(duration_s), utterance_id=utterance_id)
        return Outcome("done", reply, timer_id=row.id)

    def _alarm_stop(self, s, now, reply, **_) -> Outcome:
        if self.stop_ringing():
            return Outcome("done", reply)
        return Outcome("not_found", "Nothing is ringing.")

    def _alarm_list(self, s, now, reply, **_) -> Outcome:
        rows = tt.find_active(s, kind="alarm")
        if not rows:
            return Outcome("done", "You have no alarms.")
        said = [_alarm_words(r) if r.time_of_day else f"a snooze in {duration_words((r.due_at - now).total_seconds())}"
                for r in rows]
        if len(said) == 1:
            return Outcome("done", f"You have an alarm at {said[0]}.")
        return Outcome("done", f"You have {_count_words(len(said), 'alarm')}: {', '.join(said[:-1])} and {said[-1]}.")
