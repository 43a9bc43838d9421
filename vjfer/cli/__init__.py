"""The `vjfer` command line. Thin: each command parses its options into a config or request and
calls one library function.

`group` holds the command group and the helpers commands share; each other module holds one
command (or one family: `cache`, `report`+`compare`, `index`+`encoders`). Commands import their
library modules when they run; the option lists of `extract` and `probe` read their defaults from
`ExtractConfig` and `TrainConfig`, so each default lives in one place.
"""

from vjfer.cli import cache, cross, datasets, demo, extract, predict, probe, report  # noqa: F401  (registers the commands)
from vjfer.cli.group import cli

__all__ = ["cli", "main"]


def main() -> None:
    cli(prog_name="vjfer")
