"""Requests the assistant cannot do itself (lights, calls, messages, music, weather, reminders): read from
the LLM's reply, handed to a configured handler, or answered truthfully that nothing was done.

The reply adapter writes an in-domain request's reply in a small controlled language ("Turning off the
bedroom lamp.", "Calling Nina.", "Here is the forecast for Paris today."): its form names the domain,
read here strictly (a reply in no known form is plain talk, not an action). The action carries the
request as the user said it, since a handler such as Home Assistant's conversation API does its own
intent recognition and knows the user's devices; what it says back is what the assistant says.
"""

from __future__ import annotations

import re
from typing import Protocol

from assistant.skills.actions import Action, action

_FORMS = [
    ("smart_home", r"(?:Turning (?:on|off) |Setting the |Making the |Opening |Closing |Raising |Lowering |"
                   r"Checking: )"),
    ("calls", r"Calling "),
    ("messages", r"(?:Sending to |Here is what I have from )"),
    ("music", r"(?:Playing |Okay: |Let me find out what's playing)"),
    ("weather", r"(?:Here is the forecast for |Checking if it will |Here is the temperature in |"
                r"Checking the weather in )"),
    ("reminders", r"(?:Okay, I'll remind you |Here are your reminders)"),
]
_READ = [(domain, re.compile(form)) for domain, form in _FORMS]
NOT_SET_UP = {  # said when no handler is configured: nothing was done, and the user is told so
    "smart_home": "I can't control your home: no smart home connection is set up, so nothing was changed.",
    "calls": "I can't make calls: no phone connection is set up.",
    "messages": "I can't send or read messages: no messaging connection is set up.",
    "music": "I can't play music: no music player is set up.",
    "weather": "I can't get the weather: no weather service is set up.",
    "reminders": "I can keep a reminder for a time, like tonight or at five thirty, but not for a place or an "
                 "event: tell me when.",
}


def read_reply(reply: str) -> str | None:
    """The domain whose controlled form ``reply`` is in, or None."""
    return next((domain for domain, form in _READ if form.match(reply.strip())), None)


def handoff_action(reply: str, request: str) -> Action | None:
    domain = read_reply(reply)
    return None if domain is None else action("handoff", domain=domain, request=request)


class Handler(Protocol):
    """Where hand-off requests go (services/handoff.py): (done?, what to say or None, detail)."""

    name: str

    def send(self, domain: str, request: str, reply: str) -> tuple[bool, str | None, str]:
        ...
