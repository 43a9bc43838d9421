"""Folds of any count: the paper's actor splits (`splits/*.csv`), the peers' 6-fold RAVDESS
protocol, seeded group folds for a list file, and the (train, test) rows of a fold.

A video's `fold` is the fold whose test set holds it; `TRAIN_ONLY` (0) marks a video that is only
ever trained on (FERV39k's official train set: one train/test split is one fold, fold 1).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import vjfer
from vjfer.datasets.records import TRAIN_ONLY, VideoRecord
from vjfer.errors import SplitError
from vjfer.labels import check_dataset

PAPER_FOLDS = 5  # the paper's subject-independent folds (splits/*.csv)
ACTORS: dict[str, range] = {"ravdess": range(1, 25), "crema-d": range(1001, 1092)}
SPLIT_FILES: dict[str, str] = {"ravdess": "ravdess.csv", "crema-d": "crema_d.csv"}
# Fold protocols per dataset; the first is the default. "paper": splits/*.csv; "mae-dfer": the
# peers' RAVDESS 6-fold CV (MAE-DFER / HiCMAE saved/data/ravdess/split01..06: fold k = actors
# 4k-3..4k); "official": the release's own split files; "file"/"groups": a list file's columns or
# seeded group folds.
SPLITS: dict[str, tuple[str, ...]] = {
    "ravdess": ("paper", "mae-dfer"),
    "crema-d": ("paper",),
    "dfew": ("official",),
    "ferv39k": ("official",),
    "mafw": ("official",),
    "list": ("file", "groups"),
}
MAE_DFER_ACTORS_PER_FOLD = 4


def _splits_file(dataset: str) -> Path:
    """splits/<file> inside the installed package (wheel), else in the source checkout."""
    name = SPLIT_FILES[dataset]
    package = Path(vjfer.__file__).resolve().parent
    candidates = [package / "splits" / name, package.parent / "splits" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise SplitError(f"no split file {name}; looked in {', '.join(map(str, candidates))}")


def check_splits(dataset: str, splits: str | None) -> str:
    """The fold protocol to use: `splits`, checked against the dataset's, or its default."""
    known = SPLITS[dataset]
    if splits is None:
        return known[0]
    if splits not in known:
        raise SplitError(
            f"--splits {splits} does not apply to {dataset}; it has: {', '.join(known)}"
        )
    return splits


def read_folds(path: str | Path, dataset: str) -> dict[int, int]:
    """Read and check an `actor,fold` CSV: every actor of `dataset` exactly once, folds 1..5."""
    dataset, path = check_dataset(dataset), Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0]] != ["actor", "fold"]:
        raise SplitError(
            f"{path}: header must be 'actor,fold', got {','.join(rows[0] if rows else [])!r}"
        )
    folds: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            actor, fold = (int(c) for c in row)
        except ValueError as err:
            raise SplitError(f"{path} line {line}: expected two integers, got {row}") from err
        if actor in folds:
            raise SplitError(f"{path} line {line}: actor {actor} appears twice")
        if not 1 <= fold <= PAPER_FOLDS:
            raise SplitError(f"{path} line {line}: fold {fold} outside 1..{PAPER_FOLDS}")
        folds[actor] = fold
    expected = set(ACTORS[dataset])
    if missing := sorted(expected - set(folds)):
        raise SplitError(f"{path}: actors missing: {missing}")
    if extra := sorted(set(folds) - expected):
        raise SplitError(f"{path}: actors not in {dataset}: {extra}")
    if empty := sorted(set(range(1, PAPER_FOLDS + 1)) - set(folds.values())):
        raise SplitError(f"{path}: folds without actors: {empty}")
    return folds


def load_folds(dataset: str) -> dict[int, int]:
    """Actor -> fold (1..5) from splits/ravdess.csv or splits/crema_d.csv, checked."""
    dataset = check_dataset(dataset)
    return read_folds(_splits_file(dataset), dataset)


def mae_dfer_folds() -> dict[int, int]:
    """RAVDESS actor -> fold of the peers' 6-fold protocol: fold k tests actors 4k-3..4k."""
    return {a: (a - 1) // MAE_DFER_ACTORS_PER_FOLD + 1 for a in ACTORS["ravdess"]}


def actor_folds(dataset: str, splits: str) -> dict[int, int]:
    """Actor -> fold for a lab dataset (RAVDESS, CREMA-D) under the protocol `splits`."""
    return mae_dfer_folds() if splits == "mae-dfer" else load_folds(dataset)


def group_folds(groups: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """Group -> fold 1..k: the sorted groups shuffled by `seed`, dealt round-robin (so fold sizes
    in groups differ by at most one). Same groups and seed, same folds."""
    unique = sorted(set(groups))
    if len(unique) < k:
        raise SplitError(
            f"{len(unique)} groups cannot make {k} group folds; list at least {k} groups (the "
            "group column, one subject each), or give the folds in a fold or split column"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[j]: i % k + 1 for i, j in enumerate(order)}


def fold_numbers(folds: Sequence[int]) -> list[int]:
    """The test folds present: every fold number but TRAIN_ONLY, sorted."""
    return sorted({int(f) for f in folds} - {TRAIN_ONLY})


def fold_rows(folds: Sequence[int], actors: Sequence[int], k: int) -> tuple[list[int], list[int]]:
    """(train, test) positions for test fold k, given each video's fold and actor: test holds fold
    k's videos, train all others. SplitError when an actor is on both sides or a side is empty."""
    last = max(fold_numbers(folds), default=0)  # folds are numbered 1..last
    if not 1 <= k <= last:
        raise SplitError(f"fold {k} does not exist; folds are 1..{last}")
    train = [i for i, f in enumerate(folds) if f != k]
    test = [i for i, f in enumerate(folds) if f == k]
    if leaked := sorted({int(actors[i]) for i in test} & {int(actors[i]) for i in train}):
        raise SplitError(
            f"fold {k}: test actors {leaked} also appear in training (videos disagree on fold)"
        )
    if not test or not train:
        raise SplitError(
            f"fold {k}: {len(train)} training and {len(test)} test videos; both must be non-empty"
        )
    return train, test


def fold_split(
    records: Sequence[VideoRecord], k: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(train, test) records for fold k (`fold_rows`); the records must be of one dataset."""
    if len(datasets := {r.dataset for r in records}) > 1:
        raise SplitError(f"records mix datasets {sorted(datasets)}; split one dataset at a time")
    train, test = fold_rows([r.fold for r in records], [r.actor for r in records], k)
    return [records[i] for i in train], [records[i] for i in test]
