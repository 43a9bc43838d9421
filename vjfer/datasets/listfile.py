"""A dataset from a list file: CSV with `path,label` and optional `group`, `fold`, `split` columns;
paths relative to the root, each a video file or a folder of frames.

Folds: a `fold` column (0 = train only) or a `split` column (train/test: one fold) as written
(`--splits file`), or the `group`s dealt into `num_folds` seeded folds (`--splits groups`). A label
the vocabulary knows (`Happy`, `anger`) becomes its vocabulary name, so `vjfer cross` matches it;
any other is a class of its own. The class order is the sorted labels of every row (a missing file
never shifts the indices), unless a `# classes: neutral, happy, sad` line before the header declares
it. The file's sha256, fold protocol and classes enter the cache's fingerprint (`ListIdentity`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from vjfer.datasets.folds import check_splits, group_folds
from vjfer.datasets.frames import count_frame_files, numbered
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
    ascii_number,
    check_content,
    check_root,
    finish_index,
)
from vjfer.digests import sha256_file
from vjfer.errors import DatasetError
from vjfer.files import read_utf8
from vjfer.labels import vocabulary_name

DEFAULT_FOLDS = 5
GROUP_SEED = 0  # the seed of `--splits groups` (stated in the index and recorded in the cache)
SPLIT_WORDS = {"train": TRAIN_ONLY, "test": 1}
CLASSES_LINE = "# classes:"  # a comment line before the header declaring the class order


@dataclass(frozen=True)
class ListFile:
    """A list file's rows (columns stripped) and its declared class order (None: not declared)."""

    rows: list[dict[str, str]]  # blank and whitespace-only lines left out
    declared: tuple[str, ...] | None
    lines: list[int]  # each row's line in the file


@dataclass(frozen=True)
class ListIdentity:
    """What of a list file decides the tokens' labels and folds: a cache fingerprint input."""

    sha256: str
    splits: str  # file (its fold/split columns) or groups (seeded group folds)
    classes: tuple[str, ...]  # class order: index = label
    num_folds: int | None  # groups: the folds dealt; file: None (as written)
    seed: int | None  # groups: the dealing seed


def label_name(word: str) -> str:
    """A list label's class name: the vocabulary's name of a word it knows, else the word."""
    return vocabulary_name(word) or word.strip()


def _declared(lines: list[str], path: Path) -> tuple[tuple[str, ...] | None, int]:
    """The declared class order of the leading comment lines, and how many lines they are."""
    declared, skip = None, 0
    while skip < len(lines) and lines[skip].lstrip().startswith("#"):
        line = lines[skip].strip()
        if line.lower().startswith(CLASSES_LINE):
            names = [label_name(n) for n in line[len(CLASSES_LINE) :].split(",") if n.strip()]
            if not names or len(set(names)) != len(names):
                raise DatasetError(
                    f"{path} line {skip + 1}: '{CLASSES_LINE} a, b, ...' must name "
                    f"each class once, got {line!r}"
                )
            declared = tuple(names)
        skip += 1
    return declared, skip


