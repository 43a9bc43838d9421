"""Planning an extraction: index the dataset, load the encoder, name the cache directory, find
the shards already complete (and those whose source files changed), estimate clips and bytes,
refuse when the disk is too small; `format_plan` is what `vjfer extract` prints before it starts.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from vjfer.cache import read_manifest
from vjfer.cache.format import (
    assign_shards,
    cache_dir_name,
    fingerprint,
    layer_blocks,
    read_shard_header,
    shard_name,
)
from vjfer.clips import (
    DRAW_PLANS,
    FRAME_STEP,
    REFERENCE_TRAIN_CLIPS,
    ClipPlan,
    plan_clips,
    train_draws,
)
from vjfer.datasets import scan_dataset
from vjfer.datasets.frames import count_frame_files as count_folder_frames
from vjfer.datasets.records import AUDIO_ONLY, NOT_SELECTED
from vjfer.encoders import Encoder, load_encoder
from vjfer.encoders.registry import get_spec
from vjfer.encoders.vjepa import forward_flops
from vjfer.env import available_cpus, resolve_device
from vjfer.errors import CacheError, ConfigError
from vjfer.extract.config import ExtractConfig, cache_settings
from vjfer.extract.sources import STREAMS_MEMO, changed_sources, duplicate_streams, stream_digests
from vjfer.files import check_writable
from vjfer.labels import check_dataset
from vjfer.lock import FileLock
from vjfer.prepare import SourceIdentity, num_views
from vjfer.protocols import get_protocol
from vjfer.store import StoreFormat

log = logging.getLogger(__name__)

TYPICAL_FRAMES = {
    "ravdess": 111,
    "crema-d": 78,  # ~3.7 s at 29.97 fps; ~2.6 s at 30 fps
    "dfew": 71,
    "ferv39k": 28,
    "mafw": 85,  # medians of the releases' frame counts
    "list": 64,
}  # a list file's items: no statistics, one clip's span
PROBE_SAMPLE = 32  # videos probed (container metadata, no decoding) to estimate the clip count
DISK_MARGIN = 1.05  # HDF5 metadata and the manifest, on top of the token bytes
MAX_AUTO_WORKERS = 8  # decoding processes chosen by default, at most (one core left to the main)
EXPECTED_EXCLUSIONS = (AUDIO_ONLY, NOT_SELECTED)  # by design, not failures: not in failures.jsonl
# The encoder estimate is projected, not measured (no GPU figure in benchmarks/RESULTS.md yet): the
# clip's matmul FLOPs (`encoders.vjepa.forward_flops`: 9.3 TFLOP for ViT-H/16-384) at ASSUMED_MFU
# of one H100 SXM's dense bf16 peak (benchmarks/encoder.py's table): ~53 clips/s at 384.
ASSUMED_GPU, ASSUMED_PEAK_TFLOPS, ASSUMED_MFU = "H100", 989.4, 0.5


def cache_lock(directory: Path, rank: int = 0) -> FileLock:
    """The lock of rank `rank`'s extraction into cache `directory` (`.extract-rank<R>.lock`):
    a second extraction of the same cache and rank is refused naming the holder."""

    def refusal(holder: str) -> CacheError:
        return CacheError(
            f"{directory} is being written by another vjfer extract ({holder}); wait for it to "
            "finish or stop it, then rerun (it resumes from the finished shards)"
        )

    return FileLock(directory / f".extract-rank{rank}.lock", refusal)


def check_lock(directory: Path, rank: int = 0) -> None:
    """CacheError naming the holder when another process holds this rank's lock on `directory`."""
    cache_lock(directory, rank).acquire().release()


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
    encoder: Encoder = field(repr=False)
    records: list = field(repr=False, default_factory=list)
    excluded: list[dict] = field(default_factory=list)  # files the index left out, with reasons
    sources: dict = field(repr=False, default_factory=dict)  # video id -> SourceIdentity (dedup)
    augmented_clips: int = 0  # of estimated_clips: augmented copies (--augment K: K × 8 a video)
    augmented_share: float = 0.0  # augmented clips / plain clips: the extra encoder time and disk
    layers: tuple[int, ...] | None = None  # `--layers` blocks stored per clip (None: the output)
    headers: dict[int, dict] = field(repr=False, default_factory=dict)  # done index -> header read


