"""The `vjfer` command group. Thin: parse options, build a config, call one library function.

Commands import their modules when they run; the option lists of `extract` and `probe` read their
defaults from `ExtractConfig` and `TrainConfig`, so each default lives in one place.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from vjfer import __version__
from vjfer.errors import CacheError, VjferError

DATASET = click.Choice(["ravdess", "crema-d", "dfew", "ferv39k", "mafw", "list"],
                       case_sensitive=False)  # fmt: skip
INDEXABLE = DATASET
SPLITS_HELP = (
    "Fold protocol: RAVDESS paper (5 folds, default) or mae-dfer (6 folds, fold k = actors "
    "4k-3..4k); a list file: file (its fold/split columns) or groups (seeded group folds)."
)


class _Group(click.Group):
    """Prints a VjferError, a bad option value and an OSError as one `error:` line and exits
    non-zero (1; 2 for a usage error, as click does) instead of a traceback or a usage block."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VjferError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except click.UsageError as err:  # a bad value, a missing option: one line, with the help
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            click.echo(f"error: {err.format_message()} (see `{where} --help`)", err=True)
            sys.exit(2)
        except OSError as err:  # not vjfer's own: name the file and what to check
            name = err.filename or "a file"
            click.echo(f"error: {name}: {err.strerror or err}: check that it exists and that this "
                       "user may read (or write) it, or give another path", err=True)  # fmt: skip
            sys.exit(1)


def _dataset_root(dataset: str, root: Path | None) -> Path:
    """--root, else the dataset's environment variable; a clear error naming both when neither."""
    if root is not None:
        return root
    from vjfer.datasets import ENV_VARS

    env = ENV_VARS[dataset.lower()]
    if os.environ.get(env):
        return Path(os.environ[env])
    raise click.UsageError(f"give the {dataset} folder with --root DIR or set {env}")


def _reject_checkpoint_for_tiny(encoder: str, checkpoint: Path | None) -> None:
    """--checkpoint on the command line with the tiny encoder (which has none) is an error; one
    from VJFER_CHECKPOINT is ignored, as the variable serves the real encoders."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("checkpoint") == click.core.ParameterSource.COMMANDLINE
    if encoder == "tiny" and checkpoint is not None and given:
        raise click.UsageError(
            "--checkpoint does not apply to --encoder tiny (seeded random weights); drop it"
        )


def _echo_lines(text: str) -> None:
    click.echo(text.rstrip("\n"))


def _caches_at(path: Path) -> list[Path]:
    """Cache directories at or under `path`; an error when there is none."""
    from vjfer.cache import find_caches

    found = find_caches(path)
    if not found:
        raise CacheError(f"no vjfer cache (manifest.json or shard-*.h5) at or under {path}")
    return found


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="vjfer")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """vjfer: frozen V-JEPA encoders + attentive probes for facial expression recognition.

    Stage 1 `extract` encodes every clip once into a feature cache; stage 2 `probe` trains and
    evaluates probes from that cache alone. `vjfer demo` runs everything on generated data.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


# ------------------------------------------------------------------------------------- datasets


@cli.command()
@click.option("--dataset", type=INDEXABLE, required=True, help="Which dataset's layout to read.")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="Dataset folder (or VJFER_RAVDESS / VJFER_CREMA_D / VJFER_DFEW / ...).",
)
@click.option("--splits", help=SPLITS_HELP)
@click.option("--list", "list_file", type=click.Path(dir_okay=False, path_type=Path),
              help="--dataset list: CSV with path,label[,group][,fold][,split]; paths relative to --root.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write {videos, per_class, per_fold, excluded: [{path, reason}]} to this file.")  # fmt: skip
@click.option("--modality", "modalities", type=click.IntRange(1, 2), multiple=True,
              help="RAVDESS modality to keep: 1 audio-video, 2 video-only (repeatable; default both).")  # fmt: skip
