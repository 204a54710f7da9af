"""HTTP-level errors of the API (401, 413, a malformed multipart body, an unsupported response format).

Domain code never raises these: it raises ``assistant.errors`` types, which ``app.STATUS_FOR`` maps to
statuses in one table. This module imports nothing of the API, so any route may import it at the top.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error that only exists at the HTTP edge: ``status`` and a message naming the problem and fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
