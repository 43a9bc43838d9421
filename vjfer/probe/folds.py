"""Cross-validation in one pass: every fold's probe, a grid of heads, and inner-validation
selection.

For each test fold k the pass trains one head per grid point (lr, weight decay, seed) on the other
folds. The reported result is the **reference-default head** (lr 1e-3, weight decay 0.01), as the
paper's; with more than one grid point, heads trained on the training folds minus an inner
validation fold (the next after k) choose the fold's **selected head** there. The test fold never
takes part in the choice (docs/design.md, "Stage 2: one pass, many heads").
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import cast

import numpy as np
import pandas as pd

from vjfer.cache import Cache
from vjfer.datasets.folds import (
    ACTORS,
    SPLITS,
    TRAIN_ONLY,
    actor_folds,
    check_splits,
    fold_numbers,
    fold_rows,
    mae_dfer_folds,
)
from vjfer.datasets.ravdess import parse_ravdess_name
from vjfer.datasets.records import Skip
from vjfer.env import resolve_device
from vjfer.errors import ConfigError, SplitError, TrainingError
from vjfer.probe.config import ProbeKind, TrainConfig, check_subset
from vjfer.probe.evaluate import score_predictions, score_videos, vote_videos
from vjfer.probe.head import Head
from vjfer.probe.layer import CONCAT, LayerChoice
from vjfer.probe.resume import PassCheckpoint
from vjfer.probe.train import FoldResult, train_heads
from vjfer.protocols import get_protocol
from vjfer.tables import METRIC_COLUMNS

log = logging.getLogger(__name__)

SELECT_BY = ("pbv", "uar")  # inner-validation criterion: whole-video PBV, balanced accuracy
HELD_OUT = -1  # the inner validation "fold" carved out of the training set of a single split
HELD_OUT_SHARE = 0.2  # ... a seeded fifth of its groups (actors, or clips where none are named)
OPTIONAL = ("probe", "k", "shots", "train_fraction")  # GridPoint fields recorded only when set
Subset = tuple[int | None, float | None]  # a few-shot setting: (shots, train_fraction)
EVERY_VIDEO: Subset = (None, None)


@dataclass(frozen=True)
class GridPoint:
    """The per-head settings of one head of a grid."""

    lr: float
    weight_decay: float
    seed: int
    layer: LayerChoice = CONCAT  # the stored layer it reads (`vjfer.probe.layer`)
    # its probe family when a grid holds several (`--probe attentive,linear`); None: the pass's
    probe: str | None = None
    k: int | None = None  # a k-NN head's neighbours (`--k`); None for the other families
    # a few-shot head's videos per class (`--shots`) or share of each class (`--train-fraction`)
    shots: int | None = None
    train_fraction: float | None = None

    @property
    def name(self) -> str:
        # a head on every stored token adds nothing: names of runs before layers stay as they were
        tail = "" if self.layer == CONCAT else f"-layer{self.layer}"
        tail += "" if self.probe is None else f"-{self.probe}"  # only in a grid of families
        tail += "" if self.k is None else f"-k{self.k}"
        tail += "" if self.shots is None else f"-shots{self.shots}"
        tail += "" if self.train_fraction is None else f"-fraction{self.train_fraction:g}"
        return f"lr{self.lr:g}-wd{self.weight_decay:g}-seed{self.seed}{tail}"

    @property
    def subset(self) -> Subset:
        """(shots, train_fraction): the few-shot setting, (None, None) on every video."""
        return self.shots, self.train_fraction

    @classmethod
    def of(cls, config: TrainConfig) -> GridPoint:
        """The point of `config`'s own per-head settings (a run without a grid)."""
        return cls(
            config.lr,
            config.weight_decay,
            config.seed,
            config.layer,
            shots=config.shots,
            train_fraction=config.train_fraction,
        )

    def record(self) -> dict:
        """asdict(self) for config.json, metrics.json and selection.csv; `probe`, `k`, `shots`
        and `train_fraction` only when set, so runs of one family record what they always did."""
        return {k: v for k, v in asdict(self).items() if k not in OPTIONAL or v is not None}

    def apply(self, config: TrainConfig) -> TrainConfig:
        return replace(
            config,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            layer=self.layer,
            probe=cast(ProbeKind, self.probe or config.probe),
            knn_k=self.k or config.knn_k,
            shots=self.shots,
            train_fraction=self.train_fraction,
        )


