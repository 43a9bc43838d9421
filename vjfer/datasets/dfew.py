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
import io
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
from vjfer.datasets.records import BAD_ROW, DatasetIndex, Exclusion, ascii_number, check_root
from vjfer.errors import DatasetError
from vjfer.files import read_utf8
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
        table = list(
            csv.reader(io.StringIO(read_utf8(path, "split file", DatasetError), newline=""))
        )
        if not table or [c.strip() for c in table[0]] != ["video_name", "label"]:
            raise DatasetError(f"{path}: header must be 'video_name,label'")
        for line, row in enumerate(table[1:], start=2):
            if not any(cell.strip() for cell in row):  # a blank line (trailing ones are common)
                continue
            number = ascii_number(row[0].strip())
            if number is None or len(row) < 2:
                bad.append(Exclusion(path, BAD_ROW, f"line {line}: {row}"))
                continue
            rows.append(SplitRow(f"{number:05d}", row[1].strip(), fold, f"{path.name} line {line}"))
    return rows, bad


def _name(code: str) -> str | None:
    """DFEW's label 1..7 -> its vocabulary name."""
    names = class_names("dfew")
    number = ascii_number(code)
    return names[number - 1] if number is not None and 1 <= number <= len(names) else None


def scan(root: Path, *, splits: str | None = None) -> DatasetIndex:
    """Index a DFEW release: every single-labelled clip with frames, with its official fold."""
    root = check_root("dfew", root, f"pass --root DIR (the folder holding Clip/ and {SPLIT_DIR}/)")
    splits = check_splits("dfew", splits)
    base = first_folder(root, FRAME_DIRS, "dfew")
    rows, bad = read_rows(root)
    folders = clip_folders(base, 1, lambda p: p.name)
    group = clip_groups(r.clip for r in rows)
    return join_rows("dfew", root, base, rows, folders, _name, group, splits, bad)
