"""Reading a cache: `open_cache` (a complete cache, checked against its shards), `Cache` (tokens,
clip frames and roles of a video, read lazily), `read_manifest`, `find_caches`, and the message that
names an incomplete cache and the command that resumes it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch

from vjfer.cache.chunks import ShardChunks, read_clip, shard_chunks
from vjfer.cache.format import (
    DECODE_COLUMNS,
    FACE_COLUMNS,
    MANIFEST,
    SHARD_PATTERN,
    VIDEO_COLUMNS,
    Coverage,
    _check_format,
    canonical_json,
    convert_command,
    corrupt_clip,
    layer_blocks,
    read_shard_header,
    refill_hint,
    shard_mismatch,
    store_of,
)
from vjfer.clips import ROLE_EVAL
from vjfer.errors import CacheError
from vjfer.files import read_json_object
from vjfer.schemas import Manifest, validation_error
from vjfer.store import PCA_BASIS, PCA_MEAN, StoreFormat, decode_raw


def _shown(value):
    return value[:3] if isinstance(value, list) else value


def read_manifest(directory: Path) -> dict:
    """manifest.json of a cache directory (or the file itself); CacheError naming the file."""
    path = Path(directory)
    path = path if path.name == MANIFEST else path / MANIFEST
    hint = (
        f"; damaged or not vjfer's: delete it and run `vjfer cache info {path.parent}` to "
        "rebuild it from the shards"
    )
    missing = f"no cache at {path.parent}: {MANIFEST} is missing"
    manifest = read_json_object(path, CacheError, missing=missing, hint=hint)
    _check_format(manifest, path)  # an older format is named as such, before its fields are
    if (problem := validation_error(manifest, Manifest)) is not None:
        raise CacheError(f"{path}: {problem}{hint}")
    return manifest


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
        self.num_tokens: int = layout["num_tokens"]  # of all stored layers together
        # the encoder blocks each clip stacks along N (layer-major); None: its output alone
        self.layers: tuple[int, ...] | None = layer_blocks(self.settings)
        self.layer_tokens: int = self.num_tokens // len(self.layers or (0,))  # N of one layer
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
            for v in manifest["videos"]
            if v["status"] == "failed"
        ]
        self.excluded: list[dict] = list(manifest["excluded"])  # files the index left out
        self._where = {v["video_id"]: (v["shard"], v["first_clip"], v["n_clips"]) for v in ok}
        self._handles: dict[str, h5py.File] = {}
        self._chunks: dict[str, ShardChunks] = {}  # shard -> chunk offsets (chunks.shard_chunks)
        self._fds: dict[str, int] = {}  # shard -> descriptor for `chunks.read_clip`
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
        state["_handles"], state["_fds"] = {}, {}
        return state

    def _shard(self, name: str) -> h5py.File:
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._handles, self._fds, self._pid = {}, {}, os.getpid()
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

    def chunks(self, shard: str) -> ShardChunks:
        """Where the clips of `shard` sit in its file, and their stored checksums (looked up
        once)."""
        if shard not in self._chunks:
            self._chunks[shard] = shard_chunks(self.path / shard, self.store, self.shape)
        return self._chunks[shard]

    def _fd(self, shard: str) -> int:
        if self._pid != os.getpid():  # forked: the parent's descriptors are not ours to use
            self._handles, self._fds, self._pid = {}, {}, os.getpid()
        if shard not in self._fds:
            try:
                self._fds[shard] = os.open(self.path / shard, os.O_RDONLY)
            except OSError as err:
                raise CacheError(f"cannot open shard {self.path / shard}: {err}") from err
        return self._fds[shard]

    def eval_clips(self, video_id: str) -> np.ndarray:
        """int64 [C']: the video's evaluation windows (role 0), the clips every evaluation scores;
        never the `reference` plan's training clips or augmented copies (all clips of a cache
        without roles)."""
        return np.flatnonzero(self.clip_roles(video_id) == ROLE_EVAL)

    def raw_tokens(self, video_id: str, verify: bool | None = None) -> np.ndarray:
        """The stored bytes of every clip of the video, as the stage-2 reader delivers them:
        uint8 [C, token bytes + scale bytes] (`vjfer.store.decode_raw` makes tokens of them).

        Each clip is read by `chunks.read_clip` (its token chunk, then its scale chunk). With
        `verify` (default: the cache's `verify`, on unless opened with verify=False), each clip's
        bytes are checked against its stored checksum (xxh3-64, while they are still in the CPU
        cache; 12-21 % of the read time on a 2-core VM, see benchmarks/RESULTS.md); a mismatch is
        a CacheError naming the shard, video and clip.
        """
        verify = self.verify if verify is None else verify
        shard, first, n = self._locate(video_id)
        chunks, fd = self.chunks(shard), self._fd(shard)
        out = np.empty((n, chunks.clip_bytes), dtype=np.uint8)
        for c in range(n):
            if not read_clip(fd, chunks, first + c, out[c].data, verify):
                raise corrupt_clip(self.path, shard, first + c, video_id, c)
        return out

    def tokens(self, video_id: str, verify: bool | None = None) -> np.ndarray:
        """float16 [C, V, N, D]: every cached clip of the video (of a compact store format:
        dequantized, on the stored grid and dims; `raw_tokens` gives the stored bytes, and is
        what this reads and verifies)."""
        raw = torch.from_numpy(self.raw_tokens(video_id, verify))
        return decode_raw(raw, self.store, self.shape).numpy()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(V, N, D) of a clip as readers see it (stored grid and dims)."""
        return (self.num_views, self.num_tokens, self.embed_dim)

    def pca_basis(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(basis float32 [D, K], mean float32 [D]) of a pca cache (from its first shard), else
        None."""
        if not self.store.pca:
            return None
        f = self._shard(self.manifest["shards"][0]["name"])
        return f[PCA_BASIS][()], f[PCA_MEAN][()]

    def verify_sample(self, clips: int = 64, seed: int = 0) -> int:
        """Check the checksums of `clips` clips drawn at random (all when fewer): the cheap check
        for a reader that opened the cache with verify=False. Returns the number checked."""
        where = [
            (v, c)
            for v, n in zip(self.videos["video_id"], self.videos["n_clips"], strict=True)
            for c in range(n)
        ]
        rng = np.random.default_rng(seed)
        picked = rng.choice(len(where), size=min(clips, len(where)), replace=False)
        for video_id in sorted({where[i][0] for i in picked}):
            self.tokens(video_id, verify=True)  # whole videos: a clip read alone costs the same
        return len(picked)

    def coverage(self) -> Coverage:
        """Cached videos vs all the dataset's files: what "results on N of M videos" reports."""
        return Coverage(len(self.videos), len(self.failures), len(self.excluded))

    def check_structure(self) -> None:
        """Every shard's header agrees with the manifest: index, videos, fingerprint, clip count
        and shape, and each video's labels, fold, clip counts and source hashes (`shard_mismatch`).

        Cheap (attributes and small tables only); catches a shard replaced by another's copy. The
        same structure `vjfer cache verify` checks, without its scan of every clip.
        """
        layout = self.manifest["layout"]
        for index, entry in enumerate(self.manifest["shards"]):
            path = self.path / entry["name"]
            h = read_shard_header(path)
            mine = [v for v in self.manifest["videos"] if v["shard"] == entry["name"]]
            rows = [v for v in mine if v["status"] == "ok"]
            want = sum(int(v["n_clips"]) for v in rows if not v["alias_of"])
            got = {
                "index": h["index"],
                "video_ids": h["video_ids"],
                "fingerprint": h["fingerprint"],
                "clips": h["tokens_shape"][0],
                "checksums": h["checksums"],
                "clip table": h["clips_in_table"],
                "clip shape": h["tokens_shape"][1:],
            }
            expected = {
                "index": index,
                "video_ids": entry["video_ids"],
                "fingerprint": self.fingerprint,
                "clips": want,
                "checksums": want,
                "clip table": want,
                "clip shape": [layout["num_views"], layout["num_tokens"], layout["embed_dim"]],
            }
            mismatch = next(
                (
                    f"{key} {_shown(value)!r}, the manifest expects {_shown(expected[key])!r}"
                    for key, value in got.items()
                    if value != expected[key]
                ),
                None,
            )
            failed = [v["video_id"] for v in mine if v["status"] == "failed"]
            if (mismatch := mismatch or shard_mismatch(h, rows, failed)) is not None:
                raise CacheError(
                    f"{path}: {mismatch}: this shard is not the one the manifest lists "
                    f"(replaced or copied?); {refill_hint(self.path)}"
                )

    def clip_frames(self, video_id: str) -> np.ndarray:
        """int [C, 16]: the frame indices of each cached clip of the video."""
        shard, first, n = self._locate(video_id)
        return self._shard(shard)["clip_frames"][first : first + n]

    def clip_roles(self, video_id: str) -> np.ndarray:
        """uint8 [C]: each cached clip's role (`vjfer.clips.ROLE_*`). A shard without `clip_role`
        (every cache before the `reference` plan and `--augment`) holds evaluation windows only."""
        shard, first, n = self._locate(video_id)
        f = self._shard(shard)
        if "clip_role" not in f:
            return np.zeros(n, dtype=np.uint8)
        return f["clip_role"][first : first + n]

    def check(self, **expected) -> None:
        """Raise CacheError naming the first field whose cached value differs from `expected`.

        Fields are the manifest's settings (views, plan, hop, encoder, resolution, ...), plus
        `fingerprint`, `dataset`, `grid`, `embed_dim`, `num_views`.
        """
        known = {
            **self.settings,
            "fingerprint": self.fingerprint,
            "dataset": self.dataset,
            "grid": list(self.grid),
            "embed_dim": self.embed_dim,
            "num_views": self.num_views,
        }
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
        for fd in self._fds.values():
            os.close(fd)
        self._handles, self._fds = {}, {}

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
    found = sorted(_cache_dirs(path))
    if complete:
        found = [d for d in found if (d / MANIFEST).exists() and _is_complete(d)]
    return found


def _cache_dirs(path: Path) -> set[Path]:
    """Folders at or under `path` holding a manifest or shards, through links to folders too (a
    cache kept on another disk and linked in); each real folder visited once, so a link loop
    ends."""
    found, seen = set(), set()
    for folder, subfolders, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        shards = fnmatch.filter(files, "shard-*.h5") + fnmatch.filter(files, "shard-*.h5.partial")
        if MANIFEST in files or shards:
            found.add(Path(folder))
    return found


def _is_complete(directory: Path) -> bool:
    try:
        return bool(read_manifest(directory)["complete"])
    except CacheError:
        return False


EXTRACT_RECORD = "extract.json"  # the extraction's options and environment (vjfer.extract)


def resume_command(directory: Path) -> str:
    """The `vjfer extract` command that resumes the cache in `directory`: the one extract.json
    recorded (`vjfer.extract.command_words`: every option that differs from its default), with
    `--cache` pointing at where the cache is now, and a warning when its `--root` is gone."""
    directory = Path(directory)
    try:
        record = json.loads((directory / EXTRACT_RECORD).read_text(encoding="utf-8"))
        words = [str(w) for w in record["command"]]
        root = Path(words[words.index("--root") + 1])
        words[words.index("--cache") + 1] = str(directory.parent.parent)  # <root>/<dataset>/<name>
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return (
            f"the `vjfer extract` command that made it (same options: see "
            f"{directory / EXTRACT_RECORD})"
        )
    command = "`" + shlex.join(words) + "`"
    if not root.is_dir():
        command += (
            f" (the recorded --root {root} no longer exists: give the dataset's current "
            "folder instead)"
        )
    return command


def incomplete_message(directory: Path) -> str:
    """Names an incomplete cache and the `vjfer extract` command that resumes it."""
    directory = Path(directory)
    done = sorted(p.name for p in directory.glob("shard-*.h5") if SHARD_PATTERN.match(p.name))
    try:
        count = f"{len(done)} of {read_shard_header(directory / done[0])['num_shards']}"
    except (IndexError, CacheError):
        count = f"{len(done)}"
    if (command := convert_command(directory)) is not None:
        what, command = "a `vjfer cache convert`", command
    else:
        what, command = "an extraction", resume_command(directory)
    return (
        f"cache {directory} is incomplete ({count} shards complete, no finished manifest): "
        f"{what} was interrupted or is running; resume it with {command}"
    )


def refuse_unfinished(directory: Path) -> None:
    """CacheError (`incomplete_message`) for a directory whose run stopped before its manifest."""
    if not (directory / MANIFEST).exists() and any(directory.glob("shard-*.h5*")):
        raise CacheError(incomplete_message(directory))


def open_cache(path: str | Path, check: bool = True, verify: bool = True) -> Cache:
    """Open a complete cache directory (or its manifest.json); CacheError if incomplete, foreign,
    or (with `check`) a shard disagrees with the manifest (`Cache.check_structure`). `verify` is
    the default of `Cache.tokens(verify=...)`: every clip read is checked against its checksum."""
    path = Path(path)
    directory = path.parent if path.name == MANIFEST else path
    refuse_unfinished(directory)
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
