"""The feature cache: HDF5 shards of encoder tokens, a manifest, a fingerprint, a reader and checks.

Layout (DESIGN.md, "Cache format"): `<cache_root>/<dataset>/<encoder>-<resolution>-<fp[:8]>/` holds
`manifest.json`, `shard-NNNNN.h5` and `failures.jsonl`. Videos go to shards by sorted video id in
groups of `shard_size`, so every run, rank and resume agrees on which shard holds which video. A shard
is written as `shard-NNNNN.h5.partial`, fsynced and renamed: a file named `shard-NNNNN.h5` is complete.
Shards are self-describing (settings, fingerprint, assignment and failures in their attributes), so
the manifest can be rebuilt from them. Writes are deterministic (no timestamps, fixed order), so an
interrupted-then-resumed shard has the same bytes as one written in a single go.

What a shard proves about itself (format v2): per video, the identity of the source file (path
relative to the dataset root, size, mtime, sha256 of the bytes decoded) and the decode record
(`lost_frames`, `container_frames`); per clip, `clip_checksum`, the xxh3-64 of exactly the bytes of
that clip's HDF5 chunk. `open_cache` checks every shard's header against the manifest (cheap);
`verify_cache` and `Cache.tokens` check the checksums.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
import xxhash

from vjfer.clips import FRAMES_PER_CLIP, REFERENCE_CLIP_LEN
from vjfer.errors import CacheError
from vjfer.labels import class_names as dataset_class_names
from vjfer.store import PCA_BASIS, PCA_MEAN, SCALES, Codec, StoreFormat, decode_raw

log = logging.getLogger(__name__)

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
        buf = memoryview(np.ascontiguousarray(buf)).cast("B")
    return xxhash.xxh3_64_intdigest(buf)


def stored_checksum(values: np.ndarray, scales: np.ndarray | None) -> int:
    """xxh3-64 of a stored clip: its token chunk's bytes, then (int8, fp8) its scale chunk's bytes;
    the same as `clip_checksum` of the two chunks read into one buffer, as the stage-2 reader does."""
    if scales is None:
        return clip_checksum(values)
    hasher = xxhash.xxh3_64()
    hasher.update(memoryview(np.ascontiguousarray(values)).cast("B"))
    hasher.update(memoryview(np.ascontiguousarray(scales)).cast("B"))
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


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file, fsync and rename: never a half-written file."""
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:  # disk full, quota, permissions: the error names the file, no .partial
        tmp.unlink(missing_ok=True)
        cause = os.strerror(err.errno) if err.errno else str(err)
        raise CacheError(f"writing {path} failed ({cause}); free space or fix the directory, "
                         f"then rerun (the shards written so far are kept)") from err  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Writing one shard.


def _roles(roles: np.ndarray | None, clips: int) -> np.ndarray | None:
    """An entry's clip roles as uint8 [C], checked against its clip count."""
    if roles is None:
        return None
    roles = np.asarray(roles, dtype=np.uint8)
    if roles.shape != (clips,):
        raise CacheError(f"clip_role must be [{clips}] (one per clip), got {list(roles.shape)}")
    return roles


