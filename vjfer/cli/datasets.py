"""`vjfer index` (what a dataset folder holds) and `vjfer encoders` (the registry)."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import DATASET, LIST_OPTION, SPLITS_HELP, cli, dataset_root, echo_lines
from vjfer.protocols import PROTOCOLS, get_protocol


@cli.command()
@click.option("--dataset", type=DATASET, required=True, help="Which dataset's layout to read.")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="Dataset folder (or VJFER_RAVDESS / VJFER_CREMA_D / VJFER_DFEW / ...).",
)
@click.option("--splits", help=SPLITS_HELP)
@LIST_OPTION
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write {videos, per_class, per_fold, excluded: [{path, reason}]} to this file.",
)
@click.option(
    "--modality",
    "modalities",
    type=click.IntRange(1, 2),
    multiple=True,
    help="RAVDESS modality to keep: 1 audio-video, 2 video-only (repeatable; default both).",
)
@click.option("--song", is_flag=True, help="RAVDESS: keep song (VV 02) instead of speech.")
@click.option(
    "--all", "show_all", is_flag=True, help="List every excluded file (default: a few per reason)."
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every excluded file with its reason to this CSV file.",
)
@click.option(
    "--protocol",
    type=click.Choice(tuple(PROTOCOLS)),
    help="Print what this preset of `vjfer extract --protocol` sets on the dataset, and index the "
    "files and folds it uses (RAVDESS mae-dfer: the 02 files, 6 folds).",
)
@click.option(
    "--duplicates",
    is_flag=True,
    help="Read every video and count those whose video stream is identical to another's "
    "(extract encodes them once).",
)
def index(
    dataset: str,
    root: Path | None,
    splits: str | None,
    list_file: Path | None,
    json_path: Path | None,
    modalities: tuple[int, ...],
    song: bool,
    show_all: bool,
    csv_path: Path | None,
    protocol: str | None,
    duplicates: bool,
) -> None:
    """Show what a dataset folder holds: counts per class, actor and fold, and every problem."""
    from vjfer.datasets import scan_dataset
    from vjfer.datasets.summary import (
        format_index_summary,
        summarize,
        write_excluded_csv,
        write_index_json,
    )

    if protocol is not None:  # before any work, as extract prints it
        preset = get_protocol(protocol)
        click.echo(preset.plan_line(dataset))
        if not modalities and dataset in preset.modality:
            modalities = (preset.modality[dataset],)
        splits = splits or preset.splits.get(dataset)
    options: dict = {"splits": splits, "list_file": list_file}
    if dataset == "ravdess":
        options |= {"modalities": modalities or None, "vocal_channels": (2,) if song else None}
    elif modalities or song:
        raise click.UsageError("--modality and --song apply to RAVDESS only")
    found = scan_dataset(dataset, dataset_root(dataset, root), **options)
    summary = summarize(found)
    echo_lines(format_index_summary(summary, show_all=show_all))
    if csv_path is not None:
        click.echo(
            f"{len(found.excluded)} excluded files written to "
            f"{write_excluded_csv(summary, csv_path)}"
        )
    if json_path is not None:
        click.echo(f"index written to {write_index_json(summary, json_path)}")
    if duplicates:
        from vjfer.extract.sources import duplicate_streams, stream_digests

        alias_of = duplicate_streams(stream_digests(found.records, found.root)[0])
        click.echo(
            f"duplicates: {len(alias_of)} videos have the identical video stream of another "
            f"({len(set(alias_of.values()))} groups); `vjfer extract` encodes and stores each once"
        )


# ------------------------------------------------------------------------------------- encoders


@cli.command()
def encoders() -> None:
    """List the registered encoders: size, resolution, tokens and where the weights come from."""
    from vjfer.encoders import list_encoders

    for r in list_encoders():
        if r["params"]:
            size = _size_text(r)
        else:  # sizes from the directory's config.json; the public checkpoints' from hf_presets
            presets = "".join(f"\n{'':<14} {p['weights']}: {_size_text(p)}" for p in r["presets"])
            size = "sizes from its checkpoint's config.json; the public checkpoints:" + presets
        click.echo(
            f"{r['name']:<14} {size}\n{'':<14} family: {r['family']}\n"
            f"{'':<14} weights: {r['weights']}"
        )


def _size_text(r: dict) -> str:
    """One `list_encoders` row's (or preset's) sizes: params, input, tokens, GFLOP and MB a clip."""
    params = (
        "params: needs transformers" if r["params"] is None else f"{r['params'] / 1e6:.1f}M params"
    )
    return (
        f"{params}, D={r['embed_dim']}, {r['frames']} x {r['resolution']} px, {r['tokens']} "
        f"tokens, {r['gflops']:,.0f} GFLOP a clip, {r['mb_fp16']:.2f} / {r['mb_int8']:.2f} MB a "
        "clip (fp16 / int8)"
    )
