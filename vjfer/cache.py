"""The feature cache: HDF5 shards of encoder tokens, a manifest, a fingerprint, a reader and checks.

Layout (DESIGN.md, "Cache format"): `<cache_root>/<dataset>/<encoder>-<resolution>-<fp[:8]>/` holds
`manifest.json`, `shard-NNNNN.h5` and `failures.jsonl`. Videos go to shards by sorted video id in
groups of `shard_size`, so every run, rank and resume agrees on which shard holds which video. A shard
is written as `shard-NNNNN.h5.partial`, fsynced and renamed: a file named `shard-NNNNN.h5` is complete.
Shards are self-describing (settings, fingerprint, assignment and failures in their attributes), so
the manifest can be rebuilt from them. Writes are deterministic (no timestamps, fixed order), so an
interrupted-then-resumed shard has the same bytes as one written in a single go.
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

from vjfer.errors import CacheError
from vjfer.labels import class_names as dataset_class_names

log = logging.getLogger(__name__)

FORMAT = "vjfer-cache"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FAILURES = "failures.jsonl"
PARTIAL_SUFFIX = ".partial"
SHARD_PATTERN = re.compile(r"^shard-(\d{5})\.h5$")
TOKEN_DTYPE = np.dtype("float16")  # storage dtype of tokens (a fingerprint input)
FRAMES_PER_CLIP = 16  # == video.FRAMES_PER_CLIP; cache.py imports nothing heavier than h5py
VIDEO_COLUMNS = ("video_id", "label", "actor", "fold", "n_frames", "fps", "first_clip", "n_clips")
# Per-video columns of caches made with a face crop (`vjfer.face`) only; other shards lack them.
FACE_COLUMNS = ("face_status", "face_box")  # "cropped" | "fallback"; (x, y, w, h), -1s: none
FACE_FAILURE_PREFIX = "no face"  # how a face-crop failure's reason starts (failures.jsonl)


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


# ---------------------------------------------------------------------------------------------
# Pure helpers: fingerprint, names, shard assignment.


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace: the same settings always give the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def fingerprint(settings: dict) -> str:
    """sha256 (hex) of the canonical JSON of the fingerprint inputs."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


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
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# ---------------------------------------------------------------------------------------------
# Writing one shard.


