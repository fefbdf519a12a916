"""One family of errors; each carries the HTTP status it maps to and a clear message."""

from __future__ import annotations


class LullError(Exception):
    """Base of every error lull reports to a user (CLI line or HTTP body)."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(LullError):
    """The user's input is wrong: says what and where."""

    status = 400


class NotFound(LullError):
    status = 404


class Conflict(LullError):
    """The store is busy or held by another process."""

    status = 409


class Unauthorized(LullError):
    status = 401


class TooLarge(LullError):
    status = 413


class Unavailable(LullError):
    """The events could not be stored now; the client should retry."""

    status = 503


class Forbidden(LullError):
    """Signed in, but this account may not see or do that."""

    status = 403


class TooManyRequests(LullError):
    """Slowed down: too many attempts (failed sign-ins)."""

    status = 429
