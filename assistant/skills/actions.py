"""Actions: what a request asks the assistant to *do*, as a small validated record.

A skill that fully understands a request returns an ``Answer``: the reply to say when the action does
what was asked, and the ``Action`` itself. The daemon executes the action (``assistant/skills/executor``)
and says the outcome's reply, which differs from the answer's when the action could not be done or is a
question about state ("how long is left on the timer"). An action that does not validate is never
built: ``action()`` raises, and the skill declines the request instead of acting on half of it.

Schema (slots, their types and bounds; every slot is required unless it has a default here):

    timer.start    duration_s: int 1..86400, label: str | None
    timer.add      duration_s: int 1..86400, label: str | None
    timer.cancel | timer.pause | timer.resume | timer.restart | timer.status
                   label: str | None, all: bool = False      (None: the only/most recent timer)
    alarm.set      time: "HH:MM" (24 h), ampm_known: bool, repeat: one of REPEATS
    alarm.cancel   time: "HH:MM" | None, all: bool = False
    alarm.move     time: "HH:MM" (the alarm's), to: "HH:MM", ampm_known: bool (of ``to``)
    alarm.snooze   duration_s: int 1..86400 (stops what rings, rings again after it)
    alarm.stop     (stops a ringing timer or alarm)
    alarm.list
    time.now | date.today   (answered from the clock by the skill itself)
    reminder.set   text: str (what to do, <= 64 letters), delay_s: int | None, day: str | None (today,
                   tomorrow, a weekday, "next week", "weekend", or "MM-DD"), time: "HH:MM" | None,
                   ampm_known: bool   (either delay_s, or day + time)
    reminder.list | reminder.cancel  text: str (cancel: the reminder's text)
    handoff        domain: one of HANDOFF_DOMAINS, request: str (what the user said; skills/handoff.py)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from assistant.errors import ActionError

MAX_TIMER_S = 24 * 3600
REPEATS = ("once", "tomorrow", "daily", "weekdays", "weekends",
           "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
           "every monday", "every tuesday", "every wednesday", "every thursday", "every friday",
           "every saturday", "every sunday")
HANDOFF_DOMAINS = ("smart_home", "calls", "messages", "music", "weather", "reminders")
_LABEL = re.compile(r"[a-z][a-z' ]{0,31}")
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
_TEXT = re.compile(r"[a-z0-9][a-z0-9' ]{0,63}")
_DAY = re.compile(r"today|tomorrow|next week|weekend|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
                  r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
MAX_REMINDER_S = 366 * 24 * 3600
_TARGET = {"label": (str, type(None)), "all": (bool,)}

SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {
    "timer.start": {"duration_s": (int,), "label": (str, type(None))},
    "timer.add": {"duration_s": (int,), "label": (str, type(None))},
    **{f"timer.{verb}": _TARGET for verb in ("cancel", "pause", "resume", "restart", "status")},
    "alarm.set": {"time": (str,), "ampm_known": (bool,), "repeat": (str,)},
    "alarm.cancel": {"time": (str, type(None)), "all": (bool,)},
    "alarm.move": {"time": (str,), "to": (str,), "ampm_known": (bool,)},
    "alarm.snooze": {"duration_s": (int,)},
    "alarm.stop": {},
    "alarm.list": {},
    "time.now": {},
    "date.today": {},
    "handoff": {"domain": (str,), "request": (str,)},
    "reminder.set": {"text": (str,), "delay_s": (int, type(None)), "day": (str, type(None)),
                     "time": (str, type(None)), "ampm_known": (bool,)},
    "reminder.list": {},
    "reminder.cancel": {"text": (str,)},
}
DEFAULTS: dict[str, Any] = {"all": False}


@dataclass(frozen=True)
class Action:
    name: str
    slots: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "slots": dict(self.slots)}


@dataclass(frozen=True)
class Answer:
    """A skill's understanding of a request: the reply if the action (if any) is done as asked."""

    skill: str
    reply: str
    action: Action | None = None


def action(name: str, **slots: Any) -> Action:
    """A validated Action; InvalidInputError naming the slot when anything is off the schema."""
    schema = SCHEMA.get(name)
    if schema is None:
        raise ActionError(f"unknown action {name!r}", fix=f"use one of {', '.join(SCHEMA)}")
    slots = {**{k: v for k, v in DEFAULTS.items() if k in schema}, **slots}
    extra = set(slots) - set(schema)
    if extra:
        raise ActionError(f"action {name} has no slot {sorted(extra)[0]!r}",
                                fix=f"its slots are {', '.join(schema) or 'none'}")
    for key, types in schema.items():
        if key not in slots:
            raise ActionError(f"action {name} needs the slot {key!r}", fix="fill every slot of the schema")
        value = slots[key]
        if not isinstance(value, types) or (bool in types) != isinstance(value, bool):
            raise ActionError(f"action {name}: slot {key!r} is {type(value).__name__}",
                                    fix=f"pass {' or '.join(t.__name__ for t in types)}")
    _check_values(name, slots)
    return Action(name, slots)


def _check_values(name: str, slots: dict[str, Any]) -> None:
    d = slots.get("duration_s")
    if d is not None and not 1 <= d <= MAX_TIMER_S:
        raise ActionError("a timer runs for one second to twenty four hours", fix=f"use 1 to {MAX_TIMER_S} s")
    label = slots.get("label")
    if label is not None and not _LABEL.fullmatch(label):
        raise ActionError(f"timer label {label!r} is not a short lowercase word",
                                fix="use up to 32 letters")
    for key in ("time", "to"):
        t = slots.get(key)
        if t is not None and not _HHMM.fullmatch(t):
            raise ActionError(f"alarm time {t!r} is not HH:MM", fix="use a 24-hour HH:MM time")
    text = slots.get("text")
    if text is not None and not _TEXT.fullmatch(text):
        raise ActionError(f"reminder {text[:80]!r} is not up to 64 plain words", fix="say it shorter")
    day = slots.get("day")
    if day is not None and not _DAY.fullmatch(day):
        raise ActionError(f"reminder day {day!r} is not known", fix="today, tomorrow, a weekday or MM-DD")
    if name == "reminder.set":
        delay = slots["delay_s"]
        if (delay is None) == (day is None or slots["time"] is None):
            raise ActionError("a reminder needs either a delay or a day and a time", fix="say when")
        if delay is not None and not 1 <= delay <= MAX_REMINDER_S:
            raise ActionError("a reminder is at most a year away", fix="say a nearer time")
    domain = slots.get("domain")
    if domain is not None and domain not in HANDOFF_DOMAINS:
        raise ActionError(f"hand-off domain {domain!r} is not known", fix=f"use one of {', '.join(HANDOFF_DOMAINS)}")
    r = slots.get("repeat")
    if r is not None and r not in REPEATS:
        raise ActionError(f"alarm repeat {r!r} is not known", fix=f"use one of {', '.join(REPEATS)}")
