"""User-facing errors: each names the problem and, where there is one, the fix.

The CLI prints ``str(error)`` on one line and exits non-zero; the API turns it into
``{"error": ...}``. Anything else that escapes is a bug, not a user error.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base of every error a user can cause or fix (bad input, missing files, mismatches)."""

    exit_code = 2

    def __init__(self, problem: str, *, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} ({fix})" if fix else problem)


class AudioError(AssistantError):
    """The audio cannot be used: not audio, truncated, empty, too long, non-finite samples."""


class UnreadableAudioError(AudioError):
    """The data is not audio at all (no format the decoder knows), as opposed to unusable audio."""


class ModelFilesError(AssistantError):
    """A model directory or bundle is missing, incomplete or unreadable."""


class BridgeMismatchError(AssistantError):
    """A bridge checkpoint does not fit the loaded encoder/LLM (dims or identities differ)."""


class NetworkError(AssistantError):
    """A download was asked for and the model hub cannot be reached."""


class BusyError(AssistantError):
    """The daemon cannot take more work right now (e.g. the inference queue is full); try again."""


class ConfigError(AssistantError):
    """A configuration value is missing or invalid; the message names the key."""


class StoreError(AssistantError):
    """The store cannot be used: disk full, read-only or corrupt database, unwritable data dir.

    Raised instead of deleting anything: the message names the path and what the user can do.
    """


class DiskFullError(StoreError):
    """No space is left for the store: the disk (or quota) holding the data dir or the database is full."""


class NotFoundError(AssistantError):
    """A stored thing named by id (utterance, bridge version, job, prompt) does not exist."""


class RefusedError(AssistantError):
    """The store refuses a request: an invalid value, or not allowed in the current state
    (activating a rejected version, changing a finished job, confirming an utterance without transcript)."""


class ActionError(AssistantError):
    """An action (a timer, an alarm, a hand-off) is not valid: a slot off its schema or out of range."""
