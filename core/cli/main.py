"""The ``gmmrefine`` command group. Each subcommand lives in its own module."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import InputError
from ..report.log import lines_to


class _Group(click.Group):
    """Engine log lines to standard output; InputError as one line on stderr and exit 2,
    never a traceback."""

    def invoke(self, ctx):
        try:
            with lines_to(click.echo):
                return super().invoke(ctx)
        except InputError as err:
            click.echo(f"gmmrefine: error: {err}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="gmmrefine")
def cli() -> None:
    """GMM-based particle pose refinement for single-particle cryo-EM."""


# One module per command, each exposing a click command ``main``.
COMMANDS = ("simulate", "convert", "reconstruct", "fsc", "refine", "expand", "locres", "qscore",
            "demo", "hetero", "conf2pose", "composite")
# Commands that live outside the engine (the CryoSPARC adapter's) join through this
# entry-point group, so the engine never names an adapter.
ENTRY_POINT_GROUP = "gmmrefine.commands"


def _register() -> None:
    import importlib
    from importlib.metadata import entry_points

    for name in COMMANDS:
        cli.add_command(importlib.import_module(f"{__package__}.{name}").main, name=name)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        cli.add_command(entry.load(), name=entry.name)


_register()
