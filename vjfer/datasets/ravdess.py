"""RAVDESS: `Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4` (or flat), labels and actors from the file name.

Kept by default: speech (VV 01) of both video-bearing modalities (01 audio-video, 02 video-only),
the paper's 2880 files; class index = EE - 1. Folds: `paper` (splits/ravdess.csv, 5 folds) or
`mae-dfer` (the peers' 6 folds of 4 actors; they use modality 02 only, 240 test clips a fold).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from vjfer.datasets.folds import actor_folds, check_splits
from vjfer.datasets.records import (
    AUDIO_ONLY,
    FOLDER_MISMATCH,
    NOT_SELECTED,
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
from vjfer.errors import ConfigError
from vjfer.labels import class_names

ENV_VAR = "VJFER_RAVDESS"
LAYOUT = "Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4"
MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
VOCAL_CHANNELS = {1: "speech", 2: "song"}
DEFAULT_MODALITIES: tuple[int, ...] = (1, 2)  # the two video-bearing modalities, as the paper
DEFAULT_VOCAL_CHANNELS: tuple[int, ...] = (1,)  # speech only, as the paper
_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_ACTOR_FOLDER = re.compile(r"Actor_(\d+)")


def parse_ravdess_name(stem: str) -> dict[str, int]:
    """`MM-VV-EE-II-SS-RR-AA` -> modality, vocal_channel, emotion, intensity, statement, repetition,
    actor.

    Raises DatasetError naming the field that is out of range; the emotion code is checked last so
    an otherwise valid name with emotion 09 reports "unknown emotion code".
    """
    if not (m := _NAME.fullmatch(stem)):
        raise Skip(UNPARSABLE, f"{stem!r} is not MM-VV-EE-II-SS-RR-AA (two digits each)")
    keys = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
    parsed = dict(zip(keys, map(int, m.groups()), strict=True))
    ranges = {"modality": 3, "vocal_channel": 2, "intensity": 2, "statement": 2, "repetition": 2}
    for key, high in ranges.items():
        if not 1 <= parsed[key] <= high:
            raise Skip(UNPARSABLE, f"{stem!r}: {key} {parsed[key]:02d} not in 01..{high:02d}")
    if not 1 <= parsed["emotion"] <= len(class_names("ravdess")):
        raise Skip(UNKNOWN_EMOTION, f"{stem!r}: emotion {parsed['emotion']:02d} not in 01..08")
    return parsed


def _record(path: Path, folds: dict[int, int], modalities, vocal_channels) -> VideoRecord:
    if path.suffix.lower() == ".wav":
        raise Skip(AUDIO_ONLY, f"{path.suffix} audio file")
    f = parse_ravdess_name(path.stem)
    if f["modality"] == 3:
        raise Skip(AUDIO_ONLY, "modality 03")
    mm, vv = f["modality"], f["vocal_channel"]
    if mm not in modalities:
        raise Skip(NOT_SELECTED, f"modality {mm:02d} ({MODALITIES[mm]})")
    if vv not in vocal_channels:
        raise Skip(NOT_SELECTED, f"vocal channel {vv:02d} ({VOCAL_CHANNELS[vv]})")
    if (m := _ACTOR_FOLDER.fullmatch(path.parent.name)) and int(m.group(1)) != f["actor"]:
        raise Skip(FOLDER_MISMATCH, f"in {path.parent.name} but AA is {f['actor']:02d}")
    if f["actor"] not in folds:
        raise Skip(UNKNOWN_ACTOR, f"actor {f['actor']:02d}")
    label = f["emotion"] - 1  # class index = EE - 1
    return VideoRecord(
        path,
        path.stem,
        "ravdess",
        label,
        class_names("ravdess")[label],
        f["actor"],
        folds[f["actor"]],
        modality=mm,
        vocal_channel=vv,
        intensity=f["intensity"],
        statement=f["statement"],
        repetition=f["repetition"],
    )


def options(
    modalities: Iterable[int] | None, vocal_channels: Iterable[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The modalities and vocal channels to keep (defaults: the paper's), checked."""
    modalities = DEFAULT_MODALITIES if modalities is None else tuple(modalities)
    vocal_channels = DEFAULT_VOCAL_CHANNELS if vocal_channels is None else tuple(vocal_channels)
    for option, value in (("modalities", modalities), ("vocal_channels", vocal_channels)):
        if not value or not set(value) <= {1, 2}:
            raise ConfigError(f"{option} must be a non-empty subset of (1, 2), got {value}")
    return modalities, vocal_channels


def scan(
    root: Path,
    *,
    splits: str | None = None,
    modalities: Iterable[int] | None = None,
    vocal_channels: Iterable[int] | None = None,
) -> DatasetIndex:
    """Index every RAVDESS file under `root` (searched recursively)."""
    hint = f"pass --root DIR or set {ENV_VAR}"
    root = check_root("ravdess", root, hint)
    splits = check_splits("ravdess", splits)
    mm, vv = options(modalities, vocal_channels)
    folds = actor_folds("ravdess", splits)
    files = find_files(
        "ravdess",
        root,
        (".mp4",),
        (".wav",),
        f"expected {LAYOUT}: pass --root DIR (or set {ENV_VAR}) to the folder that holds them",
    )
    records, excluded = scan_files(files, lambda p: _record(p, folds, mm, vv))
    index = finish_index(DatasetIndex("ravdess", root, records, excluded, splits))
    refuse_duplicates(index.records)
    return index
