"""Find RAVDESS / CREMA-D videos under a root, parse their file names, attach labels, actors, folds.

File names carry everything (docs/design.md, "Data"):

- RAVDESS `Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4` (or flat): modality, vocal channel, emotion, intensity,
  statement, repetition, actor. Kept by default: speech (VV 01) of both video-bearing modalities
  (01 audio-video, 02 video-only), the paper's 2880 files; class index = EE - 1.
- CREMA-D `VideoFlash/AAAA_SSS_EEE_LL.flv` (or flat): actor, sentence, emotion, level.

Error / exclusion policy: nothing found under a root silently vanishes.

- `DatasetError` (nothing useful can be indexed, or the result would be ambiguous): the root is
  missing or not a folder; no video file is found under it; every file found is excluded; two
  files share a video id (file stem). Inconsistent split files raise `SplitError`; options that
  do not apply raise `ConfigError`.
- Exclusion (one file is unusable or not wanted; listed in `DatasetIndex.excluded` with a reason,
  printed by `vjfer index`): a name that does not parse (or has a field out of range), an unknown
  emotion code, audio-only files (RAVDESS modality 03, and `.wav` files), a modality or vocal
  channel not selected (song by default), an actor absent from the splits, a file inside an
  `Actor_XX` folder that names another actor, an empty file, a git-LFS pointer instead of a video, a
  symbolic link whose target is missing (an un-fetched git-annex / DataLad file). Exclusions other
  than audio-only and not-selected are also logged as warnings.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import pandas as pd

import vjfer
from vjfer.errors import ConfigError, DatasetError, SplitError
from vjfer.labels import CREMA_D_CODES, check_dataset, class_index, class_names

log = logging.getLogger(__name__)

NUM_FOLDS = 5
ACTORS: dict[str, range] = {"ravdess": range(1, 25), "crema-d": range(1001, 1092)}
SPLIT_FILES: dict[str, str] = {"ravdess": "ravdess.csv", "crema-d": "crema_d.csv"}
ENV_VARS: dict[str, str] = {"ravdess": "VJFER_RAVDESS", "crema-d": "VJFER_CREMA_D"}
VIDEO_SUFFIXES: dict[str, tuple[str, ...]] = {"ravdess": (".mp4",), "crema-d": (".flv",)}
AUDIO_SUFFIXES: dict[str, tuple[str, ...]] = {"ravdess": (".wav",), "crema-d": ()}
LAYOUTS: dict[str, str] = {
    "ravdess": "Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4",
    "crema-d": "VideoFlash/AAAA_SSS_EEE_LL.flv",
}

RAVDESS_MODALITIES = {1: "audio-video", 2: "video-only", 3: "audio-only"}
RAVDESS_VOCAL_CHANNELS = {1: "speech", 2: "song"}
DEFAULT_MODALITIES: tuple[int, ...] = (1, 2)  # the two video-bearing modalities, as the paper
DEFAULT_VOCAL_CHANNELS: tuple[int, ...] = (1,)  # speech only, as the paper
CREMA_D_SENTENCES: tuple[str, ...] = (
    "IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI",
)  # fmt: skip
CREMA_D_LEVELS: tuple[str, ...] = ("LO", "MD", "HI", "XX")  # low, medium, high, unspecified

_RAVDESS_NAME = re.compile(r"(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)")
_CREMA_D_NAME = re.compile(r"(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")
_ACTOR_FOLDER = re.compile(r"Actor_(\d+)")
_LFS_HEADER = b"version https://git-lfs"

# Exclusion reasons (the categories `summarize` counts), each with the fix `format_index_summary` prints.
UNPARSABLE = "name does not parse"
UNKNOWN_EMOTION = "unknown emotion code"
AUDIO_ONLY = "audio-only, no video"
NOT_SELECTED = "modality or vocal channel not selected"
UNKNOWN_ACTOR = "actor not in splits"
FOLDER_MISMATCH = "actor folder mismatch"
EMPTY = "empty file (0 bytes)"
LFS_POINTER = "git-LFS pointer, not a video"
BROKEN_LINK = "link target missing"
EXPECTED = (AUDIO_ONLY, NOT_SELECTED)  # exclusions by design: counted, listed only on request
SUMMARY_EXAMPLES = 3  # excluded files shown per reason on screen (all with --all / --csv)
HINTS: dict[str, str] = {
    UNPARSABLE: "rename to the dataset's naming scheme or move the file out of the root",
    UNKNOWN_EMOTION: "emotion codes: RAVDESS 01..08, CREMA-D " + " ".join(CREMA_D_CODES),
    AUDIO_ONLY: "expected: audio-only files carry no faces",
    NOT_SELECTED: "by choice: the default keeps speech (VV 01) of modalities 01 and 02",
    UNKNOWN_ACTOR: "actors are RAVDESS 1..24, CREMA-D 1001..1091 (splits/*.csv)",
    FOLDER_MISMATCH: "move the file into the Actor_XX folder its AA field names",
    EMPTY: "re-download the file (CREMA-D's 1064_TIE_SAD_XX is empty in the original release)",
    LFS_POINTER: "fetch the videos themselves with `git lfs pull` in the dataset clone",
    BROKEN_LINK: "fetch it with `git annex get` / `datalad get` (an un-fetched annexed file)",
}


@dataclass(frozen=True)
class VideoRecord:
    """One usable video. Fields a dataset lacks are None (RAVDESS: sentence, level; CREMA-D: the rest)."""

    path: Path
    video_id: str  # file stem, unique within a dataset
    dataset: str
    label: int
    label_name: str
    actor: int  # RAVDESS 1..24, CREMA-D 1001..1091
    fold: int  # 1..5, the fold in which this actor is tested
    modality: int | None = None  # RAVDESS MM: 1 audio-video, 2 video-only
    vocal_channel: int | None = None  # RAVDESS VV: 1 speech, 2 song
    intensity: int | None = None  # RAVDESS II: 1 normal, 2 strong
    statement: int | None = None  # RAVDESS SS: 1 "Kids are talking...", 2 "Dogs are sitting..."
    repetition: int | None = None  # RAVDESS RR
    sentence: str | None = None  # CREMA-D SSS, e.g. "TIE"
    level: str | None = None  # CREMA-D LL: LO, MD, HI, XX


@dataclass(frozen=True)
class Exclusion:
    """A file found under the root and not indexed. `reason` is one of the module's categories."""

    path: Path
    reason: str
    detail: str = ""


