"""Decode video files once with PyAV; each frame goes to `vjfer.prepare` (resize + crop views).

Frames are counted by decoding, never from container metadata (CREMA-D's FLV headers report 0
frames and no duration). A frame keeps its stored orientation until it is small: a display matrix
(rotation side data) is honoured by `Preparer.scale_views`. Folders of frames are
`vjfer.frame_folders`; `vjfer.decode` picks one or the other for a path.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import xxhash
from av.container import InputContainer
from av.video.reformatter import VideoReformatter
from av.video.stream import VideoStream

from vjfer.datasets.records import is_lfs_pointer
from vjfer.errors import VideoError
from vjfer.prepare import (
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

_ATTACHED_PIC = av.stream.Disposition.attached_pic  # cover art: a "video" stream of one image
DEFAULT_FPS = 30.0  # used only when neither the stream rates nor the frame timestamps give one
LFS_HINT = (
    "a git-LFS pointer, not a video: fetch the videos with `git lfs pull` in the dataset clone"
)


def file_identity(path: str | Path, name: str | None = None, sha256: bool = True) -> SourceIdentity:
    """Stat and hash a file in one sequential read (8 MiB blocks); `name` is the path to record
    (default: `path`). Without `sha256` only xxh3-128 is computed (its `sha256` is then "")."""
    path = Path(path)
    digest, fast = hashlib.sha256() if sha256 else None, xxhash.xxh3_128()
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        while chunk := f.read(1 << 23):
            fast.update(chunk)
            if digest is not None:
                digest.update(chunk)
    return SourceIdentity(
        name or str(path),
        st.st_size,
        st.st_mtime_ns,
        digest.hexdigest() if digest else "",
        fast.hexdigest(),
    )


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
    """
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


def read_source(path: str | Path) -> tuple[bytes, SourceIdentity]:
    """A video file's bytes and their identity (size, mtime, sha256, xxh3), read once; VideoError
    for a missing, empty or non-regular file and for a git-LFS pointer."""
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
    if is_lfs_pointer(data, len(data)):
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


def _turns(frame: av.VideoFrame) -> int:
    """Quarter turns counter-clockwise of the frame's display matrix (warns when not a multiple)."""
    rotation = frame.rotation  # degrees counter-clockwise, from the display matrix
    turns = round(rotation / 90) % 4
    if rotation % 90:
        log.warning("rotation %s is not a multiple of 90 degrees; using %d", rotation, 90 * turns)
    return turns


def _as_displayed(packer: VideoReformatter, frame: av.VideoFrame, turns: int) -> np.ndarray:
    """The frame as displayed, RGB uint8 [H, W, 3] at its native size (a view when turned)."""
    rgb = packer.reformat(frame, format="rgb24", threads=1).to_ndarray()  # [H, W, 3]
    return np.rot90(rgb, turns) if turns else rgb


def _prepare_frame(prepare: Preparer, frame: av.VideoFrame, out: np.ndarray) -> None:
    """Prepare a decoded frame into `out` [V, R, R, 3]: scaled in its stored orientation, or, with
    a face crop, packed at full size, turned and cut to the box first (swscale scales whole
    frames)."""
    turns = _turns(frame)
    if prepare.crop is not None:
        prepare.crop_face(_as_displayed(prepare.packer, frame, turns), out)
    else:
        prepare.scale_views(frame, turns, out)


def _check_pixels(path: Path, stream: VideoStream, max_pixels: int | None) -> None:
    """VideoError for a stream whose frames exceed `max_pixels` (`--max-frame-pixels`), before
    any frame is decoded."""
    width, height = stream.codec_context.width, stream.codec_context.height
    if max_pixels is not None and width * height > max_pixels:
        raise VideoError(
            path, f"{width}x{height} frames, more than --max-frame-pixels {max_pixels}"
        )


def decode_file(
    path: str | Path,
    resolution: int,
    views: Views = "center",
    threads: int = 0,
    crop: CropBox | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> DecodedVideo:
    """Decode a video file once and prepare its views: `vjfer.decode.decode_video` for a file."""
    path, stats = Path(path), _DecodeStats()
    data, source = read_source(path)
    prepare = Preparer(resolution, views, crop)
    with _video_stream(path, data) as (container, stream):
        _check_pixels(path, stream, max_pixels)
        buffer = FrameBuffer(num_views(views), resolution, _capacity_guess(container, stream))
        frames = _clean_frames(path, container, stream, stats, timeout)
        try:
            prepare_all(frames, lambda f, out: _prepare_frame(prepare, f, out), buffer, threads)
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
        path=path,
        frames=buffer.frames(),
        fps=fps,
        width=width,
        height=height,
        n_frames=buffer.count,
        lost_frames=lost,
        container_frames=indexed,
        source=source,
    )


def decode_file_native(
    path: str | Path,
    indices: np.ndarray,
    crop: CropBox | None = None,
    timeout: float | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The frames at `indices` (sorted, unique) of a video file: `vjfer.decode.decode_native`."""
    path = Path(path)
    indices = np.asarray(indices, dtype=np.int64)
    wanted = {int(i): k for k, i in enumerate(indices)}
    out: list[np.ndarray | None] = [None] * len(indices)
    data, _ = read_source(path)
    packer = VideoReformatter()
    with _video_stream(path, data) as (container, stream):
        _check_pixels(path, stream, max_pixels)
        for i, frame in enumerate(_clean_frames(path, container, stream, _DecodeStats(), timeout)):
            if i in wanted:
                rgb = _as_displayed(packer, frame, round(frame.rotation / 90) % 4)
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


def file_frames(path: Path) -> Iterator[av.VideoFrame]:
    """Every frame of a video file's first video stream, as the decoder gives it (face
    detection)."""
    with av.open(str(path)) as container:
        yield from container.decode(container.streams.video[0])
