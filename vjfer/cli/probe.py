"""`vjfer probe`: stage 2, its options read from `TrainConfig`'s defaults, parsed into one
`ProbeRequest` for `vjfer.probe.run.run_request`."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import (
    DATASET,
    SPLITS_HELP,
    cli,
    device_option,
    echo_lines,
    fold_list,
    layer_list,
    number_list,
)


def train_options(f):
    from vjfer.probe.config import CHOICES, TrainConfig

    d = TrainConfig.__dataclass_fields__
    options = [
        click.option(
            "--probe",
            type=click.Choice(CHOICES["probe"]),
            default=d["probe"].default,
            show_default=True,
            help="Probe kind.",
        ),
        click.option(
            "--epochs",
            type=int,
            default=d["epochs"].default,
            show_default=True,
            help="Training epochs.",
        ),
        click.option(
            "--batch-size",
            type=int,
            default=d["batch_size"].default,
            show_default=True,
            help="Videos per step.",
        ),
        click.option(
            "--lr",
            "lrs",
            default=str(d["lr"].default),
            show_default=True,
            callback=number_list(float, 0.0, strict=True),
            help="Peak learning rate (cosine to 0); a comma-separated list trains a grid in the "
            "same pass.",
        ),
        click.option(
            "--wd",
            "wds",
            default=str(d["weight_decay"].default),
            show_default=True,
            callback=number_list(float, 0.0),
            help="Weight decay (cosine to 1e-6); a comma-separated list trains a grid.",
        ),
        click.option(
            "--clip-choice",
            type=click.Choice(CHOICES["clip_choice"]),
            default=d["clip_choice"].default,
            show_default=True,
            help="Which 8 cached clips make a training sample.",
        ),
        click.option(
            "--pool",
            type=click.Choice(CHOICES["pool"]),
            default=d["pool"].default,
            show_default=True,
            help="joint: attend across the 8 clips' tokens; clip: score each clip alone.",
        ),
        click.option(
            "--seed",
            "seeds",
            default=str(d["seed"].default),
            show_default=True,
            callback=number_list(int),
            help="Probe seed (initialisation, clip/view draws); a comma-separated list trains one "
            "head each.",
        ),
        click.option(
            "--layer",
            "layer_choices",
            default=d["layer"].default,
            show_default=True,
            callback=layer_list,
            help="Stored encoder layer(s) to probe on a cache made with `extract --layers`: K (a "
            "block as `cache info` shows it; negative: from the end of the stored list), concat "
            "(every stored layer as one token sequence, V-JEPA 2's multilevel form) or all (one "
            "head per stored layer, one pass, selected by inner validation like --lr); a "
            "comma-separated list trains a grid.",
        ),
        click.option(
            "--order-seed",
            type=int,
            default=d["order_seed"].default,
            show_default=True,
            help="Seed of the order each epoch visits videos in (shared by all heads of a pass).",
        ),
        click.option(
            "--epoch-order",
            type=click.Choice(CHOICES["epoch_order"]),
            default=d["epoch_order"].default,
            show_default=True,
            help="reshuffle: a new video order every epoch (vjfer's default); fixed: the epoch-0 "
            "order every epoch, as the reference (its DistributedSampler never gets set_epoch).",
        ),
        click.option(
            "--device",
            default=d["device"].default,
            show_default=True,
            callback=device_option,
            help="auto, cpu, cuda or cuda:N.",
        ),
        click.option(
            "--in-memory",
            type=click.Choice(CHOICES["in_memory"]),
            default=d["in_memory"].default,
            show_default=True,
            help="Hold the training tokens in RAM (yes; auto: when they fit) or on the GPU (gpu).",
        ),
        click.option(
            "--num-workers",
            type=int,
            default=d["num_workers"].default,
            show_default=True,
            help="Reader threads (reads in flight).",
        ),
        click.option(
            "--prefetch",
            type=int,
            default=d["prefetch"].default,
            show_default=True,
            help="Videos read ahead (bounds the reader's memory).",
        ),
        click.option(
            "--train-view",
            type=click.Choice(CHOICES["train_view"]),
            default=d["train_view"].default,
            show_default=True,
            help="random/middle: a cached view per clip; augmented: one stored augmented copy per "
            "clip and epoch (`vjfer extract --augment K`).",
        ),
        click.option(
            "--token-augment",
            is_flag=True,
            default=d["token_augment"].default,
            help="vjfer's own approximation of the reference's crop and erasing for caches without "
            "augmented copies: per clip, keep a random box of the token grid and drop a random box "
            "inside it (off by default).",
        ),
        click.option(
            "--autocast",
            type=click.Choice(CHOICES["autocast"]),
            default=d["autocast"].default,
            show_default=True,
            help="The probe's autocast dtype on CUDA (fp16 with a grad scaler: the reference's); "
            "the CPU trains in fp32.",
        ),
        click.option(
            "--on-nonfinite",
            type=click.Choice(CHOICES["on_nonfinite"]),
            default=d["on_nonfinite"].default,
            show_default=True,
            help="A head whose loss is not finite: stop the run, or skip it (marked failed, never "
            "selected; not the reported head).",
        ),
        click.option(
            "--checkpoint-every",
            type=click.IntRange(min=0),
            default=d["checkpoint_every"].default,
            show_default=True,
            help="Epochs between checkpoints of the pass, for --resume (0: none).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def layer_figure(run_dir: Path) -> None:
    from vjfer.report import layer_figure_for_run  # matplotlib only when a figure is drawn

    layer_figure_for_run(run_dir)


@cli.command()
@click.option(
    "--dataset", type=DATASET, help="Dataset of the cache (needed when several caches exist)."
)
@click.option(
    "--fold",
    default="all",
    show_default=True,
    callback=fold_list,
    help="all, or comma-separated folds of the cache under --splits (1..5 for RAVDESS and "
    "CREMA-D).",
)
@click.option("--splits", help=SPLITS_HELP)
@click.option(
    "--cache",
    "cache_path",
    type=click.Path(exists=True, path_type=Path),
    default=Path("cache"),
    show_default=True,
    help="A cache directory, or a folder holding one.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Runs folder; this run goes to OUT/<dataset>-<cache>-<probe>[-foldK][-seedS].",
)
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
@train_options
def probe(
    dataset: str | None,
    fold: str | tuple[int, ...],
    splits: str | None,
    cache_path: Path,
    out: Path,
    fingerprint: str | None,
    no_progress: bool,
    force: bool,
    resume: bool,
    **options,
) -> None:
    """Stage 2: train and evaluate probes per fold, from the cache alone (never opens a video)."""
    from vjfer.probe.config import OptionError, TrainConfig
    from vjfer.probe.resume import run_mode
    from vjfer.probe.run import ProbeRequest, run_request

    grid = {
        "lrs": options.pop("lrs"),
        "wds": options.pop("wds"),
        "seeds": options.pop("seeds"),
        "layers": options.pop("layer_choices"),
    }
    try:
        request = ProbeRequest(
            cache=cache_path,
            runs=out,
            config=TrainConfig(**options),
            folds=fold,
            splits=splits,
            dataset=dataset,
            fingerprint=fingerprint,
            mode=run_mode(force, resume),
            progress=not no_progress,
            **grid,
        )
        run_dir = run_request(request, draw=layer_figure)
    except OptionError as err:  # a bad option value: click's one line, naming the option
        raise click.BadParameter(err.message, param_hint=err.option) from None
    echo_lines((run_dir / "summary.md").read_text(encoding="utf-8"))
    click.echo(f"run written to {run_dir}")