class ShardWriter:
    """Writes one shard to `<name>.partial`; `close()` completes it (flush, fsync, rename).

    `header` holds the JSON-able shard attributes (settings, fingerprint, assignment, ...).
    Entries must arrive in sorted video-id order; tokens are appended one video at a time so the
    sequence of HDF5 operations, and hence the file's bytes, depends only on the data.
    """

    def __init__(self, path: Path, header: dict, num_views: int, num_tokens: int, embed_dim: int):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.header = header
        self.shape = (num_views, num_tokens, embed_dim)  # (V, N, D)
        self.rows: list[VideoEntry] = []
        self.failures: list[dict] = []
        self.clips = 0
        self.tmp.unlink(missing_ok=True)
        self._file = h5py.File(self.tmp, "w", libver="earliest")
        self._tokens = self._file.create_dataset(
            "tokens", shape=(0, *self.shape), maxshape=(None, *self.shape), dtype=TOKEN_DTYPE,
            chunks=(1, *self.shape), track_times=False,
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
        for i in range(C):  # one clip per chunk: write chunks directly, bypassing the chunk cache
            dsid.write_direct_chunk((self.clips + i, 0, 0, 0), tokens[i])
        # the tokens are on disk now: keep no reference to them (a shard can hold gigabytes)
        row = VideoEntry(entry.video_id, int(entry.label), int(entry.actor), int(entry.fold),
                         int(entry.n_frames), float(entry.fps), np.array(entry.frames),
                         np.empty(0, TOKEN_DTYPE), entry.face_status, entry.face_box)  # fmt: skip
        self.rows.append(row)
        self.clips += C

    def add_failure(self, failure: dict) -> None:
        """Record a video of this shard that could not be used ({video_id, path, reason})."""
        self.failures.append({k: failure[k] for k in ("video_id", "path", "reason")})

    def _write(self, name: str, data: np.ndarray, dtype=None) -> None:
        self._file.create_dataset(name, data=data, dtype=dtype, track_times=False)

    def close(self) -> Path:
        """Write the per-video tables and attributes, then fsync and rename: the shard is complete."""
        f, rows = self._file, self.rows
        n_clips = np.array([len(r.frames) for r in rows], dtype=np.int64)
        first = np.concatenate([[0], np.cumsum(n_clips)[:-1]]).astype(np.int64) if rows else n_clips
        self._write("video_id", np.array([r.video_id for r in rows], dtype=object),
                    h5py.string_dtype("utf-8"))  # fmt: skip
        for name in ("label", "actor", "fold", "n_frames"):
            self._write(name, np.array([getattr(r, name) for r in rows], dtype=np.int64))
        self._write("fps", np.array([r.fps for r in rows], dtype=np.float64))
        self._write("first_clip", first)
        self._write("n_clips", n_clips)
        self._write("clip_video", np.repeat(np.arange(len(rows), dtype=np.int32), n_clips))
        frames = [r.frames for r in rows] or [np.zeros((0, FRAMES_PER_CLIP))]
        self._write("clip_frames", np.concatenate(frames).astype(np.int32))
        if any(r.face_status is not None for r in rows):  # only face-crop caches have these
            self._write("face_status", np.array([r.face_status for r in rows], dtype=object),
                        h5py.string_dtype("utf-8"))  # fmt: skip
            boxes = [r.face_box if r.face_box is not None else (-1, -1, -1, -1) for r in rows]
            self._write("face_box", np.array(boxes, dtype=np.int32))
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


def shard_header(*, dataset: str, fp: str, settings: dict, grid: Sequence[int], embed_dim: int,
                 num_views: int, index: int, num_shards: int, shard_size: int,
                 video_ids: Sequence[str]) -> dict:  # fmt: skip
    """The attributes every shard carries; enough to rebuild the manifest from the shards."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": dataset, "fingerprint": fp,
        "settings": settings, "grid": list(grid), "embed_dim": embed_dim, "num_views": num_views,
        "index": index, "num_shards": num_shards, "shard_size": shard_size,
        "video_ids": list(video_ids),
    }  # fmt: skip


def _check_format(meta: dict, path: Path) -> None:
    """A shard header or manifest of another format or version is refused, naming the file."""
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
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
            table = {k: f[k][()] for k in (*VIDEO_COLUMNS, *FACE_COLUMNS) if k in f}
            header["tokens_shape"] = list(f["tokens"].shape)
            header["clips_in_table"] = int(len(f["clip_video"]))
    except (OSError, KeyError) as err:
        raise CacheError(f"cannot read shard {path}: {err}") from err
    _check_format(header, path)
    for key in ("video_id", "face_status"):
        if key in table:
            table[key] = [v.decode() if isinstance(v, bytes) else str(v) for v in table[key]]
    if "video_id" not in table:
        raise CacheError(f"cannot read shard {path}: no video_id table")
    header["videos"] = table
    return header


_JSON_ATTRS = ("settings", "grid", "video_ids", "failures")


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
            row = {k: _plain(t[k][i]) for k in VIDEO_COLUMNS[1:]}
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
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "dataset": first["dataset"],
        "fingerprint": first["fingerprint"], "settings": first["settings"],
        "layout": {"grid": grid, "num_tokens": int(np.prod(grid)), "embed_dim": first["embed_dim"],
                   "num_views": first["num_views"], "dtype": TOKEN_DTYPE.name},
        "class_names": list(dataset_class_names(first["dataset"])),
        "shard_size": first["shard_size"],
        "complete": all(s["complete"] for s in shards),
        "shards": shards, "videos": videos,
    }  # fmt: skip
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(directory: Path, manifest: dict) -> None:
    """Write manifest.json and failures.jsonl atomically."""
    directory = Path(directory)
    failed = [v for v in manifest["videos"] if v["status"] == "failed"]
    lines = "".join(
        json.dumps({k: v[k] for k in ("video_id", "path", "reason")}) + "\n" for v in failed
    )
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
                failures: Sequence[dict] = ()) -> Path:  # fmt: skip
    """Write a complete cache (shards, manifest.json, failures.jsonl) from in-memory entries."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_id = {e.video_id: e for e in entries}
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
                              shard_size=shard_size, video_ids=ids)  # fmt: skip
        writer = ShardWriter(directory / shard_name(index), header, V, N, D)
        try:
            for vid in ids:
                writer.append(by_id[vid]) if vid in by_id else writer.add_failure(failed[vid])
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

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.settings: dict = manifest["settings"]
        self.fingerprint: str = manifest["fingerprint"]
        self.dataset: str = manifest["dataset"]
        layout = manifest["layout"]
        self.grid: tuple[int, int, int] = tuple(layout["grid"])
        self.embed_dim: int = layout["embed_dim"]
        self.num_views: int = layout["num_views"]
        self.num_tokens: int = layout["num_tokens"]
        self.class_names: tuple[str, ...] = tuple(manifest["class_names"])
        ok = [v for v in manifest["videos"] if v["status"] == "ok"]
        face = [c for c in FACE_COLUMNS if ok and c in ok[0]]
        self.videos = pd.DataFrame(ok, columns=[*VIDEO_COLUMNS, "shard", *face])
        self.videos = self.videos.sort_values("video_id", ignore_index=True)
        self.failures: list[dict] = [
            {k: v[k] for k in ("video_id", "path", "reason")}
            for v in manifest["videos"] if v["status"] == "failed"
        ]  # fmt: skip
        self._where = {v["video_id"]: (v["shard"], v["first_clip"], v["n_clips"]) for v in ok}
        self._handles: dict[str, h5py.File] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r}, {len(self.videos)} videos, {self.num_clips} clips)"

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def num_clips(self) -> int:
        return int(self.videos["n_clips"].sum())

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

    def tokens(self, video_id: str) -> np.ndarray:
        """float16 [C, V, N, D]: every cached clip of the video."""
        shard, first, n = self._locate(video_id)
        return self._shard(shard)["tokens"][first : first + n]

    def clip_frames(self, video_id: str) -> np.ndarray:
        """int [C, 16]: the frame indices of each cached clip of the video."""
        shard, first, n = self._locate(video_id)
        return self._shard(shard)["clip_frames"][first : first + n]

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


