"""Numbers as spoken words, both ways: what a transcript holds and what a spoken reply says.

The transcripts are normalized words ("twelve times four"), and a reply is read aloud, so numbers go
in and out as words. Digits are read too, since an API client may type them.
"""

from __future__ import annotations

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
MAX_SAID = 1_000_000  # number_words covers below this; a result beyond it is not read out


def number_words(n: int) -> str:
    """0..999999 as words without hyphens or "and": 125 -> "one hundred twenty five"."""
    if not 0 <= n < MAX_SAID:
        raise ValueError(f"number_words covers 0..{MAX_SAID - 1}, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def decimal_words(x: float, places: int = 1) -> str:
    """3.1 -> "three point one"; whole values drop the point: 4.0 -> "four"; -2 -> "minus two"."""
    x = round(x, places)
    if x < 0:
        return "minus " + decimal_words(-x, places)
    whole = int(x)
    frac = f"{x:.{places}f}".split(".")[1].rstrip("0")
    text = number_words(whole)
    return text + (" point " + " ".join(ONES[int(d)] for d in frac) if frac else "")


_ORD_SPECIAL = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}


def ordinal_words(n: int) -> str:
    """21 -> "twenty first", 12 -> "twelfth", 30 -> "thirtieth"."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORD_SPECIAL:
        last = _ORD_SPECIAL[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(words[:-1] + [last])


_VALUE = {w: i for i, w in enumerate(ONES)} | {w: 10 * i for i, w in enumerate(TENS) if i >= 2}
_VALUE["oh"] = 0


def is_number_word(token: str) -> bool:
    return token in _VALUE or token in ("hundred", "thousand", "point") or token.replace(".", "", 1).isdigit()


def read_number(tokens: list[str], start: int, *, join_and: bool = True) -> tuple[float, int] | None:
    """The number spoken at ``tokens[start:]`` and the index after it, or None when none starts there.

    "one hundred and five" (British "and" after hundred), "a hundred", "twenty five point five", "12".
    A run that is not one number ("five six") stops after the first: each number is one value.
    ``join_and=False`` reads "one hundred and five" as two numbers ("add one hundred and five")."""
    i, n = start, len(tokens)
    if i < n and tokens[i].replace(".", "", 1).isdigit():
        return float(tokens[i]), i + 1
    total, group, last = 0, 0, None  # last: None, "unit", "teen", "tens", "hundred", "thousand"
    while i < n:
        t = tokens[i]
        v = _VALUE.get(t)
        if t == "a" and last is None and i + 1 < n and tokens[i + 1] in ("hundred", "thousand"):
            group, last = 1, "unit"
        elif v is not None and 1 <= v <= 9 and last in (None, "tens", "hundred", "thousand"):
            group, last = group + v, "unit"
        elif v is not None and v < 20 and last in (None, "hundred", "thousand") and (v or last is None):
            group, last = group + v, "teen"
        elif v is not None and v >= 20 and last in (None, "hundred", "thousand"):
            group, last = group + v, "tens"
        elif t == "hundred" and last in ("unit", "teen") and 0 < group < 20:
            group, last = group * 100, "hundred"
        elif t == "thousand" and last not in (None, "thousand") and total == 0:
            total, group, last = group * 1000, 0, "thousand"
        elif t == "and" and join_and and last in ("hundred", "thousand") and i + 1 < n and tokens[i + 1] in _VALUE:
            pass
        else:
            break
        if last == "teen" and v == 0:
            i += 1
            break  # "zero" is a number on its own
        i += 1
    if last is None:
        return None
    value = float(total + group)
    if i + 1 < n and tokens[i] == "point" and _VALUE.get(tokens[i + 1], 10) < 10:
        digits, i = [], i + 1
        while i < n and _VALUE.get(tokens[i], 10) < 10:
            digits.append(str(_VALUE[tokens[i]]))
            i += 1
        value = float(f"{int(value)}.{''.join(digits)}")
    return value, i
