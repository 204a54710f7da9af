"""Request templates, continued: smart home, dates, numbers and reminders.

Replies that can be computed from the request are (arithmetic, unit conversions, "n days after
monday", days in a month): a small LM can learn those, unlike invented facts.
"""

from __future__ import annotations

import random
import re
from typing import Sequence

from assistant.skills.calculator import CONVERSIONS, unit_name
from assistant.synth import lexicon as L
from assistant.synth.templates import Pair, _count, _your, ask, cap, clock, question, title


# --- smart home ---------------------------------------------------------------------------
def _where(rng: random.Random) -> tuple[str, str]:
    """(prefix form "kitchen ", suffix form " in the kitchen"), sometimes no room at all."""
    if rng.random() < 0.2:
        return "", ""
    r = rng.choice(L.ROOMS)
    return f"{r} ", f" in the {r}"


_ING = {"open": "Opening", "close": "Closing", "raise": "Raising", "lower": "Lowering"}


def smart_home(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    pre, post = _where(rng)
    k = rng.randrange(12)
    if k < 4:
        dev, on = rng.choice(L.SWITCHABLE), rng.choice(["on", "off"])
        v = rng.choice([f"turn {on} the {pre}{dev}", f"switch {on} the {pre}{dev}",
                        f"turn the {pre}{dev} {on}", f"turn {on} the {dev}{post}",
                        f"switch the {dev}{post} {on}"])
        return ask(rng, v), f"Turning {on} the {pre}{dev}."
    if k < 6:
        dev, pct = rng.choice(L.DIMMABLE), L.number_words(rng.choice(range(5, 101, 5)))
        v = rng.choice([f"dim the {pre}{dev} to {pct} percent", f"set the {pre}{dev} to {pct} percent",
                        f"set the {dev}{post} to {pct} percent", f"dim the {dev}{post} to {pct} percent",
                        f"turn the {pre}{dev} down to {pct} percent", f"put the {pre}{dev} at {pct} percent"])
        return ask(rng, v), f"Setting the {pre}{dev} to {pct} percent."
    if k < 7:
        dev = rng.choice(L.DIMMABLE)
        how = rng.choice(["brighter", "dimmer", "a bit brighter", "a little dimmer", "warmer", "cooler"])
        return ask(rng, f"make the {pre}{dev} {how}"), f"Making the {pre}{dev} {how}."
    if k < 9:
        dev, verb = rng.choice(L.OPENABLE), rng.choice(["open", "close", "raise", "lower"])
        extra = rng.choice(["", "", " halfway", " all the way"])
        v = rng.choice([f"{verb} the {pre}{dev}{extra}", f"{verb} the {dev}{post}{extra}"])
        return ask(rng, v), f"{_ING[verb]} the {pre}{dev}{extra}."
    if k < 11:
        deg = L.number_words(rng.randint(15, 26))
        v = rng.choice([f"set the heating to {deg} degrees", f"set the thermostat to {deg} degrees",
                        f"set the {pre}thermostat to {deg} degrees", f"make it {deg} degrees{post}",
                        f"set the temperature{post} to {deg} degrees", f"heat the {pre.strip() or 'house'} to {deg} degrees"])
        room = post if pre and pre.strip() in v else ""
        return ask(rng, v), f"Setting the temperature{room} to {deg} degrees."
    q = rng.choice([f"is the {pre}{rng.choice(L.SWITCHABLE)} on", f"what's the temperature{post}",
                    f"did i leave the {pre}{rng.choice(L.SWITCHABLE)} on", "are all the lights off",
                    f"turn off everything{post}", "turn off all the lights", "is the front door locked",
                    "lock the front door", "set the fan to high speed", "set the fan to low speed"])
    return question(rng, q), f"Checking: {_your(q)}."


# --- dates --------------------------------------------------------------------------------
def _date(rng: random.Random) -> str:
    m = rng.randrange(12)
    d = rng.randint(1, L.MONTH_DAYS[m])
    return rng.choice([f"{L.MONTHS[m]} the {L.ordinal_words(d)}", f"the {L.ordinal_words(d)} of {L.MONTHS[m]}",
                       f"{L.MONTHS[m]} {L.ordinal_words(d)}"])


def dates(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    k = rng.randrange(12)
    if k < 2:
        wd = rng.randrange(7)
        n = rng.choice([*range(1, 15), 20, 21, 30, 100])
        rel, sign = rng.choice([("after", 1), ("before", -1)])
        q = rng.choice([f"what day is {_count(n, 'day')} {rel} {L.WEEKDAYS[wd]}",
                        f"what day will it be {_count(n, 'day')} {rel} {L.WEEKDAYS[wd]}"])
        ans = L.WEEKDAYS[(wd + sign * n) % 7]
        return question(rng, q), f"{cap(_count(n, 'day'))} {rel} {cap(L.WEEKDAYS[wd])} is {cap(ans)}."
    if k < 3:
        m = rng.randrange(12)
        days = "twenty eight or twenty nine" if m == 1 else L.number_words(L.MONTH_DAYS[m])
        return question(rng, f"how many days are in {L.MONTHS[m]}"), f"{cap(L.MONTHS[m])} has {days} days."
    if k < 4:
        m = rng.randrange(12)
        rel, nxt = rng.choice([("after", 1), ("before", -1)])
        return (question(rng, f"what month comes {rel} {L.MONTHS[m]}"),
                f"{cap(L.MONTHS[(m + nxt) % 12])} comes {rel} {cap(L.MONTHS[m])}.")
    if k < 6:
        h = rng.choice(L.HOLIDAYS)
        q = rng.choice([f"when is {h}", f"what day is {h} this year", f"how many days until {h}",
                        f"how long until {h}", f"what day of the week is {h}", f"is {h} on a weekend"])
        return question(rng, q), f"Let me check the calendar for {title(h)}."
    if k < 8:
        d = _date(rng)
        q = rng.choice([f"what day of the week is {d}", f"what day is {d}", f"how many days until {d}",
                        f"is {d} a weekend", f"what's on my calendar for {d}", f"am i free on {d}"])
        return question(rng, q), f"Let me check the calendar for {d}."
    if k < 9 and names:
        n = rng.choice(names)
        q = rng.choice([f"when is {n}'s birthday", f"how many days until {n}'s birthday",
                        f"what day is {n}'s birthday this year", f"when is my dinner with {n}",
                        f"when am i seeing {n} next"])
        return question(rng, q), f"Let me check the calendar for {title(n)}."
    if k < 10 and places:
        p = rng.choice(places)
        q = rng.choice([f"how many days until my trip to {p}", f"when do i fly to {p}",
                        f"when am i back from {p}", f"what day do i leave for {p}"])
        return question(rng, q), f"Let me check the calendar for {title(p)}."
    n = rng.choice([2, 3, 4, 5, 7, 10, 14, 30])
    q = rng.choice(["what day is it today", "what's the date today", "what's today's date",
                    "what day is it tomorrow", f"what's the date next {rng.choice(L.WEEKDAYS)}",
                    f"what's the date on {rng.choice(L.WEEKDAYS)}", f"what day is it in {_count(n, 'day')}",
                    f"what's the date {_count(n, 'day')} from now", "what week of the year is it",
                    "what year is it", "what month is it"])
    return question(rng, q), f"Let me check the calendar: {_your(q)}."


# --- numbers ------------------------------------------------------------------------------
def _convert(rng: random.Random) -> Pair:
    if rng.random() < 0.2:
        if rng.random() < 0.5:
            c = rng.randint(0, 40)
            a, b, x = "celsius", "fahrenheit", c * 9 / 5 + 32
        else:
            c = rng.randint(32, 110)
            a, b, x = "fahrenheit", "celsius", (c - 32) * 5 / 9
        q = rng.choice([f"what's {L.number_words(c)} degrees {a} in {b}",
                        f"convert {L.number_words(c)} degrees {a} to {b}"])
        return question(rng, q), f"{cap(L.number_words(c))} degrees {a} is about {L.decimal_words(x)} degrees {b}."
    a, b, f = rng.choice(CONVERSIONS)
    n = rng.choice([*range(1, 21), 25, 30, 40, 50, 60, 75, 100, 150, 200, 500])
    na, nb = f"{L.number_words(n)} {unit_name(a, n)}", unit_name(b, 2)
    q = rng.choice([f"convert {na} to {nb}", f"how many {nb} are in {na}", f"what's {na} in {nb}",
                    f"how many {nb} is {na}", f"what is {na} in {nb}"])
    x = n * f
    return question(rng, q), f"{cap(na)} is {'about ' if round(x, 1) != x else ''}{L.decimal_words(x)} {unit_name(b, x)}."


def numbers(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    k = rng.randrange(10)
    if k < 3:
        return _convert(rng)
    w = L.number_words
    if k < 5:
        a, b = rng.randint(0, 100), rng.randint(0, 100)
        q = rng.choice([f"what's {w(a)} plus {w(b)}", f"what is {w(a)} plus {w(b)}", f"add {w(a)} and {w(b)}",
                        f"how much is {w(a)} plus {w(b)}", f"what's {w(a)} and {w(b)} together"])
        return question(rng, q), f"{cap(w(a))} plus {w(b)} is {w(a + b)}."
    if k < 6:
        a, b = sorted((rng.randint(0, 100), rng.randint(0, 100)), reverse=True)
        q = rng.choice([f"what's {w(a)} minus {w(b)}", f"subtract {w(b)} from {w(a)}",
                        f"what is {w(a)} take away {w(b)}"])
        return question(rng, q), f"{cap(w(a))} minus {w(b)} is {w(a - b)}."
    if k < 8:
        a, b = rng.randint(2, 20), rng.randint(2, 12)
        q = rng.choice([f"what's {w(a)} times {w(b)}", f"multiply {w(a)} by {w(b)}",
                        f"what is {w(a)} multiplied by {w(b)}", f"how much is {w(a)} times {w(b)}"])
        return question(rng, q), f"{cap(w(a))} times {w(b)} is {w(a * b)}."
    if k < 9:
        b, c = rng.randint(2, 12), rng.randint(2, 12)
        q = rng.choice([f"what's {w(b * c)} divided by {w(b)}", f"divide {w(b * c)} by {w(b)}"])
        return question(rng, q), f"{cap(w(b * c))} divided by {w(b)} is {w(c)}."
    pct, base = rng.choice([5, 10, 15, 20, 25, 50, 75]), rng.choice(range(20, 401, 20))
    q = rng.choice([f"what's {w(pct)} percent of {w(base)}",
                    f"what's a {w(pct)} percent tip on {w(base)} dollars"])
    return question(rng, q), f"{cap(w(pct))} percent of {w(base)} is {L.decimal_words(pct * base / 100)}."


# --- reminders ----------------------------------------------------------------------------
def _remind_time(rng: random.Random) -> str:
    return rng.choice([*L.TIME_PHRASES, f"at {clock(rng)}", f"on {rng.choice(L.WEEKDAYS)}",
                       f"in {_count(rng.choice([5, 10, 15, 20, 30, 45]), 'minute')}",
                       f"on {rng.choice(L.WEEKDAYS)} at {clock(rng)}", f"tomorrow at {clock(rng)}"])


def reminders(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    k = rng.randrange(10)
    t = _remind_time(rng)
    if k < 6 or not names:
        task = rng.choice(L.TASKS)
    elif k < 8:
        n = rng.choice(names)
        task = rng.choice([f"call {n}", f"text {n}", f"buy a present for {n}", f"email {n}",
                           f"pick up {n}", f"thank {n}", f"send {n} the photos", f"meet {n}"])
    elif k < 9:
        n = rng.choice(names)
        d = L.ordinal_words(rng.randint(1, 28))
        m = rng.choice(L.MONTHS)
        return (ask(rng, f"remind me about {n}'s birthday on {m} the {d}"),
                f"Okay, I'll remind you about {title(n)}'s birthday on {cap(m)} the {d}.")
    else:
        q = rng.choice([f"what are my reminders for {t}", "show me my reminders", "what did i ask you to remind me",
                        f"delete the reminder to {rng.choice(L.TASKS)}", f"cancel my reminder to {rng.choice(L.TASKS)}"])
        return question(rng, q), f"Here are your reminders: {_your(q)}."
    form = rng.choice([f"remind me to {task} {t}", f"set a reminder to {task} {t}",
                       f"don't let me forget to {task} {t}", f"remind me {t} to {task}",
                       f"add a reminder to {task} {t}", f"i need a reminder to {task} {t}"])
    reply = f"Okay, I'll remind you to {_your(task)} {_your(t)}."
    reply = re.sub(r"[a-z]+", lambda m: title(m[0]) if m[0] in names else m[0], reply)  # Names
    return ask(rng, form), reply
