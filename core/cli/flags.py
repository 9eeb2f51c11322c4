"""Click options made from a declared options class (pipeline.options' pattern)."""

from __future__ import annotations

from typing import Callable

import click

from ..pipeline.options import option_fields


def declared_flags(options_class: type | None = None, names: tuple[str, ...] | None = None
                   ) -> Callable:
    """A decorator adding one click option per declared field of ``options_class``
    (RefineOptions when None), as its :class:`~gmmrefine.pipeline.options.Option` says;
    only the fields ``names`` when given (a command sharing a few of refine's options
    declares none of its own).

    Values are parsed by the declaration (``auto`` / ``none`` included), so a bad
    one stops with the same one-line InputError every front end gives.
    """
    def decorate(command):
        fields = option_fields(options_class)
        if names is not None:
            known = {name for name, _, _ in fields}
            if not set(names) <= known:
                raise ValueError(f"not declared options: {sorted(set(names) - known)}")
            fields = [field for field in fields if field[0] in names]
        for name, option, default in reversed(fields):
            command = click.option(f"--{option.flag}", name, type=option.parse, default=default,
                                   metavar=option.value_name,
                                   help=option.command_line_help(default))(command)
        return command

    return decorate
