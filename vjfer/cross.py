"""Cross-dataset evaluation: each fold's probe, trained on one dataset, predicts the other dataset.

Classes are matched by name (a list file's are its own). RAVDESS's calm and surprised, which CREMA-D
lacks, are handled on the side where they occur (docs/design.md, "Evaluation and metrics"): `drop`
drops the videos predicted (RAVDESS -> CREMA-D) or labelled (CREMA-D -> RAVDESS) calm or surprised;
`merge` counts calm as neutral and drops surprised, as the reference's calm-class scripts do on
confusion matrices. Metrics run over the shared classes in the target's order, for PBV and MV
separately; every video is counted (kept + dropped = total, with the reasons for dropping).

The pure part (`class_handling`, `apply_handling`, `score_handled`) takes label and prediction
arrays; `cross_evaluate` does the I/O around it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

import vjfer
from vjfer import metrics
from vjfer.cache import Cache, open_cache
from vjfer.cache.format import Coverage
from vjfer.env import resolve_device
from vjfer.errors import CacheError, CheckpointError, ConfigError
from vjfer.labels import check_dataset, class_names
from vjfer.probe.evaluate import EVAL_BATCH_CLIPS, VIDEO_VOTINGS, score_videos, vote_videos
from vjfer.probe.model import load_probe
from vjfer.probe.resume import publish_run, staged_run
from vjfer.results import write_json
from vjfer.runs import CROSS_DIR, check_same_encoder, find_probes
from vjfer.tables import DATASET_TITLES, METRIC_COLUMNS, Table, metric_cells, render_markdown

log = logging.getLogger(__name__)

CalmHandling = Literal["drop", "merge"]
CALM_HANDLINGS = ("drop", "merge")
MERGED_INTO = {"calm": "neutral"}  # `merge`: these classes count as their neighbour


# ---------------------------------------------------------------------------------------------
# Pure: class handling on arrays and confusion matrices.


@dataclass(frozen=True)
class ClassHandling:
    """How the classes of `source` (the probe) and `target` (the videos) meet.

    `label_map[t]` is the evaluation class of target class t, `pred_map[s]` that of source class s;
    -1 means the video is dropped. Evaluation classes are the shared ones, in the target's order.
    """

    source: str
    target: str
    calm: str
    names: tuple[str, ...]  # evaluation classes
    label_map: np.ndarray  # int [C_target]
    pred_map: np.ndarray  # int [C_source]
    source_names: tuple[str, ...] = ()  # the probe's classes in label order
    target_names: tuple[str, ...] = ()  # the videos' classes in label order


def _side_map(own: tuple[str, ...], shared: tuple[str, ...], calm: str) -> np.ndarray:
    """Evaluation index of each of `own` classes: shared by name, merged (calm), or -1 (dropped)."""
    out = []
    for name in own:
        if calm == "merge" and name in MERGED_INTO:
            name = MERGED_INTO[name]
        out.append(shared.index(name) if name in shared else -1)
    return np.asarray(out, dtype=np.int64)


def class_handling(
    source: str,
    target: str,
    calm: str,
    source_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
) -> ClassHandling:
    """The class handling of probes trained on `source` and tested on `target` (names checked).
    `source_names` / `target_names`: the classes in label order (default: the datasets'; a list
    file's come from its run and cache)."""
    source, target = check_dataset(source), check_dataset(target)
    if source == target:
        raise ConfigError(f"cross-dataset evaluation needs two datasets; got {source} twice")
    if calm not in CALM_HANDLINGS:
        raise ConfigError(f"unknown calm handling {calm!r}; known: {', '.join(CALM_HANDLINGS)}")
    src = tuple(class_names(source) if source_names is None else source_names)
    dst = tuple(class_names(target) if target_names is None else target_names)
    names = tuple(n for n in dst if n in src)  # the target's classes the source has, by name
    if not names:
        raise ConfigError(
            f"{source} ({', '.join(src)}) and {target} ({', '.join(dst)}) share "
            "no class name: nothing to score"
        )
    maps = _side_map(dst, names, calm), _side_map(src, names, calm)  # label_map, pred_map
    return ClassHandling(source, target, calm, names, *maps, src, dst)


@dataclass(frozen=True)
class Handled:
    """Labels and predictions after class handling, plus what was dropped and why."""

    truth: np.ndarray  # int [kept], evaluation classes
    pred: np.ndarray  # int [kept], evaluation classes
    kept: np.ndarray  # bool [total], per input video
    dropped: dict[str, int]  # reason ("labelled calm", "predicted surprised", ...) -> videos

    @property
    def n_total(self) -> int:
        return len(self.kept)

    @property
    def n_kept(self) -> int:
        return int(self.kept.sum())

    @property
    def n_dropped(self) -> int:
        return self.n_total - self.n_kept


def apply_handling(truth: np.ndarray, pred: np.ndarray, handling: ClassHandling) -> Handled:
    """Map target labels and source predictions [n] to evaluation classes; drop what has none.

    A video dropped on both sides is counted once, under its label.
    """
    truth, pred = np.asarray(truth, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise ValueError(
            f"truth and pred must be 1-D of one length; got {truth.shape}, {pred.shape}"
        )
    t, p = handling.label_map[truth], handling.pred_map[pred]
    kept = (t >= 0) & (p >= 0)
    src, dst = handling.source_names, handling.target_names
    reasons = Counter(f"labelled {dst[i]}" for i in truth[t < 0])
    reasons.update(f"predicted {src[i]}" for i in pred[(t >= 0) & (p < 0)])
    return Handled(t[kept], p[kept], kept, dict(sorted(reasons.items())))


def score_handled(handled: Handled, handling: ClassHandling) -> dict:
    """`vjfer.metrics` over the evaluation classes, plus the confusion and counts; JSON-able."""
    E = len(handling.names)
    if handled.n_kept == 0:
        scores = dict.fromkeys(metrics.SCALAR_METRICS)  # nothing left to score
        scores |= {"per_class_recall": [None] * E, "n": 0, "confusion": np.zeros((E, E)).tolist()}
    else:
        scores = metrics.classification_metrics(handled.truth, handled.pred, E)
        scores["confusion"] = metrics.confusion(handled.truth, handled.pred, E).tolist()
    scores |= {"n_total": handled.n_total, "n_kept": handled.n_kept}
    scores |= {"n_dropped": handled.n_dropped, "dropped": handled.dropped}
    return scores


# ---------------------------------------------------------------------------------------------
# I/O: probes of a run predict every video of the other dataset's cache.


def cross_dir_name(source: str, target: str, calm: str) -> str:
    return f"cross-{check_dataset(source)}-to-{check_dataset(target)}-{calm}"


@dataclass
class CrossResult:
    """One cross-dataset run: per probe scores (PBV and MV, with counts) and their mean ± std."""

    source: str
    target: str
    calm: str
    run_dir: Path
    target_cache: Path
    out_dir: Path
    class_names: tuple[str, ...]  # evaluation classes (shared), in the target's order
    n_videos: int  # target videos each probe predicted
    folds: list[dict]  # per probe: {"fold", "pbv": scores, "mv": scores} (`score_handled`)
    summary: dict  # {voting: {metric: {mean, std, n, values}}} (`metrics.fold_summary`)
    coverage: Coverage | None = None  # the target cache's videos vs the dataset's files

    def to_json(self) -> dict:
        """What summary.json holds (`kind` = "cross"; `vjfer.report` reads it)."""
        return {
            "kind": "cross",
            "source": self.source,
            "target": self.target,
            "calm": self.calm,
            "run_dir": str(self.run_dir),
            "target_cache": str(self.target_cache),
            "class_names": list(self.class_names),
            "n_videos": self.n_videos,
            "folds": self.folds,
            "mean": self.summary,
            "vjfer_version": vjfer.__version__,
        }


def cross_table(result: CrossResult) -> Table:
    """Per probe and mean: UAR, WAR, macro precision (%) and video counts, per voting rule."""
    rows = []
    for voting in VIDEO_VOTINGS:
        label = voting.upper()
        for fold in result.folds:
            s = fold[voting]
            one = {m: {"mean": s[m], "std": None} for m in METRIC_COLUMNS}
            counts = {"Kept": s["n_kept"], "Dropped": s["n_dropped"], "Total": s["n_total"]}
            probe = f"fold {fold['fold']}"
            rows.append({"Voting": label, "Probe": probe, **metric_cells(one), **counts})
        mean = result.summary.get(voting, {})
        counts = {c: mean[k]["mean"] for c, k in (("Kept", "n_kept"), ("Dropped", "n_dropped"))}
        counts["Total"] = result.n_videos
        rows.append({"Voting": label, "Probe": "mean", **metric_cells(mean), **counts})
    src, dst = DATASET_TITLES[result.source], DATASET_TITLES[result.target]
    title = f"{src} probes tested on {dst} (calm/surprised: {result.calm}), video level"
    notes = [
        f"Classes scored: {', '.join(result.class_names)} (matched by name).",
        "Percent; mean ± sample std over the probes. Kept + Dropped = Total per probe.",
        "Macro precision is what the paper's tables call UAR.",
    ]
    # dtype=object keeps per-probe counts integers beside the fractional mean counts
    return Table("summary", title, pd.DataFrame(rows, dtype=object), notes)


def _video_frame(clips: pd.DataFrame, cache: Cache, src_names: Sequence[str]) -> pd.DataFrame:
    """`vote_videos` over one probe's clip rows (`score_videos`, probabilities of the source's
    classes), with labels named in the target's classes (vote_videos names them in the classes it
    votes over, the source's)."""
    videos = vote_videos(clips.assign(label=0), src_names)  # the target's labels: set below
    info = cache.videos.set_index("video_id").loc[videos["video_id"]]
    videos["label"] = info["label"].to_numpy()
    videos["label_name"] = [cache.class_names[i] for i in videos["label"]]
    return videos


def _score_fold(k: int, videos: pd.DataFrame, handling: ClassHandling, out: Path) -> dict:
    """One probe's scores per voting rule after class handling (`score_handled`); writes
    `out/video_predictions.csv` (with each video's handled label, predictions, kept) and
    `out/metrics.json`."""
    fold: dict[str, Any] = {"fold": k}
    label_as = handling.label_map[videos["label"].to_numpy()]
    videos["label_as"] = [handling.names[i] if i >= 0 else "" for i in label_as]
    for voting in VIDEO_VOTINGS:
        handled = apply_handling(videos["label"], videos[voting], handling)
        fold[voting] = score_handled(handled, handling)
        pred_as = handling.pred_map[videos[voting].to_numpy()]
        videos[f"{voting}_as"] = [handling.names[i] if i >= 0 else "" for i in pred_as]
        videos[f"{voting}_kept"] = handled.kept
    out.mkdir(parents=True, exist_ok=True)
    videos.to_csv(out / "video_predictions.csv", index=False, float_format="%.6g")
    write_json(out / "metrics.json", fold)
    return fold


def _load_probes(
    run_dir: Path, cache: Cache, dev: torch.device
) -> tuple[dict[int, nn.Module], str, tuple[str, ...]]:
    """Each fold's probe of `run_dir` on `dev`, checked against the target cache, the one
    dataset they were trained on and its classes (as the probes recorded them)."""
    probes: dict[int, nn.Module] = {}
    metas: dict[int, dict] = {}
    for k, path in find_probes(run_dir).items():
        probes[k], metas[k] = load_probe(path, dev)
        check_same_encoder(metas[k]["cache"]["settings"], cache, path)
        if metas[k]["embed_dim"] != cache.embed_dim:
            raise CacheError(
                f"{path} takes D={metas[k]['embed_dim']}, {cache.path} has D={cache.embed_dim}"
            )
    sources = {m["dataset"] for m in metas.values()}
    if len(sources) != 1:
        raise CheckpointError(
            f"probes of {run_dir} were trained on several datasets: {sorted(sources)}"
        )
    source = sources.pop()
    if len(names := {tuple(m["class_names"]) for m in metas.values()}) != 1:
        raise CheckpointError(f"probes of {run_dir} disagree on their classes: {sorted(names)}")
    return probes, source, names.pop()


def cross_evaluate(
    run_dir: str | Path,
    target_cache: str | Path | Cache,
    calm: CalmHandling = "drop",
    *,
    device: str = "auto",
    batch_clips: int = EVAL_BATCH_CLIPS,
    num_workers: int = 0,
) -> CrossResult:
    """Each fold's probe of `run_dir` predicts every video of `target_cache` (the other dataset).

    Each video's evaluation windows are read once and scored by all probes (`score_videos`).
    `num_workers`: reads in flight. Writes into the probe run, so two runs' cross results never
    share a folder: `<run_dir>/cross/cross-<source>-to-<target>-<calm>/`
    (fold-K/video_predictions.csv, fold-K/metrics.json, summary.json, summary.md, coverage.json),
    staged in a `.partial` folder and replacing an older result of the same run, target and handling
    only when complete.
    """
    run_dir = Path(run_dir)
    cache = target_cache if isinstance(target_cache, Cache) else open_cache(target_cache)
    dev = resolve_device(device)
    probes, source, src_names = _load_probes(run_dir, cache, dev)
    handling = class_handling(source, cache.dataset, calm, src_names, cache.class_names)
    video_ids = list(cache.videos["video_id"])
    log.info(
        "%d %s probes x %d %s videos (%s)", len(probes), source, len(video_ids), cache.dataset, calm
    )

    # each video's evaluation windows read once, scored by every probe (never the `reference`
    # plan's training clips or augmented copies)
    rows = np.arange(len(video_ids))
    clips = score_videos(
        cache,
        {str(k): (probe, rows) for k, probe in probes.items()},
        device=dev,
        class_names=src_names,
        batch_clips=batch_clips,
        threads=num_workers,
    )

    out_dir = run_dir / CROSS_DIR / cross_dir_name(source, cache.dataset, calm)
    with staged_run(out_dir, "force") as work:  # its lock: one writer of this result
        folds: list[dict[str, Any]] = []  # JSON records: {"fold": k, voting: scores, ...}
        for k in probes:
            videos = _video_frame(clips[str(k)], cache, src_names)
            folds.append(_score_fold(k, videos, handling, work / f"fold-{k}"))

        # metrics.fold_summary averages the numbers every probe has (a probe with nothing kept has
        # None for its metrics: they are left out of the mean).
        numeric = [
            {
                v: {m: x for m, x in f[v].items() if isinstance(x, (int, float))}
                for v in VIDEO_VOTINGS
            }
            for f in folds
        ]
        coverage = cache.coverage()
        result = CrossResult(
            source,
            cache.dataset,
            calm,
            run_dir,
            cache.path,
            out_dir,
            handling.names,
            len(video_ids),
            folds,
            metrics.fold_summary(numeric),
            coverage,
        )
        write_json(work / "summary.json", result.to_json())
        record = {**asdict(coverage), "total": coverage.total, "text": str(coverage)}
        write_json(work / "coverage.json", record)
        (work / "summary.md").write_text(render_markdown(cross_table(result)), encoding="utf-8")
        publish_run(work, out_dir)
    return result
