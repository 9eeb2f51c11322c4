"""The one exception users see: a single line naming the file, place and expectation."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: the message is one line that names the file, the row or
    column, and what was expected. The CLI prints it without a traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Aborted(Exception):
    """The run was asked to stop (e.g. RELION's abort button); finished work is kept."""


def quoted(value: object, limit: int = 40) -> str:
    """A value taken from a bad file, as a message shows it.

    ``repr`` keeps control characters and stray bytes visible as escapes
    (never raw on the user's terminal); a long value is cut, so one line
    stays readable whatever the file holds.
    """
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