def read_list(path: Path) -> ListFile:
    """The rows of a list file, checked for its required columns, and its declared classes."""
    if not path.is_file():
        raise DatasetError(f"list file {path} does not exist; pass --list FILE (CSV path,label)")
    lines = read_utf8(path, "list file", DatasetError).splitlines(keepends=True)
    declared, skip = _declared(lines, path)
    reader = csv.DictReader(io.StringIO("".join(lines[skip:]), newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    if not {"path", "label"} <= set(columns):
        raise DatasetError(f"{path}: header must hold 'path' and 'label', got {columns}")
    rows, numbers = [], []
    for row in reader:
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        if any(cells.values()):  # a whitespace-only line is no row
            rows.append(cells)
            numbers.append(skip + reader.line_num)
    return ListFile(rows, declared, numbers)


def list_splits(listing: ListFile, splits: str | None) -> str:
    """The fold protocol: `splits`, checked, or `file` when the list has fold/split columns."""
    has_folds = bool(listing.rows) and ("fold" in listing.rows[0] or "split" in listing.rows[0])
    return check_splits("list", splits or ("file" if has_folds else "groups"))


def list_classes(listing: ListFile) -> tuple[str, ...]:
    """The class order: the declared one, else the sorted names of every labelled row."""
    if listing.declared is not None:
        return listing.declared
    return tuple(sorted({label_name(r["label"]) for r in listing.rows if r["label"]}))


def list_identity(
    path: Path, splits: str | None = None, num_folds: int = DEFAULT_FOLDS
) -> ListIdentity:
    """The fingerprint input of a list file (`extract.cache_settings`)."""
    listing = read_list(Path(path))
    splits = list_splits(listing, splits)
    groups = splits == "groups"
    return ListIdentity(
        sha256_file(path),
        splits,
        list_classes(listing),
        num_folds if groups else None,
        GROUP_SEED if groups else None,
    )


def _fold(row: dict[str, str], line: int) -> int:
    if row.get("fold"):
        if (fold := ascii_number(row["fold"])) is None:
            raise Skip(BAD_ROW, f"line {line}: fold {row['fold']!r} is not a number")
        return fold
    if row.get("split", "").lower() not in SPLIT_WORDS:
        raise Skip(BAD_ROW, f"line {line}: split {row.get('split')!r} is not train or test")
    return SPLIT_WORDS[row["split"].lower()]


def _video_id(listed: str, line: int) -> str:
    """A row's video id: its path without the suffix, `/` as `-`; a path that is empty or leaves
    --root (absolute, or through `..`) is a bad row, never an id holding a machine's path."""
    relative = Path(listed)
    if not listed or relative.is_absolute() or ".." in relative.parts:
        raise Skip(BAD_ROW, f"line {line}: path {listed!r} is not a path inside --root")
    return relative.with_suffix("").as_posix().replace("/", "-")


def _check_item(path: Path) -> None:
    if path.is_dir():
        if count_frame_files(path) == 0:
            raise Skip(EMPTY_FOLDER, "no .jpg/.png frames")
    elif path.exists() or path.is_symlink():
        check_content(path)
    else:
        raise Skip(NO_FRAMES, "no such file or folder")


def scan(
    root: Path,
    *,
    list_file: Path | None = None,
    splits: str | None = None,
    num_folds: int = DEFAULT_FOLDS,
    seed: int = GROUP_SEED,
) -> DatasetIndex:
    """Index the items a list file names (relative to `root`)."""
    if list_file is None:
        raise DatasetError("--dataset list needs --list FILE (a CSV with path,label columns)")
    root = check_root("list", root, "pass --root DIR (the folder the list's paths start from)")
    listing = read_list(Path(list_file))
    rows, splits, names = listing.rows, list_splits(listing, splits), list_classes(listing)
    if not rows:
        raise DatasetError(f"{list_file}: no rows after the header; add one line per video")
    if len(names) < 2:
        raise DatasetError(
            f"{list_file}: one class ({', '.join(map(repr, names)) or 'none'}); a classifier needs "
            "two or more"
        )
    groups = [r.get("group") or r["path"] for r in rows]
    dealt = group_folds(groups, num_folds, seed) if splits == "groups" else {}
    numbers = numbered(set(groups))  # a row without a group is its own group
    kept, excluded = [], []
    seen: dict[str, tuple[int, str]] = {}  # video id -> (line, path) of its first row
    for line, row, group in zip(listing.lines, rows, groups, strict=True):
        path = root / row["path"]
        try:
            video_id = _video_id(row["path"], line)
            if video_id in seen:
                first, listed = seen[video_id]
                raise Skip(
                    DUPLICATE,
                    f"line {line}: {row['path']} is listed before, on line {first}"
                    if listed == row["path"]
                    else f"line {line}: {row['path']} has the id {video_id} of line {first} "
                    f"({listed}): rename one",
                )
            if not row["label"] or (name := label_name(row["label"])) not in names:
                raise Skip(
                    UNKNOWN_LABEL,
                    f"line {line}: label {row['label']!r}"
                    + (
                        f" is not one of the declared classes {', '.join(names)}"
                        if listing.declared
                        else ""
                    ),
                )
            fold = dealt[group] if splits == "groups" else _fold(row, line)
            _check_item(path)
        except Skip as skip:
            excluded.append(Exclusion(path, skip.reason, skip.detail))
            continue
        seen[video_id] = (line, row["path"])
        kept.append(
            VideoRecord(
                path,
                video_id,
                "list",
                names.index(name),
                name,
                numbers[group],
                fold,
            )
        )
    return finish_index(DatasetIndex("list", root, kept, excluded, splits, classes=names))
