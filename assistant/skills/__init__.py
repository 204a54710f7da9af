"""Skills: requests answered by computing or acting, not by the LLM.

``answer(transcript, now)`` asks each skill in turn and returns the first ``Answer`` (the reply and, for a
request that asks for something to be done, its ``Action``), or None, in which case the LLM writes the
reply. A skill answers only a request it fully understands (every number read, every unit known); a
half-understood request goes to the LLM rather than being answered, or acted on, wrongly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from assistant.skills import calculator, calendar, clock, reminders, timers
from assistant.skills.actions import Action, Answer

Skill = Callable[[str, datetime], "Answer | None"]


def _plain(name: str, fn: Callable[[str], "str | None"]) -> Skill:
    def skill(transcript: str, now: datetime) -> Answer | None:
        reply = fn(transcript)
        return None if reply is None else Answer(name, reply)
    return skill


SKILLS: dict[str, Skill] = {"calculator": _plain("calculator", calculator.answer),
                            "calendar": _plain("calendar", calendar.answer),
                            "clock": clock.answer,
                            "timers": lambda transcript, now: timers.answer(transcript),
                            "reminders": lambda transcript, now: reminders.answer(transcript)}


def answer(transcript: str, now: datetime | None = None) -> Answer | None:
    """The first skill's Answer to ``transcript`` (``now``: local time, default the device clock), or None."""
    now = now or datetime.now().astimezone()
    for skill in SKILLS.values():
        got = skill(transcript, now)
        if got is not None:
            return got
    return None


__all__ = ["Action", "Answer", "SKILLS", "answer"]
