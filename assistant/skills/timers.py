"""Timers and alarms: requests read into actions (``assistant/skills/actions.py``), strictly.

A request is taken only when every part of it is read: one duration or clock time, a known verb, at
most one label. Anything else ("set a timer for five minutes and three") is declined, and the LLM
answers without acting: a timer that rings at the wrong time is worse than none. Replies echo the
user's own words for the duration or time, as the request templates' replies do.
"""

from __future__ import annotations

import re

from assistant.errors import ActionError
from assistant.skills.actions import Answer, action
from assistant.skills.spoken_time import read_clock, read_duration
from assistant.skills.words import is_number_word

SKILL = "timers"
SNOOZE_S = 9 * 60  # the snooze length when none is said (the alarm-clock convention)
_CANCEL = {"cancel": "Cancelling", "stop": "Stopping", "delete": "Deleting", "remove": "Removing",
           "clear": "Clearing", "end": "Ending"}
_STOP = ("stop", "stop it", "stop that", "stop ringing", "be quiet", "quiet", "silence", "enough", "shut up")
_OTHER = {"pause": "Pausing", "resume": "Resuming", "restart": "Restarting"}
_NOT_LABEL = {"a", "an", "the", "my", "this", "that", "your", "new", "another", "all", "timer", "timers",
              "minute", "second", "hour", "set", "start", "make", "create", "put", "for", "on", "of", "to"}
_STATUS = re.compile(r"\b(?:how (?:much time|long) is left|how long until my timer|how long is left|"
                     r"is (?:the|my) (?:(\w+) )?timer still running|time left)\b")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = [(["every", "weekday"], "weekdays"), (["on", "weekdays"], "weekdays"), (["every", "day"], "daily"),
         (["on", "the", "weekend"], "weekends"), (["every", "weekend"], "weekends"), (["for", "tomorrow"], "tomorrow"),
         (["tomorrow"], "tomorrow")] + [(["on", d], d) for d in _WEEKDAYS] + [(["every", d], f"every {d}")
                                                                               for d in _WEEKDAYS]
_ALARM_SET = re.compile(r"\b(?:set (?:an|the|my|a) alarm (?:for|at)|wake me (?:up )?at|get me up at|"
                        r"make an alarm for|i need an alarm (?:at|for)|alarm (?:for|at))$")
_FILLER = re.compile(r"^(?:(?:hey|okay|ok|so|please|could you|can you|would you|will you|go ahead and|"
                     r"i'd like you to|quick question|excuse me)\s+)+|(?:\s+(?:please|for me|thanks|thank you|"
                     r"now))+$")


def _core(text: str) -> str:
    prev = None
    while prev != text:
        prev, text = text, _FILLER.sub("", text).strip()
    return text


def _durations(tokens: list[str]):
    """Every duration phrase in ``tokens`` and whether any number word is left outside them."""
    found, i, stray = [], 0, False
    while i < len(tokens):
        d = read_duration(tokens, i)
        if d is not None:
            found.append((i, d))
            i = d.end
        else:
            stray = stray or (is_number_word(tokens[i]) and tokens[i] not in ("point",))
            i += 1
    return found, stray


def _label_before_timer(tokens: list[str]) -> str | None:
    k = tokens.index("timer") if "timer" in tokens else -1
    if k > 0 and tokens[k - 1] not in _NOT_LABEL and not is_number_word(tokens[k - 1]) \
            and tokens[k - 1].isalpha():
        return tokens[k - 1]
    return None


def answer(transcript: str) -> Answer | None:
    from assistant.metrics import normalize

    text = _core(normalize(transcript))
    tokens = text.split()
    if not tokens:
        return None
    try:
        if text in _STOP:  # said while something rings
            return Answer(SKILL, "Alarms off.", action("alarm.stop"))
        if "alarm" in tokens or "alarms" in tokens or text.startswith(("wake me", "get me up", "snooze")):
            return _alarm(text, tokens)
        if {"timer", "timers", "countdown"} & set(tokens) or tokens[0] in ("time", "count") \
                or _STATUS.search(text):
            return _timer(text, tokens)
    except ActionError as exc:  # read, but out of range: said so, nothing is set
        return Answer(SKILL, f"I can't do that: {exc.problem}.")
    return None


def _timer(text: str, tokens: list[str]) -> Answer | None:
    found, stray = _durations(tokens)
    label = _label_before_timer(tokens)
    verb = tokens[0]
    if _STATUS.search(text) and not found:
        m = _STATUS.search(text)
        label = label or (m.group(1) if m.group(1) not in (None, "the", "my") else None)
        reply = f"Checking the {label} timer." if label else "Checking your timer."
        return Answer(SKILL, reply, action("timer.status", label=label))
    if verb in _CANCEL or verb in _OTHER:
        if found or stray:
            return None
        rest = tokens[1:]
        every = rest in (["all", "timers"], ["all", "the", "timers"], ["all", "my", "timers"])
        if not every and not (len(rest) in (2, 3) and rest[0] in ("the", "my", "this") and rest[-1] == "timer"):
            return None
        said = {"my": "your"}.get(rest[0], rest[0]) + " " + " ".join(rest[1:]) if not every else "all timers"
        name = f"timer.{'cancel' if verb in _CANCEL else verb}"
        return Answer(SKILL, f"{(_CANCEL | _OTHER)[verb]} {said}.", action(name, label=label, all=every))
    if not found and not stray and _ASK_HOW_LONG.fullmatch(text):
        return Answer(SKILL, "For how long?")
    if len(found) != 1 or stray:
        return None
    start, d = found[0]
    shape = " ".join([*tokens[:start], "#", *tokens[d.end:]])
    m = _ADD.fullmatch(shape)
    if m:
        return Answer(SKILL, f"Added {d.said} to the {m.group(1)} timer.",
                      action("timer.add", duration_s=d.value, label=m.group(1)))
    for pattern in _START:
        m = pattern.fullmatch(shape)
        if m is None:
            continue
        label = next((g for g in m.groups() if g is not None), None)
        if label in _NOT_LABEL:
            return None
        said = d.said
        if shape.endswith("timer") and "# " in shape:  # "a five minute timer": the reply says "five minutes"
            said = "an hour" if said == "one hour" else \
                said if said.endswith("s") or said.split()[0] in ("a", "an", "one") else f"{said}s"
        reply = f"{label.capitalize()} timer set for {said}." if label else f"Timer set for {said}."
        return Answer(SKILL, reply, action("timer.start", duration_s=d.value, label=label))
    return None


