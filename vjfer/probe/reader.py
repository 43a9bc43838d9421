"""Stage 2's token reader: cached clips from disk (or memory) into batch memory at disk speed.

A clip is one uncompressed HDF5 chunk, so its bytes sit contiguously in its shard. `ClipReader`
reads each with `vjfer.cache.read_clip` (one `os.preadv`, two with scales) straight into a fixed
pool of `prefetch` reused buffers (pinned on CUDA): no HDF5 chunk cache, no copy, no decoding on the
CPU, and the GIL released so several threads keep reads in flight. Fresh buffers would cost a page
fault per 4 KiB, which made warm reads ten times slower than a memcpy. Tokens and their scales stay
as stored until the device (`vjfer.store.decode_raw`), and the checksum covers exactly those bytes.

`HeldTokens` holds chosen clips in RAM or on the GPU when they fit, and serves the same requests.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from vjfer.cache import Cache
from vjfer.cache.chunks import read_clip
from vjfer.cache.format import corrupt_clip
from vjfer.env import available_cpus
from vjfer.errors import CacheError, ConfigError

log = logging.getLogger(__name__)

MEMORY_SHARE = 0.5  # held tokens may use at most this share of the free RAM (or GPU memory)
Request = tuple[str, np.ndarray]  # (video_id, sorted clip indices within the video)


@dataclass
class ReadStats:
    """What a reader delivered: clips and bytes (from disk, or from memory when held)."""

    clips: int = 0
    bytes: int = 0
    seconds: float = 0.0  # wall time between the first request and the last delivery

    @property
    def gb_per_s(self) -> float:
        return self.bytes / 1e9 / self.seconds if self.seconds > 0 else 0.0


def clip_bytes(cache: Cache) -> int:
    """Bytes of one stored clip: V·N·D values in the store format (+ V·N fp16 scales: int8, fp8)."""
    return sum(cache.store.clip_nbytes(*cache.shape))


class ClipReader:
    """Reads requested clips of cached videos into float16 tensors [clips, V, N, D] (fp16 caches)
    or their stored bytes, uint8 [clips, clip bytes] (int8, fp8: `vjfer.store.decode_raw`).

    Args:
        threads: reads in flight at once, at most one per core (0: read in the calling thread).
        prefetch: videos read ahead of the consumer (the memory bound).
        pin: make the buffers pinned memory (for CUDA).
        verify: check every clip's bytes against its stored checksum (xxh3-64) as it is read;
            default: the cache's `verify` (on unless it was opened with verify=False).

    With threads, a delivered tensor lives in a pooled buffer and is valid only until the next one
    is requested: copy what you keep (to the device, or by indexing).
    """

    def __init__(
        self,
        cache: Cache,
        threads: int = 4,
        prefetch: int = 8,
        pin: bool = False,
        verify: bool | None = None,
    ):
        # More reading threads than cores only thrash: measured warm on 2 cores, 4 threads read at
        # 0.8x the rate of 2 (benchmarks/RESULTS.md, stage 2); a cold disk gains nothing from more.
        self.cache, self.threads, self.pin = cache, min(threads, available_cpus()), pin
        self.verify = cache.verify if verify is None else verify
        self.prefetch = max(1, prefetch)
        # every shard's chunk offsets up front: a shard that cannot be read raw fails here
        self.chunks = {s: cache.chunks(s) for s in sorted(cache.videos["shard"].unique())}
        self.clip_bytes = clip_bytes(cache)
        self.shape = (cache.num_views, cache.num_tokens, cache.embed_dim)  # (V, N, D)
        self.raw = cache.store.scaled  # deliver stored bytes rather than float16 tokens
        videos = cache.videos
        where = zip(videos["shard"], videos["first_clip"], videos["n_clips"], strict=True)
        self._where = dict(zip(videos["video_id"], where, strict=True))  # id -> shard, first, count
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stats = ReadStats()

    def _fd(self, shard: str) -> int:
        with self._lock:
            if shard not in self._fds:
                self._fds[shard] = os.open(self.cache.path / shard, os.O_RDONLY)
            return self._fds[shard]

    def read_into(self, video_id: str, clips: np.ndarray, out: torch.Tensor) -> None:
        """Read `clips` (indices within the video) of `video_id` into `out` [clips, V, N, D]."""
        shard, first, n_clips = self._where[video_id]
        if len(clips) and (clips.min() < 0 or clips.max() >= n_clips):
            raise CacheError(f"{video_id}: clips {clips.tolist()} outside 0..{n_clips - 1}")
        fd, chunks, size = self._fd(shard), self.chunks[shard], self.clip_bytes
        flat = out.numpy().reshape(-1).view(np.uint8).data  # a memoryview of the bytes
        for i, c in enumerate(clips):
            if not read_clip(fd, chunks, first + c, flat[i * size : (i + 1) * size], self.verify):
                raise corrupt_clip(self.cache.path, shard, first + c, video_id, int(c))

    def _buffer(self, clips: int) -> torch.Tensor:
        if self.raw:
            return torch.empty((clips, self.clip_bytes), dtype=torch.uint8)
        return torch.empty((clips, *self.shape), dtype=torch.float16)

    def stream(self, requests: Sequence[Request]) -> Iterator[torch.Tensor]:
        """Tokens float16 [len(clips), V, N, D] (or stored bytes) of each request, in order."""
        start = time.perf_counter()
        if self.threads == 0:
            for vid, clips in requests:
                out = self._buffer(len(clips))
                self.read_into(vid, clips, out)
                self._count(len(clips), start)
                yield out
            return
        most = max((len(c) for _, c in requests), default=0)
        slots: queue.Queue = queue.Queue()  # a fixed pool, each buffer big enough for any request
        for _ in range(self.prefetch):
            buffer = self._buffer(most)
            slots.put((buffer.pin_memory() if self.pin else buffer, None))
        with ThreadPoolExecutor(self.threads, thread_name_prefix="vjfer-read") as pool:
            pending: deque[tuple[Future, torch.Tensor, tuple[torch.Tensor, object]]] = deque()
            todo = iter(requests)

            def submit() -> bool:
                request = next(todo, None)
                if request is None:
                    return False
                vid, clips = request
                slot = slots.get()  # never blocks: a slot is returned before each submit
                if slot[1] is not None:
                    slot[1].synchronize()  # the copy to the device out of it has finished
                out = slot[0][: len(clips)]
                pending.append((pool.submit(self.read_into, vid, clips, out), out, slot))
                return True

            while len(pending) < self.prefetch and submit():
                pass
            while pending:
                future, out, slot = pending.popleft()
                future.result()
                self._count(len(out), start)
                yield out
                event = None  # the consumer has queued its copy: reuse the slot after that
                if self.pin and torch.cuda.is_available():
                    event = torch.cuda.Event()
                    event.record()
                slots.put((slot[0], event))
                submit()

    def _count(self, clips: int, start: float) -> None:
        self.stats.clips += clips
        self.stats.bytes += clips * self.clip_bytes
        self.stats.seconds = time.perf_counter() - start

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}


class HeldTokens:
    """Chosen clips of every needed video, held in RAM or on the GPU; serves `stream` like a reader.

    `clips[video_id]` lists the held clip indices; a request must ask for a subset of them.
    """

    def __init__(
        self, reader: ClipReader, wanted: dict[str, np.ndarray], device: torch.device, progress=None
    ):
        self.clip_bytes = reader.clip_bytes
        self.clips = {vid: np.asarray(c) for vid, c in wanted.items()}
        self.tokens: dict[str, torch.Tensor] = {}
        for vid, tokens in zip(self.clips, reader.stream(list(self.clips.items())), strict=True):
            self.tokens[vid] = tokens.to(device, copy=True)  # the stream's buffer is reused
            if progress is not None:
                progress(len(tokens) * self.clip_bytes)
        self.stats = ReadStats()

    @property
    def nbytes(self) -> int:
        return sum(len(c) for c in self.clips.values()) * self.clip_bytes

    def stream(self, requests: Sequence[Request]) -> Iterator[torch.Tensor]:
        start = time.perf_counter()
        for vid, clips in requests:
            positions = np.searchsorted(self.clips[vid], clips)
            out = self.tokens[vid][torch.as_tensor(positions)]
            self.stats.clips += len(clips)
            self.stats.bytes += len(clips) * self.clip_bytes
            self.stats.seconds = time.perf_counter() - start
            yield out


def available_memory() -> int:
    """Bytes of RAM available now (MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def open_source(
    cache: Cache,
    wanted: dict[str, np.ndarray],
    *,
    in_memory: str,
    threads: int,
    prefetch: int,
    device: torch.device,
    progress: bool = True,
) -> tuple[ClipReader, HeldTokens | None, str]:
    """The reader, and the `wanted` clips held in memory when `in_memory` ("auto", "yes", "no",
    "gpu") and the memory there allow; returns (reader, held or None, "disk" | "ram" | device)."""
    reader = ClipReader(cache, threads=threads, prefetch=prefetch, pin=device.type == "cuda")
    need = sum(len(c) for c in wanted.values()) * reader.clip_bytes
    where = {"no": "disk", "yes": "ram", "gpu": str(device)}.get(in_memory)
    if where is None:  # auto
        available = available_memory()
        where = "ram" if need <= MEMORY_SHARE * available else "disk"
        log.info(
            "training tokens need %.2f GB, %.2f GB of RAM available: %s",
            need / 1e9,
            available / 1e9,
            "held in RAM" if where == "ram" else "read from disk each epoch",
        )
    if where == "disk":
        return reader, None, where
    if where != "ram" and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if need > MEMORY_SHARE * free:
            raise ConfigError(
                f"--in-memory gpu: the training tokens need {need / 1e9:.1f} GB, "
                f"{device} has {free / 1e9:.1f} GB free (at most half is used for "
                "tokens); use --in-memory auto or a compact cache"
            )
    bar = tqdm(total=need, desc="loading tokens", unit="B", unit_scale=True, disable=not progress)
    held = HeldTokens(reader, wanted, device if where != "ram" else torch.device("cpu"), bar.update)
    bar.close()
    return reader, held, where