@dataclass
class DatasetIndex:
    dataset: str
    root: Path
    records: list[VideoRecord]  # sorted by video_id
    excluded: list[Exclusion] = field(default_factory=list)  # sorted by path


class CremaDName(TypedDict):
    """The fields of a CREMA-D file name (`parse_crema_d_name`)."""

    actor: int
    sentence: str
    emotion: str  # vocabulary name, e.g. "anger"
    level: str


class _Skip(DatasetError):
    """A file that is excluded; carries the reason category and the file's detail."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


# ---- splits ----------------------------------------------------------------------------------


def _splits_file(dataset: str) -> Path:
    """splits/<file> inside the installed package (wheel), else in the source checkout."""
    name = SPLIT_FILES[dataset]
    package = Path(vjfer.__file__).resolve().parent
    candidates = [package / "splits" / name, package.parent / "splits" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise SplitError(f"no split file {name}; looked in {', '.join(map(str, candidates))}")


def read_folds(path: str | Path, dataset: str) -> dict[int, int]:
    """Read and check an `actor,fold` CSV: every actor of `dataset` exactly once, folds 1..5."""
    dataset, path = check_dataset(dataset), Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or [c.strip() for c in rows[0]] != ["actor", "fold"]:
        raise SplitError(
            f"{path}: header must be 'actor,fold', got {','.join(rows[0] if rows else [])!r}"
        )
    folds: dict[int, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            actor, fold = (int(c) for c in row)
        except ValueError as err:
            raise SplitError(f"{path} line {line}: expected two integers, got {row}") from err
        if actor in folds:
            raise SplitError(f"{path} line {line}: actor {actor} appears twice")
        if not 1 <= fold <= NUM_FOLDS:
            raise SplitError(f"{path} line {line}: fold {fold} outside 1..{NUM_FOLDS}")
        folds[actor] = fold
    expected = set(ACTORS[dataset])
    if missing := sorted(expected - set(folds)):
        raise SplitError(f"{path}: actors missing: {missing}")
    if extra := sorted(set(folds) - expected):
        raise SplitError(f"{path}: actors not in {dataset}: {extra}")
    if empty := sorted(set(range(1, NUM_FOLDS + 1)) - set(folds.values())):
        raise SplitError(f"{path}: folds without actors: {empty}")
    return folds


def load_folds(dataset: str) -> dict[int, int]:
    """Actor -> fold (1..5) from splits/ravdess.csv or splits/crema_d.csv, checked."""
    dataset = check_dataset(dataset)
    return read_folds(_splits_file(dataset), dataset)


def fold_rows(folds: Sequence[int], actors: Sequence[int], k: int) -> tuple[list[int], list[int]]:
    """(train, test) positions for test fold k, given each video's fold and actor: test holds fold
    k's videos, train all others. SplitError when an actor is on both sides or a side is empty."""
    if not 1 <= k <= NUM_FOLDS:
        raise SplitError(f"fold {k} does not exist; folds are 1..{NUM_FOLDS}")
    train = [i for i, f in enumerate(folds) if f != k]
    test = [i for i, f in enumerate(folds) if f == k]
    if leaked := sorted({int(actors[i]) for i in test} & {int(actors[i]) for i in train}):
        raise SplitError(
            f"fold {k}: test actors {leaked} also appear in training (videos disagree on fold)"
        )
    if not test or not train:
        raise SplitError(
            f"fold {k}: {len(train)} training and {len(test)} test videos; both must be non-empty"
        )
    return train, test