_W = r"([a-z]+)"
_ASK_HOW_LONG = re.compile(r"(?:set|start|make|create) (?:a|an|the|my) (?:[a-z]+ )?timer")
_ADD = re.compile(rf"add # to (?:the|my) {_W} timer")
_START = [re.compile(p) for p in (
    rf"(?:set|start|make|create|put) (?:a|the|an|my)(?: {_W})? timer (?:on )?for #(?: for the {_W})?",
    rf"(?:set|start|make|create) (?:a|an) #(?: {_W})? timer",
    r"(?:time|count down|start a countdown for|countdown for|countdown) #",
    rf"(?:{_W} )?timer (?:for|of) #",
)]


def _day(tokens: list[str], i: int) -> tuple[str, int] | None:
    for words, repeat in sorted(_DAYS, key=lambda x: -len(x[0])):
        if tokens[i:i + len(words)] == words:
            return repeat, i + len(words)
    return None


def _time_and_day(tokens: list[str], i: int):
    """(clock, ampm known, repeat, said, end) for "seven thirty in the morning every weekday"."""
    got = read_clock(tokens, i)
    if got is None:
        return None
    clock, known = got
    j, repeat = clock.end, "once"
    day = _day(tokens, j)
    if day is not None:
        repeat, j = day
    return clock.value, known, repeat, " ".join(tokens[i:j]), j


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _alarm(text: str, tokens: list[str]) -> Answer | None:
    if re.fullmatch(r"(?:turn off|cancel|delete|remove|disable|stop) all (?:my |the )?alarms", text):
        return Answer(SKILL, "Alarms off.", action("alarm.cancel", time=None, all=True))
    if re.fullmatch(r"(?:stop|turn off|silence|dismiss) (?:the|my) alarm", text) or text == "stop":
        return Answer(SKILL, "Alarms off.", action("alarm.stop"))
    if re.fullmatch(r"what time is my alarm set for|when is my next alarm|what alarms do i have|"
                    r"do i have (?:an|any) alarms? set(?: for \w+)?|is my alarm on(?: for tomorrow)?|"
                    r"(?:list|show) (?:my |all )?alarms", text):
        return Answer(SKILL, "Here are your alarms.", action("alarm.list"))
    if tokens[0] == "snooze":
        d = read_duration(tokens, 2) if tokens[1:2] == ["for"] else None
        if len(tokens) > 1 and (d is None or d.end != len(tokens)):
            return None
        seconds, said = (d.value, d.said) if d else (SNOOZE_S, "nine minutes")
        return Answer(SKILL, f"Snoozing for {said}.", action("alarm.snooze", duration_s=seconds))
    if tokens[:2] == ["move", "my"]:  # "move my seven thirty alarm to eight"
        old = _time_and_day(tokens, 2)
        if old is None or tokens[old[4]:old[4] + 2] != ["alarm", "to"]:
            return None
        new = _time_and_day(tokens, old[4] + 2)
        if new is None or new[4] != len(tokens) or new[2] != "once" or old[2] != "once":
            return None
        return Answer(SKILL, f"Your alarm is now at {new[3]}.",
                      action("alarm.move", time=_hhmm(old[0]), to=_hhmm(new[0]), ampm_known=new[1]))
    m = re.match(r"(?:cancel|delete|turn off|remove|disable) my alarm (?:for|at) ", text)
    if m:
        i = len(text[:m.end()].split())
        got = _time_and_day(tokens, i)
        if got is None or got[4] != len(tokens):
            return None
        minutes, _, _, said, _ = got
        return Answer(SKILL, f"Your alarm for {said} is off.", action("alarm.cancel", time=_hhmm(minutes)))
    for i in range(1, len(tokens)):
        if _ALARM_SET.search(" ".join(tokens[:i])):
            got = _time_and_day(tokens, i)
            if got is None:
                return None
            minutes, known, repeat, said, j = got
            rest = tokens[j:]
            trip = re.fullmatch(r"for my (flight|train|bus) to ([a-z' ]+)", " ".join(rest))
            if rest and not trip:
                return None
            a = action("alarm.set", time=_hhmm(minutes), ampm_known=known, repeat=repeat)
            if trip:
                place = " ".join(w.capitalize() for w in trip.group(2).split())
                return Answer(SKILL, f"Alarm set for {said}, for your trip to {place}.", a)
            return Answer(SKILL, f"Alarm set for {said}.", a)
    return None
