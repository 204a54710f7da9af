"""Text from the store or the network, made safe to print on a terminal.

A label, prompt or transcript can hold control characters (an ESC sequence clears the user's screen or
retitles the window; U+202E turns the rest of the line around). ``shown`` writes each such character as
a visible escape (``\\x1b``, ``\\u202e``) and leaves every other character as it is.
"""

from __future__ import annotations

import unicodedata

# bidirectional embeddings, overrides and isolates: invisible, yet they reorder what follows them
_BIDI = {0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object, *, lines: bool = False) -> str:
    """``text`` with control, direction and line-breaking characters escaped: one printable line (a label
    cannot fake another row of a listing); ``lines=True`` keeps newlines and tabs (error messages)."""
    keep = "\n\t" if lines else ""
    return "".join(c if c in keep or not (unicodedata.category(c) in ("Cc", "Zl", "Zp") or ord(c) in _BIDI)
                   else _escape(c) for c in str(text))
