"""Classification metrics for expression recognition, and their aggregation over folds.

UAR (mean per-class recall) and WAR (accuracy) are the field's standard figures. The reference's
script divides TP by TP + FP, so the paper's "UAR" is macro precision, reported here under its own
name (`macro_precision`). Labels and predictions are class indices; confusion rows = truth. `uar`
averages over the classes in `y_true`; `macro_precision` and `macro_f1` over those in `y_true` or
`y_pred` (sklearn's default; a class never predicted has precision 0).

Everything is computed from the confusion matrix with numpy, to the bit what sklearn.metrics gives
(tests/test_metrics.py compares them): sklearn's input checks cost ~40 ms a call, and a run scores
every fold, voting rule and grid point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[int] | np.ndarray

# Scalar metrics every evaluation reports, in the order tables show them.
SCALAR_METRICS = ("uar", "war", "macro_precision", "macro_f1")


def _check(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of one length; got {t.shape} and {p.shape}"
        )
    if t.size == 0:
        raise ValueError("no samples to score")
    return t, p


def uar(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Unweighted average recall: mean recall over the classes in `y_true`."""
    t, p = _check(y_true, y_pred)
    classes = np.unique(t)
    # Recall per class in the truth; a prediction of a class absent from the truth is an error for
    # the true class, never a class of its own (sklearn's balanced accuracy warns about it).
    return float(np.mean([np.mean(p[t == c] == c) for c in classes]))


