"""Folders of frames (DFEW, FERV39k, MAFW releases; list files) as videos: the frame files in
natural order (`1.jpg, 2.jpg, 10.jpg`), decoded with PIL and prepared by the same
`vjfer.prepare.Preparer` as a decoded video, so clip plans, roles and augmentation see no
difference.

An unreadable frame file or a gap in the numbering counts as lost frames (`--max-lost-frames`
applies); a frame of another size than the first is resized on its own and counted. Every read is
bounded: only regular files are read (a folder, FIFO, device or broken or looping link named like a
frame is a lost frame, never a hang or a traceback), a frame over `MAX_FRAME_PIXELS` is lost before
its pixels are decoded (a few kB of PNG can declare 15000×15000), and 16-bit frames are scaled to
8 bits, not clipped. A folder is
declared `FOLDER_FPS` (the releases record none; only timelines use it). Its identity hashes its
files' names, sizes and bytes in frame order, so a frame rewritten at the same size is seen.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import xxhash
from PIL import Image, UnidentifiedImageError

from vjfer.datasets.frames import frame_names
from vjfer.datasets.records import natural_key
from vjfer.errors import VideoError
from vjfer.prepare import (
    MAX_FRAME_PIXELS,
    RESIZE_INTERPOLATION,
    CropBox,
    DecodedVideo,
    FrameBuffer,
    Preparer,
    SourceIdentity,
    Views,
    num_views,
    prepare_all,
)

log = logging.getLogger(__name__)

FOLDER_FPS = 25.0  # declared, not measured: none of the three releases records a rate
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL's modes of 16-bit grey PNGs
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def frame_files(folder: str | Path) -> list[Path]:
    """The folder's .jpg/.jpeg/.png files in natural order; VideoError when it holds none."""
    folder = Path(folder)
    try:
        names = frame_names(folder)
    except OSError as err:
        raise VideoError(folder, f"cannot list the frame folder: {err.strerror}") from err
    if not names:
        raise VideoError(folder, "empty frame folder: no .jpg/.png frames")
    return [folder / n for n in sorted(names, key=natural_key)]


def missing_frames(files: list[Path]) -> int:
    """Frames absent from the numbering (`1, 2, 4` misses one); 0 when names carry no numbers."""
    numbers = [m.group(1) for f in files if (m := _TRAILING_NUMBER.search(f.stem))]
    if len(numbers) != len(files):
        return 0
    values = sorted(int(n) for n in numbers)
    return values[-1] - values[0] + 1 - len(set(values))


class _FolderDigest:
    """A frame folder's identity, built file by file: total size, newest mtime, a sha256 (unless
    off) and an xxh3-128 over each file's name, size and bytes in frame order."""

    def __init__(self, sha256: bool = True):
        self.sha256, self.fast = hashlib.sha256() if sha256 else None, xxhash.xxh3_128()
        self.size, self.mtime = 0, 0

    def add(self, path: Path, data: bytes) -> None:
        for h in (self.sha256, self.fast):
            if h is not None:
                h.update(f"{path.name}\0{len(data)}\0".encode())
                h.update(data)
        self.size, self.mtime = self.size + len(data), max(self.mtime, path.stat().st_mtime_ns)

    def identity(self, name: str) -> SourceIdentity:
        return SourceIdentity(
            name,
            self.size,
            self.mtime,
            self.sha256.hexdigest() if self.sha256 else "",
            self.fast.hexdigest(),
        )


def folder_identity(
    folder: str | Path, name: str | None = None, sha256: bool = True
) -> SourceIdentity:
    """SourceIdentity of a frame folder (`_FolderDigest`: a renamed, added, removed or changed
    frame changes both digests)."""
    folder, digest = Path(folder), _FolderDigest(sha256)
    for path in frame_files(folder):
        if (data := read_regular(path)) is not None:
            digest.add(path, data)
    return digest.identity(name or str(folder))


def read_frame(
    path: Path, data: bytes | None = None, max_pixels: int | None = None
) -> np.ndarray | None:
    """One frame file (or its bytes, already read) as RGB uint8 [H, W, 3]; None (and a warning)
    when it does not decode or declares more than `max_pixels` (None: MAX_FRAME_PIXELS)."""
    limit = MAX_FRAME_PIXELS if max_pixels is None else max_pixels
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            if (pixels := image.width * image.height) > limit:  # from the header: no pixels yet
                raise ValueError(
                    f"{image.width}x{image.height} = {pixels} pixels, more than --max-frame-pixels "
                    f"{limit} (a decompression bomb or not a frame)"
                )
            image.load()
            if image.mode in _SIXTEEN_BIT:  # 0..65535 grey: the top 8 bits, not a clip to 255
                grey = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        log.warning("%s: frame does not decode, counted as lost: %s", path, err)
        return None


