"""Writing a cache: one shard at a time (`ShardWriter`), its header, atomic writes, the manifest
built from the shards, and `build_cache` (a whole cache from in-memory entries). Shards are written
as `.partial`, fsynced and renamed, and deterministically (no timestamps, fixed order).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import numpy as np

from vjfer.cache.format import (
    CHECKSUM,
    DECODE_COLUMNS,
    FAILURES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ODD_SIZE,
    PARTIAL_SUFFIX,
    SHARD_PATTERN,
    SOURCE_COLUMNS,
    TOKEN_DTYPE,
    VIDEO_COLUMNS,
    VideoEntry,
    _plain,
    assign_shards,
    canonical_json,
    clip_checksum,
    fingerprint,
    layer_blocks,
    read_shard_header,
    shard_name,
    stored_checksum,
)
from vjfer.clips import FRAMES_PER_CLIP
from vjfer.errors import CacheError
from vjfer.files import atomic_write, commit_file
from vjfer.labels import class_names as dataset_class_names
from vjfer.store import PCA_BASIS, PCA_MEAN, SCALES, Codec, StoreFormat

log = logging.getLogger(__name__)

_TEXT = h5py.string_dtype("utf-8")  # the string columns' HDF5 type


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file, fsync and rename: never a half-written file."""
    try:
        atomic_write(path, lambda f: f.write(text.encode("utf-8")), PARTIAL_SUFFIX)
    except OSError as err:  # disk full, quota, permissions: the error names the file, no .partial
        cause = os.strerror(err.errno) if err.errno else str(err)
        raise CacheError(
            f"writing {path} failed ({cause}); free space or fix the directory, "
            f"then rerun (the shards written so far are kept)"
        ) from err


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

    def __init__(
        self,
        path: Path,
        header: dict,
        num_views: int,
        num_tokens: int,
        embed_dim: int,
        codec: Codec | None = None,
    ):
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
            self.header.update(
                grid=list(fmt.grid(self.codec.grid)),
                embed_dim=stored[2],
                store=self.codec.header(embed_dim),
            )
        self.stored = stored
        self._tokens = self._file.create_dataset(
            "tokens",
            shape=(0, *stored),
            maxshape=(None, *stored),
            dtype=dtype,
            chunks=(1, *stored),
            track_times=False,
        )
        self._scales = None
        if self.codec is not None and self.codec.fmt.scaled:  # one chunk per clip, like tokens
            self._scales = self._file.create_dataset(
                SCALES,
                shape=(0, *stored[:2]),
                maxshape=(None, *stored[:2]),
                dtype=np.float16,
                chunks=(1, *stored[:2]),
                track_times=False,
            )

    def _scale_set(self) -> h5py.Dataset:
        """The per-token scales' dataset, which only the scaled formats (int8, fp8) have."""
        if self._scales is None:
            raise CacheError(f"{self.tmp}: scales given for a format without them ({self.codec})")
        return self._scales

    def append(self, entry: VideoEntry) -> None:
        """Append one video's tokens [C, V, N, D] (fp16) and its clip frame indices [C, 16]."""
        tokens = np.ascontiguousarray(entry.tokens)
        C = tokens.shape[0]
        if tokens.dtype != TOKEN_DTYPE or tokens.shape[1:] != self.shape or C < 1:
            raise CacheError(
                f"{entry.video_id}: tokens must be float16 [C>=1, "
                f"{', '.join(map(str, self.shape))}], got {tokens.dtype} {list(tokens.shape)}"
            )
        if entry.frames.shape != (C, FRAMES_PER_CLIP):
            raise CacheError(
                f"{entry.video_id}: frames must be [{C}, {FRAMES_PER_CLIP}], got "
                f"{list(entry.frames.shape)}"
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
                self._scale_set().resize(self.clips + C, axis=0)
            for i in range(C):
                dsid.write_direct_chunk((self.clips + i, 0, 0, 0), np.ascontiguousarray(values[i]))
                if scales is not None:
                    self._scale_set().id.write_direct_chunk(
                        (self.clips + i, 0, 0), np.ascontiguousarray(scales[i])
                    )
                self.checksums.append(
                    stored_checksum(values[i], None if scales is None else scales[i])
                )
        # the tokens are on disk now: keep no reference to them (a shard can hold gigabytes)
        row = VideoEntry(
            entry.video_id,
            int(entry.label),
            int(entry.actor),
            int(entry.fold),
            int(entry.n_frames),
            float(entry.fps),
            np.array(entry.frames),
            np.empty(0, TOKEN_DTYPE),
            face_status=entry.face_status,
            face_box=entry.face_box,
            lost_frames=int(entry.lost_frames),
            container_frames=int(entry.container_frames),
            odd_size_frames=int(entry.odd_size_frames),
            source=entry.source,
            alias_of=entry.alias_of,
            clip_role=_roles(entry.clip_role, C),
        )
        self.rows.append(row)
        self.clips += C

    def add_failure(self, failure: dict) -> None:
        """Record a video of this shard that could not be used ({video_id, path, reason}, and
        `source`: the identity of the file that failed, as a dict, when it could be read)."""
        row = {k: failure[k] for k in ("video_id", "path", "reason")}
        self.failures.append({**row, "stage": "decode", "source": failure.get("source")})

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
        """Write the per-video tables and attributes, then fsync and rename: the shard is complete.
        The datasets are created in one fixed order (the file's bytes depend on it)."""
        rows, starts, n_stored = self._sorted_rows()
        self._write_video_table(rows, starts, n_stored)
        self._write_clip_table(rows, n_stored)
        self._write_row_columns(rows)
        self._write_pca()
        f = self._file
        f.attrs["checksum"] = CHECKSUM
        for key, value in self.header.items():
            f.attrs[key] = value if isinstance(value, (int, str)) else canonical_json(value)
        f.attrs["failures"] = canonical_json(sorted(self.failures, key=lambda d: d["video_id"]))
        f.close()
        commit_file(self.tmp, self.path)
        return self.path

    def _sorted_rows(self) -> tuple[list[VideoEntry], np.ndarray, np.ndarray]:
        """Every row (stored videos and aliases) by video id; the first clip and the clip count
        of each stored video, in storage order."""
        n_stored = np.array([len(r.frames) for r in self.rows], dtype=np.int64)
        starts = np.cumsum(n_stored) - n_stored  # first clip of each stored video
        stored = {r.video_id for r in self.rows}
        if stray := [a.video_id for a in self.aliases if a.alias_of not in stored]:
            raise CacheError(f"{stray[0]}: alias of a video not in this shard")
        rows = sorted([*self.rows, *self.aliases], key=lambda r: r.video_id)  # aliases interleaved
        return rows, starts, n_stored

    def _write_video_table(
        self, rows: list[VideoEntry], starts: np.ndarray, n_stored: np.ndarray
    ) -> None:
        """One row per video: its labels and where its clips are (an alias: its video's)."""
        span = {r.video_id: (a, n) for r, a, n in zip(self.rows, starts, n_stored, strict=True)}
        first = np.array([span[r.alias_of or r.video_id][0] for r in rows], dtype=np.int64)
        n_clips = np.array([span[r.alias_of or r.video_id][1] for r in rows], dtype=np.int64)
        self._write("video_id", np.array([r.video_id for r in rows], dtype=object), _TEXT)
        for name in ("label", "actor", "fold", "n_frames"):
            self._write(name, np.array([getattr(r, name) for r in rows], dtype=np.int64))
        self._write("fps", np.array([r.fps for r in rows], dtype=np.float64))
        self._write("first_clip", first)
        self._write("n_clips", n_clips)

    def _write_clip_table(self, rows: list[VideoEntry], n_stored: np.ndarray) -> None:
        """One row per stored clip: its video's row, its frames, its role (when not all eval)."""
        row_of = {r.video_id: i for i, r in enumerate(rows)}
        owner = [row_of[r.video_id] for r in self.rows]  # clip -> the row of the video stored
        self._write("clip_video", np.repeat(np.array(owner, dtype=np.int32), n_stored))
        frames = [r.frames for r in self.rows] or [np.zeros((0, FRAMES_PER_CLIP))]
        self._write("clip_frames", np.concatenate(frames).astype(np.int32))
        roles = [r.clip_role for r in self.rows]
        if any(r is not None and r.any() for r in roles):  # all-eval caches stay as they were
            pairs = zip(roles, frames, strict=True)
            filled = [np.zeros(len(f), np.uint8) if r is None else r for r, f in pairs]
            self._write("clip_role", np.concatenate(filled))

    def _write_row_columns(self, rows: list[VideoEntry]) -> None:
        """Face boxes (face-crop caches only), aliases, the clip checksums, the decode record and
        the source identity of every row."""
        if any(r.face_status is not None for r in rows):  # only face-crop caches have these
            self._write("face_status", np.array([r.face_status for r in rows], dtype=object), _TEXT)
            boxes = [r.face_box if r.face_box is not None else (-1, -1, -1, -1) for r in rows]
            self._write("face_box", np.array(boxes, dtype=np.int32))
        self._write("alias_of", np.array([r.alias_of for r in rows], dtype=object), _TEXT)
        self._write("clip_checksum", np.array(self.checksums, dtype=np.uint64))
        for name in DECODE_COLUMNS:
            self._write(name, np.array([getattr(r, name) for r in rows], dtype=np.int64))
        if any(r.odd_size_frames for r in rows):  # as the face columns: only where there are some
            self._write(ODD_SIZE, np.array([r.odd_size_frames for r in rows], dtype=np.int64))
        for name in SOURCE_COLUMNS:  # a row built in memory has no source: "" or -1
            text = name in ("source_path", "source_sha256", "source_xxh3")
            cast, none = (str, "") if text else (int, -1)
            field = name.removeprefix("source_")
            values = [none if r.source is None else cast(getattr(r.source, field)) for r in rows]
            dtype = _TEXT if text else None
            self._write(name, np.array(values, dtype=object if text else np.int64), dtype)

    def _write_pca(self) -> None:
        """A PCA format's basis and mean: they travel with the tokens."""
        if self.codec is None or not self.codec.fmt.pca:
            return
        basis, mean = self.codec.basis, self.codec.mean
        if basis is None or mean is None:
            raise CacheError(f"{self.path}: a {self.codec.fmt} codec needs its basis and mean")
        self._write(PCA_BASIS, basis.astype(np.float32))
        self._write(PCA_MEAN, mean.astype(np.float32))

    def abort(self) -> None:
        """Close and delete the temporary file after an error: nothing that looks complete stays."""
        try:
            self._file.close()
        except Exception as err:  # the file may be unusable after the error being handled
            log.debug("closing %s after an error failed: %s", self.tmp, err)
        self.tmp.unlink(missing_ok=True)


def shard_header(
    *,
    dataset: str,
    fp: str,
    settings: dict,
    grid: Sequence[int],
    embed_dim: int,
    num_views: int,
    index: int,
    num_shards: int,
    shard_size: int,
    video_ids: Sequence[str],
    aliases: dict[str, str] | None = None,
) -> dict:
    """The attributes every shard carries; enough to rebuild the manifest from the shards."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "fingerprint": fp,
        "settings": settings,
        "grid": list(grid),
        "embed_dim": embed_dim,
        "num_views": num_views,
        "index": index,
        "num_shards": num_shards,
        "shard_size": shard_size,
        "video_ids": list(video_ids),
        "aliases": dict(sorted((aliases or {}).items())),  # alias id -> id whose tokens it shares
    }


# ---------------------------------------------------------------------------------------------
# The manifest.


def settings_class_names(dataset: str, settings: dict) -> list[str]:
    """A cache's class order: a list file's own (recorded in its settings), else the dataset's."""
    if "list" in settings:
        return list(settings["list"]["classes"])
    return list(dataset_class_names(dataset))


def manifest_from_shards(
    directory: Path, extra: dict | None = None, headers: dict[str, dict] | None = None
) -> dict:
    """Build the manifest from the complete shards found in `directory` (`headers`: those
    already read, by shard name; the others are read here).

    Shards missing from disk are listed with `complete: false`, and so is the whole cache then.
    """
    directory = Path(directory)
    found = sorted(p for p in directory.glob("shard-*.h5") if SHARD_PATTERN.match(p.name))
    if not found:
        raise CacheError(f"no complete shards (shard-NNNNN.h5) in {directory}")
    known = headers or {}
    headers = {p.name: known.get(p.name) or read_shard_header(p) for p in found}
    first = headers[found[0].name]
    for name, other in headers.items():
        for key in ("fingerprint", "num_shards", "shard_size", "dataset"):
            if other[key] != first[key]:
                raise CacheError(
                    f"{directory / name} has {key}={other[key]!r}, "
                    f"{found[0].name} has {first[key]!r}: shards of different caches"
                )
    shards, videos = [], []
    for index in range(first["num_shards"]):
        h = headers.get(name := shard_name(index))
        if h is None:  # missing from disk
            shards.append({"name": name, "video_ids": None, "clips": 0, "complete": False})
            continue
        ids, clips = h["video_ids"], h["tokens_shape"][0]
        shards.append({"name": name, "video_ids": ids, "clips": clips, "complete": True})
        videos += _manifest_videos(h, name)
    videos.sort(key=lambda v: v["video_id"])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dataset": first["dataset"],
        "fingerprint": first["fingerprint"],
        "settings": first["settings"],
        "layout": _manifest_layout(first),
        "class_names": settings_class_names(first["dataset"], first["settings"]),
        "shard_size": first["shard_size"],
        "complete": all(s["complete"] for s in shards),
        "shards": shards,
        "videos": videos,
        "excluded": [],
    }
    if "lineage" in first:  # a converted cache: the cache it was made from
        manifest["lineage"] = first["lineage"]
    if extra:
        manifest.update(extra)
    return manifest


