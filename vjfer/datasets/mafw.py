"""MAFW (Liu et al., ACM MM 2022): face-frame folders, 11 single-label classes, official 5 folds.

Splits `split/single/no_caption/set_k/{train,test}.txt`, no header, space-separated
`<clip>.<ext> <label>`; frames `data/faces/<05d>/` (the official face crops, DFER-CLIP) or
`data/frames/<05d>/` (MAE-DFER). Results depend on using the official face frames (MAE-DFER issue
22). The two public loaders order the labels differently; the cache keeps names.
"""

from __future__ import annotations

from pathlib import Path

from vjfer.datasets.folds import check_splits
from vjfer.datasets.frames import (
    SplitRow,
    clip_folders,
    clip_groups,
    first_folder,
    join_rows,
    official_sets,
)
from vjfer.datasets.records import BAD_ROW, DatasetIndex, Exclusion, check_root
from vjfer.errors import DatasetError
from vjfer.files import read_utf8
from vjfer.labels import vocabulary_name

FRAME_DIRS = ("data/faces", "data/frames")
SPLIT_DIR = "split/single/no_caption"


def read_rows(root: Path) -> tuple[list[SplitRow], list[Exclusion]]:
    """Every row of the 10 split files; rows that do not parse are named."""
    rows, bad = [], []
    hint = "pass --root to the folder holding split/ and data/"
    for k, part, fold, path in official_sets(
        "mafw", lambda k, part: root / SPLIT_DIR / f"set_{k}" / f"{part}.txt", hint
    ):
        for line, text in enumerate(read_utf8(path, "split file", DatasetError).splitlines(), 1):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != 2:
                bad.append(Exclusion(path, BAD_ROW, f"line {line}: {text!r}"))
                continue
            clip = parts[0].split(".")[0]  # "00025.mp4" -> "00025", as both loaders do
            rows.append(SplitRow(clip, parts[1], fold, f"set_{k}/{part}.txt line {line}"))
    return rows, bad


def scan(root: Path, *, splits: str | None = None) -> DatasetIndex:
    """Index a MAFW release: every single-label clip with frames, with its official fold."""
    root = check_root("mafw", root, "pass --root DIR (the folder holding split/ and data/)")
    splits = check_splits("mafw", splits)
    base = first_folder(root, FRAME_DIRS, "mafw")
    rows, bad = read_rows(root)
    folders = clip_folders(base, 1, lambda p: p.name)
    group = clip_groups(r.clip for r in rows)
    return join_rows("mafw", root, base, rows, folders, vocabulary_name, group, splits, bad)
