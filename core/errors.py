"""The one exception users see: a single line naming the file, place and expectation."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: the message is one line that names the file, the row or
    column, and what was expected. The CLI prints it without a traceback."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Aborted(Exception):
    """The run was asked to stop (e.g. RELION's abort button); finished work is kept."""