def check_folds(cache) -> str:
    """The fold protocol the cache's folds follow (RAVDESS: `paper` or `mae-dfer`; the releases:
    `official`); SplitError unless every actor has one fold, for RAVDESS / CREMA-D the one its
    protocol gives."""
    videos = cache.videos
    per_actor = videos.groupby("actor")["fold"].unique()
    if mixed := [int(a) for a, f in per_actor.items() if len(f) > 1]:
        raise SplitError(f"cache {cache.path}: actors {mixed} appear in more than one fold")
    if "list" in cache.settings:  # a list file's protocol, recorded when it was extracted
        return str(cache.settings["list"]["splits"])
    if cache.dataset not in ACTORS:
        return SPLITS[cache.dataset][0]
    for splits in SPLITS[cache.dataset]:
        expected = actor_folds(cache.dataset, splits)
        if all(expected.get(int(a)) == int(f[0]) for a, f in per_actor.items()):
            return splits
    expected = actor_folds(cache.dataset, SPLITS[cache.dataset][0])
    for actor, folds in per_actor.items():
        if int(actor) not in expected:
            raise SplitError(
                f"cache {cache.path}: actor {actor} is not in splits/ for {cache.dataset}"
            )
        if expected[int(actor)] != int(folds[0]):
            raise SplitError(
                f"cache {cache.path}: actor {actor} is in fold {int(folds[0])}, "
                f"splits/ for {cache.dataset} put it in fold {expected[int(actor)]}"
            )
    raise AssertionError("unreachable: some actor disagrees with the splits")


def apply_splits(cache, splits: str | None) -> str:
    """Give `cache.videos` the folds of protocol `splits` (default: the dataset's first) and
    return it. RAVDESS `mae-dfer` reassigns folds from the actors (fold k = actors 4k-3..4k), so
    one cache serves both protocols; the others are the folds the cache was extracted with (a
    list file's: its columns or its seeded group folds, as recorded)."""
    if "list" in cache.settings:
        recorded = str(cache.settings["list"]["splits"])
        if check_splits(cache.dataset, splits or recorded) != recorded:
            raise SplitError(
                f"cache {cache.path} holds the folds of --splits {recorded} (from its "
                f"list file); drop --splits {splits} or extract again"
            )
        return recorded
    if splits is None and "protocol" in cache.settings:  # `extract --protocol`: the preset's folds
        splits = get_protocol(cache.settings["protocol"]).splits.get(cache.dataset)
    splits = check_splits(cache.dataset, splits)
    if splits == "mae-dfer":
        folds = mae_dfer_folds()
        cache.videos["fold"] = [folds[int(a)] for a in cache.videos["actor"]]
    return splits


def _modality(video_id: str) -> int:
    """The MM field of a RAVDESS id (`MM-VV-EE-II-SS-RR-AA`); 0 for an id that is not one."""
    try:
        return parse_ravdess_name(video_id)["modality"]
    except Skip:
        return 0


def select_modality(cache, modality: int | None, splits: str) -> None:
    """Keep in `cache.videos` the RAVDESS videos of `modality` (1 audio-video, 2 video-only; the
    MM field of their ids); None keeps every video. ConfigError on another dataset, or when the
    cache holds none of that modality. Under `--splits mae-dfer` with both modalities held and
    none chosen, a warning: the peers' split files list 02 files only, so every recording here
    is trained and tested twice (warned rather than refused: the run is valid, only not theirs).
    """
    if modality is not None and cache.dataset != "ravdess":
        raise ConfigError(
            f"--modality selects RAVDESS videos (MM 01/02); cache {cache.path} holds "
            f"{cache.dataset}: drop --modality"
        )
    if cache.dataset != "ravdess":
        return
    mm = np.array([_modality(str(v)) for v in cache.videos["video_id"]])
    if modality is None:
        if splits == "mae-dfer" and {1, 2} <= set(mm.tolist()):
            log.warning(
                "--splits mae-dfer on cache %s: it holds modalities 01 and 02 (%d and %d "
                "videos), the peers' split files list the 02 (video-only) files only, so each "
                "recording is trained and tested twice here; add --modality 2 to compare with "
                "their numbers",
                cache.path,
                int((mm == 1).sum()),
                int((mm == 2).sum()),
            )
        return
    if not (keep := mm == modality).any():
        raise ConfigError(
            f"--modality {modality}: cache {cache.path} holds no modality {modality:02d} video "
            f"(it holds {sorted(set(mm.tolist()))}); extract them, or drop --modality"
        )
    cache.videos = cache.videos[keep].reset_index(drop=True)