@click.option("--song", is_flag=True, help="RAVDESS: keep song (VV 02) instead of speech.")
@click.option(
    "--all", "show_all", is_flag=True, help="List every excluded file (default: a few per reason)."
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every excluded file with its reason to this CSV file.")  # fmt: skip
@click.option("--duplicates", is_flag=True,
              help="Read every video and count those whose video stream is identical to another's "
              "(extract encodes them once).")  # fmt: skip
def index(dataset: str, root: Path | None, splits: str | None, list_file: Path | None,
          json_path: Path | None, modalities: tuple[int, ...], song: bool, show_all: bool,
          csv_path: Path | None, duplicates: bool) -> None:  # fmt: skip
    """Show what a dataset folder holds: counts per class, actor and fold, and every problem."""
    from vjfer.datasets import (
        format_index_summary,
        scan_dataset,
        summarize,
        write_excluded_csv,
        write_index_json,
    )  # fmt: skip

    options: dict = {"splits": splits, "list_file": list_file}
    if dataset == "ravdess":
        options |= {"modalities": modalities or None, "vocal_channels": (2,) if song else None}
    elif modalities or song:
        raise click.UsageError("--modality and --song apply to RAVDESS only")
    found = scan_dataset(dataset, _dataset_root(dataset, root), **options)
    summary = summarize(found)
    _echo_lines(format_index_summary(summary, show_all=show_all))
    if csv_path is not None:
        click.echo(
            f"{len(found.excluded)} excluded files written to {write_excluded_csv(summary, csv_path)}"
        )
    if json_path is not None:
        click.echo(f"index written to {write_index_json(summary, json_path)}")
    if duplicates:
        from vjfer.extract import duplicate_streams, stream_digests

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
            size = (f"{r['params'] / 1e6:7.1f}M params, D={r['embed_dim']}, {r['resolution']} px, "
                    f"{r['tokens']} tokens")  # fmt: skip
        else:
            size = "sizes from its config.json"
        click.echo(f"{r['name']:<14} {size}\n{'':<14} weights: {r['weights']}")


# ------------------------------------------------------------------------------ stage 1: extract


def _extract_options(f):
    from vjfer.extract import ExtractConfig
    from vjfer.video import CLIP_PLANS, VIEWS

    d = ExtractConfig.__dataclass_fields__
    options = [
        click.option("--dataset", type=DATASET, required=True, help="ravdess, crema-d, dfew, ferv39k, mafw or list (with --list)."),
        click.option("--root", type=click.Path(path_type=Path), help="Dataset folder (or VJFER_RAVDESS / VJFER_CREMA_D / ...)."),
        click.option("--list", "list_file", type=click.Path(dir_okay=False, path_type=Path),
                     help="--dataset list: CSV with path,label[,group][,fold][,split]; paths relative to --root."),
        click.option("--encoder", default=d["encoder"].default, show_default=True, help="Encoder name (`vjfer encoders`)."),
        click.option("--checkpoint", type=click.Path(path_type=Path), envvar="VJFER_CHECKPOINT",
                     help="jepa .pth.tar file or HF directory (or VJFER_CHECKPOINT)."),
        click.option("--weights", type=click.Choice(["target_encoder", "encoder"]), default=d["weights"].default,
                     show_default=True, help="jepa checkpoints: EMA target_encoder or online encoder."),
        click.option("--cache", "cache_root", type=click.Path(path_type=Path), default=d["cache_root"].default,
                     show_default=True, help="Root folder of caches."),
        click.option("--hop", type=int, default=d["hop"].default, show_default=True, help="Frames between window starts."),
        click.option("--plan", type=click.Choice(CLIP_PLANS), default=d["plan"].default, show_default=True, help="Clip plan."),
        click.option("--views", type=click.Choice(VIEWS), default=d["views"].default, show_default=True, help="Spatial views."),
        click.option("--batch-size", type=int, default=d["batch_size"].default, show_default=True, help="Clips per encoder call."),
        click.option("--workers", type=int, default=d["workers"].default, help="Decoding processes (per rank under torchrun); default: one per core but one, at most 8, never more than the cores."),
        click.option("--device", default=d["device"].default, show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--limit", type=int, default=None, help="Only the first N videos (sorted by id)."),
        click.option("--shard-size", type=int, default=d["shard_size"].default, show_default=True, help="Videos per shard."),
        click.option("--force", is_flag=True, help="Rebuild this cache from scratch."),
        click.option("--allow-low-disk", is_flag=True, help="Start even when the size estimate exceeds free disk."),
        click.option("--face-crop", default=d["face_crop"].default, show_default=True, metavar="none|haar|boxes:FILE",
                     help="Crop each video to one square face box: none (whole frames, the paper), haar "
                          "(OpenCV's Haar cascade; pip install 'vjfer[face]') or boxes:FILE (CSV video_id,x,y,w,h)."),
        click.option("--face-fallback", type=click.Choice(["fail", "full"]), default=d["face_fallback"].default,
                     show_default=True, help="A video without a face: fail (listed) or full (whole frame, flagged)."),
        click.option("--face-margin", type=float, default=d["face_margin"].default, show_default=True,
                     help="Added on every side of the face box, as a fraction of its longer side."),
        click.option("--max-lost-frames", type=click.FloatRange(0, 1), default=d["max_lost_frames"].default, show_default=True,
                     help="A video that lost more than this fraction of its frames is a failure (fewer: kept, listed by `cache info`)."),
        click.option("--no-reencode", is_flag=True, help="Refuse, instead of re-encoding, shards whose source files changed."),
        click.option("--trust-size-mtime", is_flag=True,
                     help="On resume, keep a complete shard whose source files have the recorded size and mtime_ns without "
                          "reading them (default: compare each file's content hash, xxh3-128, with the recorded one)."),
        click.option("--store", default=d["store"].default, show_default=True, metavar="FORMAT",
                     help="Token store format: fp16, int8, fp8, pool2 or a '+' chain (pool2+int8); see `vjfer cache convert`."),
        click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), default=d["dtype"].default, show_default=True,
                     help="Encoder compute dtype on CUDA (fp16: the reference's autocast; the CPU computes fp32). Part of the cache fingerprint."),
        click.option("--augment", type=click.IntRange(min=0), default=d["augment"].default, show_default=True,
                     help="Also store K augmented copies of each video's 8 training clips, made with the reference's "
                          "recipe (RandAugment, random-resized crop, cube erasing; vjfer/augment.py); train on them with "
                          "`vjfer probe --train-view augmented`. Costs K × 8 clips a video."),
        click.option("--augment-seed", type=int, default=d["augment_seed"].default, show_default=True,
                     help="Seed of the augmented copies' draws (one generator per seed, video, copy and clip)."),
        click.option("--dedup/--no-dedup", default=d["dedup"].default, show_default=True,
                     help="Encode and store videos with identical video streams once (a fingerprint input)."),
        click.option("--layers", default=None, metavar="L1,L2,...",
                     callback=lambda ctx, param, value: None if value is None else _number_list(int)(ctx, param, value),
                     help="Cache the outputs of these encoder blocks (0-based; negative from the end: -1 the last), "
                          "each through the encoder's final norm, all in one chunk per clip; default: the last "
                          "(the encoder's output; `--layers -1` is the same cache). Probe with `vjfer probe --layer`."),
        click.option("--decode-timeout", type=click.FloatRange(min=0, min_open=True), default=d["decode_timeout"].default,
                     show_default=True, help="Seconds per video before its decoding is given up (a failure entry)."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _extract_config(dataset: str, root: Path | None, options: dict):
    """The `ExtractConfig` of the parsed `vjfer extract` options (tests parse resume commands
    through this)."""
    from vjfer.extract import ExtractConfig

    _reject_checkpoint_for_tiny(options["encoder"], options["checkpoint"])
    if options["encoder"] == "tiny":
        options["checkpoint"] = None  # from VJFER_CHECKPOINT: meant for the real encoders
    return ExtractConfig(dataset=dataset, root=_dataset_root(dataset, root), **options)


@cli.command()
@_extract_options
@click.option("--no-progress", is_flag=True, help="No progress bar (logs only).")
def extract(no_progress: bool, root: Path | None, dataset: str, **options) -> None:
    """Stage 1: decode every video once and encode every clip once into HDF5 shards.

    Resumable: a rerun with the same settings skips finished shards. Under
    `torchrun --nproc-per-node N -m vjfer extract ...` each rank writes its own shards.
    """
    from vjfer.extract import extract, format_extract_summary, format_plan, plan_extraction

    config = _extract_config(dataset, root, options)
    plan = plan_extraction(config)
    if plan.rank == 0:
        _echo_lines(format_plan(plan))
    summary = extract(config, progress=not no_progress, plan=plan)
    if plan.rank == 0:
        _echo_lines(format_extract_summary(summary))
    if summary.failed:
        click.echo(
            f"{summary.failed} video(s) failed: see {summary.cache_dir / 'failures.jsonl'}",
            err=True,
        )
        sys.exit(2)


@cli.group(cls=_Group)
def cache() -> None:
    """Inspect or verify a feature cache."""


@cache.command("info")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def cache_info_cmd(path: Path) -> None:
    """Settings, videos, clips, size and failures of the cache(s) at or under PATH."""
    from vjfer.cache import cache_info, format_cache_info

    for directory in _caches_at(path):
        _echo_lines(format_cache_info(cache_info(directory)))


@cache.command("verify")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--root", type=click.Path(path_type=Path),
              help="Dataset folder: also check that every video is cached or listed as failed.")  # fmt: skip
def cache_verify_cmd(path: Path, root: Path | None) -> None:
    """Open every shard, check shapes and counts against the manifest, and look for NaN/Inf."""
    from vjfer.cache import open_cache, verify_cache
    from vjfer.datasets import index_dataset

    bad = 0
    for directory in _caches_at(path):
        records = None
        if root is not None:
            opened = open_cache(directory)  # a list dataset's list file: the one extracted from
            listed = opened.manifest["config"]["list_file"] if opened.dataset == "list" else None
            records = index_dataset(opened.dataset, root, list_file=listed)
        report = verify_cache(directory, records)
        _echo_lines(str(report))
        bad += not report.ok
    sys.exit(1 if bad else 0)


def _convert_default(name: str):
    """A `ConvertConfig` default, read when the options are declared (one place per default)."""
    from vjfer.convert import ConvertConfig

    return ConvertConfig.__dataclass_fields__[name].default


@cache.command("convert")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--store",
    required=True,
    metavar="FORMAT",
    help="int8, fp8, pool2, pca:K or a '+' chain (pool2+int8, pool2+pca:32+int8).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Target cache directory; default: beside SOURCE, named by its fingerprint.",
)
@click.option("--pca-fold", type=int, help="pca: the test fold; the basis is fitted on the others.")
@click.option(
    "--pca-clips",
    type=int,
    default=_convert_default("pca_clips"),
    show_default=True,
    help="pca: training clips the basis is fitted on.",
)
@click.option(
    "--cost-clips",
    type=int,
    default=_convert_default("cost_clips"),
    show_default=True,
    help="Clips the token error (and probe agreement) is measured on.",
)
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A probe run on SOURCE: also measure its probes' agreement.")  # fmt: skip
def cache_convert_cmd(source: Path, **options) -> None:
    """Write the cache at SOURCE in a compact store format (resumable; SOURCE is only read),
    and write what it cost to store_cost.json."""
    from vjfer.convert import ConvertConfig, convert, describe

    _echo_lines(describe(convert(ConvertConfig(source=source, **options))))


