"""The cache format: constants, per-video records, fingerprint, names, shard assignment,
checksums, and the check that a shard or manifest is of this format (docs/design.md, "The cache");
`read_shard_header` is the one reader of a shard's attributes and per-video table.
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
from vjfer.schemas import ShardAttrs, validation_error
from vjfer.store import StoreFormat

FORMAT = "vjfer-cache"
FORMAT_VERSION = 2  # v2: source identity, decode record and per-clip checksums
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
CONVERT_RECORD = "convert.json"  # in a `vjfer cache convert` target: its command, written first
PARTIAL_SUFFIX = ".partial"
SHARD_PATTERN = re.compile(r"^shard-(\d{5})\.h5$")
TOKEN_DTYPE = np.dtype("float16")  # storage dtype of tokens (a fingerprint input)
# The reference's windows need n - 64 >= 1 frames; shorter videos get one padded window.
SHORTEST_UNPADDED = REFERENCE_CLIP_LEN + 1  # 65 frames
VIDEO_COLUMNS = ("video_id", "label", "actor", "fold", "n_frames", "fps", "first_clip", "n_clips")
# Per-video columns of caches made with a face crop (`vjfer.face`) only; other shards lack them.
FACE_COLUMNS = ("face_status", "face_box")  # "cropped" | "fallback"; (x, y, w, h), -1s: none
ODD_SIZE = "odd_size_frames"  # int64, only in shards where some video has frames of another size
DECODE_COLUMNS = ("lost_frames", "container_frames")  # int64; container_frames -1: not listed
SOURCE_COLUMNS = ("source_path", "source_size", "source_mtime_ns", "source_sha256", "source_xxh3")
# Written since issue 20; a shard from before lacks it and reads as "" (compared by sha256).
OPTIONAL_SOURCE_COLUMNS = ("source_xxh3",)
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
    # frames of a frame folder whose size differs from its first frame's, resized each on its own
    # (a shard column only when some video has one: other shards keep their bytes)
    odd_size_frames: int = 0
    source: object | None = None  # a video.SourceIdentity (path, size, mtime_ns, sha256)
    alias_of: str = ""  # the video whose tokens this one shares (an identical video stream)
    clip_role: np.ndarray | None = None  # uint8 [C] (clips.ROLE_*); None: every clip is evaluated


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
        return (
            f"results on {self.videos} of {self.total} videos, "
            f"{self.failed + self.excluded} failed / excluded"
        )


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
    the same as `clip_checksum` of the two chunks read into one buffer, as the stage-2 reader
    does."""
    if scales is None:
        return clip_checksum(values)
    hasher = xxhash.xxh3_64()
    hasher.update(np.ascontiguousarray(values).data.cast("B"))
    hasher.update(np.ascontiguousarray(scales).data.cast("B"))
    return hasher.intdigest()


def convert_command(directory: Path) -> str | None:
    """The `vjfer cache convert` command that writes the cache in `directory`, from the record
    convert writes before its first shard (CONVERT_RECORD); None for an extracted cache."""
    try:
        record = json.loads((Path(directory) / CONVERT_RECORD).read_text(encoding="utf-8"))
        words = [
            "vjfer",
            "cache",
            "convert",
            record["source"],
            "--store",
            record["store"],
            "--out",
            record["out"],
        ]
        if record.get("pca_fold") is not None:
            words += ["--pca-fold", str(record["pca_fold"])]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return "`" + " ".join(map(str, words)) + "`"


def refill_hint(directory: Path, what: str = "it") -> str:
    """How to rewrite a bad shard of the cache in `directory`: a converted cache's shards come
    from its source cache (`vjfer cache convert`), an extracted one's from the videos."""
    command = convert_command(directory)
    try:
        manifest = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
        converted = isinstance(manifest, dict) and "lineage" in manifest
    except (OSError, ValueError):
        converted = False
    if command is not None or converted:
        command = command or "`vjfer cache convert SOURCE --store FORMAT --out DIR`"
        return f"rewrite {what} from the source cache (delete it, rerun {command})"
    return f"re-extract {what} (delete it, rerun vjfer extract)"


