"""Request templates: one generator per domain, each drawing a (transcript, reply) pair.

Transcripts are already normalized (lowercase words, numbers spelled out) so the TTS reads
exactly what WER scores. Replies are predictable from the request (no invented forecasts), so a
small LM can learn them. Generators take the name and place pools as arguments: the same
templates make base sentences (common names) and personal ones (the user's rare names).
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from assistant.synth import lexicon as L

Pair = tuple[str, str]
Generator = Callable[[random.Random, Sequence[str], Sequence[str]], Pair]

_PRE = ("", "", "", "", "", "please ", "hey ", "okay ", "could you ", "can you ",
        "could you please ", "would you ", "hey can you ", "i'd like you to ", "go ahead and ")
_POST = ("", "", "", "", "", " please", " for me", " thanks", " now", " thank you")
_QPRE = ("", "", "", "", "hey ", "okay ", "so ", "quick question ", "excuse me ")
_QPOST = ("", "", "", "", " please", " thanks")


def ask(rng: random.Random, vp: str) -> str:
    """Wrap an imperative in a filler ("could you ... please") without doubling "please"."""
    pre, post = rng.choice(_PRE), rng.choice(_POST)
    if vp.startswith(("i ", "i'", "don't")):  # "could you i need ..." is not English
        pre = rng.choice(("", "hey ", "okay "))
    if "please" in pre and "please" in post or "thank" in post and pre.startswith("go ahead"):
        post = ""
    return f"{pre}{vp}{post}"


def question(rng: random.Random, q: str) -> str:
    return f"{rng.choice(_QPRE)}{q}{rng.choice(_QPOST)}"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def title(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in s.split())


def _your(s: str) -> str:
    """Rephrase from the user's point of view to the assistant's ("my medicine" -> "your ...")."""
    words = {"my": "your", "i": "you", "i'm": "you're", "me": "you", "i'll": "you'll"}
    return " ".join(words.get(w, w) for w in s.split())


def _count(n: int, unit: str) -> str:
    return f"{L.number_words(n)} {unit}" + ("" if n == 1 else "s")


# --- timers -------------------------------------------------------------------------------
def _duration(rng: random.Random) -> tuple[str, str | None]:
    """A duration phrase and, where English allows it, its adjective form ("five minute")."""
    k = rng.random()
    if k < 0.45:
        n = rng.choice([*range(1, 31), 35, 40, 45, 50, 55, 60, 75, 90])
        return _count(n, "minute"), f"{L.number_words(n)} minute"
    if k < 0.6:
        n = rng.choice([10, 15, 20, 25, 30, 40, 45, 50, 90])
        return _count(n, "second"), f"{L.number_words(n)} second"
    if k < 0.72:
        n = rng.randint(1, 6)
        return ("an hour" if n == 1 else _count(n, "hour")), f"{L.number_words(n)} hour"
    if k < 0.8:
        return rng.choice(["half an hour", "an hour and a half", "a minute and a half",
                           "a quarter of an hour"]), None
    if k < 0.92:
        m, s = rng.randint(1, 20), rng.choice([10, 15, 20, 30, 40, 45, 50])
        return f"{_count(m, 'minute')} and {_count(s, 'second')}", None
    h, m = rng.randint(1, 3), rng.choice([5, 10, 15, 20, 30, 40, 45])
    return f"{_count(h, 'hour')} and {_count(m, 'minute')}", None


def timers(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    d, adj = _duration(rng)
    label = rng.choice(L.TIMER_LABELS)
    k = rng.randrange(10)
    if k < 3:
        verb = rng.choice(["set a timer for", "start a timer for", "set the timer for",
                           "put a timer on for", "time", "count down", "start a countdown for"])
        return ask(rng, f"{verb} {d}"), f"Timer set for {d}."
    if k < 5:
        if adj is None:
            return ask(rng, f"set a timer for {d} for the {label}"), f"{cap(label)} timer set for {d}."
        return ask(rng, f"{rng.choice(['set', 'start'])} a {adj} timer"), f"Timer set for {d}."
    if k < 7:
        verb = rng.choice(["set a", "start a", "make a", "create a"])
        return ask(rng, f"{verb} {label} timer for {d}"), f"{cap(label)} timer set for {d}."
    if k < 8:
        return ask(rng, f"add {d} to the {label} timer"), f"Added {d} to the {label} timer."
    if k < 9:
        q = rng.choice([f"how much time is left on the {label} timer",
                        f"how long is left on the {label} timer", "how much time is left",
                        "how long until my timer goes off", f"is the {label} timer still running"])
        return question(rng, q), f"Checking the {label} timer." if label in q else "Checking your timer."
    verb = rng.choice(["cancel", "stop", "pause", "resume", "restart", "delete"])
    what = rng.choice(["the timer", "my timer", f"the {label} timer", "all timers"])
    return ask(rng, f"{verb} {what}"), f"{_ING[verb]} {_your(what)}."


_ING = {"cancel": "Cancelling", "stop": "Stopping", "pause": "Pausing", "resume": "Resuming",
        "restart": "Restarting", "delete": "Deleting"}


# --- alarms -------------------------------------------------------------------------------
_MINUTES = ("o'clock", "fifteen", "thirty", "forty five", "oh five", "ten", "twenty",
            "twenty five", "forty", "fifty", "thirty five", "fifty five", "oh two")


def clock(rng: random.Random) -> str:
    h = L.number_words(rng.randint(1, 12))
    k = rng.random()
    if k < 0.7:
        t = f"{h} {rng.choice(_MINUTES)}"
    elif k < 0.93:
        t = f"{rng.choice(['quarter past', 'half past', 'quarter to', 'ten past', 'twenty to'])} {h}"
    else:
        return rng.choice(["noon", "midnight"])
    return t + rng.choice(["", "", "", " in the morning", " in the evening", " in the afternoon",
                           " at night"])


_ALARM_DAYS = ("", "", "", " tomorrow", " every weekday", " every day", " on weekdays",
               " for tomorrow", " on the weekend")


def alarms(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    t = clock(rng)
    day = rng.choice([*_ALARM_DAYS, f" on {rng.choice(L.WEEKDAYS)}", f" every {rng.choice(L.WEEKDAYS)}"])
    k = rng.randrange(12)
    if k < 4:
        verb = rng.choice(["set an alarm for", "set an alarm at", "wake me up at", "wake me at",
                           "make an alarm for", "i need an alarm at", "get me up at"])
        return ask(rng, f"{verb} {t}{day}"), f"Alarm set for {t}{day}."
    if k < 5:
        return question(rng, f"can you wake me up at {t}{day}"), f"Alarm set for {t}{day}."
    if k < 6 and places:
        p = rng.choice(places)
        return (ask(rng, f"set an alarm for {t} for my {rng.choice(['flight', 'train', 'bus'])} to {p}"),
                f"Alarm set for {t}, for your trip to {title(p)}.")
    if k < 8:
        verb = rng.choice(["cancel", "delete", "turn off", "remove", "disable"])
        return ask(rng, f"{verb} my alarm for {t}{day}"), f"Your alarm for {t}{day} is off."
    if k < 9:
        t2 = clock(rng)
        return ask(rng, f"move my {t} alarm to {t2}"), f"Your alarm is now at {t2}."
    if k < 10:
        n = rng.choice([5, 10, 15, 20])
        return ask(rng, f"snooze for {_count(n, 'minute')}"), f"Snoozing for {_count(n, 'minute')}."
    if k < 11:
        q = rng.choice(["what time is my alarm set for", "when is my next alarm",
                        f"do i have an alarm set for {rng.choice(L.WEEKDAYS)}",
                        "what alarms do i have", "is my alarm on for tomorrow"])
        return question(rng, q), "Here are your alarms."
    return ask(rng, rng.choice(["turn off all my alarms", "stop the alarm", "turn off the alarm",
                                "cancel all alarms"])), "Alarms off."


# --- weather ------------------------------------------------------------------------------
def _when(rng: random.Random) -> str:
    return rng.choice(["today", "tomorrow", "tonight", "this weekend", "this afternoon",
                       "right now", "this week", "tomorrow morning", "this evening",
                       f"on {rng.choice(L.WEEKDAYS)}", f"next {rng.choice(L.WEEKDAYS)}"])


def weather(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    c, w = rng.choice(places), _when(rng)
    k = rng.randrange(6)
    if k < 2:
        q = rng.choice(["what's the weather in", "what's the weather like in", "what is the weather in",
                        "how's the weather in", "what will the weather be in", "tell me the weather in",
                        "what's the forecast for", "give me the forecast for", "weather in"])
        form = rng.choice([f"{q} {c} {w}", f"{w} {q} {c}"]) if q.startswith("what") else f"{q} {c} {w}"
        return question(rng, form), f"Here is the forecast for {title(c)} {w}."
    if k < 4:
        what = rng.choice(["rain", "snow", "be sunny", "be windy", "be cloudy", "be foggy", "storm",
                           "be warm", "freeze"])
        aux = rng.choice(["will it", "is it going to", "do you think it will"])
        return question(rng, f"{aux} {what} in {c} {w}"), f"Checking if it will {what} in {title(c)} {w}."
    if k < 5:
        q = rng.choice(["how hot will it be in", "how cold will it be in", "what's the temperature in",
                        "how warm is it in", "what's the high in", "what's the low in"])
        return question(rng, f"{q} {c} {w}"), f"Here is the temperature in {title(c)} {w}."
    item = rng.choice(["an umbrella", "a coat", "sunscreen", "a jacket", "boots"])
    return question(rng, f"do i need {item} in {c} {w}"), f"Checking the weather in {title(c)} {w}."


# --- calls and messages -------------------------------------------------------------------
def calls(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    n = rng.choice(names)
    k = rng.randrange(10)
    if k < 4:
        v = rng.choice([f"call {n}", f"phone {n}", f"ring {n}", f"give {n} a call", f"call {n} on speaker",
                        f"video call {n}", f"call {n}'s mobile", f"call {n} at work", f"dial {n}",
                        f"call {n} at home", f"get {n} on the phone"])
        return ask(rng, v), f"Calling {title(n)}."
    body = rng.choice(L.MESSAGE_BODIES)
    if k < 8:
        v = rng.choice([f"text {n} {body}", f"text {n} that {body}", f"send a message to {n} saying {body}",
                        f"message {n} {body}", f"tell {n} {body}", f"send {n} a text saying {body}",
                        f"send a text to {n} {body}", f"reply to {n} {body}"])
        return ask(rng, v), f"Sending to {title(n)}: {cap(body)}."
    if k < 9:
        n2 = rng.choice([x for x in names if x != n])
        return (ask(rng, f"send a message to {n} and {n2} saying {body}"),
                f"Sending to {title(n)} and {title(n2)}: {cap(body)}.")
    q = rng.choice([f"read my messages from {n}", f"did {n} call", f"any new messages from {n}",
                    f"when did {n} last call", f"did {n} text me", f"what did {n} say"])
    return question(rng, q), f"Here is what I have from {title(n)}."


# --- music --------------------------------------------------------------------------------
def music(rng: random.Random, names: Sequence[str], places: Sequence[str]) -> Pair:
    k = rng.randrange(10)
    room = rng.choice(["", "", "", f" in the {rng.choice(L.ROOMS)}"])
    if k < 3:
        a = rng.choice(L.ARTISTS)
        v = rng.choice([f"play {a}", f"play some {a}", f"play music by {a}", f"put on some {a}",
                        f"shuffle songs by {a}", f"play the latest album by {a}", f"play the best of {a}"])
        return ask(rng, v + room), f"Playing {title(a)}{room}."
    if k < 5:
        g = rng.choice(L.GENRES)
        v = rng.choice([f"play some {g} music", f"play {g}", f"put on some {g}",
                        f"i want to listen to some {g}", f"play some {g}", f"play a {g} station"])
        return ask(rng, v + room), f"Playing {g}{room}."
    if k < 7:
        p = rng.choice(L.PLAYLISTS)
        if names and rng.random() < 0.4:
            n = rng.choice(names)
            return ask(rng, f"play {n}'s {p} playlist{room}"), f"Playing {title(n)}'s {p} playlist{room}."
        v = rng.choice([f"play my {p} playlist", f"shuffle my {p} playlist", f"start the {p} playlist",
                        f"put on my {p} playlist", f"add this song to my {p} playlist"])
        return ask(rng, v + ("" if "add" in v else room)), f"Okay: {_your(v)}."
    if k < 9:
        pct = rng.choice(range(10, 101, 5))
        v = rng.choice(["skip this song", "next song", "play the previous song", "pause the music",
                        "resume the music", "turn the volume up", "turn the music down",
                        f"set the volume to {L.number_words(pct)} percent", "stop the music",
                        "play that song again", "turn it up a bit", "mute the music", "like this song"])
        return ask(rng, v), f"Okay: {v}."
    q = rng.choice(["what song is this", "who sings this song", "what's playing right now",
                    "who is this artist", "what album is this from"])
    return question(rng, q), "Let me find out what's playing."
