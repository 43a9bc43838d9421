"""What `vjfer index` shows: counts per class and fold (and actor, for the lab datasets), every
excluded item with its reason and fix, as text (`format_index_summary`), CSV or JSON (`index_json`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd

from vjfer.datasets.folds import ACTORS, actor_folds, fold_numbers
from vjfer.datasets.records import EXPECTED, HINTS, DatasetIndex
from vjfer.labels import class_names

SUMMARY_EXAMPLES = 3  # excluded files shown per reason on screen (all with --all / --csv)


def _classes(index: DatasetIndex) -> tuple[str, ...]:
    return index.classes or class_names(index.dataset)  # a list file's are its own


def _per_fold(index: DatasetIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_actor, per_fold): actors of the lab datasets' splits, else test/train per fold."""
    if index.dataset in ACTORS:
        folds = actor_folds(index.dataset, index.splits)
        by_actor = Counter(r.actor for r in index.records)
        per_actor = pd.DataFrame(
            [(a, folds[a], by_actor[a]) for a in sorted(folds)], columns=["actor", "fold", "videos"]
        )
        per_fold = (
            per_actor.assign(actors=per_actor["videos"] > 0, split_actors=1)
            .groupby("fold", as_index=False)[["actors", "split_actors", "videos"]]
            .sum()
        )
        return per_actor, per_fold
    by_fold = Counter(r.fold for r in index.records)
    rows = [(k, by_fold[k], len(index.records) - by_fold[k]) for k in fold_numbers(list(by_fold))]
    return pd.DataFrame(columns=["actor", "fold", "videos"]), pd.DataFrame(
        rows, columns=["fold", "videos", "train_videos"]
    )


def summarize(index: DatasetIndex) -> dict:
    """Totals and DataFrames `per_class`, `per_actor`, `per_fold`, `problems` of an index.

    Every class (and, for RAVDESS / CREMA-D, every actor of the splits) gets a row, so a missing
    one shows as 0 videos.
    """
    by_label = Counter(r.label for r in index.records)
    per_class = pd.DataFrame(
        [(i, name, by_label[i]) for i, name in enumerate(_classes(index))],
        columns=["label", "class", "videos"],
    )
    per_actor, per_fold = _per_fold(index)
    rows: dict[str, list] = {}
    for e in index.excluded:  # one row per reason, with the first file as example
        rows.setdefault(e.reason, [e.reason, 0, str(e.path), e.detail, HINTS[e.reason]])[1] += 1
    problems = pd.DataFrame(rows.values(), columns=["reason", "files", "example", "detail", "hint"])
    excluded = pd.DataFrame(
        [(str(e.path), e.reason, e.detail, HINTS[e.reason]) for e in index.excluded],
        columns=["path", "reason", "detail", "hint"],
    )
    return {
        "dataset": index.dataset,
        "root": str(index.root),
        "splits": index.splits,
        "videos": len(index.records),
        "actors": len({r.actor for r in index.records}),
        "excluded": len(index.excluded),
        "excluded_files": excluded,
        "per_class": per_class,
        "per_actor": per_actor,
        "per_fold": per_fold,
        "problems": problems.sort_values(
            "files", ascending=False, kind="stable", ignore_index=True
        ),
    }


def write_excluded_csv(summary: dict, path: str | Path) -> Path:
    """Every excluded file (path, reason, detail, hint) as CSV: what `vjfer index --csv` writes."""
    path = Path(path)
    summary["excluded_files"].to_csv(path, index=False)
    return path


def index_json(summary: dict) -> dict:
    """`{dataset, splits, videos, per_class, per_fold, excluded: [{path, reason, detail}]}`:
    what `vjfer index --json FILE` writes, so scripts can check a tree."""
    per_fold = {
        str(int(f["fold"])): {
            "test": int(f["videos"]),
            "train": int(f.get("train_videos", summary["videos"] - f["videos"])),
        }
        for _, f in summary["per_fold"].iterrows()
    }
    return {
        "dataset": summary["dataset"],
        "splits": summary["splits"],
        "videos": summary["videos"],
        "per_class": {c["class"]: int(c["videos"]) for _, c in summary["per_class"].iterrows()},
        "per_fold": per_fold,
        "excluded": [
            {"path": e.path, "reason": e.reason, "detail": e.detail}
            for e in summary["excluded_files"].itertuples()
        ],
    }


def write_index_json(summary: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(index_json(summary), indent=1) + "\n", encoding="utf-8")
    return path


def _fold_lines(s: dict) -> list[str]:
    if "actors" not in s["per_fold"]:
        return ["", f"per fold ({s['splits']} splits; test videos, the rest train):"] + [
            f"  fold {int(f['fold'])}: {int(f['videos']):>5} test, {int(f['train_videos']):>6} "
            "train"
            for _, f in s["per_fold"].iterrows()
        ]
    lines = ["", f"per fold ({s['splits']} splits; actor:videos; actors without videos left out):"]
    actors = s["per_actor"][s["per_actor"]["videos"] > 0]
    for _, f in s["per_fold"].iterrows():
        mine = actors[actors["fold"] == f["fold"]]
        counts = " ".join(f"{a}:{v}" for a, v in zip(mine["actor"], mine["videos"], strict=True))
        lines.append(
            f"  fold {f['fold']}: {f['videos']:>5} videos, "
            f"{f['actors']:>2}/{f['split_actors']} actors  {counts}"
        )
    return lines


def format_index_summary(summary: dict, show_all: bool = False) -> str:
    """Render `summarize`'s result as plain text (what `vjfer index` prints).

    Excluded files are listed by reason: the first SUMMARY_EXAMPLES of each (only counts for the
    expected audio-only / not-selected ones), or every one with `show_all`.
    """
    s = summary
    lines = [f"{s['dataset']} under {s['root']}"]
    lines += [f"{s['videos']} videos, {s['actors']} actors, {s['excluded']} files excluded", ""]
    lines += ["per class:"] + [
        f"  {c['label']:>2} {c['class']:<10} {c['videos']:>6}" for _, c in s["per_class"].iterrows()
    ]
    lines += _fold_lines(s)
    if len(s["problems"]):
        lines += ["", "excluded:"]
    files = s["excluded_files"]
    hidden = 0
    for _, p in s["problems"].iterrows():
        lines.append(f"  {p['files']:>5}  {p['reason']}: {p['hint']}")
        mine = files[files["reason"] == p["reason"]]
        shown = mine if show_all else mine.head(0 if p["reason"] in EXPECTED else SUMMARY_EXAMPLES)
        lines += [
            f"         {f.path}" + (f"  ({f.detail})" if f.detail else "")
            for f in shown.itertuples()
        ]
        if len(shown) < len(mine):
            lines.append(f"         ... {len(mine) - len(shown)} more")
            hidden += len(mine) - len(shown)
    if hidden:
        lines += [
            "",
            f"{hidden} excluded files not shown: `--all` lists every one, `--csv FILE` "
            "writes them with their reasons",
        ]
    return "\n".join(lines)
