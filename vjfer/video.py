"""Decode videos once with PyAV and prepare each frame once (resize + crop views).

Geometry and clip plans follow the reference code (facebookresearch/jepa as used by Eing et al.):
`evals/video_classification_frozen/utils.py` (eval view: short side int(R·256/224), truncated as
there, not rounded: 438 at R = 384; centre crop; multi-view: short side R, crops along the long
side). Frames are counted by decoding, never from container metadata (CREMA-D's FLV headers report
0 frames and no duration). Which frames make a clip is `vjfer.clips`, pure index maths.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import torch
import xxhash
from av.container import InputContainer
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from vjfer.clips import (  # noqa: F401  (the clip maths moved to vjfer.clips; re-exported)
    CLIP_PLANS,
    CLIP_SPAN,
    FRAME_STEP,
    FRAMES_PER_CLIP,
    REFERENCE_CLIP_LEN,
    REFERENCE_TRAIN_CLIPS,
    ROLE_AUGMENTED,
    ROLE_EVAL,
    ROLE_TRAIN,
    WINDOWS_VERSION,
    ClipPlan,
    clip_roles,
    gather_clips,
    plan_clips,
)
from vjfer.errors import ConfigError, VideoError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CropBox = tuple[int, int, int, int]  # (x, y, w, h) of the displayed frame, pixels
Views = Literal["center", "3crop"]
VIEWS: tuple[str, ...] = ("center", "3crop")
_NUM_VIEWS = {"center": 1, "3crop": 3}

# libswscale's bilinear filter (antialiased when shrinking). The reference resizes with
# cv2.INTER_LINEAR, which is not antialiased: geometry matches exactly, pixel values do not.
RESIZE_INTERPOLATION = "BILINEAR"
_ATTACHED_PIC = av.stream.Disposition.attached_pic  # cover art: a "video" stream of one image
_MAX_PENDING = 8  # frames queued for preparation on the second thread
DEFAULT_FPS = 30.0  # used only when neither the stream rates nor the frame timestamps give one
_LFS_HEADER = b"version https://git-lfs"  # a git-LFS pointer file in place of the video
LFS_HINT = (
    "a git-LFS pointer, not a video: fetch the videos with `git lfs pull` in the dataset clone"
)


@dataclass(frozen=True)
class SourceIdentity:
    """Which file bytes a cached video came from: its path (relative to the dataset root in the
    cache), size, modification time, and the sha256 and xxh3-128 of exactly the bytes decoded.

    xxh3 is what a resume compares (~8x faster than sha256 here, benchmarks/RESULTS.md); caches
    made before it was recorded have "" and are compared by sha256.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str
    xxh3: str = ""  # xxh3-128, hex


def source_identity(path: str | Path, name: str | None = None, sha256: bool = True
                    ) -> SourceIdentity:  # fmt: skip
    """Stat and hash a file in one sequential read (8 MiB blocks); `name` is the path to record
    (default: `path`). Without `sha256` only xxh3-128 is computed (its `sha256` is then "").
    A folder of frames gets `frame_folders.folder_identity`."""
    path = Path(path)
    if path.is_dir():
        from vjfer.frame_folders import folder_identity  # it imports this module

        return folder_identity(path, name, sha256)
    digest, fast = hashlib.sha256() if sha256 else None, xxhash.xxh3_128()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while chunk := f.read(1 << 23):
            fast.update(chunk)
            if digest is not None:
                digest.update(chunk)
    return SourceIdentity(name or str(path), st.st_size, st.st_mtime_ns,
                          digest.hexdigest() if digest else "", fast.hexdigest())  # fmt: skip


@dataclass
class DecodedVideo:
    """A whole video, decoded once, as prepared views.

    `frames` is uint8 [V, T, R, R, 3] (RGB); with V > 1 it can be a strided view of a larger
    buffer (when the container did not list the frame count). `width`/`height` are the source
    size as displayed (after any rotation). `n_frames` = T, counted by decoding; `lost_frames`
    counts frames that failed to decode (0 for a clean file); `container_frames` is the count the
    container's index lists (-1 where it lists none, as FLV). `source` identifies the bytes decoded.
    """

    path: Path
    frames: np.ndarray
    fps: float
    width: int
    height: int
    n_frames: int
    lost_frames: int
    source: SourceIdentity
    container_frames: int = -1


