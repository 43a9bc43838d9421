"""The cache format: constants, per-video records, fingerprint, names, shard assignment,
checksums, and the check that a shard or manifest is of this format (docs/design.md, "The cache").

Pure helpers, and `read_shard_header`, the one reader of a shard's attributes and per-video table,
used by the writer (to rebuild the manifest), the reader and the checks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import xxhash

from vjfer.clips import REFERENCE_CLIP_LEN
from vjfer.errors import CacheError
from vjfer.store import StoreFormat

FORMAT = "vjfer-cache"
FORMAT_VERSION = 2  # v2: source identity, decode record and per-clip checksums
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
PARTIAL_SUFFIX = ".partial"
SHARD_PATTERN = re.compile(r"^shard-(\d{5})\.h5$")
TOKEN_DTYPE = np.dtype("float16")  # storage dtype of tokens (a fingerprint input)
# The reference's windows need n - 64 >= 1 frames; shorter videos get one padded window.
SHORTEST_UNPADDED = REFERENCE_CLIP_LEN + 1  # 65 frames
VIDEO_COLUMNS = ("video_id", "label", "actor", "fold", "n_frames", "fps", "first_clip", "n_clips")
# Per-video columns of caches made with a face crop (`vjfer.face`) only; other shards lack them.
FACE_COLUMNS = ("face_status", "face_box")  # "cropped" | "fallback"; (x, y, w, h), -1s: none
FACE_FAILURE_PREFIX = "no face"  # how a face-crop failure's reason starts (failures.jsonl)
DECODE_COLUMNS = ("lost_frames", "container_frames")  # int64; container_frames -1: not listed
SOURCE_COLUMNS = ("source_path", "source_size", "source_mtime_ns", "source_sha256")
CHECKSUM = "xxh3_64"  # per clip, of the chunk's bytes; ~20x faster than zlib.crc32 (RESULTS.md)


@dataclass
class VideoEntry:
    """One video's cached data: what a shard writer takes."""

    video_id: str
    label: int
    actor: int
    fold: int
    n_frames: int
    fps: float
    frames: np.ndarray  # int [C, 16] frame indices of each clip
    tokens: np.ndarray  # float16 [C, V, N, D]
    face_status: str | None = None  # with a face crop: "cropped" or "fallback" (whole frame)
    face_box: tuple[int, int, int, int] | None = None  # the crop (x, y, w, h); None: whole frame
    lost_frames: int = 0  # frames that failed to decode (kept below --max-lost-frames)
    container_frames: int = -1  # frames the container's index lists; -1 when it lists none
    source: object | None = None  # a video.SourceIdentity (path, size, mtime_ns, sha256)
    alias_of: str = ""  # the video whose tokens this one shares (an identical video stream)
    clip_role: np.ndarray | None = None  # uint8 [C] (video.ROLE_*); None: every clip is evaluated


@dataclass
class Coverage:
    """How much of a dataset a cache covers: results on `videos` of `total` videos."""

    videos: int  # cached, usable
    failed: int  # could not be decoded (failures.jsonl, stage decode)
    excluded: int  # excluded when indexing (failures.jsonl, stage index)

    @property
    def total(self) -> int:
        return self.videos + self.failed + self.excluded

    def __str__(self) -> str:
        return (f"results on {self.videos} of {self.total} videos, "
                f"{self.failed + self.excluded} failed / excluded")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Pure helpers: fingerprint, names, shard assignment.


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace: the same settings always give the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(settings: dict) -> str:
    """sha256 (hex) of the canonical JSON of the fingerprint inputs."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


def clip_checksum(buf: np.ndarray | bytes | memoryview) -> int:
    """xxh3-64 of a clip's bytes: a C-contiguous float16 [V, N, D] array or its raw chunk bytes."""
    if isinstance(buf, np.ndarray):
        buf = np.ascontiguousarray(buf).data.cast("B")  # the array's bytes, not a copy
    return xxhash.xxh3_64_intdigest(buf)


def stored_checksum(values: np.ndarray, scales: np.ndarray | None) -> int:
    """xxh3-64 of a stored clip: its token chunk's bytes, then (int8, fp8) its scale chunk's bytes;
    the same as `clip_checksum` of the two chunks read into one buffer, as the stage-2 reader does."""
    if scales is None:
        return clip_checksum(values)
    hasher = xxhash.xxh3_64()
    hasher.update(np.ascontiguousarray(values).data.cast("B"))
    hasher.update(np.ascontiguousarray(scales).data.cast("B"))
    return hasher.intdigest()


