"""A probe run on disk: train every fold of a cache and write what each fold produced.

`run_probe` opens a cache, checks it is the one asked for, and calls `train_folds`, which trains and
evaluates each fold (`vjfer.probe.train.train_fold`) and writes the run directory:

    config.json  summary.json  summary.md (Table II layout)
    fold-K/  probe.pt (self-describing)  config.json  clip_predictions.csv  video_predictions.csv
             metrics.json  confusion.csv (PBV)  confusion_mv.csv  confusion_clip.csv
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

import vjfer
from vjfer.cache import open_cache
from vjfer.errors import CacheError, ConfigError
from vjfer.labels import check_dataset
from vjfer.probe.evaluate import format_summary, summarise_folds
from vjfer.probe.model import probe_checkpoint
from vjfer.probe.train import FoldResult, TrainConfig, check_folds, train_fold

log = logging.getLogger(__name__)


def config_dict(config: TrainConfig) -> dict:
    """asdict(config) with JSON types (betas as a list)."""
    out = asdict(config)
    out["betas"] = list(config.betas)
    return out


def cache_description(cache) -> dict:
    """What a run records about the cache it read (enough to refuse a different one later)."""
    return {"path": str(cache.path), "dataset": cache.dataset, "fingerprint": cache.fingerprint,
            "settings": cache.settings, "grid": list(cache.grid), "embed_dim": cache.embed_dim,
            "num_views": cache.num_views}  # fmt: skip


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


def _confusion_frame(matrix: list[list[int]], names) -> pd.DataFrame:
    frame = pd.DataFrame(matrix, index=list(names), columns=list(names))
    frame.index.name = "truth\\predicted"
    return frame


def write_fold(result: FoldResult, directory: Path, cache, config: TrainConfig) -> None:
    """Write fold-K/: probe.pt, config.json, clip_predictions.csv, video_predictions.csv,
    metrics.json, confusion.csv (PBV), confusion_mv.csv, confusion_clip.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(cache.class_names)
    meta = {
        "probe": config.probe, "embed_dim": cache.embed_dim, "num_classes": len(names),
        "num_heads": config.num_heads, "class_names": names, "dataset": cache.dataset,
        "fold": result.fold, "config": config_dict(config), "cache": cache_description(cache),
        "encoder": cache.settings.get("encoder"), "vjfer_version": vjfer.__version__,
    }  # fmt: skip
    torch.save(probe_checkpoint(result.probe, meta), directory / "probe.pt")
    _write_json(directory / "config.json", {k: v for k, v in meta.items() if k != "class_names"})
    result.clips.to_csv(directory / "clip_predictions.csv", index=False, float_format="%.6g")
    result.videos.to_csv(directory / "video_predictions.csv", index=False, float_format="%.6g")
    _write_json(directory / "metrics.json", {**result.metrics, "history": result.history})
    for voting, suffix in (("pbv", ""), ("mv", "_mv"), ("clip", "_clip")):
        frame = _confusion_frame(result.metrics[voting]["confusion"], names)
        frame.to_csv(directory / f"confusion{suffix}.csv")


def train_folds(cache, folds: Sequence[int], config: TrainConfig, out_dir: str | Path,
                progress: bool = True) -> dict:  # fmt: skip
    """Train and evaluate each fold, writing `out_dir/fold-K/` per fold and `config.json`,
    `summary.json`, `summary.md` in `out_dir`. Returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_folds(cache)
    run = {"train": config_dict(config), "folds": list(folds), "cache": cache_description(cache),
           "vjfer_version": vjfer.__version__}  # fmt: skip
    _write_json(out_dir / "config.json", run)
    fold_metrics = []
    for k in folds:
        result = train_fold(cache, k, config, progress=progress)
        write_fold(result, out_dir / f"fold-{k}", cache, config)
        fold_metrics.append(result.metrics)
        log.info("fold %d: PBV UAR %.4f WAR %.4f", k, result.metrics["pbv"]["uar"],
                 result.metrics["pbv"]["war"])  # fmt: skip
    summary = {"dataset": cache.dataset, "probe": config.probe, "cache_fingerprint": cache.fingerprint,
               **summarise_folds(fold_metrics)}  # fmt: skip
    _write_json(out_dir / "summary.json", summary)
    (out_dir / "summary.md").write_text(format_summary(summary), encoding="utf-8")
    return summary


def resolve_folds(cache, folds: str | int | Sequence[int]) -> list[int]:
    """ "all" -> every fold the cache holds (sorted); an int or ints -> checked against them."""
    present = sorted(int(f) for f in cache.videos["fold"].unique())
    if folds == "all":
        return present
    wanted = [int(folds)] if isinstance(folds, (int, str)) else [int(k) for k in folds]
    if missing := [k for k in wanted if k not in present]:
        raise ConfigError(f"fold(s) {missing} not in cache {cache.path}; it holds folds {present}")
    return wanted


def run_probe(cache_path: str | Path, folds: str | int | Sequence[int], config: TrainConfig,
              out_dir: str | Path, *, dataset: str | None = None, fingerprint: str | None = None,
              progress: bool = True) -> Path:  # fmt: skip
    """Open a cache, refuse it if its dataset or fingerprint (a prefix suffices) is not the one
    asked for, train and evaluate `folds` ("all", K or [K, ...]) into `out_dir`; returns out_dir."""
    cache = open_cache(cache_path)
    if dataset is not None and check_dataset(dataset) != cache.dataset:
        raise CacheError(
            f"cache {cache.path} holds {cache.dataset}, asked for {check_dataset(dataset)}"
        )
    if fingerprint is not None and not cache.fingerprint.startswith(fingerprint):
        raise CacheError(
            f"cache {cache.path} has fingerprint {cache.fingerprint[:12]}…, asked for {fingerprint}"
        )
    train_folds(cache, resolve_folds(cache, folds), config, out_dir, progress=progress)
    return Path(out_dir)
