"""DFEW (Jiang et al., ACM MM 2020): folders of face frames and the official 5-fold single-label
split.

Frames `Clip/clip_224x224/<05d>/<05d>_<05d>.jpg` (MAE-DFER's `Clip/jpg_256/`, the `Clip/jpg_224/`
of other copies (MAE-DFER issue 17), the first release's `data_affine/single_label/data/`); splits
`EmoLabel_DataSplit/{train,test}(single-labeled)/set_k.csv`, header `video_name,label`, video_name
an integer (its folder is the 5-digit form), label 1..7 = Happy, Sad, Neutral, Angry, Surprise,
Disgust, Fear. A clip's fold is the set whose test file lists it; its group is the clip itself (DFEW
names no actors).
"""

from __future__ import annotations

import csv
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
from vjfer.labels import class_names

FRAME_DIRS = (
    "Clip/clip_224x224",
    "Clip/jpg_256",
    "Clip/jpg_224",
    "data_affine/single_label/data",
)  # the first that exists is read
SPLIT_DIR = "EmoLabel_DataSplit"


def split_file(root: Path, part: str, k: int) -> Path:
    """EmoLabel_DataSplit/<part>(single-labeled)/set_<k>.csv, part "train" or "test"."""
    return root / SPLIT_DIR / f"{part}(single-labeled)" / f"set_{k}.csv"


def read_rows(root: Path) -> tuple[list[SplitRow], list[Exclusion]]:
    """Every row of the 10 split files; rows that do not parse are named."""
    rows, bad = [], []
    hint = f"the release ships {SPLIT_DIR}/ beside Clip/: pass --root to their parent"
    for _, _, fold, path in official_sets("dfew", lambda k, part: split_file(root, part, k), hint):
        with path.open(newline="", encoding="utf-8-sig") as fh:
            table = list(csv.reader(fh))
        if not table or [c.strip() for c in table[0]] != ["video_name", "label"]:
            raise DatasetError(f"{path}: header must be 'video_name,label'")
        for line, row in enumerate(table[1:], start=2):
            try:
                clip = f"{int(row[0]):05d}"
                rows.append(SplitRow(clip, row[1].strip(), fold, f"{path.name} line {line}"))
            except (ValueError, IndexError):
                bad.append(Exclusion(path, BAD_ROW, f"line {line}: {row}"))
    return rows, bad


def _name(code: str) -> str | None:
    """DFEW's label 1..7 -> its vocabulary name."""
    names = class_names("dfew")
    return names[int(code) - 1] if code.isdigit() and 1 <= int(code) <= len(names) else None


def scan(root: Path, *, splits: str | None = None) -> DatasetIndex:
    """Index a DFEW release: every single-labelled clip with frames, with its official fold."""
    root = check_root("dfew", root, f"pass --root DIR (the folder holding Clip/ and {SPLIT_DIR}/)")
    splits = check_splits("dfew", splits)
    base = first_folder(root, FRAME_DIRS, "dfew")
    rows, bad = read_rows(root)
    folders = clip_folders(base, 1, lambda p: p.name)
    group = clip_groups(r.clip for r in rows)
    return join_rows("dfew", root, base, rows, folders, _name, group, splits, bad)