def corrupt_clip(directory: Path, shard: str, row: int, video_id: str, clip: int) -> CacheError:
    """The error for a clip whose bytes do not match its stored checksum, with the fix."""
    return CacheError(
        f"{Path(directory) / shard}: clip {row} ({video_id}, clip {clip}) does not match its "
        f"checksum: the shard is corrupt; run `vjfer cache verify {directory}` and re-extract that "
        "shard (delete it, rerun vjfer extract)"
    )


def cache_dir_name(encoder: str, resolution: int, fp: str) -> str:
    return f"{encoder}-{resolution}-{fp[:8]}"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def assign_shards(video_ids: Iterable[str], shard_size: int) -> list[list[str]]:
    """Sorted video ids in consecutive groups of `shard_size`; shard i holds group i."""
    if shard_size < 1:
        raise CacheError(f"shard_size must be >= 1, got {shard_size}")
    ids = sorted(video_ids)
    if len(set(ids)) != len(ids):
        dup = next(a for a, b in zip(ids, ids[1:], strict=False) if a == b)
        raise CacheError(f"video id {dup!r} appears twice; ids must be unique")
    return [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]


# ---------------------------------------------------------------------------------------------
# Format checks: a shard's header, a manifest's format, a layout's store format.


_JSON_ATTRS = ("settings", "grid", "video_ids", "failures", "aliases", "store", "lineage")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _check_format(meta: dict, path: Path) -> None:
    """A shard header or manifest of another format or version is refused, naming the file."""
    version = meta.get("format_version")
    if meta.get("format") == FORMAT and isinstance(version, int) and version < FORMAT_VERSION:
        raise CacheError(
            f"{path}: a cache of format v{version}, made by an older vjfer; this vjfer reads "
            f"v{FORMAT_VERSION} (source identity, per-clip checksums): re-extract it with "
            f"`vjfer extract ... --force`, or delete {path.parent}"
        )
    if meta.get("format") != FORMAT or version != FORMAT_VERSION:
        raise CacheError(
            f"{path}: format {meta.get('format')!r} v{meta.get('format_version')!r}, "
            f"this vjfer reads {FORMAT!r} v{FORMAT_VERSION}"
        )


def read_shard_header(path: Path) -> dict:
    """A complete shard's attributes (JSON decoded) plus its per-video table; CacheError if unreadable."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            header = {
                k: (json.loads(v) if k in _JSON_ATTRS else _plain(v)) for k, v in attrs.items()
            }
            _check_format(header, path)
            names = (*VIDEO_COLUMNS, *DECODE_COLUMNS, *SOURCE_COLUMNS, "alias_of")
            table = {k: f[k][()] for k in names}
            table.update({k: f[k][()] for k in FACE_COLUMNS if k in f})
            header["tokens_shape"] = list(f["tokens"].shape)
            header["clips_in_table"] = int(len(f["clip_video"]))
            header["checksums"] = int(len(f["clip_checksum"]))
    except (OSError, KeyError) as err:
        raise CacheError(f"cannot read shard {path}: {err}") from err
    for key in ("video_id", "source_path", "source_sha256", "alias_of", "face_status"):
        if key in table:
            table[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in table[key]]
    header["videos"] = table
    return header


def store_of(layout: dict) -> StoreFormat:
    """The store format of a manifest's layout (caches from before formats existed: fp16)."""
    return StoreFormat.parse(layout["store"]["format"] if "store" in layout else "fp16")


def layer_blocks(settings: dict) -> tuple[int, ...] | None:
    """The encoder blocks a cache holds (`extract --layers`, 0-based, ascending), stacked along
    the token axis of each clip in that order; None: the encoder's output alone (no `layers` key,
    every cache made before layers existed)."""
    return tuple(settings["layers"]["blocks"]) if "layers" in settings else None


def size_ratio(layout: dict) -> float:
    """Bytes of a stored clip over the bytes of the same clip as fp16 encoder tokens."""
    fmt = store_of(layout)
    V = layout["num_views"]
    values, scales = fmt.clip_nbytes(V, layout["num_tokens"], layout["embed_dim"])
    source = layout["store"] if "store" in layout else layout  # the encoder's grid and D
    layers = len(layout["layers"]) if "layers" in layout else 1
    return (values + scales) / (V * layers * int(np.prod(source["grid"])) * source["embed_dim"] * 2)
