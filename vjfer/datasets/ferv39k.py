"""FERV39k (Wang et al., CVPR 2022): face-frame folders and the one official train/test split.

Frames `2_ClipsforFaceCrop/<Scene>/<Emotion>/<NNNN>/`; splits `4_setups/All_scenes/train_All.csv`
and `test_All.csv`, no header, space-separated `<Scene>/<Emotion>/<NNNN> <Emotion>`. The split is
one fold: fold 1 tests the official test set, its train set is TRAIN_ONLY. FERV39k names no actors,
so each clip is its own group (inner validation is clip-disjoint).
"""

from __future__ import annotations

from pathlib import Path

from vjfer.datasets.folds import check_splits
from vjfer.datasets.frames import SplitRow, clip_folders, clip_groups, first_folder, join_rows
from vjfer.datasets.records import BAD_ROW, TRAIN_ONLY, DatasetIndex, Exclusion, check_root
from vjfer.errors import DatasetError
from vjfer.files import read_utf8
from vjfer.labels import vocabulary_name

FRAME_DIR = "2_ClipsforFaceCrop"
SPLIT_DIR = "4_setups/All_scenes"
PARTS = (("train_All.csv", TRAIN_ONLY), ("test_All.csv", 1))


def read_rows(root: Path) -> tuple[list[SplitRow], list[Exclusion]]:
    """The rows of train_All.csv and test_All.csv; rows that do not parse are named."""
    rows, bad = [], []
    for name, fold in PARTS:
        path = root / SPLIT_DIR / name
        if not path.is_file():
            raise DatasetError(
                f"ferv39k: split file {path} is missing; pass --root to the "
                f"folder holding {SPLIT_DIR.split('/')[0]}/ and {FRAME_DIR}/"
            )
        for line, text in enumerate(
            read_utf8(path, "split file", DatasetError).splitlines(), start=1
        ):
            parts = text.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[0].count("/") != 2:
                bad.append(Exclusion(path, BAD_ROW, f"line {line}: {text!r}"))
                continue
            rows.append(SplitRow(parts[0], parts[1], fold, f"{name} line {line}"))
    return rows, bad


def scan(root: Path, *, splits: str | None = None) -> DatasetIndex:
    """Index a FERV39k release: every listed clip with frames; fold 1 = the official test set."""
    root = check_root("ferv39k", root, f"pass --root DIR (the folder holding {FRAME_DIR}/)")
    splits = check_splits("ferv39k", splits)
    base = first_folder(root, (FRAME_DIR,), "ferv39k")
    rows, bad = read_rows(root)
    folders = clip_folders(base, 3, lambda p: p.relative_to(base).as_posix())
    group = clip_groups(r.clip for r in rows)
    return join_rows("ferv39k", root, base, rows, folders, vocabulary_name, group, splits, bad)
