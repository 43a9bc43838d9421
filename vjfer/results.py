"""What a probe run's JSON files hold, defined once: `metrics.json` per fold, `summary.json` per
run.

`vjfer.probe.run` writes them; `report`, `run_details`, `compare`, `demo` and `cross` read them. The
TypedDicts are the schema (mypy checks writers and readers against it) and the accessors how a
reader gets a number. Fractions throughout (0.764, not 76.4); the tables turn them into percent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

from vjfer.errors import ConfigError
from vjfer.files import read_json_object
from vjfer.labels import class_names
from vjfer.schemas import validation_error

Voting = Literal["pbv", "mv", "clip"]
Metric = Literal["uar", "war", "macro_precision", "macro_f1"]


class VotingScores(TypedDict, total=False):
    """One voting rule's scores on a fold's test videos (`metrics.classification_metrics`)."""

    uar: float
    war: float
    macro_precision: float  # what the paper's tables call "UAR"
    macro_f1: float
    per_class_recall: list[float | None]
    n: int
    confusion: list[list[int]]  # rows = truth
    tie_fraction: float  # MV only: the share of test videos whose clip votes tie


class TrainFigures(TypedDict):
    epochs: int
    final_loss: float
    pass_seconds_share: float  # this head's share: the pass's seconds over the heads it trained


class HeadSettings(TypedDict, total=False):
    name: str
    lr: float
    weight_decay: float
    seed: int
    layer: int | str  # the stored block it read, or "concat" (`vjfer.probe.layer`)


class FoldMetrics(TypedDict, total=False):
    """`fold-K/metrics.json` (plus "history", the per-epoch training figures)."""

    fold: int
    n_train_videos: int
    n_test_videos: int
    n_test_clips: int
    test_actors: list[int]
    pbv: VotingScores
    mv: VotingScores
    clip: VotingScores
    mv_tie_fraction: float
    train: TrainFigures
    head: HeadSettings
    few_shot: dict  # a few-shot head (`--shots`/`--train-fraction`): its draw, short classes
    history: list[dict]


class MeanStd(TypedDict):
    """A metric over folds: mean and sample std (None for one fold), and the fold values."""

    mean: float
    std: float | None
    n: int
    values: list[float]


class FoldScores(TypedDict, total=False):
    """One fold's row of a summary: its scalar metrics per voting rule."""

    fold: int
    seed: int  # a few-shot curve's rows: the draw
    n_train_videos: int  # ... and its training videos
    n_test_videos: int
    mv_tie_fraction: float | None
    pbv: dict[str, float]
    mv: dict[str, float]
    clip: dict[str, float]


class FoldsSummary(TypedDict):
    """Folds' scores and their mean ± std (`probe.evaluate.summarise_folds`)."""

    folds: list[int]
    per_fold: list[FoldScores]
    mean: dict[str, dict[str, MeanStd]]  # voting -> metric -> MeanStd


class Selected(FoldsSummary, total=False):
    """The inner-selected heads of a grid run: which point per fold, and their scores."""

    selection: dict[str, str]  # fold (as text, JSON keys) -> grid point name


class LayerSummary(FoldsSummary):
    """One stored layer's head of a several-layer run (`vjfer probe --layer all`): its grid
    point (the reported head's lr, weight decay and seed) and test-fold scores over the folds."""

    layer: int | str  # the block number, or "concat"
    head: str  # the grid point's name


class FamilySummary(FoldsSummary, total=False):
    """One probe family's heads of a several-family run (`vjfer probe --probe attentive,linear`):
    its reported head (the family's reference-default grid point), test-fold scores over the
    folds, and the head its inner validation selects among that family's points."""

    probe: str  # attentive or linear
    head: str  # the family's reported grid point
    selected: Selected