@cache.command("compare")
@click.argument("a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--clips",
    type=int,
    default=_convert_default("cost_clips"),
    show_default=True,
    help="Clips compared.",
)
@click.option("--run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A probe run on A: also measure its probes' agreement on B.")  # fmt: skip
def cache_compare_cmd(a: Path, b: Path, clips: int, run: Path | None) -> None:
    """What storing fp16 cache A as cache B costs: size ratio, token error, probe agreement (JSON)."""
    from vjfer.cache import open_cache
    from vjfer.convert import compare_caches

    click.echo(json.dumps(compare_caches(open_cache(a), open_cache(b), clips=clips, run=run),
                          indent=1))  # fmt: skip


# -------------------------------------------------------------------------------- stage 2: probe


def _parsed(parse, *args):
    """A click callback: the option value read by the library's parser (`vjfer.probe.config`),
    its OptionError a bad-parameter error."""

    def callback(ctx, param, value):
        from vjfer.probe.config import OptionError

        try:
            return parse(value, *args)
        except OptionError as err:
            raise click.BadParameter(err.message) from None

    return callback


def _number_list(kind, low: float | None = None, strict: bool = False):
    """A click callback: "1e-3,3e-3" -> (0.001, 0.003) (`vjfer.probe.config.parse_numbers`)."""
    from vjfer.probe.config import parse_numbers

    def parse(value: str) -> tuple:
        return parse_numbers(value, kind, "", low, strict)

    return _parsed(parse)


