"""The `vjfer` command group. Thin: parse options, build a config, call one library function."""

from __future__ import annotations

import logging
import sys

import click

from vjfer import __version__
from vjfer.errors import VjferError


class _Group(click.Group):
    """Prints a VjferError as one line and exits 1 instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VjferError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="vjfer")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """vjfer: frozen V-JEPA encoders + attentive probes for facial expression recognition."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    cli(prog_name="vjfer")