class ShardWriter:
    """Writes one shard to `<name>.partial`; `close()` completes it (flush, fsync, rename).

    `header` holds the JSON-able shard attributes (settings, fingerprint, assignment, ...).
    Entries must arrive in sorted video-id order; tokens are appended one video at a time so the
    sequence of HDF5 operations, and hence the file's bytes, depends only on the data.
    """

    def __init__(self, path: Path, header: dict, num_views: int, num_tokens: int, embed_dim: int,
                 codec: Codec | None = None):  # fmt: skip
        """`num_tokens` and `embed_dim` are the encoder's; a `codec` (vjfer.store) stores them in
        its format (its header goes into the shard's `store` attribute); None: float16 as given."""
        self.path = Path(path)
        self.codec = None if codec is None or codec.fmt.plain else codec
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.header = header
        self.shape = (num_views, num_tokens, embed_dim)  # (V, N, D)
        self.rows: list[VideoEntry] = []
        self.failures: list[dict] = []
        self.checksums: list[int] = []
        self.aliases: list[VideoEntry] = []  # videos sharing another's tokens (no tokens stored)
        self.clips = 0
        self.tmp.unlink(missing_ok=True)
        self._file = h5py.File(self.tmp, "w", libver="earliest")
        stored, dtype = self.shape, TOKEN_DTYPE
        if self.codec is not None:
            fmt = self.codec.fmt
            stored = (num_views, num_tokens // fmt.pool**2, fmt.dim(embed_dim))  # (V, N', D')
            dtype = fmt.dtype
            # the header describes what is stored; `store` keeps the encoder's shape beside it
            self.header.update(grid=list(fmt.grid(self.codec.grid)), embed_dim=stored[2],
                               store=self.codec.header(embed_dim))  # fmt: skip
        self.stored = stored
        self._tokens = self._file.create_dataset(
            "tokens", shape=(0, *stored), maxshape=(None, *stored), dtype=dtype,
            chunks=(1, *stored), track_times=False,
        )  # fmt: skip
        self._scales = None
        if self.codec is not None and self.codec.fmt.scaled:  # one chunk per clip, like tokens
            self._scales = self._file.create_dataset(
                SCALES, shape=(0, *stored[:2]), maxshape=(None, *stored[:2]), dtype=np.float16,
                chunks=(1, *stored[:2]), track_times=False,
            )  # fmt: skip

    def append(self, entry: VideoEntry) -> None:
        """Append one video's tokens [C, V, N, D] (fp16) and its clip frame indices [C, 16]."""
        tokens = np.ascontiguousarray(entry.tokens)
        C = tokens.shape[0]
        if tokens.dtype != TOKEN_DTYPE or tokens.shape[1:] != self.shape or C < 1:
            raise CacheError(
                f"{entry.video_id}: tokens must be float16 [C>=1, {', '.join(map(str, self.shape))}]"
                f", got {tokens.dtype} {list(tokens.shape)}"
            )
        if entry.frames.shape != (C, FRAMES_PER_CLIP):
            raise CacheError(
                f"{entry.video_id}: frames must be [{C}, {FRAMES_PER_CLIP}], got {list(entry.frames.shape)}"
            )
        if self.rows and entry.video_id <= self.rows[-1].video_id:
            raise CacheError(f"{entry.video_id}: entries must arrive in sorted video-id order")
        self._tokens.resize(self.clips + C, axis=0)
        dsid = self._tokens.id
        if self.codec is None:
            # one clip per chunk: write chunks directly, bypassing the chunk cache
            for i in range(C):
                dsid.write_direct_chunk((self.clips + i, 0, 0, 0), tokens[i])
                self.checksums.append(clip_checksum(tokens[i]))  # the chunk's bytes, exactly
        else:
            values, scales = self.codec.encode(tokens)
            if scales is not None:
                self._scales.resize(self.clips + C, axis=0)
            for i in range(C):
                dsid.write_direct_chunk((self.clips + i, 0, 0, 0), np.ascontiguousarray(values[i]))
                if scales is not None:
                    self._scales.id.write_direct_chunk((self.clips + i, 0, 0),
                                                       np.ascontiguousarray(scales[i]))  # fmt: skip
                self.checksums.append(
                    stored_checksum(values[i], None if scales is None else scales[i])
                )
        # the tokens are on disk now: keep no reference to them (a shard can hold gigabytes)
        row = VideoEntry(entry.video_id, int(entry.label), int(entry.actor), int(entry.fold),
                         int(entry.n_frames), float(entry.fps), np.array(entry.frames),
                         np.empty(0, TOKEN_DTYPE), face_status=entry.face_status,
                         face_box=entry.face_box, lost_frames=int(entry.lost_frames),
                         container_frames=int(entry.container_frames), source=entry.source,
                         alias_of=entry.alias_of, clip_role=_roles(entry.clip_role, C))  # fmt: skip
        self.rows.append(row)
        self.clips += C

    def add_failure(self, failure: dict) -> None:
        """Record a video of this shard that could not be used ({video_id, path, reason}, and
        `source`: the identity of the file that failed, as a dict, when it could be read)."""
        source = failure.get("source")  # optional: a missing file has none
        self.failures.append({**{k: failure[k] for k in ("video_id", "path", "reason")},
                              "stage": "decode", "source": source})  # fmt: skip

    def add_alias(self, entry: VideoEntry) -> None:
        """A video whose video stream is identical to `entry.alias_of`'s (appended to this shard):
        stored as a row that points at that video's clips. `entry.tokens` is ignored."""
        if not entry.alias_of:
            raise CacheError(f"{entry.video_id}: an alias needs alias_of")
        self.aliases.append(entry)

    def note(self, key: str, value: int | str) -> None:
        """Set a shard attribute known only once its tokens are written (e.g. the batch size)."""
        self.header[key] = value

    def _write(self, name: str, data: np.ndarray, dtype=None) -> None:
        self._file.create_dataset(name, data=data, dtype=dtype, track_times=False)

    def close(self) -> Path:
        """Write the per-video tables and attributes, then fsync and rename: the shard is complete."""
        f = self._file
        n_stored = np.array([len(r.frames) for r in self.rows], dtype=np.int64)
        starts = np.cumsum(n_stored) - n_stored  # first clip of each stored video
        span = {
            r.video_id: (int(a), int(n))
            for r, a, n in zip(self.rows, starts, n_stored, strict=True)
        }
        if stray := [a.video_id for a in self.aliases if a.alias_of not in span]:
            raise CacheError(f"{stray[0]}: alias of a video not in this shard")
        rows = sorted([*self.rows, *self.aliases], key=lambda r: r.video_id)  # aliases interleaved
        row_of = {r.video_id: i for i, r in enumerate(rows)}
        first = np.array([span[r.alias_of or r.video_id][0] for r in rows], dtype=np.int64)
        n_clips = np.array([span[r.alias_of or r.video_id][1] for r in rows], dtype=np.int64)
        self._write("video_id", np.array([r.video_id for r in rows], dtype=object),
                    h5py.string_dtype("utf-8"))  # fmt: skip
        for name in ("label", "actor", "fold", "n_frames"):
            self._write(name, np.array([getattr(r, name) for r in rows], dtype=np.int64))
        self._write("fps", np.array([r.fps for r in rows], dtype=np.float64))
        self._write("first_clip", first)
        self._write("n_clips", n_clips)
        owner = [row_of[r.video_id] for r in self.rows]  # clip -> the row of the video stored
        self._write("clip_video", np.repeat(np.array(owner, dtype=np.int32), n_stored))
        frames = [r.frames for r in self.rows] or [np.zeros((0, FRAMES_PER_CLIP))]
        self._write("clip_frames", np.concatenate(frames).astype(np.int32))
        roles = [r.clip_role for r in self.rows]
        if any(r is not None and r.any() for r in roles):  # all-eval caches stay as they were
            self._write("clip_role", np.concatenate(
                [r if r is not None else np.zeros(len(f), np.uint8) for r, f in zip(roles, frames, strict=True)]
            ))  # fmt: skip
        if any(r.face_status is not None for r in rows):  # only face-crop caches have these
            self._write("face_status", np.array([r.face_status for r in rows], dtype=object),
                        h5py.string_dtype("utf-8"))  # fmt: skip
            boxes = [r.face_box if r.face_box is not None else (-1, -1, -1, -1) for r in rows]
            self._write("face_box", np.array(boxes, dtype=np.int32))
        self._write("alias_of", np.array([r.alias_of for r in rows], dtype=object),
                    h5py.string_dtype("utf-8"))  # fmt: skip
        self._write("clip_checksum", np.array(self.checksums, dtype=np.uint64))
        for name in DECODE_COLUMNS:
            self._write(name, np.array([getattr(r, name) for r in rows], dtype=np.int64))
        sources = [_source_row(r.source) for r in rows]
        for name in SOURCE_COLUMNS:
            values = [src[name] for src in sources]
            if name in ("source_path", "source_sha256"):
                self._write(name, np.array(values, dtype=object), h5py.string_dtype("utf-8"))
            else:
                self._write(name, np.array(values, dtype=np.int64))
        if self.codec is not None and self.codec.fmt.pca:  # the basis travels with the tokens
            self._write(PCA_BASIS, self.codec.basis.astype(np.float32))
            self._write(PCA_MEAN, self.codec.mean.astype(np.float32))
        f.attrs["checksum"] = CHECKSUM
        for key, value in self.header.items():
            f.attrs[key] = value if isinstance(value, (int, str)) else canonical_json(value)
        f.attrs["failures"] = canonical_json(sorted(self.failures, key=lambda d: d["video_id"]))
        f.close()
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file (after an error): nothing that looks complete stays."""
        try:
            self._file.close()
        except Exception as err:  # the file may be unusable after the error being handled
            log.debug("closing %s after an error failed: %s", self.tmp, err)
        self.tmp.unlink(missing_ok=True)


def _source_row(source) -> dict:
    """A SourceIdentity (or None: built in memory) as the shard's source_* columns."""
    if source is None:
        return {"source_path": "", "source_size": -1, "source_mtime_ns": -1, "source_sha256": ""}
    return {"source_path": str(source.path), "source_size": int(source.size),
            "source_mtime_ns": int(source.mtime_ns), "source_sha256": str(source.sha256)}  # fmt: skip


def shard_header(*, dataset: str, fp: str, settings: dict, grid: Sequence[int], embed_dim: int,
                 num_views: int, index: int, num_shards: int, shard_size: int,
                 video_ids: Sequence[str], aliases: dict[str, str] | None = None) -> dict:  # fmt: skip
    """The attributes every shard carries; enough to rebuild the manifest from the shards."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset, "fingerprint": fp,
        "settings": settings, "grid": list(grid), "embed_dim": embed_dim, "num_views": num_views,
        "index": index, "num_shards": num_shards, "shard_size": shard_size,
        "video_ids": list(video_ids),
        "aliases": dict(sorted((aliases or {}).items())),  # alias id -> id whose tokens it shares
    }  # fmt: skip


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


_JSON_ATTRS = ("settings", "grid", "video_ids", "failures", "aliases", "store", "lineage")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------
# The manifest.


def manifest_from_shards(directory: Path, extra: dict | None = None) -> dict:
    """Build the manifest from the complete shards found in `directory`.

    Shards missing from disk are listed with `complete: false`, and so is the whole cache then.
    """
    directory = Path(directory)
    found = sorted(p for p in directory.glob("shard-*.h5") if SHARD_PATTERN.match(p.name))
    if not found:
        raise CacheError(f"no complete shards (shard-NNNNN.h5) in {directory}")
    headers = {p.name: read_shard_header(p) for p in found}
    first = headers[found[0].name]
    num_shards = first["num_shards"]
    for name, h in headers.items():
        for key in ("fingerprint", "num_shards", "shard_size", "dataset"):
            if h[key] != first[key]:
                raise CacheError(f"{directory / name} has {key}={h[key]!r}, "
                                 f"{found[0].name} has {first[key]!r}: shards of different caches")  # fmt: skip
    shards, videos = [], []
    for index in range(num_shards):
        h = headers.get(shard_name(index))
        if h is None:
            shards.append(
                {"name": shard_name(index), "video_ids": None, "clips": 0, "complete": False}
            )
            continue
        t = h["videos"]
        shards.append({"name": shard_name(index), "video_ids": h["video_ids"],
                       "clips": h["tokens_shape"][0], "complete": True})  # fmt: skip
        for i, vid in enumerate(t["video_id"]):
            row = {k: _plain(t[k][i]) for k in (*VIDEO_COLUMNS[1:], *DECODE_COLUMNS, "alias_of")}
            row["source"] = {k.removeprefix("source_"): _plain(t[k][i]) for k in SOURCE_COLUMNS}
            if "face_status" in t:
                row["face_status"] = t["face_status"][i]
                box = [int(v) for v in t["face_box"][i]]
                row["face_box"] = box if box[2] > 0 else None
            videos.append({"video_id": vid, "status": "ok", "shard": shard_name(index), **row})
        videos += [
            {**fail, "status": "failed", "shard": shard_name(index)} for fail in h["failures"]
        ]
    videos.sort(key=lambda v: v["video_id"])
    grid = first["grid"]
    layout = {"grid": grid, "num_tokens": int(np.prod(grid)), "embed_dim": first["embed_dim"],
              "num_views": first["num_views"], "dtype": TOKEN_DTYPE.name}  # fmt: skip
    if "store" in first:  # a compact format (vjfer.store): fp16 caches keep their manifest bytes
        layout.update(dtype=StoreFormat.parse(first["store"]["format"]).dtype.name,
                      store=first["store"])  # fmt: skip
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": first["dataset"],
        "fingerprint": first["fingerprint"], "settings": first["settings"],
        "layout": layout,
        "class_names": list(dataset_class_names(first["dataset"])),
        "shard_size": first["shard_size"],
        "complete": all(s["complete"] for s in shards),
        "shards": shards, "videos": videos, "excluded": [],
    }  # fmt: skip
    if "lineage" in first:  # a converted cache: the cache it was made from
        manifest["lineage"] = first["lineage"]
    if extra:
        manifest.update(extra)
    return manifest


def failure_lines(manifest: dict) -> list[dict]:
    """Every video the cache does not hold, with the reason: files excluded when indexing
    (`stage: index`) and videos that could not be decoded (`stage: decode`)."""
    index = [{"video_id": Path(e["path"]).stem, "path": e["path"],
              "reason": f"{e['reason']}: {e['detail']}" if e["detail"] else e["reason"],
              "stage": "index"} for e in manifest["excluded"]]  # fmt: skip
    decode = [{k: v[k] for k in ("video_id", "path", "reason")} | {"stage": "decode"}
              for v in manifest["videos"] if v["status"] == "failed"]  # fmt: skip
    return index + decode


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write manifest.json and failures.jsonl atomically."""
    directory = Path(directory)
    lines = "".join(json.dumps(line) + "\n" for line in failure_lines(manifest))
    atomic_write_text(directory / FAILURES, lines)
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1) + "\n")


