"""Arithmetic, percentages and unit conversions, answered exactly instead of by the LLM.

A 135M-parameter LLM cannot multiply (0 of 14 held-out number requests right with the reply adapter,
bench/RESULTS.md "Replies"), and a wrong number read out confidently is worse than none. So a request
that *is* a calculation ("what's twelve times four", "convert five miles to kilometers", "a fifteen
percent tip on eighty dollars") is computed here and said in words; anything else is left to the LLM.
"""

from __future__ import annotations

import re

from assistant.skills.words import MAX_SAID, decimal_words, read_number

# (from, to, factor) with singular unit names; the request templates (assistant/synth) ask for these
CONVERSIONS = (
    ("kilometer", "mile", 0.621371), ("mile", "kilometer", 1.60934), ("kilogram", "pound", 2.20462),
    ("pound", "kilogram", 0.453592), ("inch", "centimeter", 2.54), ("foot", "meter", 0.3048),
    ("meter", "foot", 3.28084), ("gallon", "liter", 3.78541), ("liter", "gallon", 0.264172),
    ("cup", "milliliter", 236.588), ("ounce", "gram", 28.3495), ("hour", "minute", 60.0),
    ("minute", "second", 60.0), ("day", "hour", 24.0), ("week", "day", 7.0), ("yard", "meter", 0.9144),
)
_FACTOR = {(a, b): f for a, b, f in CONVERSIONS} | {(b, a): 1 / f for a, b, f in CONVERSIONS}
PLURALS = {"inch": "inches", "foot": "feet"}
_SINGULAR = {p: s for s, p in PLURALS.items()} | {"kilometre": "kilometer", "metre": "meter", "litre": "liter",
                                                   "centimetre": "centimeter", "millilitre": "milliliter"}


def unit_name(unit: str, n: float) -> str:
    return unit if n == 1 else PLURALS.get(unit, unit + "s")


def _singular(word: str) -> str:
    word = _SINGULAR.get(word, word)
    if word.endswith("s") and word not in _SINGULAR.values():
        word = _SINGULAR.get(word[:-1], word[:-1])
    return word


def tokens(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?|[a-z']+", text.lower())


def with_numbers(text: str, *, join_and: bool = True) -> tuple[str, list[float], list[str]]:
    """``text`` with each spoken number replaced by "#", the values, and each number as it was said."""
    toks = tokens(text)
    out, values, said, i = [], [], [], 0
    while i < len(toks):
        got = read_number(toks, i, join_and=join_and)
        if got is None or (toks[i] == "a" and got[1] == i + 1):
            out.append(toks[i])
            i += 1
            continue
        values.append(got[0])
        words = " ".join(t for t in toks[i:got[1]] if t != "and")
        said.append(say(got[0]) or words if any(c.isdigit() for c in words) else words)
        out.append("#")
        i = got[1]
    return " ".join(out), values, said


def say(x: float) -> str | None:
    """A result in words: whole numbers exactly, others to one decimal; None beyond what is said."""
    if abs(x) >= MAX_SAID:
        return None
    return decimal_words(x) if x != int(x) else decimal_words(float(int(x)))


def _is(x: float) -> str:
    """ "is" or "is about", by whether ``x`` is said exactly."""
    return "is" if round(x, 1) == x else "is about"


_ARITH = (  # (pattern over the text with numbers as "#", operator, order of the two operands)
    (r"# plus #", "plus", (0, 1)), (r"add # and #", "plus", (0, 1)), (r"# and # together", "plus", (0, 1)),
    (r"add # to #", "plus", (1, 0)),
    (r"# minus #", "minus", (0, 1)), (r"# take away #", "minus", (0, 1)), (r"subtract # from #", "minus", (1, 0)),
    (r"# times #", "times", (0, 1)), (r"multiply # by #", "times", (0, 1)),
    (r"# multiplied by #", "times", (0, 1)),
    (r"# divided by #", "divided by", (0, 1)), (r"divide # by #", "divided by", (0, 1)),
)
_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b,
        "divided by": lambda a, b: a / b}
_UNIT = r"([a-z]+)"
_CONVERT = (  # (pattern, group of the amount's unit, group of the target unit)
    (rf"convert # {_UNIT} (?:to|into) {_UNIT}", 1, 2), (rf"how many {_UNIT} (?:are|is) (?:in|there in) # {_UNIT}", 2, 1),
    (rf"how many {_UNIT} is # {_UNIT}", 2, 1), (rf"# {_UNIT} (?:in|to|into) {_UNIT}", 1, 2),
)
_TEMPERATURE = {"celsius": lambda c: c * 9 / 5 + 32, "fahrenheit": lambda f: (f - 32) * 5 / 9}


def _arithmetic(text: str, values: list[float], said: list[str]) -> str | None:
    if len(values) != 2:
        return None
    for pattern, op, (i, j) in _ARITH:
        if re.search(rf"(?:^| ){pattern}(?: |$)", text):
            a, b = values[i], values[j]
            if op == "divided by" and b == 0:
                return f"{said[i].capitalize()} divided by zero has no answer."
            x = _OPS[op](a, b)
            words = say(x)
            return words and f"{said[i].capitalize()} {op} {said[j]} {_is(x)} {words}."
    if re.search(r"# percent (?:tip )?(?:of|on) #", text):
        x = values[0] * values[1] / 100
        words = say(x)
        return words and f"{said[0].capitalize()} percent of {said[1]} {_is(x)} {words}."
    return None


def _conversion(text: str, values: list[float], said: list[str]) -> str | None:
    if len(values) != 1:
        return None
    n = values[0]
    m = re.search(r"# degrees? (celsius|fahrenheit) (?:in|to|into) (?:degrees? )?(celsius|fahrenheit)", text)
    if m and m.group(1) != m.group(2):
        words = say(_TEMPERATURE[m.group(1)](n))
        return words and f"{said[0].capitalize()} degrees {m.group(1)} is about {words} degrees {m.group(2)}."
    for pattern, ga, gb in _CONVERT:
        m = re.search(rf"(?:^| ){pattern}(?: |$)", text)
        if not m:
            continue
        a, b = _singular(m.group(ga)), _singular(m.group(gb))
        if (a, b) not in _FACTOR:
            return None
        x = n * _FACTOR[(a, b)]
        words = say(x)
        return words and (f"{said[0].capitalize()} {unit_name(a, n)} {_is(x)} {words} "
                          f"{unit_name(b, round(x, 1))}.")
    return None


def answer(transcript: str) -> str | None:
    """The spoken answer to a calculation request, or None when ``transcript`` is not one."""
    text, values, said = with_numbers(transcript)
    if len(values) == 1 and " and " in transcript:  # "add one hundred and five": two numbers after all
        two = with_numbers(transcript, join_and=False)
        if len(two[1]) == 2 and (reply := _arithmetic(*two)):
            return reply
    return _arithmetic(text, values, said) or _conversion(text, values, said)
