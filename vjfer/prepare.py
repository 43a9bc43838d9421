"""Frame preparation, shared by video files (`vjfer.video`) and frame folders
(`vjfer.frame_folders`): the source identity and the decoded-video record, crop boxes, view
geometry, and the preparer that turns each frame into its views once (resize + crop), on a second
thread if asked.

Geometry follows the reference code (facebookresearch/jepa as used by Eing et al.):
`evals/video_classification_frozen/utils.py` (eval view: short side int(R·256/224), truncated as
there, not rounded: 438 at R = 384; centre crop; multi-view: short side R, crops along the long
side). The `whole` view is the field's loaders' instead (MAE-DFER `Resize((160, 160))`,
DFER-CLIP's resize to 224): the whole frame squashed to R×R. Resizing is libswscale's (through
PyAV), for decoded video frames and RGB arrays alike.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from vjfer.errors import ConfigError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CropBox = tuple[int, int, int, int]  # (x, y, w, h) of the displayed frame, pixels
# The largest frame read by default (`--max-frame-pixels`): 50 megapixels (an 8K frame is 33). A
# face-crop release's frames are ~0.05 MP: a larger one is a mistake or a decompression bomb (a
# few kB of PNG can declare 15000×15000), and costs its frame (a folder) or its video (a file).
MAX_FRAME_PIXELS = 50_000_000
Views = Literal["center", "3crop", "whole"]
VIEWS: tuple[str, ...] = ("center", "3crop", "whole")
_NUM_VIEWS = {"center": 1, "3crop": 3, "whole": 1}

# libswscale's bilinear filter (antialiased when shrinking). The reference resizes with
# cv2.INTER_LINEAR, which is not antialiased: geometry matches exactly, pixel values do not.
RESIZE_INTERPOLATION = "BILINEAR"
_MAX_PENDING = 8  # frames queued for preparation on the second thread

Frame = TypeVar("Frame")


@dataclass(frozen=True)
class SourceIdentity:
    """Which bytes a cached video came from: its path (relative to the dataset root in the cache),
    size, modification time, and the sha256 and xxh3-128 of exactly the bytes decoded (a frame
    folder: of its files' names, sizes and bytes in frame order).

    xxh3 is what a resume compares (~8x faster than sha256 here, benchmarks/RESULTS.md); caches
    made before it was recorded have "" and are compared by sha256.
    """

    path: str
    size: int
    mtime_ns: int
    sha256: str
    xxh3: str = ""  # xxh3-128, hex


@dataclass
class DecodedVideo:
    """A whole video, decoded once, as prepared views.

    `frames` is uint8 [V, T, R, R, 3] (RGB); with V > 1 it can be a strided view of a larger
    buffer (when the container did not list the frame count). `width`/`height` are the source
    size as displayed (after any rotation). `n_frames` = T, counted by decoding; `lost_frames`
    counts frames that failed to decode (0 for a clean file); `container_frames` is the count the
    container's index lists (-1 where it lists none, as FLV). `source` identifies the bytes decoded.
    `odd_size_frames` counts the frames (of a frame folder) whose size is not the first frame's:
    each got its own geometry, as the peers' loaders resize every frame on its own.
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
    # frames whose size differs from the first frame's, each resized on its own (frame folders)
    odd_size_frames: int = 0


@dataclass(frozen=True)
class ViewGeometry:
    """Views of one frame: resize to (width, height), then crop R×R at each (top, left) offset."""

    width: int
    height: int
    resolution: int
    offsets: tuple[tuple[int, int], ...]  # (top, left) of each view, in view order


# ---------------------------------------------------------------------------- views (pure)


def num_views(views: Views) -> int:
    """Spatial views per frame: center -> 1, 3crop -> 3, whole -> 1."""
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
    whole: the whole frame resized to R×R, one view, nothing cropped. A non-square frame is
    squashed (its aspect ratio is not kept), as the peers' `Resize((R, R))` on their face crops.
    """
    count = num_views(views)
    if resolution < 1 or width < 1 or height < 1:
        raise ValueError(f"need positive sizes, got {width}x{height} at resolution {resolution}")
    R = resolution
    offsets: tuple[tuple[int, int], ...]  # (top, left) of each view
    if views == "center":
        w, h = resize_short_side(width, height, int(R * 256 / 224))
        offsets = ((int(round((h - R) / 2.0)), int(round((w - R) / 2.0))),)
    elif views == "whole":
        w, h, offsets = R, R, ((0, 0),)
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


# ---------------------------------------------------------------------------- preparation


class FrameBuffer:
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


class Preparer:
    """Frame -> views: libswscale resizes and converts to planar RGB in one pass, numpy crops.

    Called with an RGB array [H, W, 3] as displayed (a frame folder's image); `vjfer.video`
    calls `scale_views` and `crop_face` with decoded frames in their stored orientation.
    swscale's scaled output to planar RGB (gbrp) is about twice as fast as to packed rgb24. Where
    the crops cover fewer pixels than the resized frame (`center`), numpy interleaves just them;
    where they cover more (`3crop`: overlapping views) or all of it (`whole`), swscale packs the
    frame once (unscaled gbrp -> rgb24, cheap) and numpy copies whole pixel rows.
    """

    def __init__(self, resolution: int, views: Views, crop: CropBox | None = None):
        self.resolution, self.views, self.crop = resolution, views, crop
        self.scaler = VideoReformatter()  # one SwsContext each for the whole video
        self.packer = VideoReformatter()
        self._geometry: dict[tuple[int, int, int], ViewGeometry] = {}
        self.display_size: tuple[int, int] | None = None  # (width, height) of the first frame
        self.odd_size_frames = 0  # RGB frames whose size is not the first frame's (`__call__`)

    def geometry(self, width: int, height: int, quarter_turns: int) -> ViewGeometry:
        key = (width, height, quarter_turns)
        if key not in self._geometry:
            w, h = (height, width) if quarter_turns % 2 else (width, height)
            self._geometry[key] = view_geometry(w, h, self.resolution, self.views)
            if self.display_size is None:
                self.display_size = (w, h)
        return self._geometry[key]

    def crop_face(self, rgb: np.ndarray, out: np.ndarray) -> None:
        """Face crop (`vjfer.face`): cut the displayed RGB frame [H, W, 3] to the box, then scale
        it (swscale, to rgb24) and crop the usual views of it into `out`."""
        assert self.crop is not None
        x, y, w, h = self.crop
        if self.display_size is None:
            self.display_size = (rgb.shape[1], rgb.shape[0])
        # every frame: a frame folder's frames may differ in size, and the box is in pixels
        if x < 0 or y < 0 or x + w > rgb.shape[1] or y + h > rgb.shape[0] or min(w, h) < 1:
            raise ValueError(
                f"crop box {self.crop} is not inside the {rgb.shape[1]}x{rgb.shape[0]} frame"
            )
        face = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[y : y + h, x : x + w], dtype=np.uint8), "rgb24"
        )
        geo = self._geometry.setdefault(
            (w, h, -1), view_geometry(w, h, self.resolution, self.views)
        )
        scaled = self.scaler.reformat(
            face,
            geo.width,
            geo.height,
            format="rgb24",
            interpolation=RESIZE_INTERPOLATION,
            threads=1,
        )
        crop_views(scaled.to_ndarray(), geo, out=out)

    def scale_views(self, frame: av.VideoFrame, turns: int, out: np.ndarray) -> None:
        """Views of a frame stored `turns` quarter turns from its display: resized in its stored
        orientation to the size that, once turned, has the display geometry, turned while small."""
        geo = self.geometry(frame.width, frame.height, turns)
        # The resize target in the frame's stored orientation.
        w, h = (geo.height, geo.width) if turns % 2 else (geo.width, geo.height)
        if self.views == "whole" and (frame.width, frame.height) == (w, h):
            # Already R×R (DFEW's 224 px frames at 224): nothing to resize, and swscale's unscaled
            # conversion straight to packed RGB is ~3x faster than through gbrp (an RGB frame is
            # copied as it is).
            rgb = self.scaler.reformat(frame, format="rgb24", threads=1).to_ndarray()
            crop_views(np.rot90(rgb, turns) if turns else rgb, geo, out=out)
            return
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

    def __call__(self, rgb: np.ndarray, out: np.ndarray) -> None:
        """Prepare an RGB frame [H, W, 3] (as displayed) into `out` [V, R, R, 3]; a frame of
        another size than the first gets its own geometry (and is counted)."""
        if self.display_size not in (None, (rgb.shape[1], rgb.shape[0])):
            self.odd_size_frames += 1
        if self.crop is not None:
            self.crop_face(rgb, out)
        else:  # swscale reads the array as an rgb24 frame
            self.scale_views(av.VideoFrame.from_ndarray(rgb, format="rgb24"), 0, out)


def prepare_all(
    frames: Iterable[Frame],
    prepare: Callable[[Frame, np.ndarray], None],
    buffer: FrameBuffer,
    threads: int,
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
