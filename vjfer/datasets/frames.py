"""Frame-folder datasets (DFEW, FERV39k, MAFW, a list file of folders): finding the clip folders
without decoding, and joining them with split rows (clip id, label word, fold) into records and
named exclusions: a row whose folder is missing or empty, a folder no row lists, an unknown label,
a clip listed with two labels, a clip in two test sets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vjfer.datasets.records import (
    DUPLICATE,
    EMPTY_FOLDER,
    FRAME_SUFFIXES,
    MULTI_LABEL,
    NO_FRAMES,
    NOT_LISTED,
    TRAIN_ONLY,
    UNKNOWN_LABEL,
    DatasetIndex,
    Exclusion,
    VideoRecord,
    ascii_number,
    finish_index,
)
from vjfer.errors import DatasetError
from vjfer.labels import class_names

FIVE_SETS = range(1, 6)  # DFEW's and MAFW's official sets (folds)


@dataclass(frozen=True)
class SplitRow:
    """One row of a split file: which clip, its label as the release writes it, and whether the
    fold's test set (fold = k) or its train set (fold = TRAIN_ONLY) lists it."""

    clip: str
    label: str
    fold: int
    source: str  # split file and line, for the messages


def frame_names(folder: str | Path) -> list[str]:
    """Names of the frame files (.jpg/.jpeg/.png) in `folder`, in listing order; OSError passes."""
    with os.scandir(folder) as entries:
        return [e.name for e in entries if e.name.lower().endswith(FRAME_SUFFIXES)]


def count_frame_files(folder: Path) -> int:
    """Frame files in `folder`, by listing it (0 when it cannot be listed): nothing is decoded."""
    try:
        return len(frame_names(folder))
    except OSError:
        return 0


def numbered(names: Iterable[str], start: int = 1) -> dict[str, int]:
    """name -> start + its position in sorted(names); a repeated name keeps its last position."""
    return {name: start + i for i, name in enumerate(sorted(names))}


def clip_groups(clips: Iterable[str]) -> Callable[[str], int]:
    """Each clip its own group, for a release that names no actors (inner validation is then
    clip-disjoint): a clip id that is a number is its group (DFEW, MAFW: `00025` -> 25); other ids
    (FERV39k's `Action/Happy/0004`) are numbered in sorted order after the largest such number."""
    clips = list(clips)  # a clip listed twice takes two numbers, as FERV39k's always did
    numbers = {c: n for c in clips if (n := ascii_number(c)) is not None}
    others = numbered(
        [c for c in clips if c not in numbers], start=max(numbers.values(), default=0) + 1
    )
    return lambda clip: numbers[clip] if clip in numbers else others[clip]


def clip_folders(base: Path, depth: int, key: Callable[[Path], str]) -> dict[str, Path]:
    """clip id -> folder, for the folders `depth` levels below `base` (depth 1: base/<clip>/)."""
    level = [base]
    for _ in range(depth):
        nxt = []
        for folder in level:
            with os.scandir(folder) as entries:
                nxt += [Path(e.path) for e in entries if e.is_dir()]
        level = nxt
    return {key(folder): folder for folder in sorted(level)}


def first_folder(root: Path, candidates: Iterable[str], dataset: str) -> Path:
    """The first of `candidates` (paths under root) that is a folder; DatasetError naming all."""
    candidates = list(candidates)
    for name in candidates:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(
        f"{dataset}: no frame folder under {root}; expected one of "
        f"{', '.join(candidates)}: pass --root DIR to the dataset's top folder"
    )


def official_sets(
    dataset: str, path_of: Callable[[int, str], Path], hint: str
) -> Iterator[tuple[int, str, int, Path]]:
    """(k, part, fold, path) of the train and the test file of each of the five official sets
    (DFEW, MAFW): set k's test file gives its clips fold k, its train file TRAIN_ONLY.
    `path_of(k, part)` locates a file (part "train" or "test"); DatasetError, ending with
    `hint`, for a missing one."""
    for k in FIVE_SETS:
        for part, fold in (("train", TRAIN_ONLY), ("test", k)):
            path = path_of(k, part)
            if not path.is_file():
                raise DatasetError(f"{dataset}: split file {path} is missing; {hint}")
            yield k, part, fold, path


def _resolve_rows(rows: list[SplitRow]) -> tuple[dict[str, tuple[str, int]], list[Exclusion]]:
    """clip -> (label, fold) from every row; clips whose rows disagree are excluded."""
    labels: dict[str, set[str]] = {}
    tests: dict[str, list[SplitRow]] = {}
    for row in rows:
        labels.setdefault(row.clip, set()).add(row.label)
        if row.fold != TRAIN_ONLY:
            tests.setdefault(row.clip, []).append(row)
    resolved, excluded = {}, []
    for clip, words in labels.items():
        held = tests.get(clip, [])
        if len({w.strip().casefold() for w in words}) > 1:  # `Neutral` and `neutral` agree
            excluded.append(
                Exclusion(Path(clip), MULTI_LABEL, f"labels {', '.join(sorted(words))}")
            )
        elif len({r.fold for r in held}) > 1 or len(held) > 1:
            where = "; ".join(r.source for r in held)
            excluded.append(Exclusion(Path(clip), DUPLICATE, f"in test sets {where}"))
        else:
            resolved[clip] = (min(words), held[0].fold if held else TRAIN_ONLY)
    return resolved, excluded


def join_rows(
    dataset: str,
    root: Path,
    base: Path,
    rows: list[SplitRow],
    folders: dict[str, Path],
    to_name: Callable[[str], str | None],
    group: Callable[[str], int],
    splits: str,
    bad_rows: Iterable[Exclusion] = (),
) -> DatasetIndex:
    """Records for the clips the rows list and whose folder holds frames; the rest named.

    `base` holds the clip folders (a missing one is named where it should be); `to_name` turns
    a release's label word into a vocabulary name (None: unknown); `group` gives the clip's
    group for subject- or clip-disjoint folds; `bad_rows` are split rows that did not parse,
    listed with the other exclusions.
    """
    names = class_names(dataset)
    resolved, excluded = _resolve_rows(rows)
    excluded += bad_rows
    records = []
    for clip, (word, fold) in sorted(resolved.items()):
        folder = folders.get(clip)
        name = to_name(word)
        if folder is None:
            excluded.append(Exclusion(base / clip, NO_FRAMES, "no frame folder"))
        elif name not in names:
            excluded.append(Exclusion(folder, UNKNOWN_LABEL, f"label {word!r}"))
        elif count_frame_files(folder) == 0:
            excluded.append(Exclusion(folder, EMPTY_FOLDER, "no .jpg/.png frames"))
        else:
            records.append(
                VideoRecord(
                    folder,
                    clip.replace("/", "-"),
                    dataset,
                    names.index(name),
                    name,
                    group(clip),
                    fold,
                )
            )
    listed = {r.clip for r in rows}
    excluded += [Exclusion(folders[c], NOT_LISTED, "") for c in sorted(set(folders) - listed)]
    return finish_index(DatasetIndex(dataset, root, records, excluded, splits))
