"""The one exception type users see: a clear message, no traceback."""


class EdgeresError(Exception):
    """A user-facing error. The CLI prints its message and exits non-zero.

    ``hint`` is an optional second line telling the user what to do about it.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1):
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base


def first_line(exc: BaseException, limit: int = 300) -> str:
    """A one-line summary of ``exc`` for a message: the first non-blank line of its text, cut to ``limit``
    characters; the exception's type name when the text is empty (``str(exc)`` may be ``""``)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__
