"""A run's summary: the folds' scores and their mean ± std (`summarise_folds`, a table of numbers)
and its Markdown in the paper's Table II layout (`format_run_summary`, the rendering)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from vjfer import metrics
from vjfer.probe.evaluate import VIDEO_VOTINGS, VOTINGS
from vjfer.probe.layer import CONCAT, layer_label
from vjfer.results import FoldsSummary, RunSummary, fold_value
from vjfer.tables import METRIC_COLUMNS, format_percent

_VOTING_NAMES = {"pbv": "PBV", "mv": "MV", "clip": "clip"}
_METRIC_NAMES = {
    "uar": "UAR",
    "war": "WAR",
    "macro_precision": "macro precision",
    "macro_f1": "macro F1",
}


def summarise_folds(fold_metrics: Sequence[Mapping[str, Any]]) -> FoldsSummary:
    """Per-fold scalar metrics and their mean ± std (`metrics.fold_summary`) from each fold's
    `metrics.json` content (`results.FoldMetrics`): the `results.RunSummary` fields folds,
    per_fold and mean."""
    per_fold = [
        {
            "fold": m["fold"],
            "n_test_videos": m["n_test_videos"],
            **{v: {s: m[v][s] for s in metrics.SCALAR_METRICS} for v in VOTINGS},
            "mv_tie_fraction": m["mv"].get("tie_fraction"),
        }
        for m in fold_metrics
    ]
    mean = metrics.fold_summary([{v: f[v] for v in VOTINGS} for f in per_fold])
    return cast(
        FoldsSummary, {"folds": [f["fold"] for f in per_fold], "per_fold": per_fold, "mean": mean}
    )


def _mean_cell(agg: Mapping[str, Any]) -> str:
    """A table cell "mean ± std" in % of one metric over folds (no std for one fold)."""
    std = "" if agg["std"] is None else f" ± {format_percent(agg['std'])}"
    return format_percent(agg["mean"]) + std


def _mean_cells(by_metric: dict) -> str:
    """Table cells "mean ± std" in % for each metric of `_METRIC_NAMES`."""
    return " | ".join(_mean_cell(by_metric[s]) for s in _METRIC_NAMES)


LAYER_FIGURE = "layers.png"  # UAR against depth, beside summary.md (`vjfer probe`, `vjfer report`)
LAYER_NOTE = (
    "Test-fold scores of one head per stored encoder layer at one lr, weight decay and "
    "seed (the reported head's unless another point has more layers): a study of which "
    "depth carries the signal. Choosing a layer "
    "by these numbers selects on the test folds; the valid choice is the selected head "
    "(inner validation)."
)


def _layer_lines(summary: RunSummary) -> list[str]:
    """summary.md's per-layer table (UAR and WAR per voting, mean ± std over folds), if any."""
    if "layers" not in summary:
        return []
    cols = [(v, s) for v in VIDEO_VOTINGS for s in ("uar", "war")]
    lines = [
        "",
        "Per layer. " + LAYER_NOTE + f" Figure: {LAYER_FIGURE}.",
        "",
        "| layer | " + " | ".join(f"{_VOTING_NAMES[v]} {_METRIC_NAMES[s]}" for v, s in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for entry in summary["layers"]:
        layer = entry["layer"]
        name = "concat (every stored layer)" if layer == CONCAT else layer_label(layer, None)
        cells = [_mean_cell(entry["mean"][v][s]) for v, s in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def format_run_summary(summary: RunSummary) -> str:
    """Markdown in the paper's Table II layout (UAR, WAR, macro precision per voting, mean ± std
    over folds, in %), then one row per fold."""
    head = f"# {summary.get('dataset', '')} · {summary.get('probe', '')} probe"
    lines = [
        head.rstrip(" ·"),
        "",
        f"Folds {', '.join(map(str, summary['folds']))}"
        + (f" ({summary['splits']} splits)" if "splits" in summary else "")
        + "; mean ± sample std (ddof 1) over folds, in %. "
        "Macro precision is what the paper's tables call UAR.",
        "",
        "| voting | " + " | ".join(_METRIC_NAMES.values()) + " |",
        "|---" * (len(_METRIC_NAMES) + 1) + "|",
    ]
    for v in VOTINGS:
        lines.append(f"| {_VOTING_NAMES[v]} | {_mean_cells(summary['mean'][v])} |")
    if "coverage" in summary:
        lines += ["", f"Coverage: {summary['coverage']}."]
    if "head" in summary:
        lines += [
            "",
            f"Reported head: {summary['head']} (the reference default when a grid was trained).",
        ]
    if "selected" in summary:
        chosen = summary["selected"]
        picks = ", ".join(f"fold {k}: {h}" for k, h in chosen["selection"].items())
        lines += [
            "",
            "Selected head (chosen per fold on an inner validation fold of the training "
            f"actors, never on the test fold): {picks}.",
            "",
            "| voting | " + " | ".join(_METRIC_NAMES.values()) + " |",
            "|---" * (len(_METRIC_NAMES) + 1) + "|",
        ]
        for v in ("pbv", "mv"):
            lines.append(
                f"| {_VOTING_NAMES[v]} (selected head) | {_mean_cells(chosen['mean'][v])} |"
            )
    lines += _layer_lines(summary)
    cols = [(v, s) for v in ("pbv", "mv") for s in METRIC_COLUMNS]
    lines += [
        "",
        "| fold | videos | "
        + " | ".join(f"{_VOTING_NAMES[v]} {_METRIC_NAMES[s]}" for v, s in cols)
        + " |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for f in summary["per_fold"]:
        cells = [format_percent(fold_value(f, v, s)) for v, s in cols]
        lines.append(f"| {f['fold']} | {f['n_test_videos']} | " + " | ".join(cells) + " |")
    ties = [
        (f["fold"], f["mv_tie_fraction"])
        for f in summary["per_fold"]
        if f.get("mv_tie_fraction") is not None
    ]
    if ties:
        lines += [
            "",
            "MV ties (test videos whose clip votes tie; MV then takes the lowest class "
            "index): " + ", ".join(f"fold {k}: {format_percent(t)} %" for k, t in ties) + ".",
        ]
    return "\n".join(lines) + "\n"
