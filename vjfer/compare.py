"""`vjfer compare RUN...`: probe runs side by side, with paired per-fold differences to the first.

Runs of one dataset share their folds, so for each fold run B's metric minus run A's, then the
mean ± sample std of those differences (ddof 1, as `metrics.fold_summary`): that spread, not each
run's own spread over folds (dominated by how hard each fold's test actors are), says whether an
encoder, a face crop or a head changed anything. Runs of different datasets or folds are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vjfer.encoders.registry import family_of
from vjfer.errors import ConfigError
from vjfer.files import read_json_object
from vjfer.probe.config import TrainConfig
from vjfer.probe.layer import CONCAT, layer_label
from vjfer.probe.run import config_dict
from vjfer.results import FoldScores, fold_value, read_probe_run
from vjfer.tables import DATASET_TITLES, METRIC_COLUMNS, STD, Table

log = logging.getLogger(__name__)

VOTING_NAMES = {"pbv": "PBV", "mv": "MV"}
# Training options that do not change what a probe learns (where and how fast it runs), and
# those with a column of their own (probe, layer).
RUNTIME_OPTIONS = (
    "device",
    "in_memory",
    "num_workers",
    "prefetch",
    "eval_batch_clips",
    "probe",
    "layer",
)
# Caches written before store formats existed hold float16 tokens (cache.TOKEN_DTYPE).
DEFAULT_STORE_FORMAT = "fp16"


@dataclass(frozen=True)
class ComparedRun:
    """One probe run as the comparison reads it."""

    path: Path
    dataset: str
    probe: str
    folds: tuple[int, ...]
    settings: dict  # the cache's fingerprint inputs (vjfer.extract.cache_settings)
    train: dict  # the TrainConfig, as config.json holds it
    per_fold: dict[int, FoldScores]  # fold -> {"n_test_videos", voting: {metric: value}}


def read_run(path: str | Path) -> ComparedRun:
    """A `vjfer probe` run directory -> ComparedRun; ConfigError naming the file when it is not."""
    path = Path(path)
    for name in ("summary.json", "config.json"):
        if not (path / name).is_file():
            raise ConfigError(f"{path} is not a `vjfer probe` run: {name} is missing")
    if read_json_object(path / "summary.json").get("kind") == "cross":
        raise ConfigError(f"{path} is a cross-dataset run; compare takes `vjfer probe` runs")
    summary, _ = read_probe_run(path)  # what `vjfer report` reads of a run, checked alike
    config = read_json_object(path / "config.json")
    needs = {"per_fold": summary, "dataset": summary, "cache": config, "train": config}
    for key, where in needs.items():
        if key not in where:
            raise ConfigError(f"{path}: no {key!r} in its summary.json / config.json")
    per_fold = {int(f["fold"]): f for f in summary["per_fold"]}
    return ComparedRun(
        path=path,
        dataset=summary["dataset"],
        probe=config["train"]["probe"],
        folds=tuple(sorted(per_fold)),
        settings=config["cache"]["settings"],
        train=config["train"],
        per_fold=per_fold,
    )


def _value(run: ComparedRun, fold: int, voting: str, metric: str) -> float:
    """One fold's metric of a run; ConfigError naming the run when its summary lacks it."""
    value = fold_value(run.per_fold[fold], voting, metric)
    if value is None:
        raise ConfigError(f"{run.path}: fold {fold} has no {voting} {metric} in summary.json")
    return value


def check_comparable(runs: Sequence[ComparedRun]) -> None:
    """Refuse runs of another dataset or other folds than the first, saying which and why."""
    if not runs:
        raise ConfigError("compare needs at least one run")
    first = runs[0]
    for run in runs[1:]:
        if run.dataset != first.dataset:
            raise ConfigError(
                f"{run.path} is a {run.dataset} run, {first.path} a {first.dataset} run: runs "
                "on different datasets have no common test videos to compare on"
            )
        if run.folds != first.folds:
            raise ConfigError(
                f"{run.path} has folds {list(run.folds)}, {first.path} has {list(first.folds)}: "
                "the per-fold differences need the same folds (rerun with --fold all)"
            )


