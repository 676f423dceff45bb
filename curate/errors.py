"""Errors a user sees. Each names what went wrong and where (file, row, field)."""


class CurateError(Exception):
    """An error with a message fit to print to the user as is (no traceback)."""


class FieldError(CurateError):
    """A record does not fit its dialect: which field, and why."""

    def __init__(self, field: str | None, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)
