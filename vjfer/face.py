"""Face crops for `vjfer extract --face-crop haar|boxes:FILE|none`: one square box per video.

The paper feeds whole frames (`none`, the default); its Table III peers feed face crops. One box per
video, not per frame, so the crop does not jitter: `haar` runs OpenCV's frontal-face cascade on
every `sample_every`-th frame (scaled to `detect_height` rows) and takes the median of each frame's
largest face; `boxes:FILE` reads a CSV `video_id,x,y,w,h`. The box is made square, enlarged by
`margin`, clamped to the frame (displayed pixels, after rotation) and cut before the usual views. A
video without a face fails with that reason, or with `fallback="full"` keeps the whole frame.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypeGuard

import av
import numpy as np

from vjfer.decode import source_frames
from vjfer.digests import sha256_file
from vjfer.errors import FACE_FAILURE_PREFIX, ConfigError, VideoError
from vjfer.files import read_utf8

log = logging.getLogger(__name__)

FaceMethod = Literal["none", "haar", "boxes"]
Fallback = Literal["fail", "full"]
FALLBACKS: tuple[Fallback, ...] = ("fail", "full")
HAAR_CASCADE = "haarcascade_frontalface_default.xml"  # shipped in opencv-python's cv2/data
BOX_COLUMNS = ("video_id", "x", "y", "w", "h")
INSTALL_HINT = "pip install 'vjfer[face]'"


@dataclass(frozen=True)
class Box:
    """A rectangle in display pixels: left x, top y, width w, height h."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class FaceCropConfig:
    """How boxes are found and shaped; every field is a fingerprint input."""

    method: FaceMethod = "none"
    boxes_file: Path | None = None  # method "boxes"
    fallback: Fallback = "fail"  # no face: a listed failure, or the whole frame
    margin: float = 0.2  # added on every side, as a fraction of the box's longer side
    sample_every: int = 8  # haar: detect on frames 0, 8, 16, ...
    detect_height: int = 360  # haar: frames are scaled to this many rows for detection
    scale_factor: float = 1.1  # haar: detectMultiScale's image pyramid step
    min_neighbors: int = 5  # haar: overlapping detections needed to keep a face
    min_face: float = 0.1  # haar: smallest face side, as a fraction of the frame's short side
    min_hit_fraction: float = 0.25  # haar: sampled frames that must show a face

    def __post_init__(self):
        if self.method not in ("none", "haar", "boxes"):
            raise ConfigError(f"face crop must be none, haar or boxes:FILE, got {self.method!r}")
        if (self.method == "boxes") != (self.boxes_file is not None):
            raise ConfigError("a boxes file goes with --face-crop boxes:FILE, and only with it")
        if self.fallback not in FALLBACKS:
            raise ConfigError(f"face fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.margin < 0 or self.sample_every < 1 or not 0 < self.min_hit_fraction <= 1:
            raise ConfigError(
                f"need margin >= 0, sample_every >= 1, 0 < min_hit_fraction <= 1; got {self}"
            )


@dataclass(frozen=True)
class FaceResult:
    """Where one video's frames are cropped: `box` None = whole frame (status "fallback")."""

    box: Box | None
    status: Literal["cropped", "fallback"]


def _is_fallback(text: str) -> TypeGuard[Fallback]:
    return text in FALLBACKS


def parse_face_crop(text: str, fallback: str = "fail", margin: float = 0.2) -> FaceCropConfig:
    """'none' | 'haar' | 'boxes:FILE' (the --face-crop syntax) -> FaceCropConfig."""
    if not _is_fallback(fallback):
        raise ConfigError(f"face fallback must be one of {FALLBACKS}, got {fallback!r}")
    if text.startswith("boxes:"):
        path = Path(text.removeprefix("boxes:"))
        if not path.is_file():
            raise ConfigError(f"--face-crop {text}: no such file {path}")
        read_boxes(path)  # a file that cannot be used is refused before any work
        return FaceCropConfig("boxes", path, fallback, margin)
    if text == "none":
        return FaceCropConfig("none", None, fallback, margin)
    if text == "haar":
        return FaceCropConfig("haar", None, fallback, margin)
    raise ConfigError(f"--face-crop must be none, haar or boxes:FILE (a CSV), got {text!r}")


# ---------------------------------------------------------------------------------------------
# Pure geometry.


def square_box(box: Box, width: int, height: int, margin: float) -> Box:
    """`box` made square on its longer side, enlarged by `margin` per side, clamped to the frame.

    The side shrinks to the frame's short side if it must; the box then shifts inside the frame
    (keeping its side) rather than being cut, so every crop is square.
    """
    if box.w < 1 or box.h < 1:
        raise ValueError(f"empty box {box}")
    side = min(round(max(box.w, box.h) * (1 + 2 * margin)), width, height)
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    x = int(np.clip(round(cx - side / 2), 0, width - side))
    y = int(np.clip(round(cy - side / 2), 0, height - side))
    return Box(x, y, side, side)


def median_box(boxes: np.ndarray) -> Box:
    """The median centre and size of boxes [K, 4] (x, y, w, h), robust to a few odd frames."""
    x, y, w, h = boxes.T.astype(np.float64)
    cx, cy, mw, mh = np.median(x + w / 2), np.median(y + h / 2), np.median(w), np.median(h)
    return Box(round(cx - mw / 2), round(cy - mh / 2), round(mw), round(mh))


# ---------------------------------------------------------------------------------------------
# Boxes from a CSV.


def read_boxes(path: str | Path) -> dict[str, Box]:
    """A CSV with header video_id,x,y,w,h -> {video_id: Box}; ConfigError naming file and row."""
    path = Path(path)
    text = read_utf8(path, "boxes CSV")  # a BOM (Excel's "CSV UTF-8") is dropped
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or set(BOX_COLUMNS) - set(reader.fieldnames):
            raise ConfigError(
                f"{path}: needs the header {','.join(BOX_COLUMNS)}, got {reader.fieldnames}"
            )
        boxes = {}
        for line, row in enumerate(reader, start=2):
            try:
                box = Box(*(int(float(row[k])) for k in BOX_COLUMNS[1:]))
            except (TypeError, ValueError) as err:
                raise ConfigError(
                    f"{path}, line {line}: x, y, w, h must be numbers ({err})"
                ) from err
            if box.w < 1 or box.h < 1:
                raise ConfigError(f"{path}, line {line}: w and h must be >= 1, got {box}")
            if row["video_id"] in boxes:
                raise ConfigError(f"{path}, line {line}: video_id {row['video_id']!r} repeats")
            boxes[row["video_id"]] = box
    return boxes


# ---------------------------------------------------------------------------------------------
# Haar detection.


def import_cv2():
    """The cv2 module, or a ConfigError that says how to install it."""
    try:
        import cv2
    except ImportError as err:
        raise ConfigError(f"--face-crop haar needs OpenCV: {INSTALL_HINT}") from err
    return cv2


def _haar_classifier():
    cv2 = import_cv2()
    path = Path(cv2.data.haarcascades) / HAAR_CASCADE
    classifier = cv2.CascadeClassifier(str(path))
    if classifier.empty():
        raise ConfigError(f"OpenCV could not load its Haar cascade {path}")
    return cv2, classifier


@dataclass(frozen=True)
class FaceTrack:
    """Haar detections of one video: the largest face of each sampled frame, display pixels."""

    frames: np.ndarray  # int [S]: the sampled frame indices
    boxes: np.ndarray  # float [S, 4] (x, y, w, h); NaN where no face was found
    width: int  # the frame as displayed
    height: int

    @property
    def found(self) -> np.ndarray:
        """[K, 4]: the boxes of the sampled frames that show a face."""
        return self.boxes[~np.isnan(self.boxes[:, 0])]


def _video_frames(path: Path) -> Iterator[av.VideoFrame]:
    """The frames of a video file, or of a folder of frames (decoded as extraction decodes it);
    a folder's RGB arrays become rgb24 frames, for swscale's grey scaling below."""
    for frame in source_frames(path):
        if isinstance(frame, np.ndarray):
            yield av.VideoFrame.from_ndarray(frame, format="rgb24")
        else:
            yield frame


def detect_faces(path: str | Path, config: FaceCropConfig) -> FaceTrack:
    """Run the Haar cascade on every `sample_every`-th frame; VideoError if it cannot decode."""
    cv2, classifier = _haar_classifier()
    path = Path(path)
    frames, found, size = [], [], None
    try:
        for index, frame in enumerate(_video_frames(path)):
            if index % config.sample_every:
                continue
            turns = round(frame.rotation / 90) % 4
            scale = config.detect_height / (frame.width if turns % 2 else frame.height)
            w, h = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
            gray: np.ndarray = frame.reformat(w, h, format="gray").to_ndarray()  # uint8 [h, w]
            gray = np.ascontiguousarray(np.rot90(gray, turns)) if turns else gray
            size = (round(gray.shape[1] / scale), round(gray.shape[0] / scale))
            side = max(1, round(config.min_face * min(gray.shape)))
            faces = classifier.detectMultiScale(
                gray,
                scaleFactor=config.scale_factor,
                minNeighbors=config.min_neighbors,
                minSize=(side, side),
            )
            frames.append(index)
            box = max(faces, key=lambda b: b[2] * b[3]) if len(faces) else [np.nan] * 4
            found.append(np.array(box, dtype=np.float64) / scale)
    except (av.FFmpegError, OSError, IndexError) as err:
        raise VideoError(path, f"cannot decode for face detection: {err}") from err
    if size is None:
        raise VideoError(path, "no decodable frame for face detection")
    return FaceTrack(np.array(frames), np.array(found).reshape(-1, 4), *size)


def display_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video's (or frame folder's) first frame as displayed (rotated)."""
    try:
        frame = next(_video_frames(path))
    except (av.FFmpegError, OSError, IndexError, StopIteration) as err:
        raise VideoError(path, f"cannot read a frame for its size: {err!r}") from err
    turns = round(frame.rotation / 90) % 4
    return (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)


# ---------------------------------------------------------------------------------------------
# One video's box (what an extraction worker calls).


class FaceCropper:
    """Finds each video's crop box by `config` (picklable: extraction workers each hold one)."""

    def __init__(self, config: FaceCropConfig):
        if config.method == "none":
            raise ConfigError("FaceCropper is for haar or boxes; none crops nothing")
        self.config = config
        # FaceCropConfig checks that a boxes file goes with method "boxes", and only with it
        self.boxes = read_boxes(config.boxes_file) if config.boxes_file is not None else None
        if config.method == "haar":
            _haar_classifier()  # fail at set-up, not in every worker, when OpenCV is missing

    def _no_face(self, path: Path, reason: str) -> FaceResult:
        if self.config.fallback == "full":
            log.warning("%s: %s; using the whole frame (--face-fallback full)", path, reason)
            return FaceResult(None, "fallback")
        raise VideoError(path, f"{FACE_FAILURE_PREFIX}: {reason}")

    def locate(self, path: str | Path, video_id: str) -> FaceResult:
        """The square crop box of one video (from `boxes`, or by detection); VideoError when the
        video has no face and the fallback is "fail"."""
        path, cfg = Path(path), self.config
        if self.boxes is not None:
            width, height = display_size(path)
            if video_id not in self.boxes:
                return self._no_face(path, f"no row for {video_id!r} in {cfg.boxes_file}")
            box = self.boxes[video_id]
            if box.x >= width or box.y >= height or box.x + box.w <= 0 or box.y + box.h <= 0:
                return self._no_face(path, f"box {box} lies outside the {width}x{height} frame")
            return FaceResult(square_box(box, width, height, cfg.margin), "cropped")
        track = detect_faces(path, cfg)
        hits, sampled = len(track.found), len(track.frames)
        if hits < max(1, cfg.min_hit_fraction * sampled):
            need = f"(need {cfg.min_hit_fraction:.0%})"
            found = f"the Haar cascade found a face in {hits} of {sampled} sampled frames"
            return self._no_face(path, f"{found} {need}")
        box = square_box(median_box(track.found), track.width, track.height, cfg.margin)
        return FaceResult(box, "cropped")