def encoder_label(settings: dict) -> str:
    """The encoder's name and which weights: 'videomae (3fa2c1d0)', 'tiny (seed 0)'."""
    fp = settings["encoder_fingerprint"]
    if fp.get("checkpoint_sha256"):
        return f"{settings['encoder']} ({fp['checkpoint_sha256'][:8]})"
    return f"{settings['encoder']} (seed {fp.get('seed')})"


def store_format(settings: dict) -> str:
    """How the cache stores tokens; caches from before store formats hold fp16."""
    return settings["store_format"] if "store_format" in settings else DEFAULT_STORE_FORMAT


def face_crop(settings: dict) -> str:
    """The face crop a cache was made with; caches without the setting used whole frames."""
    return settings["face_crop"]["method"] if "face_crop" in settings else "none"


def run_layer(run: ComparedRun) -> str:
    """The encoder layer the run's reported head read (runs before layers: every stored token)."""
    blocks = run.settings["layers"]["blocks"] if "layers" in run.settings else None
    return layer_label(run.train.get("layer", CONCAT), blocks)


def head_label(train: dict, defaults: dict) -> str:
    """The training options that differ from the defaults ('default' when none do)."""
    changed = [
        f"{k}={v}"
        for k, v in sorted(train.items())
        if k not in RUNTIME_OPTIONS and k in defaults and v != defaults[k]
    ]
    return " ".join(changed) or "default"


def _paired(values: list[float], base: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; NaN for one fold) of the per-fold differences."""
    diff = np.asarray(values) - np.asarray(base)
    std = float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan")
    return float(np.mean(diff)), std


def compare_table(runs: Sequence[ComparedRun], train_defaults: dict) -> Table:
    """One row per run and voting rule: settings, mean ± std over folds, and the paired
    difference to the first run (percent points)."""
    check_comparable(runs)
    first = runs[0]
    rows = []
    for run in runs:
        for voting, vname in VOTING_NAMES.items():
            row = {
                "Run": run.path.name,
                "Encoder": encoder_label(run.settings),
                "Family": family_of(str(run.settings.get("encoder", ""))),
                "Resolution": run.settings["resolution"],
                "Face crop": face_crop(run.settings),
                "Store": store_format(run.settings),
                "Layer": run_layer(run),
                "Probe": run.probe,
                "Head": head_label(run.train, train_defaults),
                "Voting": vname,
            }
            for key, name in METRIC_COLUMNS.items():
                values = [100 * _value(run, k, voting, key) for k in run.folds]
                row[name] = float(np.mean(values))
                row[name + STD] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
            for key, name in METRIC_COLUMNS.items():
                values = [100 * _value(run, k, voting, key) for k in run.folds]
                base = [100 * _value(first, k, voting, key) for k in first.folds]
                diff = _paired(values, base) if run is not first else (np.nan, np.nan)
                row[f"Δ {name}"], row[f"Δ {name}{STD}"] = diff
            rows.append(row)
    notes = [
        f"{DATASET_TITLES.get(first.dataset, first.dataset)}, folds "
        f"{', '.join(map(str, first.folds))}; percent, mean ± sample std over folds.",
        f"Δ: paired per-fold difference to the first run ({first.path.name}), mean ± sample std "
        "of the differences, in percent points.",
        "Macro precision is what the paper's tables call UAR.",
    ]
    for run in runs[1:]:
        counts = [
            k
            for k in run.folds
            if run.per_fold[k]["n_test_videos"] != first.per_fold[k]["n_test_videos"]
        ]
        if counts:
            notes.append(
                f"{run.path.name}: test-video counts differ from the first run's in fold(s) "
                f"{counts} (other failures or --limit); those folds are not fully paired."
            )
    return Table("compare", "Probe runs compared", pd.DataFrame(rows), notes)


def compare_runs(paths: Sequence[str | Path]) -> Table:
    """Read the runs at `paths` (the first is the baseline) and compute the comparison table."""
    runs = [read_run(p) for p in paths]
    return compare_table(runs, config_dict(TrainConfig()))
