"""`vjfer bench`: the leaderboard of caches and runs (encoders × layers × probe families ×
datasets)."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import cli, fold_list
from vjfer.cli.probe import train_options


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("bench"),
    show_default=True,
    help="Folder for leaderboard.csv, leaderboard.html, predictions.parquet and the runs bench "
    "trains (OUT/runs).",
)
@click.option(
    "--fold",
    default="all",
    show_default=True,
    callback=fold_list,
    help="Folds of the runs bench trains: all, or comma-separated folds.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@train_options
def bench(paths: tuple[Path, ...], out: Path, fold, no_progress: bool, **options) -> None:
    """Leaderboard of caches and runs (PATHS: caches, runs, or folders holding them). A cache
    without a finished run of the --probe families (default here: attentive,linear,knn) is probed
    first, every family in one pass, with `vjfer probe`'s options."""
    from vjfer.bench import FAMILIES, BenchConfig, run_bench
    from vjfer.probe.config import OptionError, TrainConfig

    grid = {axis: options.pop(axis) for axis in ("lrs", "wds", "seeds", "layers", "probes", "ks")}
    if options.pop("shots") or options.pop("fractions"):  # a curve, not a leaderboard cell
        raise click.UsageError(
            "bench trains on every training video; for a few-shot curve run `vjfer probe "
            "--shots N,...` (or --train-fraction) and read it in `vjfer report`"
        )
    given = click.get_current_context().get_parameter_source("probes")
    families = FAMILIES if given == click.core.ParameterSource.DEFAULT else grid["probes"]
    try:
        config = BenchConfig(
            families=tuple(families),
            train=TrainConfig(**options),
            folds=fold,
            lrs=tuple(grid["lrs"] or ()),
            wds=tuple(grid["wds"] or ()),
            seeds=tuple(grid["seeds"] or ()),
            ks=tuple(grid["ks"] or ()),
            layers=tuple(grid["layers"] or ()),
            progress=not no_progress,
        )
        result = run_bench(paths, out, config)
    except OptionError as err:
        raise click.BadParameter(err.message, param_hint=err.option) from None
    click.echo(
        f"{len(result.entries)} leaderboard cells from {len(result.runs)} run(s): "
        f"{len(result.table.frame)} rows"
    )
    for kind in ("csv", "parquet", "html"):
        click.echo(str(result.written[kind]))
