"""Calendar facts that follow from the request alone: weekday offsets, month lengths, month order.

"What day is ten days after Monday" has one answer, and the LLM gets it wrong; it is computed here.
Requests that need today's date ("what's the date tomorrow") are not answered here.
"""

from __future__ import annotations

import re

from assistant.skills.calculator import with_numbers
from assistant.skills.words import number_words

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: the leap-year most
_WEEKDAY = "(" + "|".join(WEEKDAYS) + ")"
_MONTH = "(" + "|".join(MONTHS) + ")"


def _days(said: str, n: float) -> str:
    return f"{said} day" + ("" if n == 1 else "s")


def answer(transcript: str) -> str | None:
    """The answer to a calendar request that needs no clock, or None when ``transcript`` is not one."""
    text, values, said = with_numbers(transcript)
    m = re.search(rf"\bwhat day (?:is|will it be) # days? (after|before) {_WEEKDAY}\b", text)
    if m and len(values) == 1 and values[0] == int(values[0]):
        n, rel, day = int(values[0]), m.group(1), m.group(2)
        sign = 1 if rel == "after" else -1
        ans = WEEKDAYS[(WEEKDAYS.index(day) + sign * n) % 7]
        return f"{_days(said[0], n).capitalize()} {rel} {day.capitalize()} is {ans.capitalize()}."
    if values:
        return None
    m = re.search(rf"\bhow many days (?:are )?(?:there )?in {_MONTH}\b", text)
    if m:
        i = MONTHS.index(m.group(1))
        days = "twenty eight or twenty nine" if i == 1 else number_words(MONTH_DAYS[i])
        return f"{m.group(1).capitalize()} has {days} days."
    m = re.search(rf"\bwhat month (?:comes|is) (after|before) {_MONTH}\b", text)
    if m:
        rel, i = m.group(1), MONTHS.index(m.group(2))
        other = MONTHS[(i + (1 if rel == "after" else -1)) % 12]
        return f"{other.capitalize()} comes {rel} {m.group(2).capitalize()}."
    return None
