"""`vjfer status CACHE`: the array tasks of an extraction submitted with `--executor`."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import cli, echo_lines


@cli.command()
@click.argument("cache", type=click.Path(exists=True, file_okay=False, path_type=Path))
def status(cache: Path) -> None:
    """Shards done / in progress / pending and the state of each array task of CACHE (extracted
    with `vjfer extract --executor ...`): job ids, a failed task's log, and the command that
    resumes what is missing."""
    from vjfer.cluster import cluster_status, format_status

    echo_lines(format_status(cluster_status(cache)))