def read_manifest(directory: Path) -> dict:
    """manifest.json of a cache directory (or the file itself); CacheError naming the file."""
    path = Path(directory)
    path = path if path.name == MANIFEST else path / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise CacheError(f"no cache at {path.parent}: {MANIFEST} is missing") from err
    except (OSError, ValueError) as err:
        raise CacheError(f"cannot read {path}: {err}") from err
    _check_format(manifest, path)
    return manifest


def build_cache(directory: Path, settings: dict, entries: Iterable[VideoEntry], *, dataset: str,
                grid: tuple[int, int, int], shard_size: int = 64,
                failures: Sequence[dict] = (), codec: Codec | None = None) -> Path:  # fmt: skip
    """Write a complete cache (shards, manifest.json, failures.jsonl) from in-memory entries
    (float16 encoder tokens, stored in `codec`'s format when given).

    Entries with `alias_of` share that entry's tokens: they go into its shard, as rows only.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = list(entries)
    aliases: dict[str, list[VideoEntry]] = {}
    for e in entries:
        if e.alias_of:
            aliases.setdefault(e.alias_of, []).append(e)
    by_id = {e.video_id: e for e in entries if not e.alias_of}
    failed = {f["video_id"]: f for f in failures}
    if not by_id:
        raise CacheError("build_cache needs at least one entry")
    V, N, D = next(iter(by_id.values())).tokens.shape[1:]
    if N != int(np.prod(grid)):
        raise CacheError(f"tokens have N={N}, grid {tuple(grid)} gives {int(np.prod(grid))}")
    fp = fingerprint(settings)
    groups = assign_shards([*by_id, *failed], shard_size)
    for index, ids in enumerate(groups):
        header = shard_header(dataset=dataset, fp=fp, settings=settings, grid=grid, embed_dim=D,
                              num_views=V, index=index, num_shards=len(groups),
                              shard_size=shard_size, video_ids=ids,
                              aliases={a.video_id: v for v in ids
                                       for a in aliases.get(v, [])})  # fmt: skip
        writer = ShardWriter(directory / shard_name(index), header, V, N, D, codec)
        try:
            for vid in ids:
                writer.append(by_id[vid]) if vid in by_id else writer.add_failure(failed[vid])
                for alias in aliases.get(vid, []) if vid in by_id else []:
                    writer.add_alias(alias)
            writer.close()
        except BaseException:
            writer.abort()
            raise
    write_manifest(directory, manifest_from_shards(directory))
    return directory


# ---------------------------------------------------------------------------------------------
# Reading.


class Cache:
    """A complete cache, read lazily: shard files open on first use, one handle set per process.

    The object pickles without its handles, so each DataLoader worker opens its own.
    """

    def __init__(self, path: Path, manifest: dict, verify: bool = True):
        self.path = Path(path)
        self.manifest = manifest
        self.verify = verify  # the default of `tokens(verify=...)`
        self.settings: dict = manifest["settings"]
        self.fingerprint: str = manifest["fingerprint"]
        self.dataset: str = manifest["dataset"]
        layout = manifest["layout"]
        self.grid: tuple[int, int, int] = tuple(layout["grid"])
        self.embed_dim: int = layout["embed_dim"]
        self.num_views: int = layout["num_views"]
        self.num_tokens: int = layout["num_tokens"]
        # how tokens are stored (vjfer.store); fp16 caches carry no `store` and read as before
        self.store: StoreFormat = store_of(layout)
        self.class_names: tuple[str, ...] = tuple(manifest["class_names"])
        ok = [v for v in manifest["videos"] if v["status"] == "ok"]
        face = [c for c in FACE_COLUMNS if ok and c in ok[0]]
        columns = [*VIDEO_COLUMNS, "shard", *DECODE_COLUMNS, "alias_of", *face]
        self.videos = pd.DataFrame(ok, columns=columns)
        self.videos = self.videos.sort_values("video_id", ignore_index=True)
        self.failures: list[dict] = [
            {k: v[k] for k in ("video_id", "path", "reason")}
            for v in manifest["videos"] if v["status"] == "failed"
        ]  # fmt: skip
        self.excluded: list[dict] = list(manifest["excluded"])  # files the index left out
        self._where = {v["video_id"]: (v["shard"], v["first_clip"], v["n_clips"]) for v in ok}
        self._handles: dict[str, h5py.File] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r}, {len(self.videos)} videos, {self.num_clips} clips)"

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_clips(self) -> int:
        """Clips stored (a video sharing another's stream adds none)."""
        return int(self.videos.loc[self.videos["alias_of"] == "", "n_clips"].sum())

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def _shard(self, name: str) -> h5py.File:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._handles, self._pid = {}, os.getpid()
        if name not in self._handles:
            try:
                self._handles[name] = h5py.File(self.path / name, "r")
            except OSError as err:
                raise CacheError(f"cannot open shard {self.path / name}: {err}") from err
        return self._handles[name]

    def _locate(self, video_id: str) -> tuple[str, int, int]:
        try:
            return self._where[video_id]
        except KeyError:
            raise CacheError(f"video {video_id!r} is not in cache {self.path}") from None

    def tokens(self, video_id: str, verify: bool | None = None) -> np.ndarray:
        """float16 [C, V, N, D]: every cached clip of the video (of a compact store format:
        dequantized, on the stored grid and dims; `raw_tokens` gives the stored bytes).

        Each clip is one uncompressed chunk, read straight into the result (no HDF5 selection).
        With `verify` (default: the cache's `verify`, on unless opened with verify=False), each
        clip's bytes are checked against its stored checksum (xxh3-64, while they are still in the
        CPU cache; 12-21 % of the read time on a 2-core VM, see benchmarks/RESULTS.md); a mismatch
        is a CacheError naming the shard, video and clip.
        """
        verify = self.verify if verify is None else verify
        if not self.store.plain:
            raw = torch.from_numpy(self.raw_tokens(video_id, verify))
            return decode_raw(raw, self.store, self.shape).numpy()
        shard, first, n = self._locate(video_id)
        f = self._shard(shard)
        dataset = f["tokens"]
        out = np.empty((n, *dataset.shape[1:]), dtype=TOKEN_DTYPE)
        stored = f["clip_checksum"][first : first + n] if verify else None
        dsid = dataset.id
        for c in range(n):
            dsid.read_direct_chunk((first + c, 0, 0, 0), out=out[c].reshape(-1).view(np.uint8))
            if verify and clip_checksum(out[c]) != int(stored[c]):
                raise corrupt_clip(self.path, shard, first + c, video_id, c)
        return out

    @property
    def shape(self) -> tuple[int, int, int]:
        """(V, N, D) of a clip as readers see it (stored grid and dims)."""
        return (self.num_views, self.num_tokens, self.embed_dim)

    def raw_tokens(self, video_id: str, verify: bool | None = None) -> np.ndarray:
        """The stored bytes of every clip of the video, as the stage-2 reader delivers them:
        uint8 [C, token bytes + scale bytes] (`vjfer.store.decode_raw` makes tokens of them)."""
        verify = self.verify if verify is None else verify
        shard, first, n = self._locate(video_id)
        f = self._shard(shard)
        values_bytes, scale_bytes = self.store.clip_nbytes(*self.shape)
        out = np.empty((n, values_bytes + scale_bytes), dtype=np.uint8)
        stored = f["clip_checksum"][first : first + n] if verify else None
        tokens, scales = f["tokens"].id, f[SCALES].id if scale_bytes else None
        for c in range(n):
            tokens.read_direct_chunk((first + c, 0, 0, 0), out=out[c, :values_bytes])
            if scales is not None:
                scales.read_direct_chunk((first + c, 0, 0), out=out[c, values_bytes:])
            if verify and clip_checksum(out[c]) != int(stored[c]):
                raise corrupt_clip(self.path, shard, first + c, video_id, c)
        return out

    def pca_basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(basis float32 [D, K], mean float32 [D]) of a pca cache (from its first shard), else None."""
        if not self.store.pca:
            return None
        f = self._shard(self.manifest["shards"][0]["name"])
        return f[PCA_BASIS][()], f[PCA_MEAN][()]

    def clip_checksums(self, video_id: str) -> np.ndarray:
        """uint64 [C]: the stored xxh3-64 of each clip's bytes; compare `clip_checksum(tokens[c])`."""
        shard, first, n = self._locate(video_id)
        return self._shard(shard)["clip_checksum"][first : first + n]

    def verify_sample(self, clips: int = 64, seed: int = 0) -> int:
        """Check the checksums of `clips` clips drawn at random (all when fewer): the cheap check
        for a reader that opened the cache with verify=False. Returns the number checked."""
        where = [(v, c) for v, n in zip(self.videos["video_id"], self.videos["n_clips"], strict=True)
                 for c in range(n)]  # fmt: skip
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(where), size=min(clips, len(where)), replace=False)
        for video_id in sorted({where[i][0] for i in picked}):
            self.tokens(video_id, verify=True)  # whole videos: a clip read alone costs the same
        return len(picked)

    def coverage(self) -> Coverage:
        """Cached videos vs all the dataset's files: what "results on N of M videos" reports."""
        return Coverage(len(self.videos), len(self.failures), len(self.excluded))

    def check_structure(self) -> None:
        """Every shard's header agrees with the manifest: index, videos, fingerprint, clip count.

        Cheap (attributes and small tables only); catches a shard replaced by another's copy.
        """
        for index, entry in enumerate(self.manifest["shards"]):
            path = self.path / entry["name"]
            h = read_shard_header(path)
            want = sum(int(v["n_clips"]) for v in self.manifest["videos"]
                       if v["status"] == "ok" and v["shard"] == entry["name"]
                       and not v["alias_of"])  # fmt: skip
            got = {"index": h["index"], "video_ids": h["video_ids"], "fingerprint": h["fingerprint"],
                   "clips": h["tokens_shape"][0], "checksums": h["checksums"]}  # fmt: skip
            expected = {"index": index, "video_ids": entry["video_ids"],
                        "fingerprint": self.fingerprint, "clips": want, "checksums": want}  # fmt: skip
            for key, value in got.items():
                if value != expected[key]:
                    shown = lambda x: x[:3] if isinstance(x, list) else x  # noqa: E731
                    raise CacheError(
                        f"{path}: {key} {shown(value)!r}, the manifest expects "
                        f"{shown(expected[key])!r}: this shard is not the one the manifest lists "
                        f"(replaced or copied?); re-extract it (delete it, rerun vjfer extract)"
                    )

    def clip_frames(self, video_id: str) -> np.ndarray:
        """int [C, 16]: the frame indices of each cached clip of the video."""
        shard, first, n = self._locate(video_id)
        return self._shard(shard)["clip_frames"][first : first + n]

    def clip_roles(self, video_id: str) -> np.ndarray:
        """uint8 [C]: each cached clip's role (`vjfer.video.ROLE_*`). A shard without `clip_role`
        (every cache before the `reference` plan and `--augment`) holds evaluation windows only."""
        shard, first, n = self._locate(video_id)
        f = self._shard(shard)
        if "clip_role" not in f:
            return np.zeros(n, dtype=np.uint8)
        return f["clip_role"][first : first + n]

    def iter_clips(self) -> Iterator[tuple[str, int, np.ndarray]]:
        """(video_id, clip index within the video, tokens [V, N, D]) for every clip, video by video."""
        for video_id in self.videos["video_id"]:
            for c, tok in enumerate(self.tokens(video_id)):
                yield video_id, c, tok

    def check(self, **expected) -> None:
        """Raise CacheError naming the first field whose cached value differs from `expected`.

        Fields are the manifest's settings (views, plan, hop, encoder, resolution, ...), plus
        `fingerprint`, `dataset`, `grid`, `embed_dim`, `num_views`.
        """
        known = {**self.settings, "fingerprint": self.fingerprint, "dataset": self.dataset,
                 "grid": list(self.grid), "embed_dim": self.embed_dim, "num_views": self.num_views}  # fmt: skip
        for key, want in expected.items():
            if key not in known:
                raise CacheError(
                    f"cache {self.path} has no setting {key!r}; it has {sorted(known)}"
                )
            have = known[key]
            if canonical_json(have) != canonical_json(want):
                raise CacheError(
                    f"cache {self.path} was made with {key}={have!r}, asked for {want!r}"
                )

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def store_of(layout: dict) -> StoreFormat:
    """The store format of a manifest's layout (caches from before formats existed: fp16)."""
    return StoreFormat.parse(layout["store"]["format"] if "store" in layout else "fp16")