def distributed_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def task_shards(num_shards: int, task: int, tasks: int) -> list[int]:
    """The shards rank (or array task) `task` of `tasks` writes: every `tasks`-th from `task` on,
    whatever node runs it, so its output does not depend on where it ran."""
    return [i for i in range(num_shards) if i % tasks == task]


def decode_workers(requested: int | None, cpus: int) -> int:
    """Decoding processes: `requested` capped at the cores (with a warning), or, when None, one per
    core but one (the main process encodes and writes), at most MAX_AUTO_WORKERS."""
    if requested is None:
        return min(MAX_AUTO_WORKERS, cpus - 1)
    if requested > cpus:
        log.warning("--workers %d > %d cores: using %d", requested, cpus, cpus)
        return cpus
    return requested


def probe_frame_count(path: Path) -> int | None:
    """Frame count from container metadata without decoding; None where it has none (FLV).
    A folder of frames: its frame files, counted by listing it."""
    if path.is_dir():
        return count_folder_frames(path) or None
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


def estimate_clips(
    records: list,
    dataset: str,
    plan: ClipPlan,
    hop: int,
    step: int | None = None,
    draws: int = 0,
    seed: int = 0,
) -> tuple[int, str]:
    """Clips of the whole dataset (training draws included), from a sample of videos probed
    without decoding; refuses a `stride` step that leaves every probed video one frame."""
    if not records:
        return 0, "no videos"
    every = max(1, len(records) // PROBE_SAMPLE)
    sample = records[::every][:PROBE_SAMPLE]
    counts = [probe_frame_count(r.path) for r in sample]
    probed = sum(c is not None for c in counts)
    if plan == "stride":
        refuse_one_frame_step(counts, step, len(records))
    typical = TYPICAL_FRAMES[dataset]
    clips = [len(plan_clips(max(c or typical, 1), plan, hop, step)) for c in counts]
    if plan in DRAW_PLANS:  # the actual draws of the sampled videos (identical ones stored once)
        clips = [
            n + len(train_draws(max(c or typical, 1), plan, step, draws, seed, r.video_id))
            for n, c, r in zip(clips, counts, sample, strict=True)
        ]
    estimate = round(np.mean(clips) * len(records))
    note = (
        f"estimate from {len(sample)} of {len(records)} videos: {probed} by container metadata, "
        f"{len(sample) - probed} at a typical {dataset} length of {typical} frames"
    )
    return estimate, note


def refuse_one_frame_step(counts: list[int | None], step: int | None, videos: int) -> None:
    """ConfigError when `--frame-step` is at least every known frame count (probed without
    decoding): every clip would be its first frame repeated 16 times."""
    known = [c for c in counts if c]
    K = FRAME_STEP if step is None else step
    if known and K >= max(known):
        raise ConfigError(
            f"--frame-step {K}: the {len(known)} videos probed (of {videos}) have at most "
            f"{max(known)} frames, so every clip would be one frame repeated; give a "
            f"--frame-step below {max(known)} (1: consecutive frames)"
        )


def _shard_header_if_done(
    directory: Path,
    index: int,
    ids: list[str],
    fp: str,
    num_shards: int,
    aliases: dict | None = None,
) -> dict | None:
    """The header of a complete shard file of this cache holding exactly the planned videos."""
    path = directory / shard_name(index)
    if not path.exists():
        return None
    try:
        h = read_shard_header(path)
    except CacheError as err:
        log.warning("%s is unreadable, redoing it: %s", path, err)
        return None
    if (h["fingerprint"], h["video_ids"], h["num_shards"]) != (fp, ids, num_shards) or (
        aliases is not None and h["aliases"] != aliases
    ):
        log.warning("%s holds other videos or settings (an earlier --limit?); redoing it", path)
        return None
    return h


def _shard_aliases(alias_of: dict[str, str], ids: list[str]) -> dict[str, str]:
    """alias -> stored id, for the stored ids of one shard (sorted)."""
    mine = set(ids)
    return {a: c for a, c in sorted(alias_of.items()) if c in mine}


def byte_size(n: int) -> str:
    """Bytes in the largest unit that keeps the number >= 1, three significant digits: "14.2 MB"
    (a tiny cache's "need 0.0 GB, have 0.0 GB" said nothing)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def _log_source_check(config: ExtractConfig, done: list[int], shards: list[list[str]]) -> None:
    """Say how the sources of the complete shards kept were compared with the recorded ones."""
    if not done:
        return
    files = sum(len(shards[i]) for i in done)
    if config.trust_size_mtime:
        log.warning(
            "--trust-size-mtime: kept %d complete shard(s) (%d videos) whose source files "
            "have the recorded size and mtime_ns, without reading them; a file rewritten "
            "with the same size and mtime keeps its old tokens",
            len(done),
            files,
        )
    else:
        log.info(
            "kept %d complete shard(s): the content (xxh3-128) of their %d source files is "
            "the one recorded",
            len(done),
            files,
        )


def plan_extraction(
    config: ExtractConfig,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    encoder: Encoder | None = None,
) -> ExtractPlan:
    """Index the dataset, load the encoder, name the cache directory and estimate the work.

    Raises CacheError when the directory is not writable, or when the estimated size of the shards
    still to write exceeds the free disk space (unless `config.allow_low_disk`).
    """
    rank, world_size, local_rank = _ranks(rank, world_size, local_rank)
    dataset = check_dataset(config.dataset)
    device = str(resolve_device(config.device, local_rank))
    encoder = _encoder(config, device, encoder)
    records, excluded = _records(config, dataset)
    settings = cache_settings(config, encoder)
    fp = fingerprint(settings)
    directory = _cache_directory(config, dataset, encoder, fp)
    check_lock(directory, rank)  # refuse at once, before any work, if another run holds it
    digests: dict[str, str] = {}
    sources: dict[str, SourceIdentity] = {}
    if config.dedup:
        digests, sources = stream_digests(
            records, config.root, directory / STREAMS_MEMO, config.trust_size_mtime
        )
    alias_of = duplicate_streams(digests)
    shards = assign_shards(
        [r.video_id for r in records if r.video_id not in alias_of], config.shard_size
    )
    mine = task_shards(len(shards), rank, world_size)
    kept = _ShardsKept(config, directory, fp, shards, alias_of)
    kept.check(mine, {r.video_id: r for r in records}, sources)
    blocks = layer_blocks(settings)
    pending_videos = sum(len(shards[i]) for i in mine if i not in kept.done)  # decoded, not shared
    sizes = _estimate_size(config, encoder, records, dataset, blocks, pending_videos)
    plan = ExtractPlan(
        config=config,
        directory=directory,
        settings=settings,
        fingerprint=fp,
        rank=rank,
        world_size=world_size,
        device=device,
        shards=shards,
        mine=mine,
        done=kept.done,
        changed=kept.changed,
        workers=decode_workers(config.workers, available_cpus()),
        alias_of=alias_of,
        sources=sources,
        headers=kept.headers,
        videos=len(records),
        pending_videos=pending_videos,
        free_bytes=shutil.disk_usage(directory).free,
        records=records,
        excluded=excluded,
        encoder=encoder,
        layers=blocks,
        **sizes,
    )
    if plan.pending_bytes > plan.free_bytes and not config.allow_low_disk:
        raise CacheError(
            f"the shards still to write need about {byte_size(plan.pending_bytes)} "
            f"({plan.estimate_note}), {directory} has {byte_size(plan.free_bytes)} free; free "
            f"space, choose another --cache, or allow it (--allow-low-disk)"
        )
    return plan


def _encoder(config: ExtractConfig, device: str, encoder: Encoder | None) -> Encoder:
    """The encoder given (checked against the config's name), else the config's, loaded."""
    if encoder is None:
        return load_encoder(
            config.encoder, config.checkpoint, device, config.weights, dtype=config.dtype
        )
    if encoder.name != config.encoder:
        raise ConfigError(f"config names encoder {config.encoder!r}, got a loaded {encoder.name!r}")
    return encoder


def _records(config: ExtractConfig, dataset: str) -> tuple[list, list[dict]]:
    """The dataset's records (the first `config.limit`) and its unexpected exclusions."""
    found = scan_dataset(
        dataset,
        config.root,
        list_file=config.list_file,
        modalities=None if config.modality is None else (config.modality,),
    )
    excluded = [
        {"path": str(e.path), "reason": e.reason, "detail": e.detail}
        for e in found.excluded
        if e.reason not in EXPECTED_EXCLUSIONS
    ]
    return found.records[: config.limit], excluded


def _ranks(
    rank: int | None, world_size: int | None, local_rank: int | None
) -> tuple[int, int, int]:
    """(rank, world_size, local_rank): the arguments given, else torchrun's environment."""
    env_rank, env_world, env_local = distributed_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    local_rank = (env_local if local_rank is None else local_rank) if world_size > 1 else 0
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside world size {world_size}")
    return rank, world_size, local_rank


def _cache_directory(config: ExtractConfig, dataset: str, encoder: Encoder, fp: str) -> Path:
    """The cache's directory, created and written once; CacheError when it is not writable or
    holds a cache of another fingerprint (with the same 8-digit prefix)."""
    name = cache_dir_name(config.encoder, encoder.resolution, fp)
    directory = Path(config.cache_root) / dataset / name
    check_writable(directory, CacheError, "cache directory ")
    try:
        existing = read_manifest(directory)["fingerprint"]
    except CacheError:
        existing = fp
    if existing != fp:
        raise CacheError(
            f"{directory} holds a cache with fingerprint {existing}, not {fp}; "
            f"move it away (8-hex-digit prefixes collided)"
        )
    return directory


class _ShardsKept:
    """Which of this rank's complete shards a run keeps (`done`, with the `headers` read to know
    it) and which it re-encodes because their source files changed (`changed`)."""

    def __init__(
        self,
        config: ExtractConfig,
        directory: Path,
        fp: str,
        shards: list[list[str]],
        alias_of: dict[str, str],
    ):
        self.config, self.directory, self.fp = config, directory, fp
        self.shards, self.alias_of = shards, alias_of
        self.done: list[int] = []
        self.changed: dict[int, list[str]] = {}
        self.headers: dict[int, dict] = {}

    def check(self, mine: list[int], by_id: dict, sources: dict[str, SourceIdentity]) -> None:
        """Read the header of each of `mine` (none with --force: it redoes this rank's shards) and
        compare the sources of the complete ones; refuse changed ones with --no-reencode."""
        config, shards = self.config, self.shards
        for i in [] if config.force else mine:
            header = _shard_header_if_done(
                self.directory,
                i,
                shards[i],
                self.fp,
                len(shards),
                _shard_aliases(self.alias_of, shards[i]),
            )
            if header is None:
                continue
            if changes := changed_sources(
                header, by_id, config.root, config.trust_size_mtime, sources
            ):
                self.changed[i] = changes
            else:
                self.done.append(i)
                self.headers[i] = header
        _log_source_check(config, self.done, shards)
        if self.changed:
            self._refuse_or_warn()

    def _refuse_or_warn(self) -> None:
        files = [c for i in sorted(self.changed) for c in self.changed[i]]
        names = ", ".join(shard_name(i) for i in sorted(self.changed))
        if self.config.no_reencode:
            raise CacheError(
                f"{len(files)} cached video(s) in {names} of {self.directory} came from other "
                f"files than those now under {self.config.root} (same names, other content):\n  "
                + "\n  ".join(files)
                + "\nrerun without --no-reencode to re-encode those shards, or give the original "
                "--root"
            )
        log.warning(
            "re-encoding %s: %d source file(s) changed since they were encoded: %s",
            names,
            len(files),
            "; ".join(files),
        )


def _estimate_size(
    config: ExtractConfig,
    encoder: Encoder,
    records: list,
    dataset: str,
    layers: tuple[int, ...] | None,
    pending_videos: int,
) -> dict:
    """The plan's clip and byte estimates (augmented copies included), as ExtractPlan fields;
    refuses a pool2 store on an odd token grid before any work."""
    clips, note = estimate_clips(
        records,
        dataset,
        config.plan,
        config.hop,
        config.frame_step,
        config.train_draws,
        config.augment_seed,
    )
    extra = config.augment * REFERENCE_TRAIN_CLIPS * len(records)  # augmented copies
    plain_clips, clips = clips, clips + extra
    store = StoreFormat.parse(config.store)
    store.grid(encoder.grid)  # refuses pool2 on an odd grid before any work
    values_bytes, scale_bytes = store.clip_nbytes(
        num_views(config.views),
        len(layers or (0,)) * encoder.num_tokens // store.pool**2,
        store.dim(encoder.embed_dim),
    )
    clip_bytes = values_bytes + scale_bytes
    return {
        "estimated_clips": clips,
        "estimated_bytes": round(clips * clip_bytes * DISK_MARGIN),
        "pending_bytes": round(
            clips * clip_bytes * DISK_MARGIN * pending_videos / max(len(records), 1)
        ),
        "estimate_note": note,
        "augmented_clips": extra,
        "augmented_share": extra / max(plain_clips, 1),
    }


def projected_clip_rate(encoder: str) -> tuple[float, float] | None:
    """(clips/s, TFLOP a clip) of `encoder` on one ASSUMED_GPU at ASSUMED_MFU of its bf16 peak;
    None where the architecture comes with the weights (V-JEPA 2: no FLOP count before loading)."""
    vit = get_spec(encoder).vit
    if vit is None:
        return None
    tflop = forward_flops(vit) / 1e12
    return ASSUMED_MFU * ASSUMED_PEAK_TFLOPS / tflop, tflop


def _duration(seconds: float) -> str:
    """ "40 s", "13.7 min", "2.5 h"."""
    if seconds < 120:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_encoder_estimate(plan: ExtractPlan) -> str:
    """The encoder (GPU) time of the whole cache at the projected clip rate, with its
    assumptions."""
    projected = projected_clip_rate(plan.config.encoder)
    if projected is None:
        return f"no FLOP count for {plan.config.encoder} (its architecture comes with its weights)"
    rate, tflop = projected
    return (
        f"~{_duration(plan.estimated_clips / rate)} for ~{plan.estimated_clips} clips at a "
        f"projected {rate:.3g} clips/s: {tflop:.3g} TFLOP a clip at {ASSUMED_MFU:.0%} of one "
        f"{ASSUMED_GPU}'s {ASSUMED_PEAK_TFLOPS:g} TFLOPS bf16 peak (not measured; "
        "benchmarks/RESULTS.md)"
    )


SIZE_FORMATS = ("fp16", "int8", "pool2", "pool2+int8")  # the store formats `format_plan` prices


def format_sizes(plan: ExtractPlan) -> str:
    """The whole cache's estimated size in each of SIZE_FORMATS (`vjfer cache convert` makes
    the others from an fp16 cache)."""
    enc, views, sizes = plan.encoder, num_views(plan.config.views), []
    for name in SIZE_FORMATS:
        store = StoreFormat.parse(name)
        if store.pool > 1 and any(n % 2 for n in enc.grid[1:]):
            continue  # pool2 needs an even token grid
        values, scales = store.clip_nbytes(
            views, enc.num_tokens // store.pool**2, store.dim(enc.embed_dim)
        )
        sizes.append(
            f"{name} ~{plan.estimated_clips * (values + scales) * DISK_MARGIN / 1e9:.3g} GB"
        )
    return ", ".join(sizes)


def format_sampling(config: ExtractConfig) -> str:
    """What a `stride`/`segments` plan caches, and the loader it follows."""
    draws = (
        f"{config.train_draws} training draws a video (identical ones stored once, seed "
        f"{config.augment_seed})"
    )
    if config.plan == "stride":
        K = config.step() or 1
        return (
            f"stride {K}: MAE-DFER's test views (the first and last 16 of frames 0, {K}, {2 * K}, "
            f"…) and {draws} of its training rule (kinetics.py)"
        )
    return (
        f"segments: DFER-CLIP's 16 segment middles and {draws} of a random frame per segment "
        "(dataloader/video_dataloader.py)"
    )


def format_plan(plan: ExtractPlan) -> str:
    """What `vjfer extract` prints before it starts."""
    rank = f" (rank {plan.rank} of {plan.world_size})" if plan.world_size > 1 else ""
    norm = "through the final norm" if plan.encoder.layer_norm == "final" else "no norm"
    augmented_gb = plan.estimated_bytes * plan.augmented_clips / max(plan.estimated_clips, 1) / 1e9
    return "\n".join(
        [
            f"cache      {plan.directory}{rank}",
            f"videos     {plan.videos} in {len(plan.shards)} shards; this run: "
            f"{plan.pending_videos} videos, {len(plan.mine) - len(plan.done)} shards "
            f"({len(plan.done)} already complete)",
            f"clips      ~{plan.estimated_clips} ({plan.estimate_note})",
            *(
                [f"protocol   {get_protocol(plan.config.protocol).plan_line(plan.config.dataset)}"]
                if plan.config.protocol
                else []
            ),
            *(
                [f"sampling   {format_sampling(plan.config)}"]
                if plan.config.plan in DRAW_PLANS
                else []
            ),
            f"size       ~{plan.estimated_bytes / 1e9:.2f} GB in all, "
            f"~{plan.pending_bytes / 1e9:.2f} GB to write; {plan.free_bytes / 1e9:.1f} GB free",
            f"formats    {format_sizes(plan)}",
            *(
                [
                    f"layers     {len(plan.layers)} blocks ({', '.join(map(str, plan.layers))} of "
                    f"{plan.encoder.depth}, 0-based, {norm}) a clip: "
                    f"~{plan.estimated_bytes / len(plan.layers) / 1e9:.2f} GB per layer"
                ]
                if plan.layers
                else []
            ),
            f"encoder    {plan.config.encoder} on {plan.device}, batch {plan.config.batch_size} "
            f"clips, {plan.workers} decoding workers",
            f"gpu time   {format_encoder_estimate(plan)}",
            *(
                [
                    f"augmented  {plan.config.augment} × {REFERENCE_TRAIN_CLIPS} = "
                    f"{plan.config.augment * REFERENCE_TRAIN_CLIPS} extra clips a video, "
                    f"~{plan.augmented_clips} in all (included above): ~{augmented_gb:.2f} GB and "
                    f"~{100 * plan.augmented_share:.0f} % more encoder (GPU) time than the plain "
                    "clips, plus a second, native-size decode of each video for RandAugment"
                ]
                if plan.config.augment
                else []
            ),
            *(
                [
                    f"changed    {len(plan.changed)} complete shard(s) re-encoded: their source "
                    f"files changed ({sum(map(len, plan.changed.values()))} videos; see the log)"
                ]
                if plan.changed
                else []
            ),
            *(
                [
                    f"excluded   {len(plan.excluded)} files when indexing (listed in "
                    "failures.jsonl; `vjfer index --all` shows them)"
                ]
                if plan.excluded
                else []
            ),
        ]
    )
