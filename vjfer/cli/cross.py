"""`vjfer cross`: each fold's probe of one dataset predicts every video of another."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import DATASET, cli, device, echo_lines


@cli.command()
@click.option(
    "--train", "source", type=DATASET, required=True, help="Dataset the probes were trained on."
)
@click.option("--test", "target", type=DATASET, required=True, help="Dataset to predict.")
@click.option(
    "--calm",
    type=click.Choice(["drop", "merge", "both"]),
    default="both",
    show_default=True,
    help="Classes one dataset lacks: drop those videos, or count calm as neutral.",
)
@click.option(
    "--runs",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Runs folder holding the one probe run of --train (when --run is not given).",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, path_type=Path),
    help="The probe run (default: the one under --runs).",
)
@click.option(
    "--cache",
    "cache_root",
    type=click.Path(exists=True, path_type=Path),
    default=Path("cache"),
    show_default=True,
    help="Cache of the test dataset, or a folder holding it.",
)
@device()
def cross(
    source: str,
    target: str,
    calm: str,
    runs: Path,
    run_dir: Path | None,
    cache_root: Path,
    device: str,
) -> None:
    """Cross-dataset test: each fold's probe predicts every video of the other dataset; the
    result goes into the probe run, RUN/cross/cross-<train>-to-<test>-<calm>/."""
    from vjfer.cross import cross_evaluate, cross_table
    from vjfer.runs import find_probe_run, find_target_cache
    from vjfer.tables import render_markdown

    if source == target:
        raise click.UsageError("--train and --test must be different datasets")
    run_dir = run_dir or find_probe_run(runs, source)
    target_cache = find_target_cache(cache_root, target, run_dir)
    for handling in ("drop", "merge") if calm == "both" else (calm,):
        result = cross_evaluate(run_dir, target_cache, handling, device=device)
        echo_lines(render_markdown(cross_table(result)))
        click.echo(f"{target}: {result.coverage}")
        click.echo(f"written to {result.out_dir}\n")