def size_ratio(layout: dict) -> float:
    """Bytes of a stored clip over the bytes of the same clip as fp16 encoder tokens."""
    fmt = store_of(layout)
    V = layout["num_views"]
    values, scales = fmt.clip_nbytes(V, layout["num_tokens"], layout["embed_dim"])
    source = layout["store"] if "store" in layout else layout  # the encoder's grid and D
    return (values + scales) / (V * int(np.prod(source["grid"])) * source["embed_dim"] * 2)


def find_caches(path: str | Path, complete: bool = False) -> list[Path]:
    """Cache directories at or under `path` (holding manifest.json or shards), sorted.

    With `complete`, only those whose manifest lists every shard as complete. [] when none.
    """
    path = Path(path)
    path = path.parent if path.name == MANIFEST else path
    markers = [*path.rglob(MANIFEST), *path.rglob("shard-*.h5"), *path.rglob("shard-*.h5.partial")]
    found = sorted({m.parent for m in markers})
    if complete:
        found = [d for d in found if (d / MANIFEST).exists() and _is_complete(d)]
    return found


def _is_complete(directory: Path) -> bool:
    try:
        return bool(read_manifest(directory)["complete"])
    except CacheError:
        return False


EXTRACT_RECORD = "extract.json"  # the extraction's options and environment (vjfer.extract)


