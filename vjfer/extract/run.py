"""The run: `extract()` takes the lock, writes `extract.json`, decodes, encodes and writes this
rank's pending shards, and (rank 0) waits for the other ranks' shards and writes the manifest (or,
as an array task, `finish_manifest`: whichever task finds every shard complete writes it);
`format_extract_summary` is what `vjfer extract` prints at the end.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vjfer.cache import VideoEntry, read_manifest
from vjfer.cache.format import MANIFEST, PARTIAL_SUFFIX, layer_blocks, shard_name
from vjfer.cache.reader import EXTRACT_RECORD
from vjfer.cache.writer import atomic_write_text, manifest_from_shards, shard_header, write_manifest
from vjfer.env import available_cpus, environment
from vjfer.errors import CacheError, ConfigError
from vjfer.extract.config import ExtractConfig, command_words, config_record
from vjfer.extract.pipeline import _Batcher, _DecodeTasks, _WriterThread
from vjfer.extract.plan import (
    ExtractPlan,
    _shard_aliases,
    _shard_header_if_done,
    cache_lock,
    plan_extraction,
)
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


def _header(plan: ExtractPlan, index: int) -> dict:
    enc = plan.encoder
    return shard_header(
        dataset=plan.settings["dataset"],
        fp=plan.fingerprint,
        settings=plan.settings,
        grid=enc.grid,
        embed_dim=enc.embed_dim,
        num_views=num_views(plan.config.views),
        index=index,
        num_shards=len(plan.shards),
        shard_size=plan.config.shard_size,
        video_ids=plan.shards[index],
        aliases=_shard_aliases(plan.alias_of, plan.shards[index]),
    )


@dataclass
class _Encoded:
    """What `_encode_shards` wrote: videos (those sharing another's stream included), clips,
    bytes, the failures, and the videos sharing another's stream."""

    videos: int = 0
    clips: int = 0
    bytes: int = 0
    failures: list[dict] = field(default_factory=list)
    shared: int = 0


def _encode_shards(plan: ExtractPlan, progress: bool) -> _Encoded:
    """Decode, encode and write this rank's pending shards."""
    pending = [i for i in plan.mine if i not in plan.done]
    by_id = {r.video_id: r for r in plan.records}
    todo = [(i, by_id[v]) for i in pending for v in plan.shards[i]]
    if not todo:
        return _Encoded()
    loader = _decode_loader(plan, [r for _, r in todo])
    batcher = _Batcher(
        plan.encoder,
        plan.config.batch_size,
        num_views(plan.config.views),
        layer_blocks(plan.settings),
    )
    items = iter(loader)  # starts the workers (fork) before the writer thread exists
    writer = _WriterThread()
    bar = tqdm(total=len(todo), unit="video", disable=not progress, smoothing=0.05)
    feed = _ShardFeed(plan, batcher, writer, bar)
    try:
        for item in items:
            shard, record = todo[item["index"]]
            feed.take(shard, record, item)
            bar.update(1)
        feed.end_shard()
    finally:
        bar.close()
        writer.close()
    feed.done.bytes = sum(p.stat().st_size for p in writer.written)
    return feed.done


def _decode_loader(plan: ExtractPlan, records: list) -> DataLoader:
    """The decoding workers' loader: item i is `records[i]` decoded, or its error."""
    cfg, enc = plan.config, plan.encoder
    # a second (preparing) thread per decoding process only where the cores allow it
    threads = 2 if available_cpus() >= 2 * max(plan.workers, 1) else 1
    face = cfg.face()
    tasks = _DecodeTasks(
        [str(r.path) for r in records],
        enc.resolution,
        cfg.views,
        cfg.plan,
        cfg.hop,
        threads,
        cfg.max_lost_frames,
        cfg.decode_timeout,
        [r.video_id for r in records],
        FaceCropper(face) if face.method != "none" else None,
        (cfg.augment, cfg.augment_seed, enc.mean, enc.std),
        cfg.frame_step,
        cfg.train_draws,
        cfg.max_frame_pixels,
    )
    cuda = torch.device(plan.device).type == "cuda"
    if cuda:  # pinned memory, events and streams follow the current device
        torch.cuda.set_device(torch.device(plan.device))
    return DataLoader(
        tasks,
        batch_size=None,
        shuffle=False,
        num_workers=plan.workers,
        pin_memory=cuda,
        prefetch_factor=2 if plan.workers else None,
    )


class _ShardFeed:
    """Takes the decoded videos of one rank in shard order: hands them to the batcher, and the
    encoded videos (with a row for each video sharing their stream) and the failures to the
    writer thread, one shard at a time; counts what it wrote in `done`."""

    def __init__(self, plan: ExtractPlan, batcher: _Batcher, writer: _WriterThread, bar: tqdm):
        self.plan, self.batcher, self.writer, self.bar = plan, batcher, writer, bar
        enc = plan.encoder
        self.layers = len(layer_blocks(plan.settings) or (0,))
        # stored by the writer thread
        self.codec = Codec(StoreFormat.parse(plan.config.store), enc.grid, layers=self.layers)
        self.by_id = {r.video_id: r for r in plan.records}
        self.followers: dict[str, list[str]] = {}  # video id -> ids sharing its stream
        for alias, stored in plan.alias_of.items():
            self.followers.setdefault(stored, []).append(alias)
        self.current: int | None = None
        self.done = _Encoded()
        self.start = time.perf_counter()

    def take(self, shard: int, record, item: dict) -> None:
        """One decoded video (or its error) of `shard`; a new shard ends the one before."""
        plan, enc = self.plan, self.plan.encoder
        if shard != self.current:
            if self.current is not None:
                self.end_shard()
            self.writer.put(
                "begin",
                plan.directory / shard_name(shard),
                _header(plan, shard),
                num_views(plan.config.views),
                self.layers * enc.num_tokens,
                enc.embed_dim,
                self.codec,
            )
            self.current = shard
        source = item["source"]
        if source is not None:  # recorded relative to the dataset root
            source = {**source, "path": relative_source(record.path, plan.config.root)}
        if "error" in item:
            self._fail(record, item["error"], source)
        else:
            self.batcher.add(record, item, SourceIdentity(**source))
            self._write(self.batcher.run())

    def end_shard(self) -> None:
        """Encode what the batcher holds and complete the shard being written."""
        self._write(self.batcher.run(final=True))
        self.writer.put("note", "encode_batch_size", self.batcher.micro)
        self.writer.put("end")

    def _write(self, entries: list[VideoEntry]) -> None:
        done = self.done
        for entry in entries:
            self.writer.put("entry", entry)
            done.videos, done.clips = done.videos + 1, done.clips + len(entry.frames)
            for alias in self.followers.get(entry.video_id, []):  # a row, no tokens
                r = self.by_id[alias]
                self.writer.put(
                    "alias",
                    dataclasses.replace(
                        entry,
                        video_id=alias,
                        label=r.label,
                        actor=r.actor,
                        fold=r.fold,
                        tokens=np.empty(0, np.float16),
                        source=self.plan.sources[alias],
                        alias_of=entry.video_id,
                    ),
                )
                done.videos, done.shared = done.videos + 1, done.shared + 1
        self.bar.set_postfix_str(
            f"{done.clips / (time.perf_counter() - self.start):.1f} clips/s, "
            f"{len(done.failures)} failed",
            refresh=False,  # tqdm redraws at its own pace
        )

    def _fail(self, record, error: str, source: dict | None) -> None:
        """A video that could not be used, and every video sharing its stream."""
        fail = {
            "video_id": record.video_id,
            "path": str(record.path),
            "reason": error,
            "source": source,
        }
        log.warning("skipping %s: %s", record.path, error)
        self.done.failures.append(fail)
        self.writer.put("failure", fail)
        for alias in self.followers.get(record.video_id, []):
            twin = {
                "video_id": alias,
                "path": str(self.by_id[alias].path),
                "reason": f"same video stream as {record.video_id}: {error}",
                "source": dataclasses.asdict(self.plan.sources[alias]),
            }
            self.done.failures.append(twin)
            self.writer.put("failure", twin)


def _wait_for_shards(plan: ExtractPlan, stall_timeout: float) -> dict[int, dict]:
    """Rank 0: wait until every shard of the cache is complete, and return the headers of the
    other ranks' shards; give up after `stall_timeout` seconds in which no shard appeared and no
    partial shard grew."""
    waiting = [i for i in range(len(plan.shards)) if i not in plan.mine]
    state, changed = None, time.monotonic()
    found: dict[int, dict] = {}
    while True:
        for i in waiting:
            header = _shard_header_if_done(
                plan.directory, i, plan.shards[i], plan.fingerprint, len(plan.shards)
            )
            if header is not None:
                found[i] = header
        waiting = [i for i in waiting if i not in found]
        if not waiting:
            return found
        partials = sorted(plan.directory.glob("shard-*.h5" + PARTIAL_SUFFIX))
        now_state = (len(waiting), [(p.name, p.stat().st_size) for p in partials if p.exists()])
        if now_state != state:
            state, changed = now_state, time.monotonic()
        if time.monotonic() - changed > stall_timeout:
            names = ", ".join(shard_name(i) for i in waiting[:5])
            raise CacheError(
                f"no progress on {len(waiting)} shard(s) of other ranks for {stall_timeout:.0f} s "
                f"(first: {names}); rerun to finish, then `vjfer cache info {plan.directory}`"
            )
        time.sleep(min(0.5, stall_timeout / 5))


def extract(
    config: ExtractConfig,
    progress: bool = True,
    *,
    plan: ExtractPlan | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    stall_timeout: float = 600.0,
    finish: Literal["rank0", "last"] = "rank0",
) -> ExtractSummary:
    """Extract (or resume) the cache `config` describes; see the module docstring.

    Args:
        config: the options.
        progress: show a progress bar (rank 0 only).
        plan: from `plan_extraction` (made here when None).
        rank, world_size: override torchrun's RANK / WORLD_SIZE (tests).
        stall_timeout: rank 0 gives up waiting for other ranks' shards after this many seconds
            without progress.
        finish: "rank0": rank 0 waits for every shard, then writes the manifest (torchrun);
            "last": every rank (an array task, `vjfer.cluster`) waits for none and
            `finish_manifest` writes it once, in the rank that finds every shard complete.
    """
    if plan is None:
        plan = plan_extraction(config, rank=rank, world_size=world_size)
    elif plan.config != config:
        raise ConfigError("extract() was given a plan made for another config")
    directory = plan.directory
    lock = cache_lock(directory, plan.rank).acquire()
    threads = torch.get_num_threads()  # the encoder shares the cores with the decoding processes
    torch.set_num_threads(max(1, available_cpus() - plan.workers))
    try:
        return _extract(config, plan, progress, stall_timeout, finish)
    finally:
        torch.set_num_threads(threads)
        lock.release()


def _extract(
    config: ExtractConfig, plan: ExtractPlan, progress: bool, stall_timeout: float, finish: str
) -> ExtractSummary:
    directory = plan.directory
    start = time.perf_counter()
    _prepare_directory(config, plan)
    done = _encode_shards(plan, progress and plan.rank == 0)
    seconds = time.perf_counter() - start
    if finish == "last":
        complete = finish_manifest(config, plan, done)
    else:
        complete = plan.rank == 0 and _write_manifest(config, plan, done, stall_timeout)
    kept = [plan.headers[i] for i in plan.done]  # read while planning
    failures = [f for h in kept for f in h["failures"]] + done.failures
    summary = ExtractSummary(
        cache_dir=directory,
        videos_done=done.videos,
        videos_cached=sum(len(h["videos"]["video_id"]) for h in kept),
        videos_shared=done.shared,
        failed=len(failures),
        clips=done.clips,
        bytes=done.bytes,
        seconds=seconds,
        clips_per_s=done.clips / seconds if seconds > 0 else 0.0,
        shards_written=len(plan.mine) - len(plan.done),
        shards_skipped=len(plan.done),
        complete=complete,
        failures=failures,
        rank=plan.rank,
    )
    log.info(
        "rank %d: %d videos (%d clips) encoded into %s in %.1f s, %d failed",
        plan.rank,
        done.videos,
        done.clips,
        directory,
        seconds,
        len(failures),
    )
    return summary


def _prepare_directory(config: ExtractConfig, plan: ExtractPlan) -> None:
    """Before encoding: the extraction record, no manifest over shards in work, the shards
    --force rebuilds and those past the dataset's last one removed."""
    directory = plan.directory
    record_path = directory / EXTRACT_RECORD
    if plan.rank == 0 and (len(plan.done) < len(plan.mine) or not record_path.exists()):
        record = {
            "config": config_record(config),
            "command": command_words(config),
            "environment": environment(),
        }
        atomic_write_text(record_path, json.dumps(record, indent=1))
    if len(plan.done) < len(plan.mine):
        (directory / MANIFEST).unlink(missing_ok=True)  # no manifest claims a shard in work
    if config.force:
        for i in plan.mine:
            (directory / shard_name(i)).unlink(missing_ok=True)
    if plan.rank == 0:  # shards past the last one are left from a dataset that had more videos
        for path in directory.glob("shard-*.h5*"):
            index = re.match(r"shard-(\d+)\.h5", path.name)
            if index and int(index[1]) >= len(plan.shards):
                log.warning("removing %s: the dataset now fills %d shards", path, len(plan.shards))
                path.unlink()


def _write_manifest(
    config: ExtractConfig, plan: ExtractPlan, done: _Encoded, stall_timeout: float
) -> bool:
    """Rank 0, once every rank's shards are written: the manifest (kept as it is when nothing was
    re-encoded); whether the cache is complete."""
    headers = {**plan.headers, **_wait_for_shards(plan, stall_timeout)}
    return _manifest_of(config, plan, done, headers)


@contextmanager
def _manifest_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on `.extract-manifest.lock`, waited for: array tasks finishing together
    decide one at a time which of them writes the manifest."""
    fd = os.open(directory / ".extract-manifest.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # drops the lock


def finish_manifest(config: ExtractConfig, plan: ExtractPlan, done: _Encoded | None = None) -> bool:
    """Array tasks (`finish="last"`) and their submitter: under the manifest lock, when every shard
    of the cache is complete, write the manifest, unless the one there already says the same (a
    task that finished first wrote it), so it is written once and never over missing shards;
    whether the cache is complete."""
    with _manifest_lock(plan.directory):
        headers = dict(plan.headers)
        for i in range(len(plan.shards)):
            if i not in headers:
                header = _shard_header_if_done(
                    plan.directory, i, plan.shards[i], plan.fingerprint, len(plan.shards)
                )
                if header is None:
                    return False  # a later task writes it
                headers[i] = header
        return _manifest_of(config, plan, done or _Encoded(), headers)


def _manifest_of(
    config: ExtractConfig, plan: ExtractPlan, done: _Encoded, headers: dict[int, dict]
) -> bool:
    """Write the manifest of the shards' `headers` unless the one there says the same (kept as it
    is when nothing was re-encoded); whether the cache is complete."""
    directory = plan.directory
    extra = {"config": config_record(config), "excluded": plan.excluded}
    manifest = manifest_from_shards(
        directory, extra, {shard_name(i): h for i, h in headers.items()}
    )
    try:
        old = read_manifest(directory)
    except CacheError:
        old = None
    if old is not None and old["complete"] and not done.videos and not done.failures:
        manifest = old  # nothing re-encoded: the manifest (and its root) stays with its shards
    elif old != manifest:
        write_manifest(directory, manifest)
    return manifest["complete"]


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
