"""Stage 1: decode every video once, encode every clip once, write resumable HDF5 shards.

Worker processes (a torch DataLoader, one video per task) decode a video and prepare its views at
the encoder's resolution; they send only the frames its clips use. The main process gathers clips
on the encoder's device, batches them across video boundaries (never across shard boundaries, so a
shard's tokens depend on its videos alone: a resumed run, or a rank of a multi-GPU run, writes the
same bytes), normalises, encodes, casts to fp16 and hands finished videos to a writer thread, so
the GPU does not wait on HDF5. Videos that cannot be decoded are recorded (`failures.jsonl`) and
skipped; nothing is substituted. Under torchrun, rank r writes the shards with index % world == r
and rank 0 writes the manifest once every shard exists (DESIGN.md, "Cache format").

A shard counts as done only if every video's source file is still the one encoded (size and mtime,
else its sha256): files changed since are re-encoded, or refused with `no_reencode`. A lock file
per rank keeps a second extraction off a cache being written; `extract.json` records the options
and the environment of the last run.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import queue
import re
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vjfer import augment, cache
from vjfer.cache import ShardWriter, VideoEntry
from vjfer.datasets import AUDIO_ONLY, NOT_SELECTED, scan_dataset
from vjfer.encoders import load_encoder
from vjfer.encoders.registry import COMPUTE_DTYPES
from vjfer.env import available_cpus, environment, resolve_device
from vjfer.errors import CacheError, ConfigError, VideoError
from vjfer.face import FaceCropConfig, FaceCropper, face_settings, parse_face_crop
from vjfer.labels import check_dataset
from vjfer.store import Codec, StoreFormat
from vjfer.video import (
    CLIP_PLANS,
    FRAME_STEP,
    FRAMES_PER_CLIP,
    REFERENCE_TRAIN_CLIPS,
    ROLE_AUGMENTED,
    VIEWS,
    WINDOWS_VERSION,
    SourceIdentity,
    clip_roles,
    decode_native,
    decode_video,
    normalize_clips,
    num_views,
    plan_clips,
    read_source,
    source_identity,
    stream_digest,
)

log = logging.getLogger(__name__)

TYPICAL_FRAMES = {"ravdess": 111, "crema-d": 78}  # ~3.7 s at 29.97 fps; ~2.6 s at 30 fps
PROBE_SAMPLE = 32  # videos probed (container metadata, no decoding) to estimate the clip count
DISK_MARGIN = 1.05  # HDF5 metadata and the manifest, on top of the token bytes
WRITE_QUEUE = 8  # finished videos waiting for the writer thread
MAX_AUTO_WORKERS = 8  # decoding processes chosen by default, at most (one core left to the main)
EXPECTED_EXCLUSIONS = (AUDIO_ONLY, NOT_SELECTED)  # by design, not failures: not in failures.jsonl
HOP_PLANS = ("windows", "reference")  # the plans whose evaluation windows are `hop` starts apart

# The version of the code that turns a video into tokens (decoding, frame preparation, clip plans,
# the encoders' forward pass). It is a fingerprint input instead of the package version, so a new
# vjfer release reuses caches unless their tokens would change. tests/test_extract.py pins the
# tokens of a fixed video: when that test fails, the tokens changed, so bump this number.
TOKENS_VERSION = 1


@dataclass(frozen=True)
class ExtractConfig:
    """Every option of `vjfer extract`, with its default (the CLI reads these defaults)."""

    dataset: str
    root: Path
    encoder: str = "vjepa-h16-384"  # the paper's backbone
    checkpoint: Path | None = None
    weights: str = "target_encoder"  # jepa checkpoints: EMA "target_encoder" or online "encoder"
    cache_root: Path = Path("cache")
    hop: int = 8  # starts between evaluation windows (plans "windows" and "reference")
    plan: str = "windows"
    views: str = "center"
    batch_size: int = 8  # clips per encoder call; each brings its V views
    workers: int | None = None  # decoding processes; 0: in the main process; None: from the cores
    device: str = "auto"  # auto: cuda:LOCAL_RANK when CUDA is available, else cpu
    limit: int | None = None  # only the first N videos (sorted by id)
    force: bool = False  # delete this rank's shards and the manifest, and start again
    shard_size: int = 64  # videos per shard
    allow_low_disk: bool = False  # start even when the size estimate exceeds the free space
    face_crop: str = "none"  # none (whole frames, the paper's input) | haar | boxes:FILE
    face_fallback: str = "fail"  # a video without a face: fail (listed) | full (whole frame)
    face_margin: float = FaceCropConfig.margin  # added on every side of the face box
    max_lost_frames: float = 0.1  # a video that lost a larger fraction of its frames is a failure
    no_reencode: bool = False  # refuse, rather than re-encode, shards whose source files changed
    decode_timeout: float | None = 600.0  # seconds per video before it becomes a failure
    dedup: bool = True  # videos with identical video streams: encoded and stored once
    store: str = "fp16"  # store format of the tokens (vjfer.store): fp16, int8, fp8, pool2, ...
    dtype: str = "bf16"  # encoder compute dtype on CUDA: bf16 | fp16 (the reference's) | fp32
    augment: int = 0  # augmented copies of each video's 8 training clips (`vjfer.augment`)
    augment_seed: int = 0  # their draws: one generator per (seed, video, copy, clip)

    def __post_init__(self):
        if self.plan not in CLIP_PLANS:
            raise ConfigError(f"plan must be one of {CLIP_PLANS}, got {self.plan!r}")
        if self.dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"dtype must be one of {tuple(COMPUTE_DTYPES)}, got {self.dtype!r}")
        if self.views not in VIEWS:
            raise ConfigError(f"views must be one of {VIEWS}, got {self.views!r}")
        if self.augment < 0:
            raise ConfigError(f"augment must be >= 0 copies, got {self.augment}")
        for name in ("hop", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.workers is not None and self.workers < 0) or (
            self.limit is not None and self.limit < 1
        ):
            raise ConfigError(f"need workers >= 0 and limit >= 1, got {self.workers}, {self.limit}")
        if not 0 <= self.max_lost_frames <= 1:
            raise ConfigError(f"max_lost_frames is a fraction in 0..1, got {self.max_lost_frames}")
        if self.decode_timeout is not None and self.decode_timeout <= 0:
            raise ConfigError(f"decode_timeout must be > 0 seconds, got {self.decode_timeout}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        self.face()  # raises ConfigError on a bad --face-crop / --face-fallback / --face-margin
        if StoreFormat.parse(self.store).pca:
            raise ConfigError(
                f"--store {self.store}: a PCA basis is fitted on the training tokens, which do not "
                "exist before extraction; extract with --store fp16 (or int8), then run "
                "`vjfer cache convert CACHE --store pca:K`"
            )

    def face(self) -> FaceCropConfig:
        """The face-crop settings (`vjfer.face`)."""
        return parse_face_crop(self.face_crop, self.face_fallback, self.face_margin)


@dataclass
class ExtractPlan:
    """What a run will do: printed before it starts (`format_plan`), then handed to `extract`."""

    config: ExtractConfig
    directory: Path
    settings: dict
    fingerprint: str
    rank: int
    world_size: int
    device: str
    shards: list[list[str]]  # video ids of every shard of the cache
    mine: list[int]  # shard indices this rank writes
    done: list[int]  # ... of which already complete (skipped)
    changed: dict[int, list[str]]  # ... of which complete but from other source files: re-encoded
    alias_of: dict[str, str]  # video id -> id of the video with the identical stream it shares
    workers: int  # decoding processes (config.workers, or chosen from the cores)
    videos: int  # videos in the cache (after --limit)
    pending_videos: int  # videos this rank will decode
    estimated_clips: int  # whole cache; an estimate
    estimated_bytes: int  # whole cache
    pending_bytes: int  # this rank's pending shards
    free_bytes: int
    estimate_note: str
    records: list = field(repr=False, default_factory=list)
    excluded: list[dict] = field(default_factory=list)  # files the index left out, with reasons
    sources: dict = field(repr=False, default_factory=dict)  # video id -> SourceIdentity (dedup)
    encoder: object = field(repr=False, default=None)
    augmented_clips: int = 0  # of estimated_clips: augmented copies (--augment K: K × 8 a video)
    augmented_share: float = 0.0  # augmented clips / plain clips: the extra encoder time and disk


@dataclass
class ExtractSummary:
    """What a run did (this rank)."""

    cache_dir: Path
    videos_done: int  # videos encoded by this run
    videos_cached: int  # videos found in complete shards and skipped
    failed: int  # videos of this rank's shards that could not be used (this run and earlier)
    clips: int  # clips encoded by this run
    bytes: int  # bytes of the shards this run wrote
    seconds: float
    clips_per_s: float
    shards_written: int
    shards_skipped: int
    complete: bool  # the manifest lists every shard as complete (written by rank 0)
    rank: int = 0
    failures: list[dict] = field(default_factory=list)
    videos_shared: int = 0  # of videos_done: sharing another's identical stream (stored once)


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def cache_settings(config: ExtractConfig, encoder) -> dict:
    """The fingerprint inputs: everything that changes the tokens or their meaning."""
    settings = {
        "dataset": check_dataset(config.dataset),
        "encoder": config.encoder,
        "encoder_fingerprint": encoder.fingerprint,  # checkpoint sha256, weights, compute dtype
        "resolution": encoder.resolution,
        "frames": FRAMES_PER_CLIP,
        "frame_step": FRAME_STEP,
        "plan": config.plan,
        "hop": config.hop if config.plan in HOP_PLANS else None,  # other plans ignore it
        "views": config.views,
        "mean": list(encoder.mean),
        "std": list(encoder.std),
        "dtype": cache.TOKEN_DTYPE.name,
        "tokens_version": TOKENS_VERSION,  # the code that makes tokens, not the package version
        # layout: a cache of the first N videos, or cut into other shards, is another cache
        "shard_size": config.shard_size,
        "limit": config.limit,
        "max_lost_frames": config.max_lost_frames,  # which partial decodes the cache holds
        "dedup_streams": config.dedup,  # identical video streams stored once (changes the layout)
    }
    if config.augment:  # only then: caches without copies keep their fingerprint and bytes
        settings["augment"] = {"copies": config.augment, "seed": config.augment_seed,
                               "recipe": augment.RECIPE, "version": augment.VERSION}  # fmt: skip
    if config.plan in HOP_PLANS:  # a v1 `windows` cache held other frames: never reuse it
        settings["windows_version"] = WINDOWS_VERSION
    # Only a face crop adds a key: whole-frame caches keep the fingerprint (and bytes) they had.
    if (face := face_settings(config.face())) is not None:
        settings["face_crop"] = face
    if not (store := StoreFormat.parse(config.store)).plain:  # likewise: fp16 adds nothing
        settings["store_format"] = str(store)
    return settings


def decode_workers(requested: int | None, cpus: int) -> int:
    """Decoding processes: `requested` capped at the cores (with a warning), or, when None, one per
    core but one (the main process encodes and writes), at most MAX_AUTO_WORKERS."""
    if requested is None:
        return min(MAX_AUTO_WORKERS, cpus - 1)
    if requested > cpus:
        log.warning("--workers %d > %d cores: using %d", requested, cpus, cpus)
        return cpus
    return requested


def lost_fraction(lost: int, decoded: int, container: int) -> float:
    """Lost frames as a fraction of the frames the video should have (index count, or more)."""
    return lost / max(container, decoded + lost, 1)


def config_record(config: ExtractConfig) -> dict:
    """`asdict(config)` with paths as strings: written into the manifest.

    Without a face crop the face options are left out, so a whole-frame cache's manifest stays
    byte-identical to one written before face crops existed.
    """
    record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    if config.face_crop == "none":
        for key in ("face_crop", "face_fallback", "face_margin"):
            del record[key]
    if StoreFormat.parse(config.store).plain:  # as for face crops: fp16 manifests stay as they were
        del record["store"]
    return record


def probe_frame_count(path: Path) -> int | None:
    """Frame count from container metadata without decoding; None where it has none (FLV)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if stream.frames:
                return int(stream.frames)
            if rate and stream.duration and stream.time_base:
                return int(stream.duration * stream.time_base * rate)
            if rate and container.duration:
                return int(container.duration / av.time_base * rate)
    except (av.FFmpegError, OSError, IndexError):
        return None
    return None


