"""`vjfer extract`: stage 1, its options read from `ExtractConfig`'s defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from vjfer.cli.executor import executor_options, pop_cluster
from vjfer.cli.group import (
    DATASET,
    LIST_OPTION,
    apply,
    cli,
    config_option,
    dataset_root,
    echo_lines,
    number_list,
    reject_checkpoint_for_tiny,
)
from vjfer.protocols import PROTOCOLS


def extract_options(f):
    """The options of `vjfer extract`, their defaults ExtractConfig's."""
    from vjfer.extract import ExtractConfig

    opt = config_option(ExtractConfig)
    options = _input_options(opt) + _work_options(opt) + _frame_options(opt)
    return apply(options + _store_options(opt), f)


def _input_options(opt) -> list:
    """extract's options of what is read and what encodes it."""
    return [
        click.option(
            "--dataset",
            type=DATASET,
            required=True,
            help="ravdess, crema-d, dfew, ferv39k, mafw or list (with --list).",
        ),
        click.option(
            "--root",
            type=click.Path(path_type=Path),
            help="Dataset folder (or VJFER_RAVDESS / VJFER_CREMA_D / ...).",
        ),
        LIST_OPTION,
        opt("--encoder", help="Encoder name (`vjfer encoders`)."),
        click.option(
            "--checkpoint",
            type=click.Path(path_type=Path),
            envvar="VJFER_CHECKPOINT",
            help="jepa .pth.tar file or HF directory (or VJFER_CHECKPOINT).",
        ),
        opt(
            "--weights",
            type=click.Choice(["target_encoder", "encoder"]),
            help="jepa checkpoints: EMA target_encoder or online encoder.",
        ),
        opt(
            "--modality",
            type=click.IntRange(1, 2),
            show_default=False,
            help="RAVDESS only: keep one modality, 1 audio-video or 2 video-only (the peers' "
            "6-fold split files list 02 only); default both.",
        ),
        opt(
            "--protocol",
            type=click.Choice(tuple(PROTOCOLS)),
            show_default=False,
            help="A peer's test protocol in one word (docs/comparing.md): sets --plan, "
            "--frame-step, --views and RAVDESS's --modality as its loader does.",
        ),
    ]


def _work_options(opt) -> list:
    """extract's options of where the cache goes, the clips and views, and how the work runs."""
    from vjfer.clips import CLIP_PLANS
    from vjfer.prepare import VIEWS

    return [
        opt(
            "--cache",
            "cache_root",
            field="cache_root",
            type=click.Path(path_type=Path),
            help="Root folder of caches.",
        ),
        opt("--hop", type=int, help="Frames between window starts."),
        opt(
            "--plan",
            type=click.Choice(CLIP_PLANS),
            help="Clip plan: the V-JEPA plans (windows, reference, ...), stride (MAE-DFER: every "
            "K-th frame, its 2 test views) or segments (DFER-CLIP: 16 segment middles).",
        ),
        opt(
            "--frame-step",
            type=int,
            show_default=False,
            help="--plan stride: every K-th frame (MAE-DFER: 4 for DFEW and MAFW, 1 for FERV39k); "
            "default 4.",
        ),
        opt(
            "--train-draws",
            type=int,
            help="--plan stride|segments: training clips drawn with the loader's training rule "
            "and cached per video (identical draws stored once; seeded by --augment-seed).",
        ),
        opt(
            "--views",
            type=click.Choice(VIEWS),
            help="Spatial views: center (the paper's), 3crop, or whole (the whole frame or face "
            "crop resized to R×R, squashed if not square: the field's loaders' view).",
        ),
        opt("--batch-size", type=int, help="Clips per encoder call."),
        opt(
            "--workers",
            type=int,
            show_default=False,
            help="Decoding processes (per rank under torchrun); default: one per core but one, at "
            "most 8, never more than the cores.",
        ),
        opt("--device", help="auto, cpu, cuda or cuda:N."),
        click.option(
            "--limit", type=int, default=None, help="Only the first N videos (sorted by id)."
        ),
        opt("--shard-size", type=int, help="Videos per shard."),
        click.option("--force", is_flag=True, help="Rebuild this cache from scratch."),
        click.option(
            "--allow-low-disk",
            is_flag=True,
            help="Start even when the size estimate exceeds free disk.",
        ),
    ]


def _frame_options(opt) -> list:
    """extract's options of what a frame is: the face crop, lost frames, changed sources."""
    return [
        opt(
            "--face-crop",
            metavar="none|haar|boxes:FILE",
            help="Crop each video to one square face box: none (whole frames, the paper), haar "
            "(OpenCV's Haar cascade; pip install 'vjfer[face]') or boxes:FILE (CSV "
            "video_id,x,y,w,h).",
        ),
        opt(
            "--face-fallback",
            type=click.Choice(["fail", "full"]),
            help="A video without a face: fail (listed) or full (whole frame, flagged).",
        ),
        opt(
            "--face-margin",
            type=float,
            help="Added on every side of the face box, as a fraction of its longer side.",
        ),
        opt(
            "--max-lost-frames",
            type=click.FloatRange(0, 1),
            help="A video that lost more than this fraction of its frames is a failure (fewer: "
            "kept, listed by `cache info`).",
        ),
        click.option(
            "--no-reencode",
            is_flag=True,
            help="Refuse, instead of re-encoding, shards whose source files changed.",
        ),
        click.option(
            "--trust-size-mtime",
            is_flag=True,
            help="On resume, keep a complete shard whose source files have the recorded size and "
            "mtime_ns without reading them (default: compare each file's content hash, xxh3-128, "
            "with the recorded one).",
        ),
    ]