def _fold_list(ctx, param, value: str):
    from vjfer.probe.config import parse_folds

    return _parsed(parse_folds)(ctx, param, value)


def _layer_list(ctx, param, value: str):
    from vjfer.probe.config import parse_layers

    return _parsed(parse_layers)(ctx, param, value)


def _check_device(ctx, param, value: str) -> str:
    """--device: auto, cpu, cuda or cuda:N, and a CUDA device only where one exists."""
    from vjfer.env import check_device

    try:
        return check_device(value)
    except VjferError as err:
        raise click.BadParameter(str(err)) from None


def _train_options(f):
    from vjfer.probe.config import CHOICES, TrainConfig

    d = TrainConfig.__dataclass_fields__
    options = [
        click.option("--probe", type=click.Choice(CHOICES["probe"]), default=d["probe"].default, show_default=True, help="Probe kind."),
        click.option("--epochs", type=int, default=d["epochs"].default, show_default=True, help="Training epochs."),
        click.option("--batch-size", type=int, default=d["batch_size"].default, show_default=True, help="Videos per step."),
        click.option("--lr", "lrs", default=str(d["lr"].default), show_default=True, callback=_number_list(float, 0.0, strict=True),
                     help="Peak learning rate (cosine to 0); a comma-separated list trains a grid in the same pass."),
        click.option("--wd", "wds", default=str(d["weight_decay"].default), show_default=True, callback=_number_list(float, 0.0),
                     help="Weight decay (cosine to 1e-6); a comma-separated list trains a grid."),
        click.option("--clip-choice", type=click.Choice(CHOICES["clip_choice"]), default=d["clip_choice"].default, show_default=True,
                     help="Which 8 cached clips make a training sample."),
        click.option("--pool", type=click.Choice(CHOICES["pool"]), default=d["pool"].default, show_default=True,
                     help="joint: attend across the 8 clips' tokens; clip: score each clip alone."),
        click.option("--seed", "seeds", default=str(d["seed"].default), show_default=True, callback=_number_list(int),
                     help="Probe seed (initialisation, clip/view draws); a comma-separated list trains one head each."),
        click.option("--layer", "layer_choices", default=d["layer"].default, show_default=True, callback=_layer_list,
                     help="Stored encoder layer(s) to probe on a cache made with `extract --layers`: K (a block as `cache info` "
                          "shows it; negative: from the end of the stored list), concat (every stored layer as one token "
                          "sequence, V-JEPA 2's multilevel form) or all (one head per stored layer, one pass, selected by "
                          "inner validation like --lr); a comma-separated list trains a grid."),
        click.option("--order-seed", type=int, default=d["order_seed"].default, show_default=True,
                     help="Seed of the order each epoch visits videos in (shared by all heads of a pass)."),
        click.option("--epoch-order", type=click.Choice(CHOICES["epoch_order"]), default=d["epoch_order"].default, show_default=True,
                     help="reshuffle: a new video order every epoch (vjfer's default); fixed: the epoch-0 order every epoch, "
                          "as the reference (its DistributedSampler never gets set_epoch)."),
        click.option("--device", default=d["device"].default, show_default=True, callback=_check_device,
                     help="auto, cpu, cuda or cuda:N."),
        click.option("--in-memory", type=click.Choice(CHOICES["in_memory"]), default=d["in_memory"].default, show_default=True,
                     help="Hold the training tokens in RAM (yes; auto: when they fit) or on the GPU (gpu)."),
        click.option("--num-workers", type=int, default=d["num_workers"].default, show_default=True, help="Reader threads (reads in flight)."),
        click.option("--prefetch", type=int, default=d["prefetch"].default, show_default=True, help="Videos read ahead (bounds the reader's memory)."),
        click.option("--train-view", type=click.Choice(CHOICES["train_view"]), default=d["train_view"].default, show_default=True,
                     help="random/middle: a cached view per clip; augmented: one stored augmented copy per clip and epoch (`vjfer extract --augment K`)."),
        click.option("--token-augment", is_flag=True, default=d["token_augment"].default,
                     help="vjfer's own approximation of the reference's crop and erasing for caches without augmented "
                          "copies: per clip, keep a random box of the token grid and drop a random box inside it (off by default)."),
        click.option("--autocast", type=click.Choice(CHOICES["autocast"]), default=d["autocast"].default, show_default=True,
                     help="The probe's autocast dtype on CUDA (fp16 with a grad scaler: the reference's); the CPU trains in fp32."),
        click.option("--on-nonfinite", type=click.Choice(CHOICES["on_nonfinite"]), default=d["on_nonfinite"].default, show_default=True,
                     help="A head whose loss is not finite: stop the run, or skip it (marked failed, never selected; not the reported head)."),
        click.option("--checkpoint-every", type=click.IntRange(min=0), default=d["checkpoint_every"].default, show_default=True,
                     help="Epochs between checkpoints of the pass, for --resume (0: none)."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _layer_figure(run_dir: Path) -> None:
    from vjfer.report import layer_figure_for_run  # matplotlib only when a figure is drawn

    layer_figure_for_run(run_dir)


@cli.command()
@click.option(
    "--dataset", type=DATASET, help="Dataset of the cache (needed when several caches exist)."
)
@click.option("--fold", default="all", show_default=True, callback=_fold_list,
              help="all, or comma-separated folds of the cache under --splits (1..5 for RAVDESS and CREMA-D).")  # fmt: skip
@click.option("--splits", help=SPLITS_HELP)
@click.option("--cache", "cache_path", type=click.Path(exists=True, path_type=Path), default=Path("cache"),
              show_default=True, help="A cache directory, or a folder holding one.")  # fmt: skip
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Runs folder; this run goes to OUT/<dataset>-<cache>-<probe>[-foldK][-seedS].")  # fmt: skip
@click.option("--fingerprint", help="Refuse any cache whose fingerprint does not start with this.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing run of these settings (once the new one is complete).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run from its last checkpoint (same command otherwise).",
)
@_train_options
def probe(
    dataset: str | None, fold: str | tuple[int, ...], splits: str | None, cache_path: Path,
    out: Path, fingerprint: str | None, no_progress: bool, force: bool, resume: bool, **options,
) -> None:  # fmt: skip
    """Stage 2: train and evaluate probes per fold, from the cache alone (never opens a video)."""
    from vjfer.probe.config import OptionError, TrainConfig
    from vjfer.probe.resume import run_mode
    from vjfer.probe.run import ProbeRequest, run_request

    grid = {"lrs": options.pop("lrs"), "wds": options.pop("wds"), "seeds": options.pop("seeds"),
            "layers": options.pop("layer_choices")}  # fmt: skip
    try:
        request = ProbeRequest(cache=cache_path, runs=out, config=TrainConfig(**options),
                               folds=fold, splits=splits, dataset=dataset, fingerprint=fingerprint,
                               mode=run_mode(force, resume), progress=not no_progress, **grid)  # fmt: skip
        run_dir = run_request(request, draw=_layer_figure)
    except OptionError as err:  # a bad option value: click's one line, naming the option
        raise click.BadParameter(err.message, param_hint=err.option) from None
    _echo_lines((run_dir / "summary.md").read_text(encoding="utf-8"))
    click.echo(f"run written to {run_dir}")


# ------------------------------------------------------------------------- cross-dataset, report


@cli.command()
@click.option(
    "--train", "source", type=DATASET, required=True, help="Dataset the probes were trained on."
)
@click.option("--test", "target", type=DATASET, required=True, help="Dataset to predict.")
@click.option("--calm", type=click.Choice(["drop", "merge", "both"]), default="both", show_default=True,
              help="Classes one dataset lacks: drop those videos, or count calm as neutral.")  # fmt: skip
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
@click.option("--cache", "cache_root", type=click.Path(exists=True, path_type=Path), default=Path("cache"),
              show_default=True, help="Cache of the test dataset, or a folder holding it.")  # fmt: skip
@click.option("--device", default="auto", show_default=True, callback=_check_device,
              help="auto, cpu, cuda or cuda:N.")  # fmt: skip
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
        _echo_lines(render_markdown(cross_table(result)))
        click.echo(f"{target}: {result.coverage}")
        click.echo(f"written to {result.out_dir}\n")


@cli.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Report folder.",
)
@click.option("--cache", "cache_root", type=click.Path(path_type=Path), default=Path("cache"), show_default=True,
              help="Caches for the PCA figure, failures list and timelines (skipped, with a note, when absent).")  # fmt: skip
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=_check_device,
    help="Device for the PCA figure's probe pass.",
)
def report(run_dirs: tuple[Path, ...], out: Path, cache_root: Path, device: str) -> None:
    """Tables II-IV and detail tables (Markdown, CSV), confusion matrices, PCA figure and emotion
    timelines (PNG), all of it also as one self-contained report.html (printed last)."""
    from vjfer.cache import find_caches
    from vjfer.report import build_report

    caches = find_caches(cache_root, complete=True) if cache_root.exists() else []
    written = build_report(list(run_dirs) or [Path("runs")], out, caches=caches, device=device)
    for path in written:
        click.echo(str(path))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=Path("report"), show_default=True,
              help="Folder for compare.md and compare.csv.")  # fmt: skip
