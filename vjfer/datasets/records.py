"""What every dataset adapter produces: `VideoRecord`s (one usable video or frame folder each),
named `Exclusion`s, the `DatasetIndex` holding both, and the exclusion reasons with the fix for
each.

A record's `path` is a video file or a folder of frames (DFEW, FERV39k, MAFW); `label` indexes the
dataset's class order (`vjfer.labels.CLASSES`), `label_name` is its vocabulary name; `actor` is the
group folds keep apart (an actor where the dataset names one, else the clip itself); `fold` is the
fold whose test set holds the video (0: training only, as FERV39k's official train set).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vjfer.errors import DatasetError

log = logging.getLogger(__name__)

TRAIN_ONLY = 0  # fold of a video no test set holds (a single official train/test split's train)
LFS_HEADER = b"version https://git-lfs"  # how a git-LFS pointer file starts
_DIGITS = re.compile(r"([0-9]+)")  # ASCII: other digits sort as text (`ascii_number`)

# Exclusion reasons (the categories `summarize` counts), each with the fix `format_index_summary`
# prints.
UNPARSABLE = "name does not parse"
UNKNOWN_EMOTION = "unknown emotion code"
AUDIO_ONLY = "audio-only, no video"
NOT_SELECTED = "modality or vocal channel not selected"
UNKNOWN_ACTOR = "actor not in splits"
FOLDER_MISMATCH = "actor folder mismatch"
EMPTY = "empty file (0 bytes)"
LFS_POINTER = "git-LFS pointer, not a video"
BROKEN_LINK = "link target missing"
NO_FRAMES = "split row without frames"
NOT_LISTED = "frame folder no split lists"
EMPTY_FOLDER = "empty frame folder"
UNKNOWN_LABEL = "unknown label"
MULTI_LABEL = "multi-label clip"
DUPLICATE = "duplicate id"
BAD_ROW = "split row does not parse"
EXPECTED = (AUDIO_ONLY, NOT_SELECTED)  # exclusions by design: counted, listed only on request
HINTS: dict[str, str] = {
    UNPARSABLE: "rename to the dataset's naming scheme or move the file out of the root",
    UNKNOWN_EMOTION: "emotion codes: RAVDESS 01..08, CREMA-D NEU HAP SAD ANG FEA DIS",
    AUDIO_ONLY: "expected: audio-only files carry no faces",
    NOT_SELECTED: "by choice: the default keeps speech (VV 01) of modalities 01 and 02",
    UNKNOWN_ACTOR: "actors are RAVDESS 1..24, CREMA-D 1001..1091 (splits/*.csv)",
    FOLDER_MISMATCH: "move the file into the Actor_XX folder its AA field names",
    EMPTY: "re-download the file (CREMA-D's 1064_TIE_SAD_XX is empty in the original release)",
    LFS_POINTER: "fetch the videos themselves with `git lfs pull` in the dataset clone",
    BROKEN_LINK: "fetch it with `git annex get` / `datalad get` (an un-fetched annexed file)",
    NO_FRAMES: "the split names a clip whose frame folder is missing or empty: unpack it again",
    NOT_LISTED: "expected for clips outside the split (DFEW: multi-label, MAFW: compound ones)",
    EMPTY_FOLDER: "the folder holds no .jpg/.png frames: unpack that clip again",
    UNKNOWN_LABEL: "the label is not one of the dataset's classes: fix the split or list file",
    MULTI_LABEL: "the clip has more than one label; the single-label protocol leaves it out",
    DUPLICATE: "the id appears twice (in one split, or as two files): keep one",
    BAD_ROW: "a split/list row must be in the release's format (see README, More datasets)",
}
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class VideoRecord:
    """One usable video. Fields a dataset lacks are None (RAVDESS: sentence, level; CREMA-D: the
    rest)."""

    path: Path  # a video file, or a folder of frames
    video_id: str  # file stem or clip id, unique within a dataset
    dataset: str
    label: int
    label_name: str
    actor: int  # RAVDESS 1..24, CREMA-D 1001..1091; elsewhere the group folds keep apart
    fold: int  # the fold in which this video is tested; TRAIN_ONLY (0) for never
    modality: int | None = None  # RAVDESS MM: 1 audio-video, 2 video-only
    vocal_channel: int | None = None  # RAVDESS VV: 1 speech, 2 song
    intensity: int | None = None  # RAVDESS II: 1 normal, 2 strong
    statement: int | None = None  # RAVDESS SS: 1 "Kids are talking...", 2 "Dogs are sitting..."
    repetition: int | None = None  # RAVDESS RR
    sentence: str | None = None  # CREMA-D SSS, e.g. "TIE"
    level: str | None = None  # CREMA-D LL: LO, MD, HI, XX


@dataclass(frozen=True)
class Exclusion:
    """An item found under the root (or named by a split) and not indexed, with its reason."""

    path: Path
    reason: str
    detail: str = ""


@dataclass
class DatasetIndex:
    dataset: str
    root: Path
    records: list[VideoRecord]  # sorted by video_id
    excluded: list[Exclusion] = field(default_factory=list)  # sorted by path
    splits: str = "official"  # the fold protocol the records' folds follow
    fps: float | None = None  # frame folders: the frame rate declared for timelines
    classes: tuple[str, ...] = ()  # class order when not the dataset's (`labels.CLASSES`): a list's


class Skip(DatasetError):
    """An item that is excluded; carries the reason category and the item's detail."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def ascii_number(text: str) -> int | None:
    """The number ASCII digits spell, else None: `str.isdigit` also says yes to `²` and `٣`,
    which `int` refuses or reads as another digit."""
    return int(text) if text.isascii() and text.isdigit() else None