def read_regular(path: Path) -> bytes | None:
    """The bytes of a frame file; None (and a warning) for anything but a readable regular file:
    a folder, FIFO or device named like a frame, a broken or looping link (`is_file` follows links
    and is False for those), a file that cannot be read."""
    try:
        if path.is_file():
            return path.read_bytes()
        reason = "not a regular file (a folder, FIFO, device or broken link)"
    except OSError as err:
        reason = f"cannot be read: {err.strerror or err}"
    log.warning("%s: %s, counted as a lost frame", path, reason)
    return None


def folder_frames(
    files: list[Path],
    lost: list[Path],
    timeout: float | None = None,
    digest: _FolderDigest | None = None,
    max_pixels: int | None = None,
) -> Iterator[np.ndarray]:
    """Every frame file that decodes, as RGB uint8 [H, W, 3]; the others appended to `lost`.
    Each file is read once: its bytes feed `digest` (the folder's identity) and the decoder."""
    deadline = None if timeout is None else time.monotonic() + timeout
    for path in files:
        if deadline is not None and time.monotonic() > deadline:
            raise VideoError(
                path.parent, f"decoding timed out after {timeout:g} s (--decode-timeout)"
            )
        data = read_regular(path)
        if data is not None and digest is not None:
            digest.add(path, data)
        rgb = None if data is None else read_frame(path, data, max_pixels)
        if rgb is None:
            lost.append(path)
            continue
        yield rgb


def decode_folder_native(
    folder: str | Path,
    indices: np.ndarray,
    crop: CropBox | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Frames at `indices` (of the frames that decode) at native size, cut to `crop`:
    uint8 [len(indices), H, W, 3], as `video.decode_file_native` for a file. A frame of another
    size than the first one read is resized to that size (libswscale, as `vjfer.prepare`), so
    the frames stack."""
    folder = Path(folder)
    wanted = [int(i) for i in np.asarray(indices)]
    frames: list[np.ndarray] = []
    for k, rgb in enumerate(folder_frames(frame_files(folder), [], timeout, None, max_pixels)):
        if k in wanted:
            if crop is not None:
                x, y, w, h = crop
                rgb = rgb[y : y + h, x : x + w]
            if frames and rgb.shape != frames[0].shape:
                height, width = frames[0].shape[:2]
                rgb = (
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    .reformat(width, height, interpolation=RESIZE_INTERPOLATION)
                    .to_ndarray()
                )
            frames.append(np.ascontiguousarray(rgb))
    if len(frames) < len(wanted):
        raise VideoError(folder, f"frames up to {wanted[-1]} requested, fewer decoded")
    return np.stack(frames)


def decode_frame_folder(
    folder: str | Path,
    resolution: int,
    views: Views = "center",
    threads: int = 0,
    crop: CropBox | None = None,
    timeout: float | None = None,
    fps: float = FOLDER_FPS,
    max_pixels: int | None = None,
) -> DecodedVideo:
    """Decode a frame folder once and prepare its views: `vjfer.decode.decode_video` for a folder.

    `lost_frames` = frame files that do not decode + gaps in the numbering; `container_frames` =
    the frames the folder should hold (files + gaps). Frames of another size than the first are
    resized each on its own to the same views, as the peers' loaders resize every frame, counted
    in `odd_size_frames` and logged (width/height are the first frame's). VideoError for a
    missing or empty folder, no decodable frame, a face crop box outside a frame, or the timeout.
    """
    folder = Path(folder)
    files = frame_files(folder)
    gaps, lost, digest = missing_frames(files), list[Path](), _FolderDigest()
    prepare = Preparer(resolution, views, crop)
    buffer = FrameBuffer(num_views(views), resolution, len(files))
    try:
        frames = folder_frames(files, lost, timeout, digest, max_pixels)
        prepare_all(frames, prepare, buffer, threads)
    except ValueError as err:
        raise VideoError(folder, str(err)) from err
    if buffer.count == 0 or prepare.display_size is None:
        raise VideoError(folder, f"no decodable frame ({len(lost)} of {len(files)} files failed)")
    width, height = prepare.display_size
    if prepare.odd_size_frames:
        log.warning(
            "%s: %d of %d frames are not %dx%d like the first; each resized on its own",
            folder,
            prepare.odd_size_frames,
            buffer.count,
            width,
            height,
        )
    if lost or gaps:
        log.warning(
            "%s: %d frames lost (%d unreadable files, %d gaps in the numbering)",
            folder,
            len(lost) + gaps,
            len(lost),
            gaps,
        )
    return DecodedVideo(
        path=folder,
        frames=buffer.frames(),
        fps=fps,
        width=width,
        height=height,
        n_frames=buffer.count,
        lost_frames=len(lost) + gaps,
        source=digest.identity(str(folder)),
        container_frames=len(files) + gaps,
        odd_size_frames=prepare.odd_size_frames,
    )


def folder_rgb_frames(folder: Path) -> Iterator[np.ndarray]:
    """Every frame of a folder that decodes, RGB uint8 [H, W, 3] (face detection)."""
    return folder_frames(frame_files(folder), [])
