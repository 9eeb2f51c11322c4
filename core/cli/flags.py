"""Click options made from a declared options class (pipeline.options' pattern)."""

from __future__ import annotations

from typing import Callable

import click

from ..pipeline.options import option_fields


def declared_flags(options_class: type | None = None) -> Callable:
    """A decorator adding one click option per declared field of ``options_class``
    (RefineOptions when None), as its :class:`~gmmrefine.pipeline.options.Option` says.

    Values are parsed by the declaration (``auto`` / ``none`` included), so a bad
    one stops with the same one-line InputError every front end gives.
    """
    def decorate(command):
        for name, option, default in reversed(option_fields(options_class)):
            command = click.option(f"--{option.flag}", name, type=option.parse, default=default,
                                   metavar=option.value_name,
                                   help=option.command_line_help(default))(command)
        return command

    return decorate