def resume_command(directory: Path) -> str:
    """The `vjfer extract` command that resumes the cache in `directory` (from extract.json)."""
    try:
        config = json.loads((Path(directory) / EXTRACT_RECORD).read_text(encoding="utf-8"))[
            "config"
        ]
    except (OSError, ValueError, KeyError):
        return "the `vjfer extract` command that made it (same options)"
    words = ["vjfer", "extract", "--dataset", config["dataset"], "--root", config["root"],
             "--encoder", config["encoder"], "--cache", config["cache_root"]]  # fmt: skip
    if config["checkpoint"]:
        words += ["--checkpoint", config["checkpoint"]]
    for key in ("weights", "plan", "views", "hop", "shard_size", "limit", "max_lost_frames",
                "store"):  # fmt: skip
        if config.get(key) is not None:
            words += [f"--{key.replace('_', '-')}", str(config[key])]
    return "`" + " ".join(words) + "`"


def incomplete_message(directory: Path) -> str:
    """Names an incomplete cache and the `vjfer extract` command that resumes it."""
    directory = Path(directory)
    done = sorted(p.name for p in directory.glob("shard-*.h5") if SHARD_PATTERN.match(p.name))
    try:
        count = f"{len(done)} of {read_shard_header(directory / done[0])['num_shards']}"
    except (IndexError, CacheError):
        count = f"{len(done)}"
    return (
        f"cache {directory} is incomplete ({count} shards complete, no finished manifest): an "
        f"extraction was interrupted or is running; resume it with {resume_command(directory)}"
    )


