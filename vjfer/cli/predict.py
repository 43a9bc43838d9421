"""`vjfer predict`: the emotion of any video with a trained probe run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import click

from vjfer.cli.group import cli, device, echo_lines, fold_list


@cli.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A `vjfer probe` run.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, path_type=Path),
    envvar="VJFER_CHECKPOINT",
    help="The encoder checkpoint the run's cache was made with (or VJFER_CHECKPOINT).",
)
@click.option("--fold", type=int, help="Use one fold's probe (default: all folds averaged).")
@click.option(
    "--folds",
    callback=lambda ctx, param, value: None if value is None else fold_list(ctx, param, value),
    help="Comma-separated folds whose probes to average, e.g. 1,2,4,5 (needed "
    "when a fold's probe.pt is missing).",
)
@device()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--clips", is_flag=True, help="Also print the per-clip timeline.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also draw each video's emotion timeline (one panel per video) into this PNG.",
)
def predict(
    videos: tuple[Path, ...],
    run_dir: Path,
    checkpoint: Path | None,
    fold: int | None,
    folds: Literal["all"] | tuple[int, ...] | None,
    device: str,
    as_json: bool,
    clips: bool,
    plot: Path | None,
) -> None:
    """Emotion of each VIDEO (any format FFmpeg reads) with a trained probe run."""
    from vjfer.env import resolve_device
    from vjfer.predict import draw_timelines, format_prediction, predict_videos, prediction_json

    if fold is not None and folds:
        raise click.UsageError("give --fold or --folds, not both")
    if plot is not None and plot.suffix.lower() != ".png":
        raise click.UsageError(f"--plot writes a PNG: give a file name ending in .png, not {plot}")
    source = click.get_current_context().get_parameter_source("checkpoint")
    result = predict_videos(
        videos,
        run_dir,
        checkpoint=checkpoint,
        fold=fold,
        folds=list(folds) if isinstance(folds, tuple) else None,
        device=str(resolve_device(device)),
        checkpoint_given=source == click.core.ParameterSource.COMMANDLINE,
    )
    drawn = draw_timelines(result, plot) if plot is not None else None
    if as_json:
        click.echo(json.dumps(prediction_json(result, clips=clips), indent=1))
    else:
        echo_lines(format_prediction(result))
        if clips and not result.clips.empty:
            click.echo("")
            echo_lines(result.clips.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if drawn is not None:
        click.echo(f"timeline written to {drawn}", err=as_json)  # keep --json's stdout pure JSON
    for failure in result.failures:
        click.echo(f"failed: {failure['path']}: {failure['reason']}", err=True)
    sys.exit(1 if result.failures else 0)
