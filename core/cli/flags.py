"""Click options made from an option table (gmmrefine.pipeline.options and hetero_options)."""

from __future__ import annotations

import click

from ..pipeline.options import option_fields


def option_flags(table: type | None = None):
    """A decorator adding one click option per field of ``table`` (default RefineOptions).

    Values are parsed by the table (``auto`` / ``none`` included), so a bad
    one stops with the same one-line InputError every front end gives.
    """
    def decorate(command):
        for name, option, default in reversed(option_fields(table)):
            command = click.option(f"--{option.flag}", name, type=option.parse, default=default,
                                   metavar=option.value_name,
                                   help=option.command_line_help(default))(command)
        return command

    return decorate
