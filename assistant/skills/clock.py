"""Time and date questions answered from the device's clock (local time), never by the LLM.

The clock is an argument: the daemon passes the current local time, tests and benchmarks a fixed one.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from assistant.skills.actions import Answer, action
from assistant.skills.calendar import MONTHS, WEEKDAYS
from assistant.skills.calculator import with_numbers
from assistant.skills.spoken_time import clock_words
from assistant.skills.words import number_words, ordinal_words

SKILL = "clock"
_TIME = re.compile(r"(?:(?:hey|okay|so|excuse me|quick question) )*(?:what time is it(?: now)?|what's the time(?: now)?|"
                   r"what is the time(?: now)?|tell me the time|do you know what time it is|"
                   r"do you have the time)(?: please| thanks)?")
_LEAD = r"(?:(?:hey|okay|so|excuse me|quick question) )*"
_TAIL = r"(?: please| thanks)?"
_DATE = re.compile(rf"{_LEAD}(?:what day is it|what's the date|what is the date|what's today's date|"
                   rf"what is today's date|what day is today|what's the day today)(?: today)?{_TAIL}")
_TOMORROW = re.compile(rf"{_LEAD}(?:what day is it|what's the date|what is the date) tomorrow{_TAIL}")
_WEEKDAY = re.compile(rf"{_LEAD}what(?:'s| is) the date (?:next|on|this) ({'|'.join(WEEKDAYS)}){_TAIL}")
_IN_DAYS = re.compile(rf"{_LEAD}(?:what day (?:is it|will it be) in # days?|what(?:'s| is) the date # days? "
                      rf"from (?:now|today)){_TAIL}")
_YEAR = re.compile(rf"{_LEAD}what year is it{_TAIL}")
_MONTH = re.compile(rf"{_LEAD}what month is it{_TAIL}")
_WEEK = re.compile(rf"{_LEAD}what week of the year is it{_TAIL}")


def _day(d: datetime) -> str:
    return f"{WEEKDAYS[d.weekday()].capitalize()}, {MONTHS[d.month - 1].capitalize()} {ordinal_words(d.day)}"


def answer(transcript: str, now: datetime) -> Answer | None:
    from assistant.metrics import normalize

    text, values, said = with_numbers(normalize(transcript))
    if not values:
        if _TIME.fullmatch(text):
            return Answer(SKILL, f"It's {clock_words(now.hour * 60 + now.minute)}.", action("time.now"))
        if _DATE.fullmatch(text):
            return Answer(SKILL, f"Today is {_day(now)}.", action("date.today"))
        if _TOMORROW.fullmatch(text):
            return Answer(SKILL, f"Tomorrow is {_day(now + timedelta(days=1))}.", action("date.today"))
        m = _WEEKDAY.fullmatch(text)
        if m:
            ahead = (WEEKDAYS.index(m.group(1)) - now.weekday() - 1) % 7 + 1  # the next one, never today
            d = now + timedelta(days=ahead)
            return Answer(SKILL, f"{m.group(1).capitalize()} is {MONTHS[d.month - 1].capitalize()} "
                                 f"{ordinal_words(d.day)}.", action("date.today"))
        if _YEAR.fullmatch(text):
            return Answer(SKILL, f"It's {number_words(now.year)}.", action("date.today"))
        if _MONTH.fullmatch(text):
            return Answer(SKILL, f"It's {MONTHS[now.month - 1].capitalize()}.", action("date.today"))
        if _WEEK.fullmatch(text):
            return Answer(SKILL, f"It's week {number_words(now.isocalendar()[1])}.", action("date.today"))
        return None
    if len(values) == 1 and values[0] == int(values[0]) and 0 < values[0] <= 3650 and _IN_DAYS.fullmatch(text):
        n = int(values[0])
        d = now + timedelta(days=n)
        return Answer(SKILL, f"In {said[0]} day{'' if n == 1 else 's'} it will be {_day(d)}.", action("date.today"))
    return None
