"""leaderboard.html: `vjfer bench`'s table, each dataset's protocol and two figures of UAR against
cost (cache bytes per clip, encoder GFLOPs per clip) as one self-contained page, laid out by
`vjfer.report_html` like report.html. `vjfer.bench` decides the content.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import vjfer
from vjfer.figures import cost_figure
from vjfer.report_html import PageFigure, Section, write_page
from vjfer.tables import Table, render_html

HOW_TO_READ = [
    "Each row is one encoder (its training family, size and cost), one stored layer and one "
    "probe family: attentive (cross-attention pooling), linear (on mean-pooled tokens) or k-NN "
    "(training-free). Each dataset's columns give video-level UAR (balanced accuracy: every "
    "emotion counts equally) and WAR (plain accuracy) in percent, mean ± sample std over the "
    "dataset's folds; the line under a figure is its 95 % bootstrap interval over every fold's "
    "test videos pooled (by actor where the dataset has actors).",
    "Two numbers compare only under the same protocol: each column's is stated under the table. "
    "A dash: that encoder has no run on that dataset, or its sizes are not known.",
]

# (file stem, the entry's cost key, x label, title)
FIGURES = (
    ("uar_vs_cache_bytes", "bytes_per_clip", "cache bytes per clip", "UAR against cache size"),
    ("uar_vs_gflops", "gflops", "encoder GFLOPs per clip", "UAR against encoder compute"),
)


def cost_points(entries: Sequence, key: str) -> list[dict]:
    """The entries with a known cost `key` and a UAR, as `figures.cost_figure` points (percent)."""
    points = []
    for e in entries:
        cost, uar = e.costs.get(key), (e.mean.get("uar") or {}).get("mean")
        if cost is None or uar is None:
            continue
        low, high = e.intervals.get("uar", (float("nan"), float("nan")))
        points.append(
            {
                "x": float(cost),
                "uar": 100 * uar,
                "low": 100 * low,
                "high": 100 * high,
                "encoder": e.encoder if e.layer == "output" else f"{e.encoder}, {e.layer}",
                "dataset": e.dataset,
                "probe": e.probe,
            }
        )
    return points


def _figures(entries: Sequence, out: Path) -> tuple[list[PageFigure], list[str]]:
    """The cost figures drawn (PNG under out/figures/) and a line for each one not drawn."""
    drawn, missing = [], []
    for stem, key, xlabel, title in FIGURES:
        points = cost_points(entries, key)
        if not points:
            missing.append(f"{title}: no entry with a known {xlabel}")
            continue
        path = cost_figure(points, xlabel, title, out / "figures" / f"{stem}.png")
        drawn.append(PageFigure(f"{title}: UAR (PBV) against {xlabel}, 95 % intervals", path))
    return drawn, missing


def write_leaderboard_page(
    table: Table, entries: Sequence, protocols: dict[str, str], out: Path
) -> Path:
    """out/leaderboard.html (`protocols`: each column's, `bench.column_protocols`); the figures
    it embeds go to out/figures/."""
    figures, missing = _figures(entries, out)
    datasets = dict.fromkeys(e.dataset for e in entries)
    sections = [
        Section("leaderboard", "Leaderboard", tables=[render_html(table)]),
        Section("protocols", "Protocols", items=[f"{t}: {p}." for t, p in protocols.items()]),
        Section("cost", "UAR against cost", figures=figures, items=missing),
    ]
    lead = (
        f"{len({(e.encoder, e.layer) for e in entries})} encoder/layer(s) × "
        f"{len({e.probe for e in entries})} probe families × {len(datasets)} dataset(s): "
        f"{', '.join(datasets)}."
    )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"vjfer {vjfer.__version__} · vjfer bench · {stamp}"
    return write_page(
        out / "leaderboard.html", "vjfer leaderboard", lead, sections, footer, HOW_TO_READ
    )
