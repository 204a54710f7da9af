"""Skills: requests answered by computing, not by the LLM.

``answer(transcript)`` asks each skill in turn and returns the first reply, or None, in which case the
LLM writes the reply. A skill answers only a request it fully understands (every number read, every
unit known); a half-understood request goes to the LLM rather than being answered wrongly.
"""

from __future__ import annotations

from typing import Callable

from assistant.skills import calculator, calendar

Skill = Callable[[str], "str | None"]
SKILLS: dict[str, Skill] = {"calculator": calculator.answer, "calendar": calendar.answer}


def answer(transcript: str) -> tuple[str, str] | None:
    """(skill name, reply) from the first skill that answers ``transcript``, or None."""
    for name, skill in SKILLS.items():
        reply = skill(transcript)
        if reply is not None:
            return name, reply
    return None
