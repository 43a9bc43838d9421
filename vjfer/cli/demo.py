"""`vjfer demo`: everything end to end on generated data."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import cli, echo_lines


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Folder for the generated data, caches, runs and report.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the generated data and probes."
)
@click.option(
    "--dataset",
    type=click.Choice(["dfew", "ferv39k", "mafw"]),
    help="Instead: one generated frame-folder dataset in its release's layout.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help="Torch threads after extraction (default: DemoConfig's, 1); 0: torch's default, "
    "one per core. One keeps the demo quick beside a busy process and its numbers "
    "the same on any machine.",
)
def demo(out: Path, seed: int, dataset: str | None, threads: int | None) -> None:
    """Everything end to end on a generated mini dataset with the tiny encoder (CPU, minutes)."""
    from vjfer.demo import DemoConfig, format_demo, run_demo, run_frames_demo

    if dataset is not None:
        report = run_frames_demo(out, dataset, seed=seed)
        click.echo(f"{dataset}: report in {report / 'report.md'}")
        return
    config = (
        DemoConfig(seed=seed) if threads is None else DemoConfig(seed=seed, threads=threads or None)
    )
    echo_lines(format_demo(run_demo(out, config=config)))
