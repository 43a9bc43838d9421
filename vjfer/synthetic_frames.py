"""Generated DFEW-, FERV39k- and MAFW-like trees in the releases' layouts: folders of real JPG/PNG
face frames (the drawn faces of `vjfer.synthetic`) and split files in the releases' formats, so
tests and the demo run the real adapters. Each tree also holds the items an adapter must name: a
split row without frames, a frame folder no split lists, an empty folder, an unknown label. The
layouts are each adapter's (`vjfer.datasets.dfew`, `ferv39k`, `mafw`; docs/datasets.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from vjfer.labels import class_names
from vjfer.synthetic import STYLES, FaceStyle, actor_nuisance, render_face, seeded_rng

FRAME_SIZE = (64, 64)  # (width, height): small square face crops, as the releases'
FPS = 25.0
FOLDS = 5
DFEW_WORDS = ("1", "2", "3", "4", "5", "6", "7")  # DFEW labels are codes 1..7
FERV39K_WORDS = ("Happy", "Sad", "Neutral", "Angry", "Surprise", "Disgust", "Fear")
MAFW_WORDS = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "neutral",
    "sadness",
    "surprise",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)
FERV39K_SCENES = ("Action", "Daily")


def _style(name: str) -> FaceStyle:
    """The drawn expression of a class; MAFW's extra classes borrow a basic one, recoloured."""
    if name in STYLES:
        return STYLES[name]
    base = STYLES[("sad", "angry", "fearful", "disgust")[len(name) % 4]]
    red, green, blue = (int(c) for c in seeded_rng(0, name).integers(30, 230, 3))
    return dataclasses.replace(base, colour=(red, green, blue))


def write_frames(folder: Path, frames: np.ndarray, pattern: str) -> list[Path]:
    """Frames uint8 [T, H, W, 3] as image files `pattern.format(i=1..T)` (JPG or PNG by suffix)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / pattern.format(i=i + 1) for i in range(len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        Image.fromarray(frame).save(path, quality=90) if path.suffix == ".jpg" else Image.fromarray(
            frame
        ).save(path)
    return paths


def _clip(dataset: str, clip: int, name: str, n_frames: int, seed: int) -> np.ndarray:
    rng = seeded_rng(seed, dataset, clip)
    return render_face(
        _style(name), actor_nuisance(seed, dataset, clip), FRAME_SIZE, n_frames, FPS, rng
    )


def _assignments(n_clips: int, n_classes: int) -> list[tuple[int, int]]:
    """(label index, test fold) of clips 1..n: both cycle (7 or 11 classes, 5 folds: coprime)."""
    return [(i % n_classes, i % FOLDS + 1) for i in range(n_clips)]


def make_dfew(
    root: str | Path,
    *,
    clips_per_class: int = 5,
    frames: Sequence[int] = (20, 70),
    seed: int = 0,
    frame_dir: str = "Clip/clip_224x224",
) -> Path:
    """A DFEW-like tree; returns root. Clip n's frames:
    `<frame_dir>/<n:05d>/<n:05d>_<i:05d>.jpg` (`frame_dir`: one of `dfew.FRAME_DIRS`, the folder
    each release variant ships).

    Beside the listed clips: one row whose folder is missing, one unlisted folder (a multi-label
    clip in the real release), one listed empty folder.
    """
    root, names = Path(root), class_names("dfew")
    base = root / frame_dir
    rows = _assignments(clips_per_class * len(names), len(names))
    for n, (label, _) in enumerate(rows, start=1):
        folder = base / f"{n:05d}"
        write_frames(
            folder,
            _clip("dfew", n, names[label], frames[n % len(frames)], seed),
            f"{n:05d}_{{i:05d}}.jpg",
        )
    extra = len(rows) + 1
    write_frames(
        base / f"{extra + 1:05d}",
        _clip("dfew", extra + 1, "happy", 12, seed),
        f"{extra + 1:05d}_{{i:05d}}.jpg",
    )  # unlisted
    (base / f"{extra + 2:05d}").mkdir(parents=True)  # listed, empty
    listed = rows + [(0, 1), (1, 2)]  # clip `extra` has no folder; `extra + 2` is empty
    numbers = list(range(1, len(rows) + 1)) + [extra, extra + 2]
    for k in range(1, FOLDS + 1):
        for part in ("train", "test"):
            path = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{k}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            keep = [
                (n, lab)
                for n, (lab, f) in zip(numbers, listed, strict=True)
                if (f == k) == (part == "test")
            ]
            path.write_text(
                "video_name,label\n" + "".join(f"{n},{DFEW_WORDS[lab]}\n" for n, lab in keep),
                encoding="utf-8",
            )
    return root


def make_ferv39k(
    root: str | Path, *, clips_per_class: int = 4, frames: Sequence[int] = (9, 30), seed: int = 0
) -> Path:
    """A FERV39k-like tree; returns root. One train/test split (every 4th clip tests); beside the
    listed clips one row without a folder, one unlisted folder and one row with an unknown label."""
    root, names = Path(root), class_names("ferv39k")
    base = root / "2_ClipsforFaceCrop"
    lines: dict[str, list[str]] = {"train_All.csv": [], "test_All.csv": []}
    for n in range(clips_per_class * len(names)):
        label = n % len(names)
        clip = f"{FERV39K_SCENES[n % 2]}/{FERV39K_WORDS[label]}/{n + 1:04d}"
        write_frames(
            base / clip, _clip("ferv39k", n, names[label], frames[n % len(frames)], seed), "{i}.jpg"
        )
        lines["test_All.csv" if n % 4 == 3 else "train_All.csv"].append(
            f"{clip} {FERV39K_WORDS[label]}"
        )
    write_frames(base / "Action/Happy/9001", _clip("ferv39k", 9001, "happy", 9, seed), "{i}.jpg")
    write_frames(base / "Daily/Sad/9002", _clip("ferv39k", 9002, "sad", 9, seed), "{i}.jpg")
    lines["train_All.csv"] += ["Daily/Sad/9002 Bored", "Action/Fear/9003 Fear"]
    for name, rows in lines.items():
        path = root / "4_setups" / "All_scenes" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def make_mafw(
    root: str | Path, *, clips_per_class: int = 5, frames: Sequence[int] = (16, 40), seed: int = 0
) -> Path:
    """A MAFW-like tree (PNG face crops); returns root. Beside the listed clips: a row without
    frames and an unlisted folder (a compound-emotion clip in the real release)."""
    root, names = Path(root), class_names("mafw")
    base = root / "data" / "faces"
    rows = _assignments(clips_per_class * len(names), len(names))
    for n, (label, _) in enumerate(rows, start=1):
        write_frames(
            base / f"{n:05d}",
            _clip("mafw", n, names[label], frames[n % len(frames)], seed),
            "{i}.png",
        )
    extra = len(rows) + 1
    write_frames(base / f"{extra + 1:05d}", _clip("mafw", extra + 1, "sad", 9, seed), "{i}.png")
    listed = [(n, lab, f) for n, (lab, f) in enumerate(rows, start=1)] + [(extra, 0, 1)]
    for k in range(1, FOLDS + 1):
        for part in ("train", "test"):
            path = root / "split" / "single" / "no_caption" / f"set_{k}" / f"{part}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            keep = [
                f"{n:05d}.mp4 {MAFW_WORDS[lab]}\n"
                for n, lab, f in listed
                if (f == k) == (part == "test")
            ]
            path.write_text("".join(keep), encoding="utf-8")
    return root


FRAME_TREES = {"dfew": make_dfew, "ferv39k": make_ferv39k, "mafw": make_mafw}
