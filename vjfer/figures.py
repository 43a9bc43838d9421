"""Figures (PNG) of vjfer's results: confusion matrices, the paper's Figure 5 PCA, emotion
timelines.

Drawn with matplotlib's object API on an Agg canvas, never pyplot, so no global figure state is left
behind and the functions are safe in any process. `vjfer.report` decides what to draw and where.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.decomposition import PCA

from vjfer.timeline import TimelinePanel

FIG_DPI = 200  # sharp at paper column width
TIMELINE_DPI = 130  # several panels per figure: large enough without doubling the file


Draw = TypeVar("Draw", bound=Callable)


def _plain_text(draw: Draw) -> Draw:
    """Draw with every label as plain text: a class label holding `$` (a list file's, say) is not
    matplotlib mathtext, which would refuse `a$b` when the figure is saved."""

    @functools.wraps(draw)
    def plain(*args, **kwargs):
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return plain  # type: ignore[return-value]


def _save(fig: Figure, path: Path, dpi: int = FIG_DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)  # attach an Agg canvas: no pyplot, nothing global to close
    fig.savefig(path, dpi=dpi)  # constrained layout already fits the labels
    return path


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows = truth); an empty row stays 0."""
    m = np.asarray(matrix, dtype=np.float64)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


@_plain_text
def confusion_figure(
    matrix: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: Path,
    *,
    predicted_names: Sequence[str] | None = None,
) -> Path:
    """PNG of a confusion matrix of counts [C_true, C_pred] (rows = truth), row-normalised.

    Each cell shows the fraction of its true class (colour scale 0..1); each row label shows the
    class's video count; an empty row shows dashes. `predicted_names` names the columns when they
    differ from the rows (a cross-dataset matrix before calm handling).
    """
    m = np.asarray(matrix, dtype=np.float64)
    rows, cols = m.shape
    row_names = list(class_names)
    col_names = list(predicted_names) if predicted_names is not None else row_names
    if len(row_names) != rows or len(col_names) != cols:
        raise ValueError(
            f"{len(row_names)} true and {len(col_names)} predicted class names "
            f"for a {rows}x{cols} matrix"
        )
    norm, support = row_normalise(m), m.sum(axis=1)
    size = 1.0 + 0.62 * max(rows, cols)
    fig = Figure(figsize=(size + 1.4, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(rows):
        for j in range(cols):
            text = f"{norm[i, j]:.2f}" if support[i] > 0 else "—"
            color = "white" if norm[i, j] > 0.55 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    ax.set_xticks(range(cols), col_names, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(rows), [f"{n} ({int(s)})" for n, s in zip(row_names, support, strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (videos)")
    ax.set_title(title, fontsize=11)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("fraction of the true class")
    return _save(fig, path)


@_plain_text
def pca_figure(
    mean_pooled: np.ndarray,
    probe_pooled: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    title: str,
    path: Path,
    *,
    probe_name: str = "attentive probe",
) -> Path:
    """The paper's Figure 5: 2-D PCA, coloured by class (`labels` [n]), of the mean-pooled encoder
    tokens [n, D] and of the probe's pooled output [n, D'] per video, side by side."""
    labels = np.asarray(labels)
    palette = [f"C{i}" for i in range(10)]
    fig = Figure(figsize=(11.0, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    panels = (
        ("mean-pooled encoder tokens", mean_pooled),
        (f"{probe_name}, pooled output", probe_pooled),
    )
    for ax, (name, x) in zip(axes, panels, strict=True):
        x = np.asarray(x, dtype=np.float64)
        pca = PCA(n_components=2, random_state=0)
        xy = pca.fit_transform(x)
        for k, cname in enumerate(class_names):
            sel = labels == k
            if sel.any():
                ax.scatter(
                    xy[sel, 0],
                    xy[sel, 1],
                    s=16,
                    alpha=0.8,
                    color=palette[k % 10],
                    label=cname,
                    edgecolors="none",
                )
        ratio = pca.explained_variance_ratio_ * 100
        ax.set_xlabel(f"PC 1 ({ratio[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({ratio[1]:.1f}% of variance)")
        ax.set_title(f"{name} (D = {x.shape[1]})", fontsize=11)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", title="class", markerscale=1.6)
    fig.suptitle(title, fontsize=12)
    return _save(fig, path)


def _timeline_panel(ax, panel: TimelinePanel, names: list[str], colours: list[str], t_max: float):
    """One video's panel of `timeline_axes`."""
    t, probs = np.asarray(panel.seconds, float), np.asarray(panel.probs, float)
    if probs.shape != (len(t), len(names)):
        raise ValueError(f"{panel.title!r}: probs {probs.shape}, expected ({len(t)}, {len(names)})")
    for k, name in enumerate(names):
        bold = k == panel.pbv
        ax.plot(
            t,
            probs[:, k],
            color=colours[k],
            lw=2.6 if bold else 1.1,
            marker="o",
            ms=3.5 if bold else 2.2,
            alpha=1.0 if bold else 0.75,
            label=name,
            zorder=3 if bold else 2,
        )
    votes = [colours[k] for k in probs.argmax(axis=1)]
    ax.scatter(t, np.full(len(t), 1.07), c=votes, marker="s", s=14, clip_on=False, zorder=4)
    yx = ax.get_yaxis_transform()  # x in axes fractions, y in data
    ax.text(
        0.0, 1.07, "clip votes ", transform=yx, ha="right", va="center", fontsize=7, color="0.35"
    )
    marks = ["PBV", "MV"] if panel.pbv != panel.mv else ["PBV = MV"]
    for mark, k in zip(marks, [panel.pbv, panel.mv], strict=False):
        ax.annotate(
            f" {mark}: {names[k]}",
            (t[-1], probs[-1, k]),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color=colours[k],
            fontweight="bold",
            annotation_clip=False,
        )
    # One time scale for every panel, from the video's start, with room for the labels.
    ax.set_xlim(0.0, 1.35 * t_max + 0.1)
    ax.set_ylim(0.0, 1.12)
    ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("time in the video (s, clip centre)")
    ax.set_ylabel("probability")
    ax.set_title(panel.title, fontsize=9, loc="left")
    ax.grid(alpha=0.3)


def timeline_axes(
    panels: Sequence[TimelinePanel], class_names: Sequence[str], title: str | None = None
) -> Figure:
    """The figure `timeline_figure` saves (tests read its labels): one panel per video, 2 columns
    from 2 videos on, each class a line of probability against the clip centre in seconds. The PBV
    class is drawn bold and both decisions are named at the line's end; the clips' own argmaxes
    (the votes MV counts) are the coloured ticks along the top."""
    if not panels:
        raise ValueError("no timeline panels to draw")
    names = list(class_names)
    colours = [f"C{k % 10}" for k in range(len(names))]
    cols = 1 if len(panels) == 1 else 2
    rows = -(-len(panels) // cols)
    height = 3.0 * rows + (0.4 if title else 0)
    fig = Figure(figsize=(5.0 * cols + 1.6, height), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    t_max = max(float(np.max(p.seconds)) for p in panels)
    for ax, panel in zip(axes, panels, strict=False):
        _timeline_panel(ax, panel, names, colours, t_max)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    # Legend from plain proxies: the panels' own lines are bold for their PBV class.
    handles = [Line2D([], [], color=c, lw=1.6, marker="o", ms=3) for c in colours]
    fig.legend(handles, names, loc="outside right center", title="class")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


@_plain_text
def timeline_figure(
    panels: Sequence[TimelinePanel],
    class_names: Sequence[str],
    path: Path,
    *,
    title: str | None = None,
) -> Path:
    """PNG of emotion timelines (`timeline_axes`), one panel per video."""
    return _save(timeline_axes(panels, class_names, title), path, dpi=TIMELINE_DPI)


@_plain_text
def layer_figure(layers: Sequence[Mapping], title: str, path: Path) -> Path:
    """PNG of UAR against encoder depth (`summary.json`'s `layers`, one entry per layer): per
    voting rule the mean over folds with the sample std as error bars and each fold as a dot;
    a `concat` head (every stored layer) is a dashed line across, its std shaded."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    blocks = [e for e in layers if e["layer"] != "concat"]
    x = np.array([int(e["layer"]) for e in blocks])
    for n, (voting, name) in enumerate((("pbv", "PBV"), ("mv", "MV"))):
        colour, shift = f"C{n}", 0.06 * (2 * n - 1)  # the two rules side by side, not on top
        means = [100 * e["mean"][voting]["uar"]["mean"] for e in blocks]
        stds = [100 * (e["mean"][voting]["uar"]["std"] or 0.0) for e in blocks]
        label = f"{name} UAR, mean ± std over folds"
        ax.errorbar(x + shift, means, yerr=stds, color=colour, marker="o", capsize=4, label=label)
        for xi, e in zip(x, blocks, strict=True):
            folds = 100 * np.asarray(e["mean"][voting]["uar"]["values"], dtype=float)
            ax.scatter(np.full(len(folds), xi + shift), folds, color=colour, s=10, alpha=0.45)
        for e in (e for e in layers if e["layer"] == "concat"):
            agg = e["mean"][voting]["uar"]
            mean, std = 100 * agg["mean"], 100 * (agg["std"] or 0.0)
            ax.axhline(mean, color=colour, ls="--", lw=1, label=f"{name} UAR, concat of the layers")
            ax.axhspan(mean - std, mean + std, color=colour, alpha=0.08)
    ax.set_xticks(x)
    ax.set_xlabel("encoder block (0-based, as `vjfer cache info` prints it)")
    ax.set_ylabel("UAR (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


@_plain_text
def few_shot_figure(curve: Sequence[Mapping], title: str, path: Path) -> Path:
    """PNG of PBV UAR against the few-shot setting (`summary.json`'s `few_shot`): per probe family
    the mean over folds × draws with the sample std as error bars and each fold and draw as a dot;
    shots on a log axis, fractions in %."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    shots = all("shots" in e for e in curve)
    families = list(dict.fromkeys(e["probe"] for e in curve))
    for n, family in enumerate(families):
        entries = [e for e in curve if e["probe"] == family]
        x = np.array([e["shots"] if shots else 100 * e["train_fraction"] for e in entries], float)
        order = np.argsort(x)
        aggs = [e["mean"]["pbv"]["uar"] for e in entries]
        means = np.array([100 * a["mean"] for a in aggs])
        stds = np.array([100 * (a["std"] or 0.0) for a in aggs])
        ax.errorbar(
            x[order],
            means[order],
            yerr=stds[order],
            color=f"C{n}",
            marker="o",
            capsize=4,
            label=f"{family}: PBV UAR, mean ± std over folds × draws",
        )
        for xi, a in zip(x, aggs, strict=True):
            dots = 100 * np.asarray(a["values"], dtype=float)
            ax.scatter(np.full(len(dots), xi), dots, color=f"C{n}", s=10, alpha=0.45)
    if shots:
        ax.set_xscale("log")
        ticks = sorted({int(e["shots"]) for e in curve})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()  # the log axis's minor labels are mathtext, shown raw as plain text
    ax.set_xlabel("training videos per class (shots)" if shots else "training videos (% per class)")
    ax.set_ylabel("UAR (%)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


MARKERS = ("o", "s", "^", "D", "v", "P", "X")  # one per probe family of a cost figure


def cost_figure(points: Sequence[Mapping], xlabel: str, title: str, path: Path) -> Path:
    """PNG of UAR against a cost (`vjfer.bench_page`): each point {"x", "uar", "low", "high",
    "encoder", "dataset", "probe"} with its interval as error bars; colour = dataset, marker =
    probe family, each encoder named once beside its highest point; a log x axis when the costs
    span 10× (its tick labels need mathtext, so `$` in a name is escaped instead)."""
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    datasets = list(dict.fromkeys(p["dataset"] for p in points))
    probes = list(dict.fromkeys(p["probe"] for p in points))
    for p in points:
        colour = f"C{datasets.index(p['dataset']) % 10}"
        marker = MARKERS[probes.index(p["probe"]) % len(MARKERS)]
        low, high = p["low"], p["high"]
        yerr = None if np.isnan(low) else [[p["uar"] - low], [high - p["uar"]]]
        ax.errorbar(p["x"], p["uar"], yerr=yerr, color=colour, marker=marker, capsize=3)
    for (name, x), uar in _highest(points).items():
        text = name.replace("$", r"\$")
        ax.annotate(text, (x, uar), fontsize=7, xytext=(5, 3), textcoords="offset points")
    xs = [p["x"] for p in points]
    if xs and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    handles = [Line2D([], [], color=f"C{i % 10}", lw=0, marker="o") for i in range(len(datasets))]
    handles += [Line2D([], [], color="0.3", lw=0, marker=MARKERS[i]) for i in range(len(probes))]
    ax.legend(handles, datasets + probes, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("UAR (%), PBV; bars: 95 % bootstrap interval")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _highest(points: Sequence[Mapping]) -> dict[tuple[str, float], float]:
    """(encoder, x) -> the highest UAR among its points: where its name is written."""
    top: dict[tuple[str, float], float] = {}
    for p in points:
        key = (p["encoder"], p["x"])
        top[key] = max(top.get(key, -np.inf), p["uar"])
    return top