def carve_held_out(fold_of: np.ndarray, actors: np.ndarray, seed: int) -> np.ndarray:
    """fold_of with a seeded HELD_OUT_SHARE of the training-only groups marked HELD_OUT: the
    inner validation part of a single train/test split (group-disjoint: subject- or clip-)."""
    fold_of = np.asarray(fold_of).copy()
    groups = sorted(set(actors[fold_of == TRAIN_ONLY].tolist()))
    if len(groups) < 2:
        raise SplitError("a grid over a single train/test split needs at least 2 training groups")
    order = np.random.default_rng(seed).permutation(len(groups))
    held = {groups[i] for i in order[: max(1, round(HELD_OUT_SHARE * len(groups)))]}
    n = len(groups)
    fold_of[(fold_of == TRAIN_ONLY) & np.isin(actors, list(held))] = HELD_OUT
    log.info("inner validation: %d of %d training groups held out (seed %d)", len(held), n, seed)
    return fold_of


def split_fold(videos: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of `cache.videos` for fold k, by `datasets.fold_rows`."""
    train, test = fold_rows(videos["fold"].tolist(), videos["actor"].tolist(), k)
    return videos.iloc[train].reset_index(drop=True), videos.iloc[test].reset_index(drop=True)


def make_grid(
    lrs: Sequence[float],
    wds: Sequence[float],
    seeds: Sequence[int],
    layers: Sequence[LayerChoice] = (CONCAT,),
    probes: Sequence[str] = (),
    ks: Sequence[int] = (1,),
    shots: Sequence[int] = (),
    fractions: Sequence[float] = (),
) -> list[GridPoint]:
    """Every combination, duplicates removed, in the order given. With more than one point the
    reference default (lr 1e-3, wd 0.01, first seed, the last layer given: for `--layer all` the
    deepest stored, the first probe family) is the first, added when not asked for, so a grid's
    summary can always show it beside the selected head; in a grid of several families, each
    family's default leads its points. `layers`: resolved `--layer` values
    (`probe.layer.layer_axis`); `probes`: the families, named in the points only when several
    (one family is the pass's `TrainConfig.probe`). k-NN points (`ks`: their neighbours, the
    first k their default) take no lr or weight decay: they sit at the defaults'. `shots` or
    `fractions` (not both): few-shot settings, the outermost axis (each family's default takes
    the first)."""
    families: list[str | None] = list(dict.fromkeys(probes)) if len(set(probes)) > 1 else [None]
    single = probes[0] if probes and families == [None] else None  # the pass's one family
    subsets = subset_axis(shots, fractions)

    def family_points(family: str | None, first: bool) -> list[GridPoint]:
        if (family or single) != "knn":
            axes = itertools.product(subsets, seeds, lrs, wds, layers)
            return [
                GridPoint(float(lr), float(wd), int(s), ly, family, None, *sub)
                for sub, s, lr, wd, ly in axes
            ]
        ks_ = ks[:1] if first else ks
        lr, wd = TrainConfig.lr, TrainConfig.weight_decay
        knn_axes = itertools.product(subsets, seeds, layers, ks_)
        return [GridPoint(lr, wd, int(s), ly, family, int(k), *sub) for sub, s, ly, k in knn_axes]

    points = list(dict.fromkeys(p for f in families for p in family_points(f, first=False)))
    if not points:
        raise ConfigError("the grid is empty: give at least one lr, weight decay, seed and layer")
    if len(points) > 1:  # each family's reference default, the first family's first of all
        defaults = []
        for f in families:
            first = family_points(f, first=True)[0]
            defaults.append(replace(first, seed=int(seeds[0]), layer=layers[-1]))
            if (f or single) != "knn":
                defaults[-1] = replace(
                    defaults[-1], lr=TrainConfig.lr, weight_decay=TrainConfig.weight_decay
                )
        for default in defaults:
            if default not in points:
                log.info("adding the reference-default head %s to the grid", default.name)
        points = defaults + [p for p in points if p not in defaults]
    return points


def subset_axis(shots: Sequence[int] = (), fractions: Sequence[float] = ()) -> list[Subset]:
    """The few-shot settings of a grid, duplicates dropped: [(N, None), ...] for `--shots`,
    [(None, F), ...] for `--train-fraction`, [EVERY_VIDEO] for neither."""
    check_subset(shots, fractions)
    if shots:
        return [(int(n), None) for n in dict.fromkeys(shots)]
    return [(None, float(f)) for f in dict.fromkeys(fractions)] or [EVERY_VIDEO]


def inner_fold(k: int, folds: Sequence[int]) -> int:
    """The inner validation fold of test fold k: the next fold after k among `folds`, cyclically."""
    rest = sorted(f for f in folds if f != k)
    if len(rest) < 2:
        raise SplitError(
            f"fold {k}: a grid needs at least 3 folds in the cache, it has {sorted(folds)}"
        )
    return next((f for f in rest if f > k), rest[0])


def split_rows(
    fold_of: np.ndarray, k: int, inner: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, evaluation rows) of test fold k, given each video's fold: all other folds and
    fold k; with `inner` (the inner validation fold), the folds other than k and inner, and inner.
    The test fold k is in neither set of an inner split."""
    fold_of = np.asarray(fold_of)
    if inner is None:
        return np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
    return np.flatnonzero((fold_of != k) & (fold_of != inner)), np.flatnonzero(fold_of == inner)


def fold_metrics(
    k: int, result_clips, class_names: Sequence[str], n_train: int, history: list[dict]
) -> tuple:
    """(videos table, metrics dict) of one head's clip predictions, in `metrics.json`'s layout."""
    videos = vote_videos(result_clips, class_names)
    scores = score_predictions(videos, result_clips, len(class_names))
    metrics = {
        "fold": k,
        "n_train_videos": n_train,
        "n_test_videos": len(videos),
        "n_test_clips": len(result_clips),
        "test_actors": sorted(int(a) for a in videos["actor"].unique()),
        **scores,
        # the head's share of the pass's time: the pass itself is timed once (summary.json)
        "train": {
            "epochs": len(history),
            "final_loss": history[-1]["loss"],
            "pass_seconds_share": sum(h["pass_seconds_share"] for h in history),
        },
    }
    return videos, metrics


@dataclass
class GridResult:
    """Everything one pass produced, per fold and grid point."""

    folds: list[int]
    grid: list[GridPoint]
    results: dict[tuple[int, str], FoldResult]  # (fold, point name) -> test-fold result
    inner: list[dict] = field(default_factory=list)  # one row per (fold, point): inner scores
    selected: dict[int, str] = field(default_factory=dict)  # fold -> selected point name
    plan: str = ""
    pass_epochs: list[dict] = field(default_factory=list)  # the pass's time and reads, per epoch
    failed: list[dict] = field(default_factory=list)  # `failed_heads`: heads that diverged

    @property
    def default(self) -> str:
        return self.grid[0].name

    def families(self) -> list[str]:
        """The probe families of a grid of several (`--probe attentive,linear`), else []."""
        return list(dict.fromkeys(p.probe for p in self.grid if p.probe is not None))

    def family_default(self, family: str) -> GridPoint:
        """A family's reported head: its first point, the reference default (`make_grid`)."""
        return next(p for p in self.grid if p.probe == family)

    def family_selected(self, family: str) -> dict[int, str]:
        """Per fold, the point of `family` its inner validation selects (as `_select`, among
        that family's points of its default's few-shot setting only)."""
        subset = self.family_default(family).subset
        return self.select_among(
            [p.name for p in self.grid if (p.probe, p.subset) == (family, subset)]
        )

    def select_among(self, names: Sequence[str]) -> dict[int, str]:
        """Per fold, the point among `names` inner validation selects (best inner PBV UAR, ties
        the earlier, failed never; the first when none has inner scores)."""
        chosen = {}
        for k in self.folds:
            rows = {r["head"]: r for r in self.inner if r["fold"] == k}
            best, best_score = names[0], -1.0
            for name in names:
                row = rows.get(name)
                if row is None or row["failed"] or row[f"{SELECT_BY[0]}_{SELECT_BY[1]}"] is None:
                    continue
                if (score := row[f"{SELECT_BY[0]}_{SELECT_BY[1]}"]) > best_score:
                    best, best_score = name, score
            chosen[k] = best
        return chosen

    def reported(self, k: int) -> FoldResult:
        return self.results[(k, self.default)]

    def chosen(self, k: int) -> FoldResult:
        return self.results[(k, self.selected[k])]

    def layer_points(self) -> list[GridPoint]:
        """With heads on several layers: one grid point per layer at one (lr, weight decay, seed),
        the reported head's unless another has more layers, deepest last, concat after; else []."""
        groups: dict[GridPoint, list[GridPoint]] = {}
        for p in self.grid:  # the reported head's group first
            groups.setdefault(replace(p, layer=CONCAT), []).append(p)
        points = max(groups.values(), key=len)  # ties: the first, the reported head's
        if len(points) < 2:
            return []
        return sorted(
            points, key=lambda p: (p.layer == CONCAT, 0 if p.layer == CONCAT else int(p.layer))
        )


def failed_heads(heads: Sequence[Head]) -> list[dict]:
    """{"head", "lr", "weight_decay", "seed", "epoch", "loss"} of each head whose loss diverged."""
    return [
        {
            "head": h.name,
            "lr": h.config.lr,
            "weight_decay": h.config.weight_decay,
            "seed": h.config.seed,
            **h.failed,
        }
        for h in heads
        if h.failed is not None
    ]


def failed_text(failure: dict) -> str:
    return f"{failure['head']}: loss {failure['loss']} at epoch {failure['epoch']}"


def _inner_row(k: int, j: int, point: GridPoint, head: Head, metrics: dict | None) -> dict:
    """One row of selection.csv: a grid point's inner scores (empty when its head failed)."""
    cells = itertools.product(("pbv", "mv"), METRIC_COLUMNS)
    scores = {f"{v}_{s}": metrics[v][s] if metrics else None for v, s in cells}
    return {
        "fold": k,
        "inner_fold": j,
        "head": point.name,
        **point.record(),  # lr, weight_decay, seed, layer (and probe, in a grid of families)
        "n_inner_train_videos": len(head.rows),
        "n_inner_val_videos": metrics["n_test_videos"] if metrics else None,
        **scores,
    }


def _select(
    k: int,
    j: int,
    grid: Sequence[GridPoint],
    by_name: dict[str, Head],
    tables: dict[str, pd.DataFrame],
    cache: Cache,
    inner: list[dict],
) -> str:
    """The grid point test fold k selects on its inner validation fold j (PBV UAR; ties keep the
    earlier point, the default first), among the points of the default's few-shot setting;
    appends each point's inner scores to `inner`. A point whose inner or full head failed
    (`failed_heads`) is never selected."""
    best, best_score = grid[0].name, -1.0
    for point in grid:
        head = by_name[f"fold{k}/inner{j}/{point.name}"]
        failed = failed_heads([head, by_name[f"fold{k}/{point.name}"]])
        metrics = None
        if not failed:
            _, metrics = fold_metrics(
                j, tables[head.name], cache.class_names, len(head.rows), head.history
            )
        failures = "; ".join(failed_text(f) for f in failed)
        inner.append({**_inner_row(k, j, point, head, metrics), "failed": failures})
        score = metrics[SELECT_BY[0]][SELECT_BY[1]] if metrics else -1.0
        # ties keep the earlier point (the default first); a few-shot grid chooses among the
        # default's setting (more shots would always win)
        if not failed and point.subset == grid[0].subset and score > best_score:
            best, best_score = point.name, score
    log.info("fold %d: inner fold %d selects %s (inner PBV UAR %.4f)", k, j, best, best_score)
    return best


def _grid_heads(
    cache: Cache, folds: Sequence[int], config: TrainConfig, grid: list[GridPoint], device
) -> tuple[list[Head], dict[str, np.ndarray], dict[int, int]]:
    """Every head of the pass, the rows each is scored on, and each fold's inner fold."""
    videos = cache.videos
    fold_of = videos["fold"].to_numpy()
    present = fold_numbers(fold_of)
    if len(grid) > 1 and len(present) < 3:  # one train/test split: hold out part of train
        fold_of = carve_held_out(fold_of, videos["actor"].to_numpy(), config.seed)
    heads: list[Head] = []
    evaluates: dict[str, np.ndarray] = {}  # head name -> rows it is scored on
    inner_of: dict[int, int] = {}
    for k in folds:
        split_fold(videos, k)  # leakage and emptiness checks
        train_rows, test_rows = split_rows(fold_of, k)
        for point in grid:
            name = f"fold{k}/{point.name}"
            heads.append(Head(name, point.apply(config), train_rows, cache, device))
            evaluates[name] = test_rows
        if len(grid) == 1:
            continue
        j = inner_of[k] = HELD_OUT if HELD_OUT in fold_of else inner_fold(k, present)
        inner_rows, val_rows = split_rows(fold_of, k, j)
        actors = videos["actor"].to_numpy()
        seen = set(actors[inner_rows]) | set(actors[val_rows])
        assert not seen & set(actors[test_rows]), f"fold {k}: inner validation saw a test actor"
        for point in grid:
            name = f"fold{k}/inner{j}/{point.name}"
            heads.append(Head(name, point.apply(config), inner_rows, cache, device))
            evaluates[name] = val_rows
    return heads, evaluates, inner_of


def train_grid(
    cache: Cache,
    folds: Sequence[int],
    config: TrainConfig,
    grid: Sequence[GridPoint] | None = None,
    progress: bool = True,
    checkpoint: PassCheckpoint | None = None,
) -> GridResult:
    """Train and evaluate every fold × grid point (and the inner-split heads) in one pass.

    A head whose loss diverged is not evaluated; the reported (default) head of a fold must
    not diverge, even with `on_nonfinite="skip"`. `checkpoint`: see `train.train_heads`. The
    caller has checked the cache's folds (`check_folds`)."""
    grid = list(grid) if grid else [GridPoint.of(config)]
    device = resolve_device(config.device)
    heads, evaluates, inner_of = _grid_heads(cache, folds, config, grid, device)
    trained = train_heads(cache, heads, config, progress=progress, checkpoint=checkpoint)
    by_name = {head.name: head for head in heads}
    families = list(dict.fromkeys(p.probe for p in grid if p.probe is not None))
    # the reported head and, in a grid of families, each family's (grid[0] is the first's)
    reported = [grid[0]] + [next(q for q in grid if q.probe == f) for f in families[1:]]
    for k, point in itertools.product(folds, reported):
        if (head := by_name[f"fold{k}/{point.name}"]).failed is not None:
            raise TrainingError(
                f"{head.describe()} is the fold's reported head and its loss "
                f"{head.failed['loss']} at epoch {head.failed['epoch']} is not "
                "finite: lower --lr"
            )
    tables = score_videos(
        cache,
        {n: (by_name[n].probe, rows) for n, rows in evaluates.items() if by_name[n].failed is None},
        device=device,
        batch_clips=config.eval_batch_clips,
        autocast=config.autocast,
        threads=config.num_workers,
        prefetch=config.prefetch,
        progress=progress,
    )
    out = GridResult(
        list(folds),
        grid,
        {},
        plan=trained.plan.describe(),
        pass_epochs=trained.epochs,
        failed=failed_heads(heads),
    )
    for k in folds:
        for point in grid:
            head = by_name[f"fold{k}/{point.name}"]
            if head.failed is not None:
                continue
            clips = tables[head.name]
            table, metrics = fold_metrics(k, clips, cache.class_names, len(head.rows), head.history)
            metrics["head"] = {"name": point.name, **point.record()}
            if head.draw is not None:  # a few-shot head: its draw, short classes named
                metrics["few_shot"] = head.draw.record(cache.class_names)
            out.results[(k, point.name)] = FoldResult(
                k, head.probe.cpu().eval(), clips, table, metrics, head.history
            )
        if len(grid) == 1:
            out.selected[k] = grid[0].name
            continue
        out.selected[k] = _select(k, inner_of[k], grid, by_name, tables, cache, out.inner)
    return out
