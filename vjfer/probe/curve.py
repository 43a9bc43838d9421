"""A few-shot run's curve (`vjfer probe --shots 4,16,100` or `--train-fraction 0.1,0.5`):
summary.json's `few_shot` (per probe family and setting, UAR and WAR mean ± std over folds ×
draws) and its table in summary.md. Runs without a few-shot axis have neither."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from vjfer.probe.folds import EVERY_VIDEO, GridResult, Subset
from vjfer.probe.summary import summarise_folds
from vjfer.results import FewShotSummary, MeanStd, RunSummary
from vjfer.tables import format_percent

CURVE_FIGURE = "few_shot.png"  # UAR against shots (or fraction), drawn by `vjfer report`


def setting_of(subset: Subset) -> dict:
    """{"shots": N} or {"train_fraction": F}: a curve entry's few-shot setting."""
    shots, fraction = subset
    return {"shots": shots} if shots is not None else {"train_fraction": fraction}


def _picks(result: GridResult, family: str | None, subset: Subset) -> dict[tuple[int, int], str]:
    """(fold, seed) -> the head inner validation selects among `family`'s points of `subset` and
    that seed (the only one when the group has one point); folds whose chosen head failed are
    left out."""
    picks = {}
    for seed in dict.fromkeys(p.seed for p in result.grid):
        group = (family, subset, seed)
        names = [p.name for p in result.grid if (p.probe, p.subset, p.seed) == group]
        if not names:
            continue
        for k, name in result.select_among(names).items():
            if (k, name) in result.results:
                picks[(k, seed)] = name
    return picks


def few_shot_curve(result: GridResult, probe: str) -> list[FewShotSummary]:
    """summary.json's `few_shot`: per family (`probe`, the run's, when it has one) and few-shot
    setting, the scores over folds × draws; [] for a grid without a few-shot axis."""
    subsets = list(dict.fromkeys(p.subset for p in result.grid))
    if subsets == [EVERY_VIDEO]:
        return []
    entries = []
    families: list[str | None] = [*result.families()] or [None]
    for family, subset in itertools.product(families, subsets):
        picks = _picks(result, family, subset)
        if not picks:  # every head of the setting diverged
            continue
        keys = sorted(picks)
        metrics = [result.results[(k, picks[(k, s)])].metrics for k, s in keys]
        scores = summarise_folds(metrics)
        for row, (_, seed), m in zip(scores["per_fold"], keys, metrics, strict=True):
            row["seed"], row["n_train_videos"] = seed, m["n_train_videos"]
        short = [
            {"fold": k, "seed": s, "class": name, "available": n}
            for (k, s), m in zip(keys, metrics, strict=True)
            for name, n in m.get("few_shot", {}).get("short_classes", {}).items()
        ]
        entry = FewShotSummary(
            probe=family or probe,
            **setting_of(subset),
            seeds=sorted({s for _, s in keys}),
            selection={f"fold {k} seed {s}": picks[(k, s)] for k, s in keys},
            folds=sorted({k for k, _ in keys}),
            per_fold=scores["per_fold"],
            mean=scores["mean"],
        )
        if short:
            entry["short_classes"] = short
        entries.append(entry)
    return entries


def _cell(agg: MeanStd) -> str:
    std = "" if agg["std"] is None else f" ± {format_percent(agg['std'])}"
    return format_percent(agg["mean"]) + std


def setting_label(entry: FewShotSummary | dict) -> str:
    """ "16 shots" or "10 %" (a fraction of each class)."""
    if "shots" in entry:
        return f"{entry['shots']} shots"
    return f"{format_percent(entry['train_fraction'])} %"


def few_shot_lines(summary: RunSummary) -> str:
    """summary.md's few-shot table: per family and setting, PBV and MV UAR and WAR (mean ± std
    over folds × draws, %) and the classes that had fewer videos than the shots; "" otherwise."""
    if "few_shot" not in summary:
        return ""
    lines = [
        "",
        "Few-shot curve (each fold's training videos drawn per class by each seed, the test fold "
        "untouched; per fold and draw the head inner validation selects among the setting's "
        f"points; video level, mean ± std over folds × draws, %). Figure: {CURVE_FIGURE}.",
        "",
        "| family | setting | draws | mean training videos | PBV UAR | PBV WAR | MV UAR | MV WAR |",
        "|---" * 8 + "|",
    ]
    for e in summary["few_shot"]:
        cells = [_cell(e["mean"][v][m]) for v in ("pbv", "mv") for m in ("uar", "war")]
        n = [row["n_train_videos"] for row in e["per_fold"]]
        label = f"| {e['probe']} | {setting_label(e)} | {len(e['seeds'])} | {sum(n) / len(n):.1f} |"
        lines.append(f"{label} " + " | ".join(cells) + " |")
    short = [(e, s) for e in summary["few_shot"] for s in e.get("short_classes", [])]
    if short:
        named = sorted({(e["shots"], s["class"], s["available"]) for e, s in short})
        lines += [
            "",
            "Classes with fewer training videos than the shots (all taken): "
            + ", ".join(f"{c} ({n} of {shots} asked)" for shots, c, n in named)
            + ".",
        ]
    return "\n".join(lines) + "\n"


def curve_points(entries: Sequence[FewShotSummary | dict], voting: str = "pbv") -> dict:
    """family -> [(x, mean UAR, std UAR)] in the order given (x: shots, or the fraction in %),
    for a figure or a table."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for e in entries:
        x = e["shots"] if "shots" in e else 100 * e["train_fraction"]
        agg = e["mean"][voting]["uar"]
        out.setdefault(e["probe"], []).append((float(x), agg["mean"], agg["std"] or 0.0))
    return out