def natural_key(name: str) -> tuple:
    """Sort key putting `2.jpg` before `10.jpg` (digit runs compare as numbers)."""
    return tuple(n if (n := ascii_number(p)) is not None else p for p in _DIGITS.split(name))


def is_lfs_pointer(head: bytes, size: int) -> bool:
    """Whether a file of `size` bytes starting with `head` is a git-LFS pointer (a clone without
    `git lfs pull`): pointers are ~130 bytes of text; no real video is under 1 KiB."""
    return size < 1024 and head.startswith(LFS_HEADER)


def check_content(path: Path) -> None:
    """Exclude broken links, empty files and git-LFS pointers (a clone without `git lfs pull`)."""
    if path.is_symlink() and not path.exists():
        raise Skip(BROKEN_LINK, f"-> {os.readlink(path)}")
    size = path.stat().st_size
    if size == 0:
        raise Skip(EMPTY, "0 bytes")
    if size < 1024:
        with path.open("rb") as fh:
            if is_lfs_pointer(fh.read(len(LFS_HEADER)), size):
                raise Skip(LFS_POINTER, f"{size}-byte pointer text")


def check_root(dataset: str, root: Path, hint: str) -> Path:
    """`root` as an absolute path; DatasetError when it is missing or not a folder."""
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DatasetError(f"{dataset} root {root} {what}; {hint}")
    return root


def finish_index(index: DatasetIndex) -> DatasetIndex:
    """Sort records and exclusions and log them; DatasetError when nothing is usable."""
    reasons = Counter(e.reason for e in index.excluded)
    if not index.records:
        counts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        raise DatasetError(
            f"no usable {index.dataset} videos under {index.root}: "
            f"all {len(index.excluded)} excluded ({counts})"
        )
    index.records.sort(key=lambda r: r.video_id)
    index.excluded.sort(key=lambda e: str(e.path))
    log.info(
        "%s: %d videos, %d items excluded, under %s",
        index.dataset,
        len(index.records),
        len(index.excluded),
        index.root,
    )
    for reason, n in reasons.items():
        if reason not in EXPECTED:  # the expected exclusions stay quiet
            log.warning("%s: %d items excluded: %s (%s)", index.dataset, n, reason, HINTS[reason])
    return index