def _manifest_videos(header: dict, shard: str) -> list[dict]:
    """The manifest's entries of one shard's videos: its rows (`ok`), then its failures."""
    t, videos = header["videos"], []
    for i, vid in enumerate(t["video_id"]):
        row = {k: _plain(t[k][i]) for k in (*VIDEO_COLUMNS[1:], *DECODE_COLUMNS, "alias_of")}
        row["source"] = {k.removeprefix("source_"): _plain(t[k][i]) for k in SOURCE_COLUMNS}
        if "face_status" in t:
            row["face_status"] = t["face_status"][i]
            box = [int(v) for v in t["face_box"][i]]
            row["face_box"] = box if box[2] > 0 else None
        if ODD_SIZE in t:
            row[ODD_SIZE] = int(t[ODD_SIZE][i])
        videos.append({"video_id": vid, "status": "ok", "shard": shard, **row})
    return videos + [{**fail, "status": "failed", "shard": shard} for fail in header["failures"]]


def _manifest_layout(header: dict) -> dict:
    """The manifest's `layout`: the token grid and shape, the stored blocks, the store format."""
    grid = header["grid"]
    layout = {
        "grid": grid,
        "num_tokens": int(np.prod(grid)),
        "embed_dim": header["embed_dim"],
        "num_views": header["num_views"],
        "dtype": TOKEN_DTYPE.name,
    }
    if (blocks := layer_blocks(header["settings"])) is not None:  # several blocks per clip
        layout.update(num_tokens=len(blocks) * layout["num_tokens"], layers=list(blocks))
    if "store" in header:  # a compact format (vjfer.store): fp16 caches keep their manifest bytes
        layout.update(
            dtype=StoreFormat.parse(header["store"]["format"]).dtype.name, store=header["store"]
        )
    return layout


