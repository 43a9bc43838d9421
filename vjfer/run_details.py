"""The report's detail tables about probe runs: settings, per-fold results, per-class recall, and
the videos a cache could not use: DataFrames (metrics in percent) read from what a probe run or a
cache wrote, which `vjfer.report` titles and writes like Tables II-IV.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vjfer.files import read_json_object
from vjfer.tables import METRIC_COLUMNS, percent

log = logging.getLogger(__name__)

VOTING = {"pbv": "PBV", "mv": "MV"}
NOT_RECORDED = "not recorded"


def read_run_config(run_dir: str | Path) -> dict | None:
    """A probe run's `config.json` (training config, folds, cache description), or None when
    the run has none (a run written before it was recorded)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        # Not a warning: the report lists the run under "Missing inputs" already.
        log.debug("%s: no config.json; its settings are shown as %r", run_dir, NOT_RECORDED)
        return None
    return read_json_object(path)  # ConfigError naming the file when it is not a JSON object


def _face_crop(settings: dict) -> str:
    """The cache's face crop in words; a cache without the key holds whole frames (the paper)."""
    face = settings.get("face_crop")
    if face is None:
        return "none (whole frames)"
    return f"{face.get('method')}, margin {face.get('margin')}, fallback {face.get('fallback')}"


def _settings_column(config: dict | None) -> dict[str, str]:
    """Setting -> text for one run, from its config.json."""
    if config is None:  # every row, each saying so
        return dict.fromkeys(_settings_column({}), NOT_RECORDED)
    train, cache = config.get("train") or {}, config.get("cache") or {}
    settings = cache.get("settings") or {}
    encoder = settings.get("encoder_fingerprint") or {}
    plan = settings.get("plan", NOT_RECORDED)
    if settings.get("hop") is not None:
        plan = f"{plan}, hop {settings['hop']}"
    elif plan == "stride":  # its frame step decides its frames (the V-JEPA plans' is always 4)
        plan = f"{plan}, frame step {settings.get('frame_step')}"
    grid = "×".join(str(g) for g in cache.get("grid") or []) or "?"
    sha = encoder.get("checkpoint_sha256") or f"none ({encoder.get('weights', 'unknown')} weights)"
    head = (
        f"{train.get('num_heads')} heads, {train.get('pool')} pooling over "
        f"{train.get('clips_per_video')} clips ({train.get('clip_choice')} choice)"
    )
    training = (
        f"{train.get('epochs')} epochs, batch {train.get('batch_size')}, lr "
        f"{train.get('lr')}, weight decay {train.get('weight_decay')}"
    )
    return {
        "Dataset": str(cache.get("dataset", NOT_RECORDED)),
        "Encoder": str(settings.get("encoder", NOT_RECORDED)),
        "Checkpoint sha256": str(sha),
        "Resolution": str(settings.get("resolution", NOT_RECORDED)),
        "Clip plan": str(plan),
        "Views": str(settings.get("views", NOT_RECORDED)),
        "Face crop": _face_crop(settings),
        "Store format": f"{_store(settings)} tokens [clips, views, {grid} tokens, "
        f"D = {cache.get('embed_dim', '?')}] in HDF5 shards",
        "Cache fingerprint": str(cache.get("fingerprint", NOT_RECORDED))[:16],
        "Probe": str(train.get("probe", NOT_RECORDED)),
        "Head": head,
        "Training": training,
        "Seeds": f"probe {train.get('seed')}, encoder {encoder.get('seed', '—')}",
        "Folds": " ".join(str(f) for f in config.get("folds", [])),
        "vjfer version": f"{config.get('vjfer_version', '?')} (tokens v"
        f"{settings.get('tokens_version', '?')})",
    }


def _store(settings: dict) -> str:
    """The cache's store format (vjfer.store); caches without one hold their `dtype` (float16)."""
    if "store_format" in settings:
        return str(settings["store_format"])
    return str(settings.get("dtype", "?"))


def settings_frame(runs: Sequence) -> pd.DataFrame:
    """One row per setting, one column per probe run (its folder name)."""
    columns = {run.path.name: _settings_column(read_run_config(run.path)) for run in runs}
    keys = list(dict.fromkeys(k for col in columns.values() for k in col))
    rows = [
        {"Setting": k, **{name: col.get(k, NOT_RECORDED) for name, col in columns.items()}}
        for k in keys
    ]
    return pd.DataFrame(rows, columns=["Setting", *columns])


def fold_frame(runs: Sequence, dataset_titles: dict[str, str]) -> pd.DataFrame:
    """One row per run and fold: test videos and UAR, WAR, macro precision per voting rule (%)."""
    rows = []
    for run in runs:
        for fold in run.summary["per_fold"]:
            row = {
                "Dataset": dataset_titles.get(run.dataset, run.dataset),
                "Run": run.path.name,
                "Fold": fold["fold"],
                "Test videos": fold["n_test_videos"],
            }
            for voting, vname in VOTING.items():
                for key, mname in METRIC_COLUMNS.items():
                    row[f"{vname} {mname}"] = percent(fold[voting].get(key))
            rows.append(row)
    return pd.DataFrame(rows)


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1, as fold summaries) of the defined values; NaN where none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return float("nan"), float("nan")
    std = float(np.std(kept, ddof=1)) if len(kept) > 1 else float("nan")
    return float(np.mean(kept)), std


def recall_frame(runs: Sequence, class_names_of, dataset_titles: dict[str, str]) -> pd.DataFrame:
    """One row per run and class: its test videos over all folds and its recall (%) per voting
    rule, mean ± sample std over the folds in which the class occurs. Recall is read off each
    fold's confusion matrix (diagonal / row sum), the matrix the figures draw. `class_names_of`:
    run -> its class names in label order (`results.run_class_names`)."""
    rows = []
    for run in runs:
        folds = [run.folds[k] for k in sorted(run.folds)]
        matrices = {
            v: [np.asarray(f[v]["confusion"], dtype=np.float64) for f in folds] for v in VOTING
        }
        support = np.sum([m.sum(axis=1) for m in matrices["pbv"]], axis=0)
        for k, name in enumerate(class_names_of(run)):
            row = {
                "Dataset": dataset_titles.get(run.dataset, run.dataset),
                "Run": run.path.name,
                "Class": name,
                "Videos": int(support[k]),
            }
            for voting, vname in VOTING.items():
                # A fold without videos of this class has no recall for it (NaN, left out).
                per_fold = [
                    100.0 * m[k, k] / m[k].sum() if m[k].sum() else float("nan")
                    for m in matrices[voting]
                ]
                row[f"{vname} recall"], row[f"{vname} recall std"] = _mean_std(per_fold)
            rows.append(row)
    return pd.DataFrame(rows)


def failures_frame(caches: Sequence, dataset_titles: dict[str, str]) -> pd.DataFrame:
    """One row per video a cache lists as failed (`Cache.failures`): dataset, video, reason."""
    rows = [
        {
            "Dataset": dataset_titles.get(c.dataset, c.dataset),
            "Cache": c.path.name,
            "Video": f["video_id"],
            "Reason": f["reason"],
        }
        for c in caches
        for f in c.failures
    ]
    return pd.DataFrame(rows, columns=["Dataset", "Cache", "Video", "Reason"])