def open_cache(path: str | Path, check: bool = True, verify: bool = True) -> Cache:
    """Open a complete cache directory (or its manifest.json); CacheError if incomplete, foreign,
    or (with `check`) a shard disagrees with the manifest (`Cache.check_structure`). `verify` is
    the default of `Cache.tokens(verify=...)`: every clip read is checked against its checksum."""
    path = Path(path)
    directory = path.parent if path.name == MANIFEST else path
    if not (directory / MANIFEST).exists() and any(directory.glob("shard-*.h5*")):
        raise CacheError(incomplete_message(directory))
    manifest = read_manifest(directory)
    if not manifest["complete"]:
        missing = [s["name"] for s in manifest["shards"] if not s["complete"]]
        raise CacheError(
            f"cache {directory} is incomplete ({directory / MANIFEST}): {len(missing)} shard(s) "
            f"missing, first {missing[0]}; resume it with {resume_command(directory)}"
        )
    cache = Cache(directory, manifest, verify=verify)
    if check:
        cache.check_structure()
    return cache


# ---------------------------------------------------------------------------------------------
# Inspection: info and verify (what `vjfer cache info|verify` print).


def cache_info(path: str | Path, rebuild: bool = True) -> dict:
    """Settings, counts, size and failures of a cache directory.

    When manifest.json is missing or lists shards as incomplete that now exist (a multi-rank run
    whose rank 0 stopped early), the manifest is rebuilt from the shards and written (`rebuild`).
    """
    directory = Path(path)
    directory = directory.parent if directory.name == MANIFEST else directory
    rebuilt = False
    try:
        manifest = read_manifest(directory)
        stale = any(
            not s["complete"] and (directory / s["name"]).exists() for s in manifest["shards"]
        )
    except CacheError:
        if not rebuild or (directory / MANIFEST).exists():
            raise
        manifest, stale = None, True
    if stale and rebuild:
        kept = ("config", "excluded")  # what the shards do not carry
        extra = {k: manifest[k] for k in kept if k in manifest} if manifest else None
        manifest = manifest_from_shards(directory, extra)
        write_manifest(directory, manifest)
        rebuilt = True
    ok = [v for v in manifest["videos"] if v["status"] == "ok"]
    failed = [v for v in manifest["videos"] if v["status"] == "failed"]
    files = [directory / s["name"] for s in manifest["shards"]]
    return {
        "path": str(directory), "dataset": manifest["dataset"],
        "fingerprint": manifest["fingerprint"], "settings": manifest["settings"],
        "layout": manifest["layout"], "complete": manifest["complete"], "rebuilt": rebuilt,
        "shards": len(manifest["shards"]),
        "shards_complete": sum(s["complete"] for s in manifest["shards"]),
        "videos": len(ok), "failed": len(failed),
        "clips": sum(v["n_clips"] for v in ok if not v["alias_of"]),
        "shared": sum(bool(v["alias_of"]) for v in ok),
        "bytes": sum(p.stat().st_size for p in files if p.exists()),
        "failures": [{k: v[k] for k in ("video_id", "path", "reason")} for v in failed],
        "face": _face_counts(manifest["settings"], ok, failed),
        "excluded": manifest["excluded"],
        "partial": [{k: v[k] for k in ("video_id", "n_frames", "lost_frames", "container_frames")}
                    for v in ok if v["lost_frames"] > 0],
        "store": str(store_of(manifest["layout"])), "size_ratio": size_ratio(manifest["layout"]),
        "lineage": manifest.get("lineage"),
        "one_frame": sum(v["n_frames"] == 1 for v in ok),
        "shorter_than_clip": sum(v["n_frames"] < SHORTEST_UNPADDED for v in ok),
    }  # fmt: skip