@dataclass(frozen=True)
class ViewGeometry:
    """Views of one frame: resize to (width, height), then crop R×R at each (top, left) offset."""

    width: int
    height: int
    resolution: int
    offsets: tuple[tuple[int, int], ...]  # (top, left) of each view, in view order


# ---------------------------------------------------------------------------- views (pure)


def num_views(views: Views) -> int:
    """Spatial views per frame: center -> 1, 3crop -> 3."""
    if views not in _NUM_VIEWS:
        raise ConfigError(f"unknown views {views!r}; expected one of {VIEWS}")
    return _NUM_VIEWS[views]


def resize_short_side(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side at `short_side`, the long side truncated.

    Reproduces the reference's `get_resize_sizes`: long = int(short_side * long / short).
    """
    if width < height:
        return short_side, int(short_side * height / width)
    return int(short_side * width / height), short_side


def view_geometry(
    width: int, height: int, resolution: int, views: Views = "center"
) -> ViewGeometry:
    """Resize and crop boxes of `views` for a frame displayed at width × height.

    center: short side int(R·256/224) (the reference's `int(crop_size * 256 / 224)`; 256 at 224,
    438 at 384), then one R×R crop at the reference CenterCrop's offset int(round((size - R) / 2)).
    3crop: short side R, then three R×R crops along the long side at i·((long - R) // 2), as the
    reference's EvalVideoTransform (start, centre, end).
    """
    count = num_views(views)
    if resolution < 1 or width < 1 or height < 1:
        raise ValueError(f"need positive sizes, got {width}x{height} at resolution {resolution}")
    R = resolution
    offsets: tuple[tuple[int, int], ...]  # (top, left) of each view
    if views == "center":
        w, h = resize_short_side(width, height, int(R * 256 / 224))
        offsets = ((int(round((h - R) / 2.0)), int(round((w - R) / 2.0))),)
    else:
        w, h = resize_short_side(width, height, R)
        step = (max(w, h) - R) // (count - 1)
        offsets = tuple((i * step, 0) if h > w else (0, i * step) for i in range(count))
    return ViewGeometry(width=w, height=h, resolution=R, offsets=offsets)


def crop_views(
    image: np.ndarray | list[np.ndarray], geometry: ViewGeometry, out: np.ndarray | None = None
) -> np.ndarray:
    """Crop the views of one resized frame -> uint8 [V, R, R, 3] (into `out` if given).

    `image` is [h, w, 3], or its three [h, w] channel planes (R, G, B): then only the pixels
    inside the crops get interleaved.
    """
    R = geometry.resolution
    size = (geometry.height, geometry.width)
    want: list[tuple[int, ...]]
    if isinstance(image, np.ndarray):
        shapes, want = [image.shape], [(*size, 3)]
    else:
        shapes, want = [p.shape for p in image], [size] * 3
    if shapes != want:
        raise ValueError(f"image is {shapes}, geometry expects {(*size, 3)} or 3 planes {size}")
    if out is None:
        out = np.empty((len(geometry.offsets), R, R, 3), dtype=np.uint8)
    for v, (top, left) in enumerate(geometry.offsets):
        if isinstance(image, np.ndarray):
            out[v] = image[top : top + R, left : left + R]
        else:
            for c, plane in enumerate(image):
                out[v, :, :, c] = plane[top : top + R, left : left + R]
    return out


# ---------------------------------------------------------------------------- tensors


def normalize_clips(
    clips: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """uint8 [B, T, R, R, 3] on any device -> float32 [B, 3, T, R, R], (x / 255 - mean) / std."""
    if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 clips [B, T, H, W, 3], got {clips.dtype} {tuple(clips.shape)}"
        )
    x = clips.permute(0, 4, 1, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=clips.device).view(1, 3, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=clips.device).view(1, 3, 1, 1, 1)
    return x.div_(255.0).sub_(mean_t).div_(std_t)  # [B, 3, T, R, R], contiguous


# ---------------------------------------------------------------------------- decoding


class _FrameBuffer:
    """Prepared views of a growing number of frames: uint8 [V, capacity, R, R, 3], doubling.

    Capacity that is never written costs address space, not memory (untouched pages of a large
    allocation are not resident), so the result is a view of the written frames, not a copy.
    """

    def __init__(self, views: int, resolution: int, capacity: int):
        self.data = np.empty((views, max(capacity, 1), resolution, resolution, 3), dtype=np.uint8)
        self.count = 0

    @property
    def full(self) -> bool:
        return self.count == self.data.shape[1]

    def next_slot(self) -> np.ndarray:
        """The [V, R, R, 3] slot of the next frame (grows the buffer when it is full)."""
        if self.full:
            grown = np.empty((self.data.shape[0], 2 * self.count, *self.data.shape[2:]), np.uint8)
            grown[:, : self.count] = self.data
            self.data = grown
        self.count += 1
        return self.data[:, self.count - 1]

    def frames(self) -> np.ndarray:
        """[V, T, R, R, 3]: the written frames (contiguous when V = 1 or the buffer is full)."""
        return self.data[:, : self.count]


class _Preparer:
    """Frame -> views: libswscale resizes and converts to planar RGB in one pass, numpy crops.

    swscale's scaled output to planar RGB (gbrp) is about twice as fast as to packed rgb24. Where
    the crops cover fewer pixels than the resized frame (`center`), numpy interleaves just them;
    where they cover more (`3crop`: overlapping views), swscale packs the frame once (unscaled
    gbrp -> rgb24, cheap) and numpy copies whole pixel rows. A display matrix (rotation side data)
    is honoured: the frame is resized in its stored orientation to the size that, once turned, has
    the display geometry, and is turned while small.
    """

    def __init__(self, resolution: int, views: Views, crop: CropBox | None = None):
        self.resolution, self.views, self.crop = resolution, views, crop
        self.scaler = VideoReformatter()  # one SwsContext each for the whole video
        self.packer = VideoReformatter()
        self._geometry: dict[tuple[int, int, int], ViewGeometry] = {}
        self.display_size: tuple[int, int] | None = None  # (width, height) of the first frame

    def geometry(self, width: int, height: int, quarter_turns: int) -> ViewGeometry:
        key = (width, height, quarter_turns)
        if key not in self._geometry:
            w, h = (height, width) if quarter_turns % 2 else (width, height)
            self._geometry[key] = view_geometry(w, h, self.resolution, self.views)
            if self.display_size is None:
                self.display_size = (w, h)
        return self._geometry[key]

    def _prepare_crop(
        self, frame: av.VideoFrame, turns: int, crop: CropBox, out: np.ndarray
    ) -> None:
        """Face crop (`vjfer.face`): the box of the displayed frame, then the usual views of it.

        Cropping needs the frame as pixels first (swscale scales whole frames), so the frame is
        packed at full size, turned, cut to the box and scaled by swscale as the uncropped path.
        """
        rgb = self.packer.reformat(frame, format="rgb24", threads=1).to_ndarray()  # [H, W, 3]
        rgb = np.rot90(rgb, turns) if turns else rgb  # as displayed
        x, y, w, h = crop
        if self.display_size is None:
            self.display_size = (rgb.shape[1], rgb.shape[0])
            if x < 0 or y < 0 or x + w > rgb.shape[1] or y + h > rgb.shape[0] or min(w, h) < 1:
                raise ValueError(f"crop box {crop} is not inside the {rgb.shape[1]}x"
                                 f"{rgb.shape[0]} frame")  # fmt: skip
        face = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[y : y + h, x : x + w], dtype=np.uint8), "rgb24"
        )
        geo = self._geometry.setdefault(
            (w, h, -1), view_geometry(w, h, self.resolution, self.views)
        )
        scaled = self.scaler.reformat(face, geo.width, geo.height, format="rgb24",
                                      interpolation=RESIZE_INTERPOLATION, threads=1)  # fmt: skip
        crop_views(scaled.to_ndarray(), geo, out=out)

    def __call__(self, frame: av.VideoFrame, out: np.ndarray) -> None:
        """Prepare `frame` into `out` [V, R, R, 3]."""
        rotation = frame.rotation  # degrees counter-clockwise, from the display matrix
        turns = round(rotation / 90) % 4
        if rotation % 90:
            log.warning(
                "rotation %s is not a multiple of 90 degrees; using %d", rotation, 90 * turns
            )
        if self.crop is not None:
            self._prepare_crop(frame, turns, self.crop, out)
            return
        geo = self.geometry(frame.width, frame.height, turns)
        # The resize target in the frame's stored orientation.
        w, h = (geo.height, geo.width) if turns % 2 else (geo.width, geo.height)
        scaled = self.scaler.reformat(
            frame, w, h, format="gbrp", interpolation=RESIZE_INTERPOLATION, threads=1
        )
        # np.rot90 turns counter-clockwise, as the display matrix does, and returns a view.
        if len(geo.offsets) * geo.resolution**2 < w * h:
            planes = []  # R, G, B as [h, w] views of gbrp's planes (stored in G, B, R order)
            for index in (2, 0, 1):
                plane = scaled.planes[index]
                rows = np.frombuffer(memoryview(plane), np.uint8).reshape(h, plane.line_size)
                array = rows[:, :w]  # a line may be padded past w
                planes.append(np.rot90(array, turns) if turns else array)
            crop_views(planes, geo, out=out)
        else:
            rgb = self.packer.reformat(scaled, format="rgb24", threads=1).to_ndarray()  # [h, w, 3]
            crop_views(np.rot90(rgb, turns) if turns else rgb, geo, out=out)


@dataclass
class _DecodeStats:
    failed_packets: int = 0  # packets the decoder rejected
    corrupt_frames: int = 0  # frames the decoder flagged corrupt (dropped)
    first_time: float | None = None  # first and last frame times in seconds, for the fps fallback
    last_time: float | None = None


def _clean_frames(
    path: Path,
    container: InputContainer,
    stream: VideoStream,
    stats: _DecodeStats,
    timeout: float | None = None,
) -> Iterator[av.VideoFrame]:
    """Every frame of `stream` that decodes cleanly; failures are counted in `stats`, not raised.

    With `timeout` (seconds), a VideoError once decoding has run that long (checked per packet).
    """  # fmt: skip
    packets = container.demux(stream)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if deadline is not None and time.monotonic() > deadline:
            raise VideoError(path, f"decoding timed out after {timeout:g} s (--decode-timeout)")
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.FFmpegError, OSError) as err:  # a broken container: keep what decoded so far
            log.warning("%s: demuxing stopped: %s", path, err)
            packet = None
        try:  # the demuxer ends with an empty packet that flushes the decoder; None does the same
            frames = packet.decode() if packet is not None else stream.codec_context.decode(None)
        except (av.FFmpegError, OSError):
            stats.failed_packets += 1
            frames = []
        for frame in frames:
            if frame.is_corrupt:  # concealed damage, not a frame of the video
                stats.corrupt_frames += 1
                continue
            if frame.time is not None:
                stats.first_time = frame.time if stats.first_time is None else stats.first_time
                stats.last_time = frame.time
            yield frame
        if packet is None:
            return


def _prepare_all(
    frames: Iterator[av.VideoFrame], prepare: _Preparer, buffer: _FrameBuffer, threads: int
) -> None:
    """Prepare every frame into `buffer`: on a second thread, overlapping decoding, if threads != 1.

    swscale and numpy copies release the GIL, so the next frame decodes while one is prepared.
    """
    if threads == 1:
        for frame in frames:
            prepare(frame, buffer.next_slot())
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vjfer-prepare") as pool:
        pending: deque[Future] = deque()
        for frame in frames:
            # At most _MAX_PENDING frames in flight; growing the buffer moves the slots, so drain.
            while pending and (buffer.full or len(pending) >= _MAX_PENDING):
                pending.popleft().result()
            pending.append(pool.submit(prepare, frame, buffer.next_slot()))
        for job in pending:
            job.result()


def read_source(path: str | Path) -> tuple[bytes, SourceIdentity]:
    """A video file's bytes and their identity (size, mtime, sha256, xxh3), read once; VideoError for a
    missing, empty or non-regular file and for a git-LFS pointer."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise VideoError(path, "link target missing: fetch it with `git annex get` / `datalad get`")
    if not path.exists():
        raise VideoError(path, "no such file")
    if not path.is_file():
        raise VideoError(path, "not a regular file")
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    if not data:
        raise VideoError(path, "empty file (0 bytes)")
    if len(data) < 1024 and data.startswith(_LFS_HEADER):
        raise VideoError(path, LFS_HINT)
    digests = hashlib.sha256(data).hexdigest(), xxhash.xxh3_128_hexdigest(data)  # the decode's read
    return data, SourceIdentity(str(path), len(data), st.st_mtime_ns, *digests)


def stream_digest(data: bytes) -> str:
    """sha256 of the demuxed packets of a file's first real video stream ("" when there is none
    or the container cannot be read): equal digests mean identical video streams, whatever the
    other streams and the container (RAVDESS's audio-video and video-only files of a trial)."""
    digest = hashlib.sha256()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
            if not streams:
                return ""
            for packet in container.demux(streams[0]):
                if packet.size:  # not the demuxer's empty flush packet
                    digest.update(bytes(packet))
    except (av.FFmpegError, OSError):
        return ""
    return digest.hexdigest()


def _open(path: Path, data: bytes) -> InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, OSError) as err:
        why = getattr(err, "strerror", None) or str(err)  # not the '<none>' file name of a buffer
        reason = f"not a readable video (truncated, corrupt or not media): {why}"
        raise VideoError(path, reason) from err


@contextmanager
def _video_stream(path: Path, data: bytes) -> Iterator[tuple[InputContainer, VideoStream]]:
    """The open container and its first real video stream (not a cover picture).

    The decoder runs on one thread: with frame threads, how many frames of a damaged stream
    decode depends on the thread count (a truncated mp4 gave 12 frames with 2 or more threads, 14
    with one), and cached bytes must not depend on the machine. Parallelism comes from decoding
    several videos at once (extraction's workers) and from preparing frames on a second thread.
    """
    with _open(path, data) as container:
        streams = [s for s in container.streams.video if not s.disposition & _ATTACHED_PIC]
        if not streams:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError(path, f"no video stream (streams: {', '.join(kinds)})")
        streams[0].codec_context.thread_count = 1
        yield container, streams[0]


def _capacity_guess(container: InputContainer, stream: VideoStream) -> int:
    """Frames to allocate for at first: the index's count, else duration × rate, else 1024."""
    if stream.frames > 0:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if container.duration and rate:  # container.duration is in microseconds
        return int(container.duration / 1e6 * float(rate) * 1.05) + 16
    return 1024  # 34 s at 30 fps; CREMA-D's FLVs give neither count nor duration


def _frame_rate(path: Path, stream: VideoStream, n_frames: int, stats: _DecodeStats) -> float:
    """Stream rate (average, else guessed); else decoded frames over their timestamp span."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate is not None and 0 < float(rate) <= 1000:
            return float(rate)
    first, last = stats.first_time, stats.last_time
    if n_frames > 1 and first is not None and last is not None and last > first:
        fps = (n_frames - 1) / (last - first)
        log.warning("%s: no frame rate in the stream; %.3f fps from timestamps", path, fps)
        return fps
    log.warning("%s: no frame rate in the stream or timestamps; %.1f fps", path, DEFAULT_FPS)
    return DEFAULT_FPS


def _lost_frames(path: Path, stats: _DecodeStats, indexed: int, n_frames: int) -> int:
    """Frames lost: the larger of (failed packets + corrupt frames) and (index count - decoded)."""
    failed, corrupt = stats.failed_packets, stats.corrupt_frames
    counts = f"{failed} packets failed, {corrupt} corrupt frames dropped, the index lists {indexed}"
    if n_frames == 0:
        raise VideoError(path, f"no decodable frame ({counts})")
    lost = max(failed + corrupt, indexed - n_frames)
    if lost:
        log.warning("%s: %d frames lost, %d decoded (%s)", path, lost, n_frames, counts)
    return lost


def count_frames(path: str | Path, threads: int = 0) -> int:
    """Frames of a video that decode cleanly, counted by decoding, without converting them.

    Raises VideoError as `decode_video` does, and logs lost frames the same way. `threads` is
    accepted for compatibility; decoding is single-threaded (see `_video_stream`).
    """
    path, stats = Path(path), _DecodeStats()
    if path.is_dir():
        from vjfer.frame_folders import frame_files  # it imports this module

        return len(frame_files(path))
    data, _ = read_source(path)
    with _video_stream(path, data) as (container, stream):
        count = sum(1 for _ in _clean_frames(path, container, stream, stats))
        _lost_frames(path, stats, stream.frames, count)
    return count


def decode_video(
    path: str | Path, resolution: int, views: Views = "center", threads: int = 0,
    crop: CropBox | None = None, timeout: float | None = None,
) -> DecodedVideo:  # fmt: skip
    """Decode a whole video once and prepare its views (see `view_geometry`).

    The file is read once into memory: the bytes decoded are the bytes hashed (`source`).

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
    path, n_views, stats = Path(path), num_views(views), _DecodeStats()
    if resolution < 1 or threads < 0:
        raise ValueError(f"need resolution >= 1 and threads >= 0, got {resolution}, {threads}")
    if path.is_dir():  # a folder of frames (DFEW, FERV39k, MAFW): the same preparation
        from vjfer.frame_folders import decode_frame_folder  # it imports this module

        return decode_frame_folder(path, resolution, views, threads, crop, timeout)
    data, source = read_source(path)
    prepare = _Preparer(resolution, views, crop)
    with _video_stream(path, data) as (container, stream):
        buffer = _FrameBuffer(n_views, resolution, _capacity_guess(container, stream))
        frames = _clean_frames(path, container, stream, stats, timeout)
        try:
            _prepare_all(frames, prepare, buffer, threads)
        except av.FFmpegError as err:  # swscale refusing a frame: not a partial decode
            raise VideoError(path, f"cannot convert frames to RGB: {err}") from err
        except ValueError as err:
            if crop is None:
                raise
            raise VideoError(path, str(err)) from err  # the crop box is outside the frame
        lost = _lost_frames(path, stats, stream.frames, buffer.count)
        fps = _frame_rate(path, stream, buffer.count, stats)
        indexed = int(stream.frames) if stream.frames > 0 else -1
    if prepare.display_size is None:  # _lost_frames raised already when no frame decoded
        raise VideoError(path, "no frame was prepared")
    width, height = prepare.display_size
    return DecodedVideo(
        path=path, frames=buffer.frames(), fps=fps, width=width, height=height,
        n_frames=buffer.count, lost_frames=lost, container_frames=indexed, source=source,
    )  # fmt: skip


def decode_native(
    path: str | Path, indices: np.ndarray, crop: CropBox | None = None,
    timeout: float | None = None,
) -> np.ndarray:  # fmt: skip
    """The frames at `indices` (sorted, unique) as displayed, at their native size (cut to `crop`
    when given): uint8 [len(indices), H, W, 3].

    Frame i is the i-th frame `decode_video` keeps (the same clean-frame rule), so these are the
    frames behind clip indices; the reference augments and crops the full native frame
    (`vjfer.augment`), which the prepared views no longer hold. A second decode, paid only by
    `vjfer extract --augment`.
    """
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    if path.is_dir():
        from vjfer.frame_folders import decode_folder_native  # it imports this module

        return decode_folder_native(path, indices, crop)
    wanted = {int(i): k for k, i in enumerate(indices)}
    out: list[np.ndarray | None] = [None] * len(indices)
    data, _ = read_source(path)
    packer = VideoReformatter()
    with _video_stream(path, data) as (container, stream):
        for i, frame in enumerate(_clean_frames(path, container, stream, _DecodeStats(), timeout)):
            if i in wanted:
                rgb = packer.reformat(frame, format="rgb24", threads=1).to_ndarray()  # [H, W, 3]
                turns = round(frame.rotation / 90) % 4
                rgb = np.rot90(rgb, turns) if turns else rgb  # as displayed
                if crop is not None:
                    x, y, w, h = crop
                    rgb = rgb[y : y + h, x : x + w]
                out[wanted[i]] = np.ascontiguousarray(rgb)
            if i >= indices[-1]:
                break
    found = [frame for frame in out if frame is not None]
    if len(found) < len(out):
        raise VideoError(path, f"frames up to {int(indices[-1])} requested, fewer decoded")
    return np.stack(found)