class FewShotSummary(FoldsSummary, total=False):
    """One point of a few-shot run's curve (`vjfer probe --shots 4,16` / `--train-fraction`): a
    probe family at one setting, scored over folds × draws (`per_fold`: one row per fold and
    seed, each draw's head the one inner validation selects among that family's points of this
    setting and seed)."""

    probe: str
    shots: int  # videos per class (`--shots`) ...
    train_fraction: float  # ... or the share of each class (`--train-fraction`)
    seeds: list[int]  # the draws (`--seed`): each seed draws its own videos and initialises
    selection: dict[str, str]  # "fold K seed S" -> grid point name
    short_classes: list[dict]  # {fold, seed, class, available}: fewer videos than shots


class RunSummary(FoldsSummary, total=False):
    """`summary.json` of a `vjfer probe` run: per-fold scores and their mean ± std."""

    dataset: str
    splits: str  # the fold protocol (`datasets.SPLITS`: paper, mae-dfer, official, ...)
    probe: str
    cache_fingerprint: str
    head: str  # the reported head's grid point (the reference default)
    plan: str  # what the pass held and read
    pass_seconds: float  # the one training pass's wall time (every fold and head together)
    coverage: str  # "results on N of M videos, K failed / excluded"
    class_names: list[str]  # label order (the cache's); runs before list files have none
    selected: Selected
    failed_heads: list[dict]  # heads whose loss diverged (`--on-nonfinite skip`): never selected
    layers: list[LayerSummary]  # runs with heads on several layers: one entry per layer
    families: list[FamilySummary]  # runs with several probe families: one entry per family
    few_shot: list[FewShotSummary]  # few-shot runs: the curve, one entry per family × setting


def mean_of(summary: FoldsSummary, voting: Voting | str, metric: Metric | str) -> MeanStd:
    """The fold mean ± std of one metric and voting rule; ConfigError naming what is missing."""
    try:
        return summary["mean"][voting][metric]
    except KeyError as err:
        raise ConfigError(f"summary has no mean {voting}/{metric} ({err})") from None


def voting_means(summary: FoldsSummary, voting: Voting | str) -> dict[str, MeanStd]:
    """metric -> fold mean ± std of one voting rule (what a table row shows)."""
    try:
        return summary["mean"][voting]
    except KeyError as err:
        raise ConfigError(f"summary has no mean for {voting} ({err})") from None


def fold_value(row: FoldScores, voting: str, metric: str) -> float | None:
    """One fold's value of `metric` under `voting` from a summary's `per_fold` row, or None."""
    return cast(dict, row).get(voting, {}).get(metric)


def write_json(path: str | Path, obj: Mapping[str, Any]) -> None:
    """`obj` as indented JSON (one key per line: diffs and `cat` stay readable)."""
    Path(path).write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def run_class_names(summary: RunSummary) -> tuple[str, ...]:
    """A run's classes in label order: recorded since list files (their classes are the file's),
    else its dataset's, which is what every earlier run was trained on."""
    if "class_names" in summary:
        return tuple(summary["class_names"])
    return class_names(summary["dataset"])


def read_summary(run_dir: str | Path) -> RunSummary:
    """`summary.json` of a probe run directory, checked for the keys every reader needs."""
    summary = read_json_object(Path(run_dir) / "summary.json")
    missing = [k for k in ("dataset", "folds", "per_fold", "mean") if k not in summary]
    if missing or summary.get("kind") == "cross":
        raise ConfigError(
            f"{run_dir}/summary.json is not a `vjfer probe` summary (missing {missing})"
        )
    if (problem := validation_error(summary, RunSummary)) is not None:
        raise ConfigError(f"{run_dir}/summary.json: {problem}")
    return cast(RunSummary, summary)


def read_fold_metrics(run_dir: str | Path, fold: int) -> FoldMetrics:
    """`fold-K/metrics.json` of a probe run directory."""
    path = Path(run_dir) / f"fold-{fold}" / "metrics.json"
    return cast(FoldMetrics, read_json_object(path, schema=FoldMetrics))


def read_probe_run(run_dir: str | Path) -> tuple[RunSummary, dict[int, FoldMetrics]]:
    """A probe run's summary and every fold's metrics: the one check of a run that `report` and
    `compare` share (ConfigError naming the file that is missing, unreadable or of another kind)."""
    summary = read_summary(run_dir)
    return summary, {int(f): read_fold_metrics(run_dir, f) for f in summary["folds"]}