def corrupt_clip(directory: Path, shard: str, row: int, video_id: str, clip: int) -> CacheError:
    """The error for a clip whose bytes do not match its stored checksum, with the fix."""
    return CacheError(
        f"{Path(directory) / shard}: clip {row} ({video_id}, clip {clip}) does not match its "
        f"checksum: the shard is corrupt; run `vjfer cache verify {directory}` and "
        f"{refill_hint(directory, 'that shard')}"
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
    """A complete shard's attributes (JSON decoded) plus its per-video table; CacheError if
    unreadable."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            header = {
                k: (json.loads(v) if k in _JSON_ATTRS else _plain(v)) for k, v in attrs.items()
            }
            _check_format(header, path)
            if (problem := validation_error(header, ShardAttrs)) is not None:
                raise CacheError(
                    f"{path}: attributes: {problem}; the shard is not vjfer's or damaged"
                )
            names = (*VIDEO_COLUMNS, *DECODE_COLUMNS, *SOURCE_COLUMNS, "alias_of")
            table = {k: f[k][()] for k in names if k in f or k not in OPTIONAL_SOURCE_COLUMNS}
            rows = len(table["video_id"])
            table.update({k: [""] * rows for k in OPTIONAL_SOURCE_COLUMNS if k not in table})
            table.update({k: f[k][()] for k in (*FACE_COLUMNS, ODD_SIZE) if k in f})
            header["tokens_shape"] = list(f["tokens"].shape)
            header["clips_in_table"] = int(len(f["clip_video"]))
            header["checksums"] = int(len(f["clip_checksum"]))
    except (OSError, KeyError, ValueError, RecursionError) as err:  # ValueError: an attr not JSON
        raise CacheError(f"cannot read shard {path}: {err}") from err
    text = ("video_id", "source_path", "source_sha256", "source_xxh3", "alias_of", "face_status")
    for key in text:
        if key in table:
            table[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in table[key]]
    header["videos"] = table
    return header


# What a shard's per-video table must share with the manifest's rows for it (`shard_mismatch`):
# the metadata the probe trains on, and the content hashes of the files the tokens came from.
ROW_COLUMNS = (*VIDEO_COLUMNS[1:], "alias_of")
SOURCE_KEYS = ("path", "sha256", "xxh3")  # not size / mtime: a copy of the same bytes is the same


def shard_mismatch(header: dict, rows: list[dict], failed: list[str]) -> str | None:
    """The first difference between a shard (its `read_shard_header`) and the manifest's rows of
    the videos it holds (`rows`, in order) and fails (`failed` ids), naming the video; None if
    none. Cheap: the small per-video tables only, no tokens.

    A shard copied from another cache with the same fingerprint (and even the same video ids and
    clip counts) differs here: in a video's labels, fold or clip counts, or its source's hashes.
    """
    table = header["videos"]
    ids = [v["video_id"] for v in rows]
    if list(table["video_id"]) != ids:
        return f"holds videos {list(table['video_id'])[:3]}..., the manifest lists {ids[:3]}..."
    for i, row in enumerate(rows):
        for col in ROW_COLUMNS:
            if (got := _plain(table[col][i])) != row[col]:
                return f"video {row['video_id']}: {col} {got!r}, the manifest has {row[col]!r}"
        source = row.get("source") or {}
        for key in SOURCE_KEYS:
            got, want = table[f"source_{key}"][i], source.get(key, "")
            if got != want and (want or key != "xxh3"):  # manifests from before xxh3 lack it
                return (
                    f"video {row['video_id']}: source {key} {got[:16]!r}, the manifest has "
                    f"{want[:16]!r} (tokens of another file)"
                )
    if (got_failed := sorted(f["video_id"] for f in header["failures"])) != sorted(failed):
        return f"failed videos {got_failed[:3]}, the manifest lists {sorted(failed)[:3]}"
    return None


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
