"""Reminders: "remind me to buy milk tomorrow at five thirty" read into a ``reminder.set`` action.

The time may be exact ("at five thirty", "in twenty minutes", "on friday at noon", "on march the
third") or one of the everyday phrases below, each with a fixed meaning (``VAGUE``: "tonight" is 8 p.m.,
"tomorrow morning" 8 a.m.); the reply echoes the user's words. A reminder that names no time, or a place
("when i get home"), is not read: the LLM answers, and the hand-off says that only times are kept.
"""

from __future__ import annotations

import re

from assistant.errors import ActionError
from assistant.skills.actions import Answer, action
from assistant.skills.calendar import MONTHS, WEEKDAYS
from assistant.skills.spoken_time import read_clock, read_duration
from assistant.skills.words import ordinal_words

SKILL = "reminders"
# phrase -> (day, "HH:MM") or a delay in seconds
VAGUE: dict[str, tuple[str, str] | int] = {
    "tonight": ("today", "20:00"), "tomorrow": ("tomorrow", "09:00"), "tomorrow morning": ("tomorrow", "08:00"),
    "tomorrow evening": ("tomorrow", "19:00"), "this afternoon": ("today", "15:00"),
    "this evening": ("today", "19:00"), "later today": 3 * 3600, "next week": ("next week", "09:00"),
    "on the weekend": ("weekend", "10:00"), "in an hour": 3600, "after lunch": ("today", "13:30"),
    "before bed": ("today", "22:00"), "first thing tomorrow": ("tomorrow", "07:00"),
}
_ORDINALS = {ordinal_words(n): n for n in range(1, 32)}
_YOUR = {"my": "your", "i": "you", "i'm": "you're", "me": "you", "i'll": "you'll"}
_SET = re.compile(r"(?:remind me to|set a reminder to|don't let me forget to|add a reminder to|"
                  r"i need a reminder to|do not let me forget to) (.+)")
_LIST = re.compile(r"(?:what are my reminders(?: for .+)?|show me my reminders|what did i ask you to remind me)")
_CANCEL = re.compile(r"(?:delete|cancel|remove) (?:the|my) reminder to (.+)")
_BIRTHDAY = re.compile(rf"remind me about ([a-z']+)'s birthday on ({'|'.join(MONTHS)}) the ([a-z ]+)")


def _your(text: str) -> str:
    return " ".join(_YOUR.get(w, w) for w in text.split())


def _when(words: list[str]) -> dict | None:
    """The reminder's time from all of ``words``, as action slots; None unless every word is read."""
    text = " ".join(words)
    if text in VAGUE:
        v = VAGUE[text]
        return {"delay_s": v} if isinstance(v, int) else {"day": v[0], "time": v[1], "ampm_known": True}
    if words[:1] == ["in"]:
        d = read_duration(words, 1)
        return {"delay_s": d.value} if d is not None and d.end == len(words) else None
    day, i = None, 0
    if words[:1] == ["tomorrow"]:
        day, i = "tomorrow", 1
    elif len(words) >= 2 and words[0] == "on" and words[1] in WEEKDAYS:
        day, i = words[1], 2
        if i == len(words):
            return {"day": day, "time": "09:00", "ampm_known": True}
    if words[i:i + 1] != ["at"]:
        return None
    got = read_clock(words, i + 1)
    if got is None or got[0].end != len(words):
        return None
    clock, known = got
    return {"day": day or "today", "time": f"{clock.value // 60:02d}:{clock.value % 60:02d}", "ampm_known": known}


def _split(rest: str) -> tuple[str, str, dict] | None:
    """``rest`` = task + time: the longest task whose remainder reads as a time."""
    words = rest.split()
    for k in range(1, len(words)):
        when = _when(words[k:])
        if when is not None:
            return " ".join(words[:k]), " ".join(words[k:]), when
    return None


def _set(task: str, said: str, when: dict) -> Answer:
    slots = {"text": task, "delay_s": None, "day": None, "time": None, "ampm_known": False, **when}
    return Answer(SKILL, f"Okay, I'll remind you to {_your(task)} {_your(said)}.", action("reminder.set", **slots))


def answer(transcript: str) -> Answer | None:
    from assistant.metrics import normalize
    from assistant.skills.timers import _core

    text = _core(normalize(transcript))
    if "remind" not in text and "forget" not in text:
        return None
    try:
        if _LIST.fullmatch(text):
            return Answer(SKILL, f"Here are your reminders: {_your(text)}.", action("reminder.list"))
        m = _CANCEL.fullmatch(text)
        if m:
            return Answer(SKILL, f"Here are your reminders: {_your(text)}.", action("reminder.cancel", text=m.group(1)))
        m = _BIRTHDAY.fullmatch(text)
        if m and m.group(3) in _ORDINALS:
            name, month, day = m.group(1), MONTHS.index(m.group(2)) + 1, _ORDINALS[m.group(3)]
            return Answer(SKILL, f"Okay, I'll remind you about {name.capitalize()}'s birthday on "
                                 f"{m.group(2).capitalize()} the {m.group(3)}.",
                          action("reminder.set", text=f"{name}'s birthday", delay_s=None,
                                 day=f"{month:02d}-{day:02d}", time="09:00", ampm_known=True))
        m = _SET.fullmatch(text)
        if m:
            got = _split(m.group(1))
            return None if got is None else _set(*got)
        if text.startswith("remind me ") and " to " in text:  # "remind me tomorrow at twenty to ten to ..."
            words = text.split()[2:]
            # the longest time that reads ("twenty to ten" holds a "to" too)
            for k in sorted((i for i, w in enumerate(words) if w == "to" and 0 < i < len(words) - 1), reverse=True):
                when = _when(words[:k])
                if when is not None:
                    return _set(" ".join(words[k + 1:]), " ".join(words[:k]), when)
    except ActionError:  # e.g. a task too long to keep as a label: the LLM answers, nothing is set
        return None
    return None
