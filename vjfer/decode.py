"""Read a video source, a video file (`vjfer.video`, PyAV) or a folder of frames
(`vjfer.frame_folders`, PIL): `reader_for` is the one place that tells them apart.

Both prepare their frames with `vjfer.prepare`, so a clip of a folder and a clip of a file are
made alike; neither module imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from vjfer import frame_folders, video
from vjfer.prepare import CropBox, DecodedVideo, SourceIdentity, Views, num_views


@dataclass(frozen=True)
class SourceReader:
    """How one kind of source is decoded, hashed and shown to face detection."""

    decode: Callable[..., DecodedVideo]  # (path, resolution, views, threads, crop, timeout)
    decode_native: Callable[..., np.ndarray]  # (path, indices, crop, timeout)
    identity: Callable[..., SourceIdentity]  # (path, name, sha256)
    frames: Callable[[Path], Iterator[av.VideoFrame] | Iterator[np.ndarray]]


FILE = SourceReader(
    video.decode_file, video.decode_file_native, video.file_identity, video.file_frames
)
FOLDER = SourceReader(
    frame_folders.decode_frame_folder,
    frame_folders.decode_folder_native,
    frame_folders.folder_identity,
    frame_folders.folder_rgb_frames,
)


def reader_for(path: Path) -> SourceReader:
    """A folder is a folder of frames (DFEW, FERV39k, MAFW); anything else a video file."""
    return FOLDER if path.is_dir() else FILE


def decode_video(
    path: str | Path,
    resolution: int,
    views: Views = "center",
    threads: int = 0,
    crop: CropBox | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> DecodedVideo:
    """Decode a whole video once and prepare its views (see `prepare.view_geometry`).

    A file is read once into memory: the bytes decoded are the bytes hashed (`source`).

    Args:
        path: any file FFmpeg reads (mp4, flv, mov, mkv, webm, ...), or a folder of
            .jpg/.png frames (`vjfer.frame_folders.decode_frame_folder`).
        resolution: crop size R.
        views: "center" or "3crop".
        threads: unless 1, frames are prepared on a second thread while the next ones decode
            (faster; 10-15% more CPU per frame). The decoder itself is single-threaded, so the
            frames do not depend on this.
        crop: (x, y, w, h) in displayed pixels: each frame is cut to it before the views are
            made (`vjfer.face`); None (the default, the paper's input) uses whole frames.
        timeout: seconds after which decoding stops with a VideoError (None: no limit).
        max_pixels: the largest frame read (width × height; None: the readers' own bound): a
            larger video is a VideoError, a larger frame of a folder a lost frame.

    Returns:
        DecodedVideo with frames uint8 [V, T, R, R, 3].

    Raises:
        VideoError: missing, empty, unreadable or non-video file, a git-LFS pointer, no decodable
            frame, or the timeout. A partly decodable stream is not an error: its decodable frames
            are returned, and `lost_frames` (also logged) is the larger of (packets that failed to
            decode + frames the decoder flagged corrupt, which are dropped) and (frames the
            container's index lists - frames decoded). Truncation of a stream without an index
            (FLV) cannot be counted.
    """
    path = Path(path)
    num_views(views)  # ConfigError for unknown views
    if resolution < 1 or threads < 0:
        raise ValueError(f"need resolution >= 1 and threads >= 0, got {resolution}, {threads}")
    reader = reader_for(path)
    return reader.decode(path, resolution, views, threads, crop, timeout, max_pixels=max_pixels)


def decode_native(
    path: str | Path,
    indices: np.ndarray,
    crop: CropBox | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The frames at `indices` (sorted, unique) as displayed, at their native size (cut to `crop`
    when given): uint8 [len(indices), H, W, 3].

    Frame i is the i-th frame `decode_video` keeps (the same clean-frame rule), so these are the
    frames behind clip indices; the reference augments and crops the full native frame
    (`vjfer.augment`), which the prepared views no longer hold. A second decode, paid only by
    `vjfer extract --augment`.
    """
    path = Path(path)
    return reader_for(path).decode_native(path, indices, crop, timeout, max_pixels=max_pixels)


def source_identity(
    path: str | Path, name: str | None = None, sha256: bool = True
) -> SourceIdentity:
    """Which bytes `path` holds, without decoding (`video.file_identity`,
    `frame_folders.folder_identity`); `name` is the path to record (default: `path`). Without
    `sha256` only xxh3-128 is computed (its `sha256` is then "")."""
    path = Path(path)
    return reader_for(path).identity(path, name, sha256)


def source_frames(path: str | Path) -> Iterator[av.VideoFrame] | Iterator[np.ndarray]:
    """Every frame of a source for face detection: a file's decoded frames (stored orientation,
    `frame.rotation` says how they are shown), a folder's RGB arrays (as displayed)."""
    path = Path(path)
    return reader_for(path).frames(path)
