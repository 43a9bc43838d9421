"""The `vjfer` command line. Thin: each command parses its options into a config or request and
calls one library function. `group` holds the command group and the helpers commands share; each
other module holds one command (or one family: `cache`, `report`+`compare`, `index`+`encoders`),
importing its library modules when it runs.
"""

from vjfer.cli import (  # noqa: F401  (registers the commands)
    bench,
    cache,
    cross,
    datasets,
    demo,
    extract,
    predict,
    probe,
    report,
    status,
)
from vjfer.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="vjfer")