def _store_options(opt) -> list:
    """extract's options of how tokens are stored: format, dtype, augmented copies, layers."""
    return [
        opt(
            "--store",
            metavar="FORMAT",
            help="Token store format: fp16, int8, fp8, pool2 or a '+' chain (pool2+int8); see "
            "`vjfer cache convert`.",
        ),
        opt(
            "--dtype",
            type=click.Choice(["bf16", "fp16", "fp32"]),
            help="Encoder compute dtype on CUDA (fp16: the reference's autocast; the CPU computes "
            "fp32). Part of the cache fingerprint.",
        ),
        opt(
            "--augment",
            type=click.IntRange(min=0),
            help="Also store K augmented copies of each video's 8 training clips, made with the "
            "reference's recipe (RandAugment, random-resized crop, cube erasing; "
            "vjfer/augment.py); train on them with `vjfer probe --train-view augmented`. Costs "
            "K × 8 clips a video.",
        ),
        opt(
            "--augment-seed",
            type=int,
            help="Seed of the augmented copies' draws (one generator per seed, video, copy and "
            "clip) and of --plan stride|segments' training draws (per seed, video and draw).",
        ),
        opt(
            "--dedup/--no-dedup",
            help="Encode and store videos with identical video streams once (a fingerprint input).",
        ),
        click.option(
            "--layers",
            default=None,
            metavar="L1,L2,...",
            callback=lambda ctx, param, value: (
                None if value is None else number_list(int)(ctx, param, value)
            ),
            help="Cache the outputs of these encoder blocks (0-based; negative from the end: -1 "
            "the last), each through the encoder's final norm, all in one chunk per clip; "
            "default: the last (the encoder's output; `--layers -1` is the same cache). Probe "
            "with `vjfer probe --layer`.",
        ),
        opt(
            "--decode-timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds per video before its decoding is given up (a failure entry).",
        ),
        opt(
            "--max-frame-pixels",
            type=click.IntRange(min=1),
            help="The largest frame read (width × height): a larger frame of a folder is lost, a "
            "video file of larger frames a failure (a decompression bomb never reaches memory).",
        ),
    ]


def extract_config(dataset: str, root: Path | None, options: dict):
    """The `ExtractConfig` of the parsed `vjfer extract` options (tests parse resume commands
    through this)."""
    from vjfer.extract import ExtractConfig

    reject_checkpoint_for_tiny(options["encoder"], options["checkpoint"])
    if options["encoder"] == "tiny":
        options["checkpoint"] = None  # from VJFER_CHECKPOINT: meant for the real encoders
    return ExtractConfig(dataset=dataset, root=dataset_root(dataset, root), **options)


@cli.command()
@extract_options
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
@executor_options
def extract(no_progress: bool, root: Path | None, dataset: str, **options) -> None:
    """Stage 1: decode every video once and encode every clip once into HDF5 shards.

    Resumable: a rerun with the same settings skips finished shards. Under
    `torchrun --nproc-per-node N -m vjfer extract ...` each rank writes its own shards; with
    `--executor slurm --tasks N` each of N array tasks does (docs/cluster.md).
    """
    from vjfer.extract import extract, format_extract_summary, format_plan, plan_extraction

    cluster = pop_cluster(options)
    config = extract_config(dataset, root, options)
    if cluster is not None:
        submit(config, cluster)
        return
    plan = plan_extraction(config)
    if plan.rank == 0:
        echo_lines(format_plan(plan))
    summary = extract(config, progress=not no_progress, plan=plan)
    if plan.rank == 0:
        echo_lines(format_extract_summary(summary))
    if summary.failed:
        click.echo(
            f"{summary.failed} video(s) failed: see {summary.cache_dir / 'failures.jsonl'}",
            err=True,
        )
        sys.exit(2)


def submit(config, cluster) -> None:
    """`vjfer extract --executor ...`: submit the array, say where it went, and (local, waited
    for) how it ended: exit 1 with the resume command when a task did not finish."""
    from vjfer.cluster import submit_extraction

    done = submit_extraction(config, cluster, echo=echo_lines)
    for task, why in sorted(done.failed.items()):
        click.echo(f"task {task} failed: {why}", err=True)
    if done.waited:
        state = "complete" if done.complete else "INCOMPLETE"
        echo_lines(f"cache      {done.directory} {state}; `vjfer status {done.directory}`")
    if done.waited and not done.complete:
        click.echo(f"resume with `{done.command}`", err=True)
        sys.exit(1)
    if done.complete and done.failed_videos:  # as a run here says
        failures = done.directory / "failures.jsonl"
        click.echo(f"{done.failed_videos} video(s) failed: see {failures}", err=True)
        sys.exit(2)