def compare(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Probe runs side by side, with paired per-fold differences to the first RUN.

    Each RUN is a `vjfer probe` directory; all must be of one dataset and the same folds.
    """
    from vjfer.compare import compare_runs
    from vjfer.tables import render_markdown, write_table

    table = compare_runs(run_dirs)
    _echo_lines(render_markdown(table))
    for path in write_table(table, out):
        click.echo(str(path))


@cli.command()
@click.argument("videos", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--run",
    "run_dir",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="A `vjfer probe` run.",
)
@click.option("--checkpoint", type=click.Path(exists=True, path_type=Path), envvar="VJFER_CHECKPOINT",
              help="The encoder checkpoint the run's cache was made with (or VJFER_CHECKPOINT).")  # fmt: skip
@click.option("--fold", type=int, help="Use one fold's probe (default: all folds averaged).")
@click.option("--folds", callback=lambda ctx, param, value: None if value is None else _fold_list(ctx, param, value),
              help="Comma-separated folds whose probes to average, e.g. 1,2,4,5 (needed "
              "when a fold's probe.pt is missing).")  # fmt: skip
@click.option("--device", default="auto", show_default=True, callback=_check_device,
              help="auto, cpu, cuda or cuda:N.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--clips", is_flag=True, help="Also print the per-clip timeline.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw each video's emotion timeline (one panel per video) into this PNG.")  # fmt: skip
def predict(videos: tuple[Path, ...], run_dir: Path, checkpoint: Path | None, fold: int | None,
            folds: str | tuple[int, ...] | None, device: str, as_json: bool, clips: bool,
            plot: Path | None) -> None:  # fmt: skip
    """Emotion of each VIDEO (any format FFmpeg reads) with a trained probe run."""
    from vjfer.env import resolve_device
    from vjfer.predict import format_prediction, predict_videos

    if fold is not None and folds:
        raise click.UsageError("give --fold or --folds, not both")
    fold_list = None if folds in (None, "all") else list(folds)
    if plot is not None and plot.suffix.lower() != ".png":
        raise click.UsageError(f"--plot writes a PNG: give a file name ending in .png, not {plot}")
    source = click.get_current_context().get_parameter_source("checkpoint")
    result = predict_videos(videos, run_dir, checkpoint=checkpoint, fold=fold, folds=fold_list,
                            device=str(resolve_device(device)),
                            checkpoint_given=source == click.core.ParameterSource.COMMANDLINE)  # fmt: skip
    if plot is not None and not result.videos.empty:
        from vjfer.figures import timeline_figure
        from vjfer.timeline import prediction_panels, prob_class_names

        panels = prediction_panels(result.videos, result.clips)
        timeline_figure(panels, prob_class_names(result.videos), plot)
    if as_json:
        out = {"videos": result.videos.to_dict(orient="records"), "failures": result.failures,
               "notes": result.notes}  # fmt: skip
        if clips:
            out["clips"] = result.clips.to_dict(orient="records")
        click.echo(json.dumps(out, indent=1))
    else:
        _echo_lines(format_prediction(result))
        if clips and not result.clips.empty:
            click.echo("")
            _echo_lines(result.clips.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if plot is not None and not result.videos.empty:
        click.echo(f"timeline written to {plot}", err=as_json)  # keep --json's stdout pure JSON
    for failure in result.failures:
        click.echo(f"failed: {failure['path']}: {failure['reason']}", err=True)
    sys.exit(1 if result.failures else 0)


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for the generated data, caches, runs and report.")  # fmt: skip
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the generated data and probes."
)
@click.option("--dataset", type=click.Choice(["dfew", "ferv39k", "mafw"]),
              help="Instead: one generated frame-folder dataset in its release's layout.")  # fmt: skip
@click.option("--threads", type=click.IntRange(min=0),
              help="Torch threads after extraction (default: DemoConfig's, 1); 0: torch's default, "
                   "one per core. One keeps the demo quick beside a busy process and its numbers "
                   "the same on any machine.")  # fmt: skip
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
    _echo_lines(format_demo(run_demo(out, config=config)))


def main() -> None:
    cli(prog_name="vjfer")