def failure_lines(manifest: dict) -> list[dict]:
    """Every video the cache does not hold, with the reason: files excluded when indexing
    (`stage: index`) and videos that could not be decoded (`stage: decode`)."""
    index = [
        {
            "video_id": Path(e["path"]).stem,
            "path": e["path"],
            "reason": f"{e['reason']}: {e['detail']}" if e["detail"] else e["reason"],
            "stage": "index",
        }
        for e in manifest["excluded"]
    ]
    decode = [
        {k: v[k] for k in ("video_id", "path", "reason")} | {"stage": "decode"}
        for v in manifest["videos"]
        if v["status"] == "failed"
    ]
    return index + decode


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write manifest.json and failures.jsonl atomically."""
    directory = Path(directory)
    lines = "".join(json.dumps(line) + "\n" for line in failure_lines(manifest))
    atomic_write_text(directory / FAILURES, lines)
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# A whole cache from in-memory entries (tests, benchmarks).


def build_cache(
    directory: Path,
    settings: dict,
    entries: Iterable[VideoEntry],
    *,
    dataset: str,
    grid: tuple[int, int, int],
    shard_size: int = 64,
    failures: Sequence[dict] = (),
    codec: Codec | None = None,
) -> Path:
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
    layers = len(layer_blocks(settings) or (0,))  # several encoder blocks stack along N
    if N != layers * int(np.prod(grid)):
        raise CacheError(
            f"tokens have N={N}, {layers} layer(s) of grid {tuple(grid)} give "
            f"{layers * int(np.prod(grid))}"
        )
    fp = fingerprint(settings)
    groups = assign_shards([*by_id, *failed], shard_size)
    for index, ids in enumerate(groups):
        header = shard_header(
            dataset=dataset,
            fp=fp,
            settings=settings,
            grid=grid,
            embed_dim=D,
            num_views=V,
            index=index,
            num_shards=len(groups),
            shard_size=shard_size,
            video_ids=ids,
            aliases={a.video_id: v for v in ids for a in aliases.get(v, [])},
        )
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
