"""`vjfer probe`: stage 2, its options read from `TrainConfig`'s defaults, parsed into one
`ProbeRequest` for `vjfer.probe.run.run_request`."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.executor import job_options, pop_cluster
from vjfer.cli.group import (
    DATASET,
    SPLITS_HELP,
    apply,
    cli,
    config_option,
    device_option,
    echo_lines,
    fold_list,
    layer_list,
    number_list,
    parsed,
    probe_list,
)

shots_list = parsed("parse_shots")
fraction_list = parsed("parse_fractions")


def train_options(f):
    """The training options of `vjfer probe`, their defaults TrainConfig's."""
    from vjfer.probe.config import CHOICES, TrainConfig

    opt = config_option(TrainConfig, CHOICES)
    grid = "a comma-separated list trains"
    options = [
        opt(
            "--probe",
            "probes",
            type=str,  # a list, not the Choice of one family
            text=True,
            callback=probe_list,
            help="Probe family: attentive (`--probe-depth` blocks), linear (mean-pooled tokens, "
            "LayerNorm, linear) or knn (training-free, `--k`); "
            f"{grid} each family's heads in the same pass.",
        ),
        opt(
            "--k",
            "ks",
            field="knn_k",
            text=True,
            callback=number_list(int, 1),
            help="Neighbours of the k-NN probe (cosine, exp(sim/0.07)-weighted votes, DINO's "
            f"rule); {grid} one k-NN head each.",
        ),
        opt(
            "--probe-depth",
            type=int,
            help="Blocks of the attentive probe: 1 (the jepa reference's) or more (V-JEPA 2's "
            "form: depth - 1 self-attention blocks, then the cross-attention pooling; 4 in its "
            "frozen evaluations).",
        ),
        opt("--epochs", type=int, help="Training epochs."),
        opt("--batch-size", type=int, help="Videos per step."),
        opt(
            "--lr",
            "lrs",
            text=True,
            callback=number_list(float, 0.0, strict=True),
            help=f"Peak learning rate (cosine to 0); {grid} a grid in the same pass.",
        ),
        opt(
            "--wd",
            "wds",
            field="weight_decay",
            text=True,
            callback=number_list(float, 0.0),
            help=f"Weight decay (cosine to 1e-6); {grid} a grid.",
        ),
        opt("--clip-choice", help="Which 8 cached clips make a training sample."),
        opt(
            "--pool", help="joint: attend across the 8 clips' tokens; clip: score each clip alone."
        ),
        opt(
            "--seed",
            "seeds",
            text=True,
            callback=number_list(int),
            help=f"Probe seed (initialisation, clip/view draws); {grid} one head each.",
        ),
        opt(
            "--layer",
            "layers",
            callback=layer_list,
            help="Stored encoder layer(s) to probe on a cache made with `extract --layers`: K (a "
            "block as `cache info` shows it; negative: from the end of the stored list), concat "
            "(every stored layer as one token sequence, V-JEPA 2's multilevel form) or all (one "
            "head per stored layer, one pass, selected by inner validation like --lr); "
            f"{grid} a grid.",
        ),
        opt(
            "--shots",
            "shots",
            default="",
            show_default=False,
            callback=shots_list,
            help="Few-shot: train each head on N videos per class drawn (by its --seed) from its "
            "fold's training videos, the test fold untouched; a class with fewer gives all it "
            f"has (recorded); {grid} one head each and a curve (summary.json few_shot).",
        ),
        opt(
            "--train-fraction",
            "fractions",
            default="",
            show_default=False,
            callback=fraction_list,
            help="Few-shot by share: each head trains on a fraction in (0, 1] of each class's "
            f"training videos, drawn by its --seed; {grid} a curve. Not with --shots.",
        ),
        *_run_options(opt),
    ]
    return apply(options, f)


def _run_options(opt) -> list:
    """`vjfer probe`'s options of how a pass runs: order, device, memory, views, precision."""
    return [
        opt(
            "--order-seed",
            type=int,
            help="Seed of the order each epoch visits videos in (shared by all heads of a pass).",
        ),
        opt(
            "--epoch-order",
            help="reshuffle: a new video order every epoch (vjfer's default); fixed: the epoch-0 "
            "order every epoch, as the reference (its DistributedSampler never gets set_epoch).",
        ),
        opt("--device", callback=device_option, help="auto, cpu, cuda or cuda:N."),
        opt(
            "--in-memory",
            help="Hold the training tokens in RAM (yes; auto: when they fit) or on the GPU (gpu).",
        ),
        opt("--num-workers", type=int, help="Reader threads (reads in flight)."),
        opt("--prefetch", type=int, help="Videos read ahead (bounds the reader's memory)."),
        opt(
            "--train-view",
            help="random/middle: a cached view per clip; augmented: one stored augmented copy per "
            "clip and epoch (`vjfer extract --augment K`).",
        ),
        opt(
            "--token-augment",
            is_flag=True,
            show_default=False,
            help="vjfer's own approximation of the reference's crop and erasing for caches without "
            "augmented copies: per clip, keep a random box of the token grid and drop a random box "
            "inside it (off by default).",
        ),
        opt(
            "--batch-heads",
            is_flag=True,
            show_default=False,
            help="Train a grid's heads of one family and fold as one batched module (stacked "
            "parameters, one kernel per operation): faster; equal to separate heads within float "
            "rounding, not bit for bit (off by default).",
        ),
        opt(
            "--autocast",
            help="The probe's autocast dtype on CUDA (fp16 with a grad scaler: the reference's); "
            "the CPU trains in fp32.",
        ),
        opt(
            "--on-nonfinite",
            help="A head whose loss is not finite: stop the run, or skip it (marked failed, never "
            "selected; not the reported head).",
        ),
        opt(
            "--checkpoint-every",
            type=click.IntRange(min=0),
            help="Epochs between checkpoints of the pass, for --resume (0: none).",
        ),
    ]


def run_figures(run_dir: Path) -> None:
    from vjfer.report import figures_for_run  # matplotlib only when a figure is drawn

    figures_for_run(run_dir)


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
    "--modality",
    type=click.IntRange(1, 2),
    help="RAVDESS only: train and test on one modality's videos, 1 audio-video or 2 video-only "
    "(the peers' 6-fold split files, --splits mae-dfer, list 02 only); default every video.",
)
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
@job_options
def probe(
    dataset: str | None,
    fold: str | tuple[int, ...],
    splits: str | None,
    modality: int | None,
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

    cluster = pop_cluster(options)
    grid = {
        axis: options.pop(axis)
        for axis in ("lrs", "wds", "seeds", "layers", "probes", "ks", "shots", "fractions")
    }
    try:
        request = ProbeRequest(
            cache=cache_path,
            runs=out,
            config=TrainConfig(**options),
            folds=fold,
            splits=splits,
            modality=modality,
            dataset=dataset,
            fingerprint=fingerprint,
            mode=run_mode(force, resume),
            progress=not no_progress,
            **grid,
        )
        if cluster is not None:  # one submitit job (docs/cluster.md)
            from vjfer.cluster import submit_probe

            run_dir = submit_probe(request, cluster, echo=echo_lines)
            if run_dir is None:  # submitted to SLURM
                return
        else:
            run_dir = run_request(request, draw=run_figures)
    except OptionError as err:  # a bad option value: click's one line, naming the option
        raise click.BadParameter(err.message, param_hint=err.option) from None
    echo_lines((run_dir / "summary.md").read_text(encoding="utf-8"))
    click.echo(f"run written to {run_dir}")
