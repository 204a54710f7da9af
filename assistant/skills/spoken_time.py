"""Durations and clock times as a transcript says them, read strictly into numbers.

Each reader takes the normalized tokens and a start index and returns the value, the index after the
phrase, or None when no such phrase starts there; a phrase is read whole or not at all ("five minutes
and" stops before "and"). Callers echo the phrase as said in their reply ("Timer set for an hour and a
half."), so a reply never rephrases what the user asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.skills.words import ONES, number_words, read_number

UNIT_S = {"second": 1, "seconds": 1, "minute": 60, "minutes": 60, "hour": 3600, "hours": 3600}
_A = ("a", "an", "one")


@dataclass(frozen=True)
class Spoken:
    value: int  # seconds (durations) or minutes after midnight (clock times)
    end: int  # index after the phrase
    said: str  # the phrase's own words


def _whole(tokens: list[str], i: int) -> tuple[int, int] | None:
    got = read_number(tokens, i, join_and=False)
    if got is None or got[0] != int(got[0]):
        return None
    return int(got[0]), got[1]


def _amount_unit(tokens: list[str], i: int) -> tuple[float, int, int] | None:
    """(amount, unit seconds, end) for "five minutes", "an hour", "two and a half hours", "a minute"."""
    n = len(tokens)
    if i < n and tokens[i] in ("a", "an") and i + 1 < n and tokens[i + 1] in UNIT_S:
        return 1.0, UNIT_S[tokens[i + 1]], i + 2
    got = _whole(tokens, i)
    if got is None:
        return None
    amount, j = float(got[0]), got[1]
    if tokens[j:j + 3] == ["and", "a", "half"]:
        amount, j = amount + 0.5, j + 3
    if j < n and tokens[j] in UNIT_S:
        return amount, UNIT_S[tokens[j]], j + 1
    return None


def read_duration(tokens: list[str], i: int) -> Spoken | None:
    """ "five minutes", "an hour and a half", "two minutes and thirty seconds", "half an hour",
    "a quarter of an hour", "ninety seconds", "a five minute" (as in "a five minute timer")."""
    n = len(tokens)
    for phrase, seconds in ((["half", "an", "hour"], 1800), (["a", "quarter", "of", "an", "hour"], 900),
                            (["a", "quarter", "hour"], 900), (["half", "a", "minute"], 30)):
        if tokens[i:i + len(phrase)] == phrase:
            return Spoken(seconds, i + len(phrase), " ".join(phrase))
    first = _amount_unit(tokens, i)
    if first is None:
        return None
    amount, unit, j = first
    total = amount * unit
    if tokens[j:j + 3] == ["and", "a", "half"]:
        total, j = total + unit / 2, j + 3
    elif j < n and tokens[j] == "and":
        more = _amount_unit(tokens, j + 1)
        if more is not None and more[1] < unit:  # "two hours and ten minutes", never "... and two hours"
            total, j = total + more[0] * more[1], more[2]
    if total != int(total) or total <= 0:
        return None
    return Spoken(int(total), j, " ".join(tokens[i:j]))


_PAST_TO = {"quarter": 15, "half": 30, "five": 5, "ten": 10, "twenty": 20, "twenty five": 25}
AM_WORDS = (["in", "the", "morning"], ["a", "m"], ["am"])
PM_WORDS = (["in", "the", "evening"], ["in", "the", "afternoon"], ["at", "night"], ["p", "m"], ["pm"],
            ["tonight"])


def _hour(tokens: list[str], i: int) -> tuple[int, int] | None:
    got = _whole(tokens, i)
    if got is None or not 0 <= got[0] <= 23:
        return None
    return got


def read_clock(tokens: list[str], i: int) -> tuple[Spoken, bool] | None:
    """A clock time -> (minutes after midnight, said) and whether a.m./p.m. is known.

    "seven thirty", "seven oh five", "seven o'clock", "quarter past seven", "twenty to eight",
    "half past six in the evening", "noon", "midnight", "7 30 a m", "nineteen hundred". Without a
    qualifier an hour of 1..12 is ambiguous (``known`` False): the caller takes the next such time."""
    n = len(tokens)
    if i < n and tokens[i] in ("noon", "midday", "midnight"):
        return Spoken(12 * 60 if tokens[i] != "midnight" else 0, i + 1, tokens[i]), True
    minutes = None
    for words, m in sorted(_PAST_TO.items(), key=lambda kv: -len(kv[0])):
        w = words.split()
        k = len(w)
        if tokens[i:i + k] == w and i + k < n and tokens[i + k] in ("past", "to"):
            h = _hour(tokens, i + k + 1)
            if h is None or not 1 <= h[0] <= 12:
                return None
            if tokens[i + k] == "past":
                minutes = (h[0] % 12) * 60 + m
            else:  # "quarter to eight": 7:45
                minutes = ((h[0] - 1) % 12) * 60 + 60 - m
            j = h[1]
            break
    if minutes is None:
        h = _hour(tokens, i)
        if h is None:
            return None
        hour, j = h
        mins = 0
        if j < n and tokens[j] == "o'clock":
            j += 1
        elif j < n and tokens[j] == "hundred" and hour > 12:
            j += 1
        elif j + 1 < n and tokens[j] == "oh" and tokens[j + 1] in ONES[1:10]:
            mins, j = ONES.index(tokens[j + 1]), j + 2
        else:
            m = _whole(tokens, j)
            if m is not None and 10 <= m[0] <= 59 or m is not None and tokens[j].isdigit() and m[0] <= 59:
                mins, j = m[0], m[1]
        minutes = hour * 60 + mins
        if hour > 12 or hour == 0:
            return Spoken(minutes, j, " ".join(tokens[i:j])), True
    known = False
    for words, pm in [(w, False) for w in AM_WORDS] + [(w, True) for w in PM_WORDS]:
        if tokens[j:j + len(words)] == words:
            hour12 = (minutes // 60) % 12
            minutes = (hour12 + (12 if pm else 0)) * 60 + minutes % 60
            j, known = j + len(words), True
            break
    return Spoken(minutes % (24 * 60), j, " ".join(tokens[i:j])), known


def clock_words(minutes: int) -> str:
    """Minutes after midnight as said: 450 -> "seven thirty a m", 1205 -> "eight oh five p m"."""
    h, m = divmod(minutes % (24 * 60), 60)
    if (h, m) == (12, 0):
        return "noon"
    if (h, m) == (0, 0):
        return "midnight"
    said = number_words(h % 12 or 12)
    said += " o'clock" if m == 0 else (f" oh {ONES[m]}" if m < 10 else f" {number_words(m)}")
    return f"{said} {'p m' if h >= 12 else 'a m'}"


def duration_words(seconds: float) -> str:
    """4 min 30 s -> "four minutes and thirty seconds"; 3600 -> "one hour"."""
    s = max(0, int(round(seconds)))
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        k, s = divmod(s, size)
        if k:
            parts.append(f"{number_words(k)} {unit}" + ("" if k == 1 else "s"))
    if not parts:
        return "no time"
    return " and ".join(parts) if len(parts) <= 2 else f"{parts[0]}, {parts[1]} and {parts[2]}"