def config_from_settings(settings: dict) -> FaceCropConfig:
    """The FaceCropConfig a cache's `face_crop` settings describe (to crop new videos alike).

    Only haar can be redone on a new video; boxes came from a file made for the cached videos.
    """
    if settings["method"] != "haar":
        raise ConfigError(
            f"the cache was cropped with --face-crop boxes:{settings['boxes_file']}, boxes made "
            "for its own videos; new videos need haar (or a cache without a face crop)"
        )
    if settings["opencv"] != import_cv2().__version__:
        log.warning(
            "the cache's faces were found with OpenCV %s, this is %s: boxes may differ",
            settings["opencv"],
            import_cv2().__version__,
        )
    fields = {k: v for k, v in settings.items() if k in FaceCropConfig.__dataclass_fields__}
    return FaceCropConfig(**fields)


def face_settings(config: FaceCropConfig) -> dict | None:
    """The fingerprint inputs of a face crop; None for `none` (settings then stay as before)."""
    if config.method == "none":
        return None
    out = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    if config.method == "boxes":
        assert config.boxes_file is not None  # FaceCropConfig: method "boxes" goes with a file
        out["boxes_sha256"] = sha256_file(config.boxes_file)  # the boxes, not the file's name
        out["boxes_file"] = Path(config.boxes_file).name
        detector = "sample_every detect_height scale_factor min_neighbors min_face min_hit_fraction"
        for key in detector.split():  # detector settings: not used
            out.pop(key)
    else:
        out["opencv"] = import_cv2().__version__  # another cascade build may find other boxes
        out["cascade"] = HAAR_CASCADE
    return out
