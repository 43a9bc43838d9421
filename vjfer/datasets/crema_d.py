"""CREMA-D: `VideoFlash/AAAA_SSS_EEE_LL.flv` (or flat): actor, sentence, emotion, level from the
name; folds from splits/crema_d.csv (the paper's Table I)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypedDict

from vjfer.datasets.folds import actor_folds, check_splits
from vjfer.datasets.records import (
    UNKNOWN_ACTOR,
    UNKNOWN_EMOTION,
    UNPARSABLE,
    DatasetIndex,
    Skip,
    VideoRecord,
    check_root,
    finish_index,
)
from vjfer.datasets.videofiles import find_files, refuse_duplicates, scan_files
from vjfer.labels import CREMA_D_CODES, class_index

ENV_VAR = "VJFER_CREMA_D"
LAYOUT = "VideoFlash/AAAA_SSS_EEE_LL.flv"
CREMA_D_SENTENCES: tuple[str, ...] = (
    "IEO",
    "TIE",
    "IOM",
    "IWW",
    "TAI",
    "MTI",
    "IWL",
    "ITH",
    "DFA",
    "ITS",
    "TSI",
    "WSI",
)
CREMA_D_LEVELS: tuple[str, ...] = ("LO", "MD", "HI", "XX")  # low, medium, high, unspecified
_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


class CremaDName(TypedDict):
    """The fields of a CREMA-D file name (`parse_crema_d_name`)."""

    actor: int
    sentence: str
    emotion: str  # vocabulary name, e.g. "anger"
    level: str


def parse_crema_d_name(stem: str) -> CremaDName:
    """`AAAA_SSS_EEE_LL` -> actor, sentence, emotion (vocabulary name), level."""
    if not (m := _NAME.fullmatch(stem)):
        raise Skip(UNPARSABLE, f"{stem!r} is not AAAA_SSS_EEE_LL (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = m.groups()
    for field_name, value, known in (
        ("sentence", sentence, CREMA_D_SENTENCES),
        ("level", level, CREMA_D_LEVELS),
    ):
        if value not in known:
            raise Skip(UNPARSABLE, f"{stem!r}: {field_name} {value} not one of {', '.join(known)}")
    if emotion not in CREMA_D_CODES:
        raise Skip(
            UNKNOWN_EMOTION, f"{stem!r}: emotion {emotion} not one of {', '.join(CREMA_D_CODES)}"
        )
    return {
        "actor": int(actor),
        "sentence": sentence,
        "emotion": CREMA_D_CODES[emotion],
        "level": level,
    }


def _record(path: Path, folds: dict[int, int]) -> VideoRecord:
    f = parse_crema_d_name(path.stem)
    if f["actor"] not in folds:
        raise Skip(UNKNOWN_ACTOR, f"actor {f['actor']}")
    label = class_index("crema-d", f["emotion"])
    return VideoRecord(
        path,
        path.stem,
        "crema-d",
        label,
        f["emotion"],
        f["actor"],
        folds[f["actor"]],
        sentence=f["sentence"],
        level=f["level"],
    )


def scan(root: Path, *, splits: str | None = None) -> DatasetIndex:
    """Index every CREMA-D .flv under `root` (or its VideoFlash/ folder)."""
    root = check_root("crema-d", root, f"pass --root DIR or set {ENV_VAR}")
    splits = check_splits("crema-d", splits)
    folds = actor_folds("crema-d", splits)
    base = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    files = find_files(
        "crema-d",
        base,
        (".flv",),
        (),
        f"expected {LAYOUT}: pass --root DIR (or set {ENV_VAR}) to the folder that holds them",
    )
    records, excluded = scan_files(files, lambda p: _record(p, folds))
    index = finish_index(DatasetIndex("crema-d", root, records, excluded, splits))
    refuse_duplicates(index.records)
    return index