def _face_counts(settings: dict, ok: list[dict], failed: list[dict]) -> dict | None:
    """Videos cropped, fallen back to the whole frame, and failed for want of a face."""
    if "face_crop" not in settings:
        return None
    return {
        "method": settings["face_crop"]["method"],
        "cropped": sum(v["face_status"] == "cropped" for v in ok),
        "fallback": sum(v["face_status"] == "fallback" for v in ok),
        "failed": sum(v["reason"].startswith(FACE_FAILURE_PREFIX) for v in failed),
    }


def format_cache_info(info: dict) -> str:
    """`cache_info`'s dict as the lines `vjfer cache info` prints."""
    lay = info["layout"]
    state = "complete" if info["complete"] else "INCOMPLETE"
    lines = [
        f"cache       {info['path']}"
        + ("  (manifest rebuilt from shards)" if info["rebuilt"] else ""),
        f"dataset     {info['dataset']}",
        f"fingerprint {info['fingerprint']}",
        f"state       {state}: {info['shards_complete']}/{info['shards']} shards",
        f"videos      {info['videos']} cached, {info['failed']} failed, "
        f"{len(info['excluded'])} excluded when indexing",
        f"shared      {info['shared']} videos share the identical video stream of another "
        f"(stored once)",
        f"short       {info['one_frame']} of 1 frame, {info['shorter_than_clip']} shorter than a "
        f"clip ({SHORTEST_UNPADDED} frames; one window each, padded as the reference pads)",
        f"partial     {len(info['partial'])} kept with lost frames (below --max-lost-frames)",
        f"clips       {info['clips']}  tokens per clip [V={lay['num_views']}, N={lay['num_tokens']}"
        f", D={lay['embed_dim']}] {lay['dtype']}, grid {tuple(lay['grid'])}",
        f"size        {info['bytes'] / 1e9:.3f} GB",
        f"store       {info['store']}: a clip takes {info['size_ratio']:.3f} of its fp16 bytes",
        *(
            [
                f"lineage     converted from cache {lin['source_fingerprint']} "
                f"({lin['source_store']})"
            ]  # fmt: skip
            if (lin := info.get("lineage"))
            else []
        ),
        *(
            [
                f"face crop   {face['method']}: {face['cropped']} cropped, {face['fallback']} fell "
                f"back to the whole frame, {face['failed']} failed (no face)"
            ]
            if (face := info.get("face"))
            else []
        ),
        "settings:",
        *(f"  {k}: {canonical_json(v)}" for k, v in sorted(info["settings"].items())),
    ]
    if info["partial"]:
        lines.append("partial decodes kept:")
        lines += [f"  {p['video_id']}: {p['n_frames']} frames decoded, {p['lost_frames']} lost "
                  f"(container lists {p['container_frames']})" for p in info["partial"]]  # fmt: skip
    if info["failures"]:
        lines.append("failures:")
        lines += [f"  {f['video_id']}: {f['reason']}" for f in info["failures"]]
    if info["excluded"]:
        lines.append("excluded when indexing:")
        lines += [f"  {e['path']}: {e['reason']}" for e in info["excluded"]]
    return "\n".join(lines)