def estimate_clips(records: list, dataset: str, plan: str, hop: int) -> tuple[int, str]:
    """Clips of the whole dataset, from a sample of videos probed without decoding."""
    if not records:
        return 0, "no videos"
    step = max(1, len(records) // PROBE_SAMPLE)
    sample = records[::step][:PROBE_SAMPLE]
    counts = [probe_frame_count(r.path) for r in sample]
    probed = sum(c is not None for c in counts)
    typical = TYPICAL_FRAMES[dataset]
    clips = [len(plan_clips(max(c or typical, 1), plan, hop)) for c in counts]
    estimate = round(np.mean(clips) * len(records))
    note = (f"estimate from {len(sample)} of {len(records)} videos: {probed} by container metadata, "
            f"{len(sample) - probed} at a typical {dataset} length of {typical} frames")  # fmt: skip
    return estimate, note


STREAMS_MEMO = "streams.json"  # video-stream digests by source path, size and mtime


def duplicate_streams(digests: dict[str, str]) -> dict[str, str]:
    """video id -> the smallest id with the same video-stream digest (only for the others)."""
    groups: dict[str, list[str]] = {}
    for video_id, digest in sorted(digests.items()):
        if digest:
            groups.setdefault(digest, []).append(video_id)
    return {alias: ids[0] for ids in groups.values() for alias in ids[1:]}


def stream_digests(records: list, root: Path, memo_path: Path | None = None
                   ) -> tuple[dict[str, str], dict[str, SourceIdentity]]:  # fmt: skip
    """Video-stream digest and source identity of every record (each file read once; a memo file
    keyed by path, size and mtime spares the reading on reruns). Unreadable files get ""."""
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8")) if memo_path else {}
    except (OSError, ValueError):
        memo = {}
    digests, sources, fresh = {}, {}, {}
    for r in records:
        name = relative_source(r.path, root)
        try:
            st = r.path.stat()
            known = memo.get(name)
            if known and (known["size"], known["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                identity, digest = (
                    SourceIdentity(name, st.st_size, st.st_mtime_ns, known["sha256"]),
                    known["stream"],
                )
            else:
                data, identity = read_source(r.path)
                identity, digest = dataclasses.replace(identity, path=name), stream_digest(data)
        except (VideoError, OSError):
            continue
        digests[r.video_id], sources[r.video_id] = digest, identity
        fresh[name] = {"size": identity.size, "mtime_ns": identity.mtime_ns,
                       "sha256": identity.sha256, "stream": digest}  # fmt: skip
    if memo_path is not None and fresh != memo:
        cache.atomic_write_text(memo_path, json.dumps(fresh, indent=0, sort_keys=True))
    return digests, sources


def _shard_header_if_done(directory: Path, index: int, ids: list[str], fp: str,
                          num_shards: int, aliases: dict | None = None) -> dict | None:  # fmt: skip
    """The header of a complete shard file of this cache holding exactly the planned videos."""
    path = directory / cache.shard_name(index)
    if not path.exists():
        return None
    try:
        h = cache.read_shard_header(path)
    except CacheError as err:
        log.warning("%s is unreadable, redoing it: %s", path, err)
        return None
    if (h["fingerprint"], h["video_ids"], h["num_shards"]) != (fp, ids, num_shards) or (
        aliases is not None and h["aliases"] != aliases
    ):
        log.warning("%s holds other videos or settings (an earlier --limit?); redoing it", path)
        return None
    return h


def _shard_is_done(directory: Path, index: int, ids: list[str], fp: str, num_shards: int) -> bool:
    return _shard_header_if_done(directory, index, ids, fp, num_shards) is not None


def relative_source(path: Path, root: Path) -> str:
    """A video's path as the cache records it: relative to the dataset root (POSIX)."""
    path, root = Path(path), Path(root).expanduser().absolute()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def source_changed(stored: dict, path: Path, name: str) -> str | None:
    """Why the file at `path` is not the source recorded in `stored` ({path, size, mtime_ns,
    sha256}), or None when it is. Size and mtime equal: trusted; otherwise its sha256 decides."""
    try:
        st = path.stat()
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    same_stat = (st.st_size, st.st_mtime_ns) == (stored["size"], stored["mtime_ns"])
    if same_stat and stored["path"] == name:
        return None
    try:
        now = source_identity(path, name)
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    if now.sha256 == stored["sha256"]:
        return None  # touched, copied or moved: the same bytes
    return (f"{path}: sha256 {now.sha256[:12]}, size {now.size}; encoded from "
            f"{stored['path']} sha256 {stored['sha256'][:12]}, size {stored['size']}")  # fmt: skip


def changed_sources(header: dict, records: dict, root: Path) -> list[str]:
    """The videos of a complete shard whose source files differ from the ones encoded, each with
    both identities; failed videos count too (their file may have been repaired)."""
    table = header["videos"]
    changes = []
    for i, vid in enumerate(table["video_id"]):
        stored = {
            k.removeprefix("source_"): cache._plain(table[k][i]) for k in cache.SOURCE_COLUMNS
        }
        path = records[vid].path
        if why := source_changed(stored, path, relative_source(path, root)):
            changes.append(why)
    for fail in header["failures"]:
        if fail["source"] is not None:
            path = records[fail["video_id"]].path
            if why := source_changed(fail["source"], path, relative_source(path, root)):
                changes.append(why)
    return changes


def _lock_path(directory: Path, rank: int) -> Path:
    return directory / f".extract-rank{rank}.lock"


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "an unknown process"
    except OSError:
        return "an unknown process"


class CacheLock:
    """An exclusive lock (flock) on a cache directory for one rank; the kernel drops it when the
    process dies, so a killed run never leaves a stale lock. The file names the holder."""

    def __init__(self, directory: Path, rank: int = 0):
        self.path = _lock_path(directory, rank)
        self.fd: int | None = None

    def acquire(self) -> CacheLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheError(
                f"{self.path.parent} is being written by another vjfer extract "
                f"({_lock_holder(self.path)}); wait for it to finish or stop it, then rerun "
                f"(it resumes from the finished shards)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_lock(directory: Path, rank: int = 0) -> None:
    """CacheError naming the holder when another process holds this rank's lock on `directory`."""
    CacheLock(directory, rank).acquire().release()


def _shard_aliases(alias_of: dict[str, str], ids: list[str]) -> dict[str, str]:
    """alias -> stored id, for the stored ids of one shard (sorted)."""
    mine = set(ids)
    return {a: c for a, c in sorted(alias_of.items()) if c in mine}


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as err:
        raise CacheError(f"cache directory {directory} is not writable: {err}") from err


def _cached_rows(directory: Path, indices: list[int]) -> int:
    """Videos (stored and sharing) held by the complete shards `indices`."""
    headers = [cache.read_shard_header(directory / cache.shard_name(i)) for i in indices]
    return sum(len(h["videos"]["video_id"]) for h in headers)


def _shard_failures(directory: Path, indices: list[int]) -> list[dict]:
    headers = [cache.read_shard_header(directory / cache.shard_name(i)) for i in indices]
    return [f for h in headers for f in h["failures"]]


# ---------------------------------------------------------------------------------------------
# Planning.


def plan_extraction(config: ExtractConfig, *, rank: int | None = None,
                    world_size: int | None = None, local_rank: int | None = None,
                    encoder=None) -> ExtractPlan:  # fmt: skip
    """Index the dataset, load the encoder, name the cache directory and estimate the work.

    Raises CacheError when the directory is not writable, or when the estimated size of the shards
    still to write exceeds the free disk space (unless `config.allow_low_disk`).
    """
    env_rank, env_world, env_local = distributed_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    local_rank = (env_local if local_rank is None else local_rank) if world_size > 1 else 0
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside world size {world_size}")
    dataset = check_dataset(config.dataset)
    device = str(resolve_device(config.device, local_rank))
    if encoder is None:
        encoder = load_encoder(config.encoder, config.checkpoint, device, config.weights,
                               dtype=config.dtype)  # fmt: skip
    elif encoder.name != config.encoder:
        raise ConfigError(f"config names encoder {config.encoder!r}, got a loaded {encoder.name!r}")
    found = scan_dataset(dataset, config.root)
    records = found.records[: config.limit]
    excluded = [{"path": str(e.path), "reason": e.reason, "detail": e.detail}
                for e in found.excluded if e.reason not in EXPECTED_EXCLUSIONS]  # fmt: skip
    settings = cache_settings(config, encoder)
    fp = cache.fingerprint(settings)
    name = cache.cache_dir_name(config.encoder, encoder.resolution, fp)
    directory = Path(config.cache_root) / dataset / name
    _check_writable(directory)
    try:
        existing = cache.read_manifest(directory)["fingerprint"]
    except CacheError:
        existing = fp
    if existing != fp:
        raise CacheError(f"{directory} holds a cache with fingerprint {existing}, not {fp}; "
                         f"move it away (8-hex-digit prefixes collided)")  # fmt: skip
    check_lock(directory, rank)  # refuse at once, before any work, if another run holds it
    digests, sources = {}, {}
    if config.dedup:
        digests, sources = stream_digests(records, config.root, directory / STREAMS_MEMO)
    alias_of = duplicate_streams(digests)
    shards = cache.assign_shards([r.video_id for r in records if r.video_id not in alias_of],
                                 config.shard_size)  # fmt: skip
    mine = [i for i in range(len(shards)) if i % world_size == rank]
    by_id = {r.video_id: r for r in records}
    done, changed = [], {}
    for i in [] if config.force else mine:  # --force redoes this rank's shards
        header = _shard_header_if_done(directory, i, shards[i], fp, len(shards),
                                       _shard_aliases(alias_of, shards[i]))  # fmt: skip
        if header is None:
            continue
        if changes := changed_sources(header, by_id, config.root):
            changed[i] = changes
        else:
            done.append(i)
    if changed:
        files = [c for i in sorted(changed) for c in changed[i]]
        names = ", ".join(cache.shard_name(i) for i in sorted(changed))
        if config.no_reencode:
            raise CacheError(
                f"{len(files)} cached video(s) in {names} of {directory} came from other files "
                f"than those now under {config.root} (same names, other content):\n  "
                + "\n  ".join(files)
                + "\nrerun without --no-reencode to re-encode those shards, or give the original --root"
            )
        log.warning("re-encoding %s: %d source file(s) changed since they were encoded: %s",
                    names, len(files), "; ".join(files))  # fmt: skip
    clips, note = estimate_clips(records, dataset, config.plan, config.hop)
    extra = config.augment * REFERENCE_TRAIN_CLIPS * len(records)  # augmented copies
    plain_clips, clips = clips, clips + extra
    store = StoreFormat.parse(config.store)
    store.grid(encoder.grid)  # refuses pool2 on an odd grid before any work
    clip_bytes = sum(store.clip_nbytes(num_views(config.views), encoder.num_tokens // store.pool**2,
                                       store.dim(encoder.embed_dim)))  # fmt: skip
    pending_videos = sum(len(shards[i]) for i in mine if i not in done)  # decoded, not shared
    pending_bytes = round(clips * clip_bytes * DISK_MARGIN * pending_videos / max(len(records), 1))
    plan = ExtractPlan(
        config=config, directory=directory, settings=settings, fingerprint=fp, rank=rank,
        world_size=world_size, device=device, shards=shards, mine=mine, done=done,
        changed=changed, workers=decode_workers(config.workers, available_cpus()),
        alias_of=alias_of, sources=sources,
        videos=len(records), pending_videos=pending_videos, estimated_clips=clips,
        estimated_bytes=round(clips * clip_bytes * DISK_MARGIN), pending_bytes=pending_bytes,
        free_bytes=shutil.disk_usage(directory).free, estimate_note=note, records=records,
        excluded=excluded, encoder=encoder, augmented_clips=extra,
        augmented_share=extra / max(plain_clips, 1),
    )  # fmt: skip
    if plan.pending_bytes > plan.free_bytes and not config.allow_low_disk:
        raise CacheError(
            f"the shards still to write need about {plan.pending_bytes / 1e9:.1f} GB "
            f"({note}), {directory} has {plan.free_bytes / 1e9:.1f} GB free; free space, "
            f"choose another --cache, or allow it (--allow-low-disk)"
        )
    return plan


def format_plan(plan: ExtractPlan) -> str:
    """What `vjfer extract` prints before it starts."""
    rank = f" (rank {plan.rank} of {plan.world_size})" if plan.world_size > 1 else ""
    return "\n".join([
        f"cache      {plan.directory}{rank}",
        f"videos     {plan.videos} in {len(plan.shards)} shards; this run: {plan.pending_videos} "
        f"videos, {len(plan.mine) - len(plan.done)} shards ({len(plan.done)} already complete)",
        f"clips      ~{plan.estimated_clips} ({plan.estimate_note})",
        f"size       ~{plan.estimated_bytes / 1e9:.2f} GB in all, ~{plan.pending_bytes / 1e9:.2f} GB "
        f"to write; {plan.free_bytes / 1e9:.1f} GB free",
        f"encoder    {plan.config.encoder} on {plan.device}, batch {plan.config.batch_size} clips, "
        f"{plan.workers} decoding workers",
        *([f"augmented  {plan.config.augment} × {REFERENCE_TRAIN_CLIPS} = "
           f"{plan.config.augment * REFERENCE_TRAIN_CLIPS} extra clips a video, ~{plan.augmented_clips} "
           f"in all (included above): ~{plan.estimated_bytes * plan.augmented_clips / max(plan.estimated_clips, 1) / 1e9:.2f} GB "
           f"and ~{100 * plan.augmented_share:.0f} % more encoder (GPU) time than the plain clips, "
           f"plus a second, native-size decode of each video for RandAugment"]
          if plan.config.augment else []),
        *([f"changed    {len(plan.changed)} complete shard(s) re-encoded: their source files "
           f"changed ({sum(map(len, plan.changed.values()))} videos; see the log)"]
          if plan.changed else []),
        *([f"excluded   {len(plan.excluded)} files when indexing (listed in failures.jsonl; "
           f"`vjfer index --all` shows them)"] if plan.excluded else []),
    ])  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Decoding workers.


class _DecodeTasks(Dataset):
    """Item i decodes video i (one per task): the frames its clips use, and its clip plan.

    A video that lost more than `max_lost` of its frames, or took longer than `timeout` seconds,
    is an error item (a failure entry), as is one that does not decode at all.
    """

    def __init__(self, paths: list[str], resolution: int, views: str, plan: str, hop: int,
                 threads: int, max_lost: float = 1.0, timeout: float | None = None,
                 ids: list[str] | None = None, face: FaceCropper | None = None,
                 augment: tuple[int, int, tuple, tuple] = (0, 0, (), ())):  # fmt: skip
        self.paths, self.resolution, self.views = paths, resolution, views
        self.augment = augment  # (copies, seed, mean, std)
        self.plan, self.hop, self.threads = plan, hop, threads
        self.max_lost, self.timeout = max_lost, timeout
        self.ids, self.face = ids, face

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        face = None
        try:
            if self.face is not None:  # the box first: haar decodes a sample of frames itself
                face = self.face.locate(self.paths[i], self.ids[i])
            crop = astuple(face.box) if face is not None and face.box is not None else None
            video = decode_video(self.paths[i], self.resolution, self.views, self.threads, crop,
                                 timeout=self.timeout)  # fmt: skip
        except VideoError as err:
            try:  # the identity of a file that failed: a repaired file is retried on resume
                source = dataclasses.asdict(source_identity(self.paths[i]))
            except OSError:
                source = None
            return {"index": i, "error": err.reason, "source": source}
        lost, container = video.lost_frames, video.container_frames
        if (share := lost_fraction(lost, video.n_frames, container)) > self.max_lost:
            return {
                "index": i, "source": dataclasses.asdict(video.source),
                "error": f"lost {lost} of {max(container, video.n_frames + lost)} frames "
                f"({100 * share:.0f} %), more than --max-lost-frames {self.max_lost:g}: a "
                f"truncated or damaged file; re-download it (or raise --max-lost-frames)",
            }  # fmt: skip
        clip_frames = plan_clips(video.n_frames, self.plan, self.hop)  # [C, 16]
        roles = clip_roles(video.n_frames, self.plan, self.hop)  # [C]
        used = np.unique(clip_frames)  # with a hop, clips share frames: send each once
        extra = {}
        if self.augment[0]:
            try:
                extra = self._augmented(i, video.n_frames, crop)
            except VideoError as err:
                return {"index": i, "error": err.reason, "source": dataclasses.asdict(video.source)}
            clip_frames = np.concatenate([clip_frames, extra.pop("frames")])
            roles = np.concatenate([roles, extra.pop("roles")])
        return {
            **extra,
            "index": i,
            "frames": np.ascontiguousarray(video.frames[:, used]),  # uint8 [V, U, R, R, 3]
            "local": np.searchsorted(used, clip_frames),  # [C, 16] indices into U
            "clip_frames": clip_frames,
            "clip_role": roles,
            "n_frames": video.n_frames,
            "fps": video.fps,
            **({"face_status": face.status, "face_box": crop or (-1, -1, -1, -1)} if face else {}),
            "lost_frames": lost,
            "container_frames": container,
            "source": dataclasses.asdict(video.source),
        }

    def _augmented(self, i: int, n_frames: int, crop) -> dict:
        """The augmented copies of video i's 8 training clips (`vjfer.augment`), normalised float
        [K·8, 3, 16, R, R], with their frame indices and roles (ROLE_AUGMENTED + copy)."""
        copies, seed, mean, std = self.augment
        train = plan_clips(n_frames, "reference-train")  # [8, 16]: the reference's exact clips
        used = np.unique(train)
        native = decode_native(self.paths[i], used, crop, self.timeout)  # [U, H, W, 3]
        clips = augment.augment_video_clips(native, np.searchsorted(used, train), self.ids[i],
                                            copies, seed, self.resolution, mean, std)  # fmt: skip
        roles = np.repeat(ROLE_AUGMENTED + np.arange(copies), len(train)).astype(np.uint8)
        return {"augmented": clips, "frames": np.tile(train, (copies, 1)), "roles": roles}


# ---------------------------------------------------------------------------------------------
# Batching and encoding (main process).


class _Pending:
    """A decoded video whose clips are (partly) still to encode."""

    def __init__(self, record, item: dict, device: torch.device, shape: tuple[int, int, int],
                 source: SourceIdentity):  # fmt: skip
        self.record, self.source = record, source
        self.lost_frames, self.container_frames = (
            int(item["lost_frames"]),
            int(item["container_frames"]),
        )
        self.frames = item["frames"].to(device, non_blocking=True)  # uint8 [V, U, R, R, 3]
        self.local = item["local"].to(device)  # [C, 16]
        self.clip_frames = item["clip_frames"].numpy()
        self.clip_role = item["clip_role"].numpy()
        self.augmented = item.get("augmented")  # float [K·8, 3, 16, R, R], after the plain clips
        self.n_plain = len(self.clip_frames) - (
            len(self.augmented) if self.augmented is not None else 0
        )
        self.n_frames, self.fps = int(item["n_frames"]), float(item["fps"])
        self.face_status = item.get("face_status")  # only with a face crop
        box = [int(v) for v in item["face_box"]] if "face_box" in item else [-1]
        self.face_box = tuple(box) if box[0] >= 0 else None
        self.C = len(self.clip_frames)
        self.tokens = np.empty((self.C, *shape), dtype=np.float16)  # [C, V, N, D]
        self.sent = self.filled = 0

    def entry(self) -> VideoEntry:
        r = self.record
        return VideoEntry(r.video_id, r.label, r.actor, r.fold, self.n_frames, self.fps,
                          self.clip_frames, self.tokens, face_status=self.face_status,
                          face_box=self.face_box, lost_frames=self.lost_frames,
                          container_frames=self.container_frames, source=self.source,
                          clip_role=self.clip_role)  # fmt: skip


class _Batcher:
    """Queues decoded videos and encodes their clips in batches of `batch_size` clips.

    On CUDA the tokens of batch k are copied to pinned memory asynchronously and collected after
    batch k+1 is queued, so the GPU is not idle while the host sorts results into videos.
    """

    def __init__(self, encoder, batch_size: int, views: int):
        self.encoder, self.B = encoder, batch_size
        self.micro = batch_size  # clips per encoder call; halved on CUDA out-of-memory
        self.views = views
        self.device = torch.device(encoder.device)
        self.shape = (views, encoder.num_tokens, encoder.embed_dim)  # (V, N, D)
        self.queue: deque[_Pending] = deque()
        self.queued = 0  # clips not yet sent to the encoder
        self.inflight: deque = deque()
        self.cuda = self.device.type == "cuda"
        # two pinned host buffers, alternating: batch k+1 is copied while batch k is collected
        self.slots = [
            (torch.empty((batch_size, *self.shape), dtype=torch.float16, pin_memory=True),
             torch.empty((), dtype=torch.bool, pin_memory=True))
            for _ in range(2)
        ] if self.cuda else []  # fmt: skip
        self.count = 0

    def add(self, record, item: dict, source: SourceIdentity) -> None:
        pending = _Pending(record, item, self.device, self.shape, source)
        self.queue.append(pending)
        self.queued += pending.C

    def _launch(self) -> None:
        parts, need = [], self.B
        for p in self.queue:
            take = min(need, p.C - p.sent)
            if take:
                parts.append((p, p.sent, p.sent + take))
                p.sent += take
                need -= take
            if not need:
                break
        self.queued -= self.B - need
        xs = []  # normalised float [c·V, 3, 16, R, R] per part
        for p, a, b in parts:
            if a < p.n_plain:  # frames [V, U, R, R, 3] at local [c, 16] -> [c, V, 16, R, R, 3]
                clips = p.frames[:, p.local[a : min(b, p.n_plain)]].transpose(0, 1)
                xs.append(normalize_clips(clips.flatten(0, 1), self.encoder.mean, self.encoder.std))
            if b > p.n_plain:  # augmented copies: already normalised, one view per clip; with
                # V views (3crop) the copy fills every view slot (the same tokens V times)
                aug = p.augmented[max(a, p.n_plain) - p.n_plain : b - p.n_plain].to(self.device)
                xs.append(aug.repeat_interleave(self.views, dim=0))
        x = torch.cat(xs)
        b = sum(end - start for _, start, end in parts)
        tokens = self._encode(x).to(torch.float16).view(b, *self.shape)  # [b, V, N, D]
        finite = torch.isfinite(tokens).all()
        if self.cuda:
            host, flag = self.slots[self.count % 2]
            host = host[:b]
            host.copy_(tokens, non_blocking=True)
            finite = flag.copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = tokens, None
        self.count += 1
        self.inflight.append((host, finite, event, parts))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode [b·V, 3, T, R, R] in calls of `micro` clips; on CUDA out-of-memory, halve
        `micro` and retry (the batch size in effect is recorded in each shard)."""
        while True:
            step = self.micro * self.views
            try:
                return torch.cat([self.encoder.encode(x[i : i + step])
                                  for i in range(0, len(x), step)])  # fmt: skip
            except torch.cuda.OutOfMemoryError as err:
                if self.micro == 1:
                    raise CacheError(
                        f"CUDA out of memory encoding a single clip with {self.encoder.name} on "
                        f"{self.device}: free GPU memory or use a smaller encoder"
                    ) from err
                self.micro //= 2
                log.warning(
                    "CUDA out of memory: encoding %d clips per call from now on", self.micro
                )
                if self.cuda:
                    torch.cuda.empty_cache()

    def _collect(self) -> None:
        host, finite, event, parts = self.inflight.popleft()
        if event is not None:
            event.synchronize()
        if not bool(finite):
            ids = sorted({p.record.video_id for p, _, _ in parts})
            raise CacheError(f"the encoder returned NaN/Inf (or fp16 overflow) for {ids}")
        out, o = host.numpy(), 0
        for p, a, b in parts:
            p.tokens[a:b] = out[o : o + b - a]
            o += b - a
            p.filled += b - a

    def run(self, final: bool = False) -> list[VideoEntry]:
        """Encode full batches (and, when `final`, the rest); return the videos now complete."""
        while self.queued >= self.B or (final and self.queued):
            self._launch()
            if len(self.inflight) > (1 if self.cuda else 0):
                self._collect()
        while final and self.inflight:
            self._collect()
        done = []
        while self.queue and self.queue[0].filled == self.queue[0].C:
            done.append(self.queue.popleft().entry())
        return done


# ---------------------------------------------------------------------------------------------
# Writing (a thread).


class _WriterThread:
    """Writes shards from a bounded queue; an error is kept and raised in the main thread."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.error: BaseException | None = None
        self.error_shard: Path | None = None
        self.written: list[Path] = []
        self.thread = threading.Thread(target=self._loop, name="vjfer-shard-writer", daemon=True)
        self.thread.start()

    def put(self, *op) -> None:
        if self.error is not None:
            self._raise()
        self.q.put(op)

    def _loop(self) -> None:
        writer = None
        while True:
            op, *args = self.q.get()
            if op == "stop":
                if writer is not None:  # stopped mid-shard (an error upstream): drop the partial
                    writer.abort()
                return
            if self.error is not None:
                continue  # drain: the producer learns of the error on its next put
            try:
                if op == "begin":
                    writer = ShardWriter(*args)
                elif op == "entry":
                    writer.append(*args)
                elif op == "failure":
                    writer.add_failure(*args)
                elif op == "alias":
                    writer.add_alias(*args)
                elif op == "note":
                    writer.note(*args)
                elif op == "end":
                    self.written.append(writer.close())
                    writer = None
            except BaseException as err:  # noqa: BLE001 (re-raised in the main thread)
                self.error, self.error_shard = err, writer.path if writer else args[0]
                if writer is not None:
                    writer.abort()
                    writer = None

    def _raise(self) -> None:
        err = self.error
        if isinstance(err, OSError):
            cause = os.strerror(err.errno) if err.errno else str(err).splitlines()[0]
            raise CacheError(
                f"writing {self.error_shard} failed ({cause}); its partial file was deleted and "
                f"complete shards are kept: free space or fix the directory, then rerun to resume"
            ) from err
        raise err

    def close(self) -> None:
        self.q.put(("stop",))
        self.thread.join()
        if self.error is not None:
            self._raise()


# ---------------------------------------------------------------------------------------------
# The run.


def _header(plan: ExtractPlan, index: int) -> dict:
    enc = plan.encoder
    return cache.shard_header(
        dataset=plan.settings["dataset"], fp=plan.fingerprint, settings=plan.settings,
        grid=enc.grid, embed_dim=enc.embed_dim, num_views=num_views(plan.config.views),
        index=index, num_shards=len(plan.shards), shard_size=plan.config.shard_size,
        video_ids=plan.shards[index], aliases=_shard_aliases(plan.alias_of, plan.shards[index]),
    )  # fmt: skip


def _encode_shards(plan: ExtractPlan, progress: bool) -> tuple[int, int, int, list[dict], int]:
    """Decode, encode and write this rank's pending shards: (videos, clips, bytes, failures,
    videos sharing another's stream)."""
    cfg, enc = plan.config, plan.encoder
    pending = [i for i in plan.mine if i not in plan.done]
    by_id = {r.video_id: r for r in plan.records}
    todo = [(i, by_id[v]) for i in pending for v in plan.shards[i]]
    if not todo:
        return 0, 0, 0, [], 0
    # a second (preparing) thread per decoding process only where the cores allow it
    threads = 2 if available_cpus() >= 2 * max(plan.workers, 1) else 1
    face = cfg.face()
    tasks = _DecodeTasks([str(r.path) for _, r in todo], enc.resolution, cfg.views, cfg.plan,
                         cfg.hop, threads, cfg.max_lost_frames, cfg.decode_timeout,
                         [r.video_id for _, r in todo],
                         FaceCropper(face) if face.method != "none" else None,
                         (cfg.augment, cfg.augment_seed, enc.mean, enc.std))  # fmt: skip
    cuda = torch.device(plan.device).type == "cuda"
    if cuda:  # pinned memory, events and streams follow the current device
        torch.cuda.set_device(torch.device(plan.device))
    loader = DataLoader(tasks, batch_size=None, shuffle=False, num_workers=plan.workers,
                        pin_memory=cuda, prefetch_factor=2 if plan.workers else None)  # fmt: skip
    V = num_views(cfg.views)
    codec = Codec(StoreFormat.parse(cfg.store), tuple(enc.grid))  # stored by the writer thread
    batcher = _Batcher(enc, cfg.batch_size, V)
    items = iter(loader)  # starts the workers (fork) before the writer thread exists
    writer = _WriterThread()
    videos = clips = 0
    failures: list[dict] = []
    current = None
    bar = tqdm(total=len(todo), unit="video", disable=not progress, smoothing=0.05)
    start = time.perf_counter()

    shared = 0
    followers: dict[str, list[str]] = {}
    for alias, stored in plan.alias_of.items():
        followers.setdefault(stored, []).append(alias)

    def write(entries: list[VideoEntry]) -> None:
        nonlocal videos, clips, shared
        for entry in entries:
            writer.put("entry", entry)
            videos, clips = videos + 1, clips + len(entry.frames)
            for alias in followers.get(entry.video_id, []):  # identical stream: a row, no tokens
                r = by_id[alias]
                writer.put("alias", dataclasses.replace(
                    entry, video_id=alias, label=r.label, actor=r.actor, fold=r.fold,
                    tokens=np.empty(0, np.float16), source=plan.sources[alias],
                    alias_of=entry.video_id))  # fmt: skip
                videos, shared = videos + 1, shared + 1
        bar.set_postfix_str(
            f"{clips / (time.perf_counter() - start):.1f} clips/s, {len(failures)} failed",
            refresh=False,  # tqdm redraws at its own pace
        )

    try:
        for item in items:
            shard, record = todo[item["index"]]
            if shard != current:
                if current is not None:
                    write(batcher.run(final=True))
                    writer.put("note", "encode_batch_size", batcher.micro)
                    writer.put("end")
                writer.put("begin", plan.directory / cache.shard_name(shard), _header(plan, shard),
                           V, enc.num_tokens, enc.embed_dim, codec)  # fmt: skip
                current = shard
            source = item["source"]
            if source is not None:  # recorded relative to the dataset root
                source = {**source, "path": relative_source(record.path, cfg.root)}
            if "error" in item:
                fail = {
                    "video_id": record.video_id,
                    "path": str(record.path),
                    "reason": item["error"],
                    "source": source,
                }
                log.warning("skipping %s: %s", record.path, item["error"])
                failures.append(fail)
                writer.put("failure", fail)
                for alias in followers.get(record.video_id, []):
                    twin = {"video_id": alias, "path": str(by_id[alias].path),
                            "reason": f"same video stream as {record.video_id}: {item['error']}",
                            "source": dataclasses.asdict(plan.sources[alias])}  # fmt: skip
                    failures.append(twin)
                    writer.put("failure", twin)
            else:
                batcher.add(record, item, SourceIdentity(**source))
                write(batcher.run())
            bar.update(1)
        write(batcher.run(final=True))
        writer.put("note", "encode_batch_size", batcher.micro)
        writer.put("end")
    finally:
        bar.close()
        writer.close()
    return videos, clips, sum(p.stat().st_size for p in writer.written), failures, shared


def _wait_for_shards(plan: ExtractPlan, stall_timeout: float) -> None:
    """Rank 0: wait until every shard of the cache is complete; give up after `stall_timeout`
    seconds in which no shard appeared and no partial shard grew."""
    waiting = [i for i in range(len(plan.shards)) if i not in plan.mine]
    state, changed = None, time.monotonic()
    while True:
        waiting = [i for i in waiting if not _shard_is_done(
            plan.directory, i, plan.shards[i], plan.fingerprint, len(plan.shards))]  # fmt: skip
        if not waiting:
            return
        partials = sorted(plan.directory.glob("shard-*.h5" + cache.PARTIAL_SUFFIX))
        now_state = (len(waiting), [(p.name, p.stat().st_size) for p in partials if p.exists()])
        if now_state != state:
            state, changed = now_state, time.monotonic()
        if time.monotonic() - changed > stall_timeout:
            names = ", ".join(cache.shard_name(i) for i in waiting[:5])
            raise CacheError(
                f"no progress on {len(waiting)} shard(s) of other ranks for {stall_timeout:.0f} s "
                f"(first: {names}); rerun to finish, then `vjfer cache info {plan.directory}`"
            )
        time.sleep(min(0.5, stall_timeout / 5))


def extract(config: ExtractConfig, progress: bool = True, *, plan: ExtractPlan | None = None,
            rank: int | None = None, world_size: int | None = None,
            stall_timeout: float = 600.0) -> ExtractSummary:  # fmt: skip
    """Extract (or resume) the cache `config` describes; see the module docstring.

    Args:
        config: the options.
        progress: show a progress bar (rank 0 only).
        plan: from `plan_extraction` (made here when None).
        rank, world_size: override torchrun's RANK / WORLD_SIZE (tests).
        stall_timeout: rank 0 gives up waiting for other ranks' shards after this many seconds
            without progress.
    """
    if plan is None:
        plan = plan_extraction(config, rank=rank, world_size=world_size)
    elif plan.config != config:
        raise ConfigError("extract() was given a plan made for another config")
    directory = plan.directory
    lock = CacheLock(directory, plan.rank).acquire()
    threads = torch.get_num_threads()  # the encoder shares the cores with the decoding processes
    torch.set_num_threads(max(1, available_cpus() - plan.workers))
    try:
        return _extract(config, plan, progress, stall_timeout)
    finally:
        torch.set_num_threads(threads)
        lock.release()


def _extract(config: ExtractConfig, plan: ExtractPlan, progress: bool,
             stall_timeout: float) -> ExtractSummary:  # fmt: skip
    directory = plan.directory
    start = time.perf_counter()
    record_path = directory / cache.EXTRACT_RECORD
    if plan.rank == 0 and (len(plan.done) < len(plan.mine) or not record_path.exists()):
        record = {"config": config_record(config), "environment": environment()}
        cache.atomic_write_text(record_path, json.dumps(record, indent=1))
    if len(plan.done) < len(plan.mine):
        (directory / cache.MANIFEST).unlink(missing_ok=True)  # no manifest claims a shard in work
    if config.force:
        for i in plan.mine:
            (directory / cache.shard_name(i)).unlink(missing_ok=True)
    if plan.rank == 0:  # shards past the last one are left from a dataset that had more videos
        for path in directory.glob("shard-*.h5*"):
            index = re.match(r"shard-(\d+)\.h5", path.name)
            if index and int(index[1]) >= len(plan.shards):
                log.warning("removing %s: the dataset now fills %d shards", path, len(plan.shards))
                path.unlink()
    videos, clips, nbytes, new_failures, shared = _encode_shards(plan, progress and plan.rank == 0)
    seconds = time.perf_counter() - start
    complete = False
    if plan.rank == 0:
        _wait_for_shards(plan, stall_timeout)
        extra = {"config": config_record(config), "excluded": plan.excluded}
        manifest = cache.manifest_from_shards(directory, extra)
        try:
            old = cache.read_manifest(directory)
        except CacheError:
            old = None
        if old is not None and old["complete"] and not videos and not new_failures:
            manifest = old  # nothing re-encoded: the manifest (and its root) stays with its shards
        elif old != manifest:
            cache.write_manifest(directory, manifest)
        complete = manifest["complete"]
    failures = _shard_failures(directory, plan.done) + new_failures
    summary = ExtractSummary(
        cache_dir=directory, videos_done=videos,
        videos_cached=_cached_rows(directory, plan.done), videos_shared=shared,
        failed=len(failures), clips=clips, bytes=nbytes, seconds=seconds,
        clips_per_s=clips / seconds if seconds > 0 else 0.0,
        shards_written=len(plan.mine) - len(plan.done), shards_skipped=len(plan.done),
        complete=complete, failures=failures, rank=plan.rank,
    )  # fmt: skip
    log.info("rank %d: %d videos (%d clips) encoded into %s in %.1f s, %d failed", plan.rank,
             videos, clips, directory, seconds, len(failures))  # fmt: skip
    return summary


def format_extract_summary(s: ExtractSummary) -> str:
    """The lines `vjfer extract` prints at the end."""
    state = "" if s.complete else "  (INCOMPLETE)"
    if s.rank:
        state = f"  (rank {s.rank}; rank 0 writes the manifest)"
    lines = [
        f"cache   {s.cache_dir}{state}",
        f"videos  {s.videos_done} encoded ({s.videos_shared} of them share an identical video "
        f"stream: stored once), {s.videos_cached} already cached, {s.failed} failed",
        f"clips   {s.clips} in {s.seconds:.1f} s ({s.clips_per_s:.1f} clips/s), "
        f"{s.bytes / 1e9:.3f} GB written in {s.shards_written} shards ({s.shards_skipped} skipped)",
    ]
    lines += [f"failed  {f['video_id']}: {f['reason']}" for f in s.failures]
    return "\n".join(lines)