def war(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Weighted average recall, i.e. accuracy."""
    t, p = _check(y_true, y_pred)
    return float(np.mean(t == p))


def _seen_counts(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, predicted and true counts (float64) of each class seen in `t` or `p`: the
    one group of `_group_counts` (exact integers, so the bootstrap's counts are the same)."""
    true, pred, tp = _group_counts(t, p, np.zeros(len(t), dtype=np.int64))
    return tp[0], pred[0], true[0]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    return numerator / np.where(denominator == 0, 1.0, denominator)


def macro_precision(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean precision TP / (TP + FP) over classes seen in truth or predictions (the paper's
    "UAR")."""
    tp, predicted, _ = _seen_counts(*_check(y_true, y_pred))
    return float(np.mean(_ratio(tp, predicted)))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean F1 = 2·TP / (true + predicted) over classes seen in truth or predictions."""
    tp, predicted, true = _seen_counts(*_check(y_true, y_pred))
    return float(np.mean(_ratio(2.0 * tp, true + predicted)))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts int64 [C, C], rows = truth, columns = prediction, every class 0..C-1 in order."""
    t, p = _check(y_true, y_pred)
    if max(t.max(), p.max()) >= num_classes or min(t.min(), p.min()) < 0:
        raise ValueError(f"class indices must lie in [0, {num_classes}); got {t.min()}..{t.max()}")
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def per_class_recall(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Recall per class, float [C]; NaN for a class absent from `y_true`."""
    cm = confusion(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict:
    """The scalar metrics plus per-class recall (None where undefined) and sample count;
    JSON-able."""
    recall = per_class_recall(y_true, y_pred, num_classes)
    return {
        "uar": uar(y_true, y_pred),
        "war": war(y_true, y_pred),
        "macro_precision": macro_precision(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "per_class_recall": [None if math.isnan(r) else float(r) for r in recall],
        "n": len(y_true),
    }


def fold_summary(per_fold: list[dict]) -> dict:
    """Mean and standard deviation over folds of every numeric scalar the folds share.

    The std is the sample standard deviation (ddof=1; numpy's default ddof=0 would understate the
    spread of five folds); it is None for a single fold. Nested dicts (e.g. {"pbv": {...}}) are
    summarised recursively; lists and strings are skipped.

    Returns:
        the same nesting, each scalar replaced by {"mean", "std", "n", "values"}.
    """
    if not per_fold:
        raise ValueError("no folds to summarise")
    out: dict = {}
    for key, first in per_fold[0].items():
        if not all(key in fold for fold in per_fold):
            continue
        if isinstance(first, dict):
            out[key] = fold_summary([fold[key] for fold in per_fold])
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            values = [float(fold[key]) for fold in per_fold]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            out[key] = {
                "mean": float(np.mean(values)),
                "std": std,
                "n": len(values),
                "values": values,
            }
    return out


def pooled_metrics(parts: Sequence[tuple[ArrayLike, ArrayLike]]) -> dict[str, float]:
    """UAR, WAR and macro precision of several folds' predictions pooled into one set.

    Each part is one fold's (y_true, y_pred) over its test videos. The fold mean weights every fold
    alike; pooling weights every video alike (what the SVFAP paper reports), so with folds of
    unequal size or class mix the two differ.
    """
    if not parts:
        raise ValueError("no folds to pool")
    checked = [_check(t, p) for t, p in parts]
    t = np.concatenate([c[0] for c in checked])
    p = np.concatenate([c[1] for c in checked])
    return {"uar": uar(t, p), "war": war(t, p), "macro_precision": macro_precision(t, p)}


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals: the test videos resampled by the groups folds keep apart.

INTERVAL_METRICS = SCALAR_METRICS  # what `bootstrap_scores` computes per resample
BOOTSTRAP_BLOCK = 100  # resamples drawn at once


def _group_counts(t: np.ndarray, p: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per group and class: true, predicted and correct counts, float64 [G, K] each (classes are
    those seen in `t` or `p`, in sorted order)."""
    classes = np.union1d(t, p)
    ti, pi = np.searchsorted(classes, t), np.searchsorted(classes, p)
    _, gi = np.unique(g, return_inverse=True)
    G, K = int(gi.max()) + 1, len(classes)

    def counts(cls: np.ndarray, where: np.ndarray) -> np.ndarray:
        flat = np.bincount(gi[where] * K + cls[where], minlength=G * K)
        return flat.reshape(G, K).astype(np.float64)

    everything = np.ones(len(t), dtype=bool)
    return counts(ti, everything), counts(pi, everything), counts(ti, ti == pi)


def _scores_from_counts(true: np.ndarray, pred: np.ndarray, tp: np.ndarray) -> dict:
    """Every metric of `INTERVAL_METRICS` per row of class counts [R, K], as the scalar functions
    above define them: UAR over the classes in the truth; macro precision and F1 over the classes
    in the truth or the predictions (0 where a class has no prediction)."""
    in_truth, seen = true > 0, (true + pred) > 0
    recall = np.where(in_truth, tp / np.where(in_truth, true, 1.0), 0.0)
    precision = tp / np.where(pred == 0, 1.0, pred)
    f1 = 2.0 * tp / np.where(seen, true + pred, 1.0)
    return {
        "uar": recall.sum(axis=1) / in_truth.sum(axis=1),
        "war": tp.sum(axis=1) / true.sum(axis=1),
        "macro_precision": np.where(seen, precision, 0.0).sum(axis=1) / seen.sum(axis=1),
        "macro_f1": np.where(seen, f1, 0.0).sum(axis=1) / seen.sum(axis=1),
    }


def bootstrap_scores(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """metric -> its value on each of `resamples` bootstrap resamples, float64 [R].

    A resample draws as many groups as there are, with replacement, and takes every sample of each
    group drawn (as often as it was drawn): a cluster bootstrap, so that videos of one actor, which
    share the actor's face, count as one draw. `groups=None` makes every sample its own group.
    Vectorised: the draws are counted per group ([R, G]) and multiplied into per-group class
    counts ([G, K]), so 1000 resamples cost two small matrix products, not 1000 metric calls.
    """
    t, p = _check(y_true, y_pred)
    g = np.arange(len(t)) if groups is None else np.asarray(groups)
    if g.shape != t.shape:
        raise ValueError(f"groups must have one entry per sample; got {g.shape} for {t.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1; got {resamples}")
    true, pred, tp = _group_counts(t, p, g)
    G, rng = len(true), np.random.default_rng(seed)
    sums: list[list[np.ndarray]] = [[], [], []]
    # resamples drawn in blocks of a fixed size (memory ~ BLOCK x G whatever the data; the draws,
    # hence the bytes, depend only on the seed and the count)
    for start in range(0, resamples, BOOTSTRAP_BLOCK):
        R = min(BOOTSTRAP_BLOCK, resamples - start)
        draws = rng.integers(0, G, size=(R, G))
        rows = np.repeat(np.arange(R), G) * G + draws.ravel()
        weight = np.bincount(rows, minlength=R * G).reshape(R, G).astype(np.float64)
        for total, counts in zip(sums, (true, pred, tp), strict=True):
            total.append(weight @ counts)
    return _scores_from_counts(*(np.concatenate(total) for total in sums))


def bootstrap_intervals(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """metric -> the percentile bootstrap interval (low, high) at `level`, every metric of
    `INTERVAL_METRICS` from the one set of resamples (`bootstrap_scores`)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    scores = bootstrap_scores(y_true, y_pred, groups, resamples=resamples, seed=seed)
    bounds = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
    out = {}
    for metric, values in scores.items():
        low, high = np.quantile(values, bounds)
        out[metric] = (float(low), float(high))
    return out


def bootstrap_interval(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike | None = None,
    metric: str = "uar",
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """The percentile bootstrap interval (low, high) of `metric` at `level` (`bootstrap_scores`:
    resampled by `groups`, else by sample).

    Degenerate inputs give a defined answer, not an error: with one group every resample is the
    data itself, so the interval is the point estimate twice; with one class UAR is that class's
    recall in every resample. Empty inputs raise ValueError (as every metric here does).
    """
    if metric not in INTERVAL_METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(INTERVAL_METRICS)}")
    return bootstrap_intervals(y_true, y_pred, groups, resamples=resamples, seed=seed, level=level)[
        metric
    ]
