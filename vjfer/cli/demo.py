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
    "--bench",
    "bench_demo",
    is_flag=True,
    help="Instead: a mini leaderboard (`vjfer bench`) of two tiny encoders (V-JEPA-style, "
    "DINOv2; needs transformers) × attentive, linear and k-NN probes × generated RAVDESS- and "
    "DFEW-like data.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    help="Torch threads after extraction (default: DemoConfig's, 1); 0: torch's default, "
    "one per core. One keeps the demo quick beside a busy process and its numbers "
    "the same on any machine.",
)
def demo(out: Path, seed: int, dataset: str | None, bench_demo: bool, threads: int | None) -> None:
    """Everything end to end on a generated mini dataset with the tiny encoder (CPU, minutes)."""
    from vjfer.demo import DemoConfig, format_demo, run_demo, run_frames_demo

    if bench_demo:
        from vjfer.demo import BenchDemoConfig, run_bench_demo

        if dataset is not None:
            raise click.UsageError(
                "--bench makes its own RAVDESS- and DFEW-like data: drop --dataset"
            )

        bench_config = BenchDemoConfig(seed=seed, threads=1 if threads is None else threads or None)
        result = run_bench_demo(out, bench_config)
        click.echo(f"leaderboard: {len(result.table.frame)} rows; page {result.written['html']}")
        click.echo(f"table {result.written['csv']}; predictions {result.written['parquet']}")
        return

    if dataset is not None:
        report = run_frames_demo(out, dataset, seed=seed)
        click.echo(f"{dataset}: report in {report / 'report.md'}")
        return
    config = (
        DemoConfig(seed=seed) if threads is None else DemoConfig(seed=seed, threads=threads or None)
    )
    echo_lines(format_demo(run_demo(out, config=config)))