@dataclass
class VerifyReport:
    """What `verify_cache` found; `ok` when `problems` is empty."""

    path: Path
    shards: int = 0
    videos: int = 0
    clips: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (f"{self.path}: {self.shards} shards, {self.videos} videos, {self.clips} clips, "
                f"{self.failed} failed: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)"))  # fmt: skip
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def _verify_shard(path: Path, expect: dict, videos: list[dict], report: VerifyReport) -> None:
    """Check one shard against its manifest entry and rows; append problems to the report."""
    problems = report.problems
    try:
        h = read_shard_header(path)
    except CacheError as err:
        problems.append(str(err))
        return
    lay = expect["layout"]
    want = [
        sum(v["n_clips"] for v in videos if not v["alias_of"]),
        lay["num_views"],
        lay["num_tokens"],
        lay["embed_dim"],
    ]
    if h["fingerprint"] != expect["fingerprint"]:
        problems.append(
            f"{path.name}: fingerprint {h['fingerprint'][:8]}, manifest {expect['fingerprint'][:8]}"
        )
    if h["index"] != int(SHARD_PATTERN.match(path.name)[1]):
        problems.append(f"{path.name}: its header says shard {h['index']} (a copy of another?)")
    if h["tokens_shape"] != want or h["clips_in_table"] != want[0]:
        problems.append(f"{path.name}: tokens {h['tokens_shape']}, manifest implies {want}")
    table = h["videos"]
    if table["video_id"] != [v["video_id"] for v in videos]:
        problems.append(
            f"{path.name}: holds videos {table['video_id'][:3]}..., manifest lists others"
        )
        return
    for i, v in enumerate(videos):
        for col in ("first_clip", "n_clips", "n_frames", "label"):
            if int(table[col][i]) != v[col]:
                problems.append(
                    f"{path.name}: {v['video_id']} {col}={int(table[col][i])}, manifest {v[col]}"
                )
    if h["checksums"] != h["tokens_shape"][0]:
        problems.append(f"{path.name}: {h['checksums']} checksums for {h['tokens_shape'][0]} clips")
        return

    def video_of(clip: int) -> str:
        return next(v["video_id"] for v in videos
                    if v["first_clip"] <= clip < v["first_clip"] + v["n_clips"])  # fmt: skip

    fmt = store_of(lay)
    with h5py.File(path, "r") as f:
        tokens, stored = f["tokens"], f["clip_checksum"][()]
        dsid, clip_shape = tokens.id, tokens.shape[1:]
        nonfinite = None
        for c in range(tokens.shape[0]):  # the raw chunk: exactly the bytes the checksum covers
            _, raw = dsid.read_direct_chunk((c, 0, 0, 0))
            if fmt.scaled:  # the values cannot be NaN; their scales can
                _, raw_scales = f[SCALES].id.read_direct_chunk((c, 0, 0))
                raw = raw + raw_scales
                clip_shape = (len(raw_scales) // 2,)
            if clip_checksum(raw) != int(stored[c]):
                problems.append(f"{path.name}: clip {c} ({video_of(c)}) does not match its "
                                f"checksum: corrupt; re-extract this shard")  # fmt: skip
                continue
            clip = (
                np.frombuffer(raw, TOKEN_DTYPE)
                if not fmt.scaled
                else np.frombuffer(raw[-clip_shape[0] * 2 :], np.float16)
            )
            if (
                nonfinite is None
                and len(clip) == np.prod(clip_shape)
                and not np.isfinite(clip).all()
            ):
                nonfinite = c
        if nonfinite is not None:
            problems.append(
                f"{path.name}: NaN/Inf in tokens of clip {nonfinite} ({video_of(nonfinite)})"
            )


def verify_cache(path: str | Path, records: Sequence | None = None) -> VerifyReport:
    """Open every shard, check headers, shapes and counts against the manifest, every clip's
    checksum, scan tokens for NaN/Inf, and (given the dataset's `records`, anything with
    `.video_id`) check every video is cached or failed."""
    directory = Path(path)
    directory = directory.parent if directory.name == MANIFEST else directory
    manifest = read_manifest(directory)
    report = VerifyReport(path=directory)
    by_shard: dict[str, list[dict]] = {}
    for v in manifest["videos"]:
        if v["status"] == "ok":
            by_shard.setdefault(v["shard"], []).append(v)
    report.failed = sum(v["status"] == "failed" for v in manifest["videos"])
    for s in manifest["shards"]:
        file = directory / s["name"]
        if not s["complete"] or not file.exists():
            report.problems.append(
                f"{s['name']}: " + ("missing" if s["complete"] else "incomplete")
            )
            continue
        videos = by_shard.get(s["name"], [])
        _verify_shard(file, manifest, videos, report)
        report.shards += 1
        report.videos += len(videos)
        report.clips += sum(v["n_clips"] for v in videos if not v["alias_of"])
    if records is not None:
        listed = {v["video_id"] for v in manifest["videos"]}
        missing = sorted({r.video_id for r in records} - listed)
        if missing:
            report.problems.append(f"{len(missing)} dataset video(s) neither cached nor listed as "
                                   f"failed, first {missing[0]!r}")  # fmt: skip
    return report