def open_cache(path: str | Path) -> Cache:
    """Open a complete cache directory (or its manifest.json); CacheError if incomplete or foreign."""
    path = Path(path)
    directory = path.parent if path.name == MANIFEST else path
    manifest = read_manifest(directory)
    if not manifest["complete"]:
        missing = [s["name"] for s in manifest["shards"] if not s["complete"]]
        raise CacheError(
            f"cache {directory} is incomplete ({directory / MANIFEST}): {len(missing)} shard(s) "
            f"missing, first {missing[0]}; rerun the extraction to finish it"
        )
    return Cache(directory, manifest)


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
        extra = {"config": manifest["config"]} if manifest and "config" in manifest else None
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
        "videos": len(ok), "failed": len(failed), "clips": sum(v["n_clips"] for v in ok),
        "bytes": sum(p.stat().st_size for p in files if p.exists()),
        "failures": [{k: v[k] for k in ("video_id", "path", "reason")} for v in failed],
        "face": _face_counts(manifest["settings"], ok, failed),
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
        f"videos      {info['videos']} cached, {info['failed']} failed",
        f"clips       {info['clips']}  tokens per clip [V={lay['num_views']}, N={lay['num_tokens']}"
        f", D={lay['embed_dim']}] {lay['dtype']}, grid {tuple(lay['grid'])}",
        f"size        {info['bytes'] / 1e9:.3f} GB",
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
    if info["failures"]:
        lines.append("failures:")
        lines += [f"  {f['video_id']}: {f['reason']}" for f in info["failures"]]
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
        sum(v["n_clips"] for v in videos),
        lay["num_views"],
        lay["num_tokens"],
        lay["embed_dim"],
    ]
    if h["fingerprint"] != expect["fingerprint"]:
        problems.append(
            f"{path.name}: fingerprint {h['fingerprint'][:8]}, manifest {expect['fingerprint'][:8]}"
        )
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
    with h5py.File(path, "r") as f:
        tokens = f["tokens"]
        for start in range(0, tokens.shape[0], 16):  # 16 clips: <= 190 MB at ViT-H 384
            block = tokens[start : start + 16]
            if not np.isfinite(block).all():
                bad = start + int(
                    np.argwhere(~np.isfinite(block).reshape(len(block), -1).all(1))[0, 0]
                )
                vid = next(v["video_id"] for v in videos
                           if v["first_clip"] <= bad < v["first_clip"] + v["n_clips"])  # fmt: skip
                problems.append(f"{path.name}: NaN/Inf in tokens of clip {bad} ({vid})")
                break


def verify_cache(path: str | Path, records: Sequence | None = None) -> VerifyReport:
    """Open every shard, check shapes and counts against the manifest, scan tokens for NaN/Inf, and
    (given the dataset's `records`, anything with `.video_id`) check every video is cached or failed."""
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
        report.clips += sum(v["n_clips"] for v in videos)
    if records is not None:
        listed = {v["video_id"] for v in manifest["videos"]}
        missing = sorted({r.video_id for r in records} - listed)
        if missing:
            report.problems.append(f"{len(missing)} dataset video(s) neither cached nor listed as "
                                   f"failed, first {missing[0]!r}")  # fmt: skip
    return report
