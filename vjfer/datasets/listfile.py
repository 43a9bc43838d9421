"""A dataset from a list file: CSV with `path,label` and optional `group`, `fold`, `split` columns;
paths relative to the root, each a video file or a folder of frames.

Folds: a `fold` column (test fold per row; 0 = train only) or a `split` column (train/test: one
fold) gives them as written (`--splits file`); otherwise `--splits groups` deals the `group`s (the
rows themselves without one) into `num_folds` seeded folds (`folds.group_folds`). Labels are the
vocabulary's names (`happy`, `Anger`, ...); the class order is the vocabulary's, of those present.
"""

from __future__ import annotations

import csv
from pathlib import Path

from vjfer.datasets.folds import check_splits, group_folds
from vjfer.datasets.frames import count_frames
from vjfer.datasets.records import (
    BAD_ROW,
    DUPLICATE,
    EMPTY_FOLDER,
    NO_FRAMES,
    TRAIN_ONLY,
    UNKNOWN_LABEL,
    DatasetIndex,
    Exclusion,
    Skip,
    VideoRecord,
    check_content,
    check_root,
    finish_index,
)  # fmt: skip
from vjfer.errors import DatasetError
from vjfer.labels import VOCABULARY, vocabulary_name

DEFAULT_FOLDS = 5
SPLIT_WORDS = {"train": TRAIN_ONLY, "test": 1}


def read_list(path: Path) -> list[dict[str, str]]:
    """The rows of a list file, checked for its required columns."""
    if not path.is_file():
        raise DatasetError(f"list file {path} does not exist; pass --list FILE (CSV path,label)")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in reader.fieldnames or []]
        if not {"path", "label"} <= set(columns):
            raise DatasetError(f"{path}: header must hold 'path' and 'label', got {columns}")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def _fold(row: dict[str, str], line: int) -> int:
    if row.get("fold"):
        if not row["fold"].isdigit():
            raise Skip(BAD_ROW, f"line {line}: fold {row['fold']!r} is not a number")
        return int(row["fold"])
    if row.get("split", "").lower() not in SPLIT_WORDS:
        raise Skip(BAD_ROW, f"line {line}: split {row.get('split')!r} is not train or test")
    return SPLIT_WORDS[row["split"].lower()]


def _check_item(path: Path) -> None:
    if path.is_dir():
        if count_frames(path) == 0:
            raise Skip(EMPTY_FOLDER, "no .jpg/.png frames")
    elif path.exists() or path.is_symlink():
        check_content(path)
    else:
        raise Skip(NO_FRAMES, "no such file or folder")


def scan(root: Path, *, list_file: Path | None = None, splits: str | None = None,
         num_folds: int = DEFAULT_FOLDS, seed: int = 0) -> DatasetIndex:  # fmt: skip
    """Index the items a list file names (relative to `root`)."""
    if list_file is None:
        raise DatasetError("--dataset list needs --list FILE (a CSV with path,label columns)")
    root = check_root("list", root, "pass --root DIR (the folder the list's paths start from)")
    rows = read_list(Path(list_file))
    has_folds = bool(rows) and ("fold" in rows[0] or "split" in rows[0])
    splits = check_splits("list", splits or ("file" if has_folds else "groups"))
    groups = [r.get("group") or r["path"] for r in rows]
    dealt = group_folds(groups, num_folds, seed) if splits == "groups" else {}
    numbers = {g: i + 1 for i, g in enumerate(sorted(set(groups)))}
    names = sorted({vocabulary_name(r["label"]) for r in rows} - {None}, key=VOCABULARY.index)
    kept, excluded, seen = [], [], set()
    for line, (row, group) in enumerate(zip(rows, groups, strict=True), start=2):
        path, video_id = root / row["path"], Path(row["path"]).with_suffix("").as_posix()
        try:
            if video_id in seen:
                raise Skip(DUPLICATE, f"line {line}: {video_id} listed before")
            if (name := vocabulary_name(row["label"])) is None:
                raise Skip(UNKNOWN_LABEL, f"line {line}: label {row['label']!r}")
            fold = dealt[group] if splits == "groups" else _fold(row, line)
            _check_item(path)
        except Skip as skip:
            excluded.append(Exclusion(path, skip.reason, skip.detail))
            continue
        seen.add(video_id)
        kept.append(VideoRecord(path, video_id.replace("/", "-"), "list", names.index(name),
                                name, numbers[group], fold))  # fmt: skip
    return finish_index(DatasetIndex("list", root, kept, excluded, splits))
