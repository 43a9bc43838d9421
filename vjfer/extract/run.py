"""The run: `extract()` takes the lock, writes `extract.json`, decodes, encodes and writes this
rank's pending shards, and (rank 0) waits for the other ranks' shards and writes the manifest;
`format_extract_summary` is what `vjfer extract` prints at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vjfer import cache
from vjfer.cache import VideoEntry
from vjfer.env import available_cpus, environment
from vjfer.errors import CacheError, ConfigError
from vjfer.extract.config import ExtractConfig, command_words, config_record
from vjfer.extract.lock import CacheLock
from vjfer.extract.pipeline import _Batcher, _DecodeTasks, _WriterThread
from vjfer.extract.plan import ExtractPlan, _shard_aliases, _shard_is_done, plan_extraction
from vjfer.extract.sources import relative_source
from vjfer.face import FaceCropper
from vjfer.prepare import SourceIdentity, num_views
from vjfer.store import Codec, StoreFormat

log = logging.getLogger(__name__)


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


def _cached_rows(directory: Path, indices: list[int]) -> int:
    """Videos (stored and sharing) held by the complete shards `indices`."""
    headers = [cache.read_shard_header(directory / cache.shard_name(i)) for i in indices]
    return sum(len(h["videos"]["video_id"]) for h in headers)


def _shard_failures(directory: Path, indices: list[int]) -> list[dict]:
    headers = [cache.read_shard_header(directory / cache.shard_name(i)) for i in indices]
    return [f for h in headers for f in h["failures"]]


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
    t, h, w = enc.grid
    blocks = cache.layer_blocks(plan.settings)
    L = 1 if blocks is None else len(blocks)
    codec = Codec(StoreFormat.parse(cfg.store), (t, h, w), layers=L)  # stored by the writer thread
    batcher = _Batcher(enc, cfg.batch_size, V, blocks)
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
                           V, L * enc.num_tokens, enc.embed_dim, codec)  # fmt: skip
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
        record = {"config": config_record(config), "command": command_words(config),
                  "environment": environment()}  # fmt: skip
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