def fold_split(
    records: Sequence[VideoRecord], k: int
) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(train, test) records for fold k (`fold_rows`); the records must be of one dataset."""
    if len(datasets := {r.dataset for r in records}) > 1:
        raise SplitError(f"records mix datasets {sorted(datasets)}; split one dataset at a time")
    train, test = fold_rows([r.fold for r in records], [r.actor for r in records], k)
    return [records[i] for i in train], [records[i] for i in test]


# ---- file names --------------------------------------------------------------------------------


def parse_ravdess_name(stem: str) -> dict[str, int]:
    """`MM-VV-EE-II-SS-RR-AA` -> modality, vocal_channel, emotion, intensity, statement, repetition, actor.

    Raises DatasetError naming the field that is out of range; the emotion code is checked last so
    an otherwise valid name with emotion 09 reports "unknown emotion code".
    """
    if not (m := _RAVDESS_NAME.fullmatch(stem)):
        raise _Skip(UNPARSABLE, f"{stem!r} is not MM-VV-EE-II-SS-RR-AA (two digits each)")
    keys = ("modality", "vocal_channel", "emotion", "intensity", "statement", "repetition", "actor")
    parsed = dict(zip(keys, map(int, m.groups()), strict=True))
    ranges = {"modality": 3, "vocal_channel": 2, "intensity": 2, "statement": 2, "repetition": 2}
    for key, high in ranges.items():
        if not 1 <= parsed[key] <= high:
            raise _Skip(UNPARSABLE, f"{stem!r}: {key} {parsed[key]:02d} not in 01..{high:02d}")
    if not 1 <= parsed["emotion"] <= len(class_names("ravdess")):
        raise _Skip(UNKNOWN_EMOTION, f"{stem!r}: emotion {parsed['emotion']:02d} not in 01..08")
    return parsed


def parse_crema_d_name(stem: str) -> CremaDName:
    """`AAAA_SSS_EEE_LL` -> actor, sentence, emotion (vocabulary name), level."""
    if not (m := _CREMA_D_NAME.fullmatch(stem)):
        raise _Skip(UNPARSABLE, f"{stem!r} is not AAAA_SSS_EEE_LL (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = m.groups()
    for field_name, value, known in (
        ("sentence", sentence, CREMA_D_SENTENCES),
        ("level", level, CREMA_D_LEVELS),
    ):
        if value not in known:
            raise _Skip(UNPARSABLE, f"{stem!r}: {field_name} {value} not one of {', '.join(known)}")
    if emotion not in CREMA_D_CODES:
        raise _Skip(
            UNKNOWN_EMOTION, f"{stem!r}: emotion {emotion} not one of {', '.join(CREMA_D_CODES)}"
        )
    return {
        "actor": int(actor),
        "sentence": sentence,
        "emotion": CREMA_D_CODES[emotion],
        "level": level,
    }


# ---- scanning ----------------------------------------------------------------------------------


def _ravdess_record(path: Path, folds: dict[int, int], modalities, vocal_channels) -> VideoRecord:
    if path.suffix.lower() in AUDIO_SUFFIXES["ravdess"]:
        raise _Skip(AUDIO_ONLY, f"{path.suffix} audio file")
    f = parse_ravdess_name(path.stem)
    if f["modality"] == 3:
        raise _Skip(AUDIO_ONLY, "modality 03")
    mm, vv = f["modality"], f["vocal_channel"]
    if mm not in modalities:
        raise _Skip(NOT_SELECTED, f"modality {mm:02d} ({RAVDESS_MODALITIES[mm]})")
    if vv not in vocal_channels:
        raise _Skip(NOT_SELECTED, f"vocal channel {vv:02d} ({RAVDESS_VOCAL_CHANNELS[vv]})")
    if (m := _ACTOR_FOLDER.fullmatch(path.parent.name)) and int(m.group(1)) != f["actor"]:
        raise _Skip(FOLDER_MISMATCH, f"in {path.parent.name} but AA is {f['actor']:02d}")
    if f["actor"] not in folds:
        raise _Skip(UNKNOWN_ACTOR, f"actor {f['actor']:02d}")
    label = f["emotion"] - 1  # class index = EE - 1
    name = class_names("ravdess")[label]
    return VideoRecord(
        path, path.stem, "ravdess", label, name, f["actor"], folds[f["actor"]], modality=mm,
        vocal_channel=vv, intensity=f["intensity"], statement=f["statement"],
        repetition=f["repetition"],
    )  # fmt: skip


def _crema_d_record(path: Path, folds: dict[int, int]) -> VideoRecord:
    f = parse_crema_d_name(path.stem)
    if f["actor"] not in folds:
        raise _Skip(UNKNOWN_ACTOR, f"actor {f['actor']}")
    label = class_index("crema-d", f["emotion"])
    return VideoRecord(
        path, path.stem, "crema-d", label, f["emotion"], f["actor"], folds[f["actor"]],
        sentence=f["sentence"], level=f["level"],
    )  # fmt: skip


def _check_content(path: Path) -> None:
    """Exclude broken links, empty files and git-LFS pointers (a clone without `git lfs pull`)."""
    if path.is_symlink() and not path.exists():
        raise _Skip(BROKEN_LINK, f"-> {os.readlink(path)}")
    size = path.stat().st_size
    if size == 0:
        raise _Skip(EMPTY, "0 bytes")
    if size < 1024:  # LFS pointers are ~130 bytes of text; no real video is this small
        with path.open("rb") as fh:
            if fh.read(len(_LFS_HEADER)) == _LFS_HEADER:
                raise _Skip(LFS_POINTER, f"{size}-byte pointer text")


def _find_files(dataset: str, root: Path) -> list[Path]:
    env = ENV_VARS[dataset]
    if not root.exists():
        raise DatasetError(f"{dataset} root {root} does not exist; pass --root DIR or set {env}")
    if not root.is_dir():
        raise DatasetError(f"{dataset} root {root} is not a folder; pass --root DIR or set {env}")
    base = root / "VideoFlash" if (root / "VideoFlash").is_dir() else root
    suffixes = VIDEO_SUFFIXES[dataset] + AUDIO_SUFFIXES[dataset]
    files = sorted(
        p for p in base.rglob("*")
        if p.suffix.lower() in suffixes and (p.is_file() or (p.is_symlink() and not p.exists()))
    )  # fmt: skip
    if not any(p.suffix.lower() in VIDEO_SUFFIXES[dataset] for p in files):
        found = f" (only {len(files)} audio files)" if files else ""
        raise DatasetError(
            f"no {'/'.join(VIDEO_SUFFIXES[dataset])} videos under {base}{found}; expected "
            f"{LAYOUTS[dataset]}: pass --root DIR (or set {env}) to the folder that holds them"
        )
    return files


def _options(dataset: str, modalities, vocal_channels) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if dataset != "ravdess":
        if modalities is not None or vocal_channels is not None:
            raise ConfigError("modalities and vocal_channels apply to RAVDESS only")
        return (), ()
    modalities = DEFAULT_MODALITIES if modalities is None else tuple(modalities)
    vocal_channels = DEFAULT_VOCAL_CHANNELS if vocal_channels is None else tuple(vocal_channels)
    for option, value in (("modalities", modalities), ("vocal_channels", vocal_channels)):
        if not value or not set(value) <= {1, 2}:
            raise ConfigError(f"{option} must be a non-empty subset of (1, 2), got {value}")
    return modalities, vocal_channels


def scan_dataset(
    name: str,
    root: str | Path,
    *,
    modalities: Iterable[int] | None = None,
    vocal_channels: Iterable[int] | None = None,
) -> DatasetIndex:
    """Index every video under `root`; files not kept are listed in `.excluded` with a reason.

    Args:
        name: "ravdess" or "crema-d".
        root: folder holding `Actor_XX/` folders or RAVDESS files (RAVDESS); `VideoFlash/` or the
            .flv files (CREMA-D). Searched recursively.
        modalities: RAVDESS modalities to keep, subset of (1, 2); default both.
        vocal_channels: RAVDESS vocal channels to keep, subset of (1 speech, 2 song); default (1,).
    """
    dataset = check_dataset(name)
    modalities, vocal_channels = _options(dataset, modalities, vocal_channels)
    root = Path(root).expanduser().absolute()
    folds = load_folds(dataset)
    records: list[VideoRecord] = []
    excluded: list[Exclusion] = []
    for path in _find_files(dataset, root):
        try:
            if dataset == "ravdess":
                record = _ravdess_record(path, folds, modalities, vocal_channels)
            else:
                record = _crema_d_record(path, folds)
            _check_content(path)
        except _Skip as skip:
            excluded.append(Exclusion(path, skip.reason, skip.detail))
            continue
        records.append(record)
    reasons = Counter(e.reason for e in excluded)
    if not records:
        counts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
        raise DatasetError(
            f"no usable {dataset} videos under {root}: all {len(excluded)} excluded ({counts})"
        )
    records.sort(key=lambda r: r.video_id)
    for a, b in zip(records[:-1], records[1:], strict=True):  # sorted: twins are neighbours
        if a.video_id == b.video_id:
            raise DatasetError(
                f"video id {a.video_id} found twice: {a.path} and {b.path}; keep one copy"
            )
    log.info(
        "%s: %d videos, %d files excluded, under %s", dataset, len(records), len(excluded), root
    )
    for reason, n in reasons.items():
        if reason not in (AUDIO_ONLY, NOT_SELECTED):  # the expected exclusions stay quiet
            log.warning("%s: %d files excluded: %s (%s)", dataset, n, reason, HINTS[reason])
    return DatasetIndex(dataset, root, records, excluded)


def index_dataset(
    name: str,
    root: str | Path,
    *,
    modalities: Iterable[int] | None = None,
    vocal_channels: Iterable[int] | None = None,
) -> list[VideoRecord]:
    """The usable videos under `root`, sorted by video_id (see `scan_dataset`)."""
    return scan_dataset(name, root, modalities=modalities, vocal_channels=vocal_channels).records


def records_frame(records: Sequence[VideoRecord]) -> pd.DataFrame:
    """One row per record, columns = VideoRecord fields (the cache's column names)."""
    columns = [f.name for f in fields(VideoRecord)]
    return pd.DataFrame([[getattr(r, c) for c in columns] for r in records], columns=columns)


# ---- summary -----------------------------------------------------------------------------------


def summarize(index: DatasetIndex) -> dict:
    """Totals and DataFrames `per_class`, `per_actor`, `per_fold`, `problems` of an index.

    Every class and every actor of the splits gets a row, so a missing one shows as 0 videos.
    """
    folds = load_folds(index.dataset)
    by_label = Counter(r.label for r in index.records)
    by_actor = Counter(r.actor for r in index.records)
    names = class_names(index.dataset)
    per_class = pd.DataFrame(
        [(i, name, by_label[i]) for i, name in enumerate(names)],
        columns=["label", "class", "videos"],
    )
    per_actor = pd.DataFrame(
        [(a, folds[a], by_actor[a]) for a in sorted(folds)], columns=["actor", "fold", "videos"]
    )
    per_fold = (
        per_actor.assign(actors=per_actor["videos"] > 0, split_actors=1)
        .groupby("fold", as_index=False)[["actors", "split_actors", "videos"]]
        .sum()
    )
    rows: dict[str, list] = {}
    for e in index.excluded:  # one row per reason, with the first file as example
        rows.setdefault(e.reason, [e.reason, 0, str(e.path), e.detail, HINTS[e.reason]])[1] += 1
    problems = pd.DataFrame(rows.values(), columns=["reason", "files", "example", "detail", "hint"])
    excluded = pd.DataFrame(
        [(str(e.path), e.reason, e.detail, HINTS[e.reason]) for e in index.excluded],
        columns=["path", "reason", "detail", "hint"],
    )
    return {
        "dataset": index.dataset,
        "root": str(index.root),
        "videos": len(index.records),
        "actors": len(by_actor),
        "excluded": len(index.excluded),
        "excluded_files": excluded,
        "per_class": per_class,
        "per_actor": per_actor,
        "per_fold": per_fold,
        "problems": problems.sort_values(
            "files", ascending=False, kind="stable", ignore_index=True
        ),
    }


def write_excluded_csv(summary: dict, path: str | Path) -> Path:
    """Every excluded file (path, reason, detail, hint) as CSV: what `vjfer index --csv` writes."""
    path = Path(path)
    summary["excluded_files"].to_csv(path, index=False)
    return path


def format_index_summary(summary: dict, show_all: bool = False) -> str:
    """Render `summarize`'s result as plain text (what `vjfer index` prints).

    Excluded files are listed by reason: the first SUMMARY_EXAMPLES of each (only counts for the
    expected audio-only / not-selected ones), or every one with `show_all`.
    """
    s = summary
    lines = [f"{s['dataset']} under {s['root']}"]
    lines += [f"{s['videos']} videos, {s['actors']} actors, {s['excluded']} files excluded", ""]
    lines += ["per class:"] + [
        f"  {c['label']:>2} {c['class']:<10} {c['videos']:>6}" for _, c in s["per_class"].iterrows()
    ]
    lines += ["", "per fold (actor:videos; actors without videos left out):"]
    actors = s["per_actor"][s["per_actor"]["videos"] > 0]
    for _, f in s["per_fold"].iterrows():
        mine = actors[actors["fold"] == f["fold"]]
        counts = " ".join(f"{a}:{v}" for a, v in zip(mine["actor"], mine["videos"], strict=True))
        lines.append(
            f"  fold {f['fold']}: {f['videos']:>5} videos, "
            f"{f['actors']:>2}/{f['split_actors']} actors  {counts}"
        )
    if len(s["problems"]):
        lines += ["", "excluded:"]
    files = s["excluded_files"]
    hidden = 0
    for _, p in s["problems"].iterrows():
        lines.append(f"  {p['files']:>5}  {p['reason']}: {p['hint']}")
        mine = files[files["reason"] == p["reason"]]
        shown = mine if show_all else mine.head(0 if p["reason"] in EXPECTED else SUMMARY_EXAMPLES)
        lines += [f"         {f.path}" + (f"  ({f.detail})" if f.detail else "")
                  for f in shown.itertuples()]  # fmt: skip
        if len(shown) < len(mine):
            lines.append(f"         ... {len(mine) - len(shown)} more")
            hidden += len(mine) - len(shown)
    if hidden:
        lines += ["", f"{hidden} excluded files not shown: `--all` lists every one, `--csv FILE` "
                  "writes them with their reasons"]  # fmt: skip
    return "\n".join(lines)
