"""The extraction's machinery: decoding workers (`_DecodeTasks`, one video per DataLoader item),
the batcher that encodes clips across video boundaries on the encoder's device (halving its calls
on CUDA out-of-memory, copying tokens back through pinned buffers), and the shard writer thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
from collections import deque
from dataclasses import astuple
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch.utils.data import Dataset

from vjfer import augment
from vjfer.cache import VideoEntry
from vjfer.cache.writer import ShardWriter
from vjfer.clips import (
    DRAW_PLANS,
    ROLE_AUGMENTED,
    ROLE_DRAW,
    ClipPlan,
    clip_roles,
    plan_clips,
    train_draws,
)
from vjfer.decode import decode_native, decode_video, source_identity
from vjfer.errors import CacheError, VideoError
from vjfer.face import FaceCropper
from vjfer.prepare import SourceIdentity, Views, normalize_clips

log = logging.getLogger(__name__)

WRITE_QUEUE = 8  # finished videos waiting for the writer thread


def lost_fraction(lost: int, decoded: int, container: int) -> float:
    """Lost frames as a fraction of the frames the video should have (index count, or more)."""
    return lost / max(container, decoded + lost, 1)


class _DecodeTasks(Dataset):
    """Item i decodes video i (one per task): the frames its clips use, and its clip plan.

    A video that lost more than `max_lost` of its frames, or took longer than `timeout` seconds,
    is an error item (a failure entry), as is one that does not decode at all.
    """

    def __init__(
        self,
        paths: list[str],
        resolution: int,
        views: Views,
        plan: ClipPlan,
        hop: int,
        threads: int,
        max_lost: float,
        timeout: float | None,
        ids: list[str],
        face: FaceCropper | None,
        augment: tuple[int, int, tuple, tuple],
        step: int | None = None,
        draws: int = 0,
        max_pixels: int | None = None,
    ):
        self.paths, self.resolution, self.views = paths, resolution, views
        self.augment = augment  # (copies, seed, mean, std); the seed also seeds the draws
        self.plan, self.hop, self.threads = plan, hop, threads
        self.step, self.draws = step, draws  # stride's frame step; stride/segments' draws
        self.max_lost, self.timeout, self.max_pixels = max_lost, timeout, max_pixels
        self.ids, self.face = ids, face

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        face = None
        try:
            if self.face is not None:  # the box first: haar decodes a sample of frames itself
                face = self.face.locate(self.paths[i], self.ids[i])
            crop = astuple(face.box) if face is not None and face.box is not None else None
            video = decode_video(
                self.paths[i],
                self.resolution,
                self.views,
                self.threads,
                crop,
                timeout=self.timeout,
                max_pixels=self.max_pixels,
            )
        except VideoError as err:
            try:  # the identity of a file that failed: a repaired file is retried on resume
                source = dataclasses.asdict(source_identity(self.paths[i]))
            except OSError:
                source = None
            return {"index": i, "error": err.reason, "source": source}
        lost, container = video.lost_frames, video.container_frames
        if (share := lost_fraction(lost, video.n_frames, container)) > self.max_lost:
            return {
                "index": i,
                "source": dataclasses.asdict(video.source),
                "error": f"lost {lost} of {max(container, video.n_frames + lost)} frames "
                f"({100 * share:.0f} %), more than --max-lost-frames {self.max_lost:g}: a "
                f"truncated or damaged file; re-download it (or raise --max-lost-frames)",
            }
        clip_frames, roles = self._plan(i, video.n_frames)  # [C, 16], [C]
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
            "odd_size_frames": video.odd_size_frames,
            "container_frames": container,
            "source": dataclasses.asdict(video.source),
        }

    def _plan(self, i: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Video i's clips and their roles: the plan's, then (stride, segments) its training draws
        (ROLE_DRAW), seeded per (seed, video, draw)."""
        step = self.step if self.plan == "stride" else None
        clip_frames = plan_clips(n_frames, self.plan, self.hop, step)  # [C, 16]
        roles = clip_roles(n_frames, self.plan, self.hop, step)  # [C]
        if self.plan in DRAW_PLANS:
            drawn = train_draws(n_frames, self.plan, step, self.draws, self.augment[1], self.ids[i])
            clip_frames = np.concatenate([clip_frames, drawn])
            roles = np.concatenate([roles, np.full(len(drawn), ROLE_DRAW, dtype=np.uint8)])
        return clip_frames, roles

    def _augmented(self, i: int, n_frames: int, crop) -> dict:
        """The augmented copies of video i's 8 training clips (`vjfer.augment`), normalised float
        [K·8, 3, 16, R, R], with their frame indices and roles (ROLE_AUGMENTED + copy)."""
        copies, seed, mean, std = self.augment
        train = plan_clips(n_frames, "reference-train")  # [8, 16]: the reference's exact clips
        used = np.unique(train)
        native = decode_native(self.paths[i], used, crop, self.timeout, self.max_pixels)
        clips = augment.augment_video_clips(
            native,
            np.searchsorted(used, train),
            self.ids[i],
            copies,
            seed,
            self.resolution,
            mean,
            std,
        )
        roles = np.repeat(ROLE_AUGMENTED + np.arange(copies), len(train)).astype(np.uint8)
        return {"augmented": clips, "frames": np.tile(train, (copies, 1)), "roles": roles}


class _Pending:
    """A decoded video whose clips are (partly) still to encode."""

    def __init__(
        self,
        record,
        item: dict,
        device: torch.device,
        shape: tuple[int, int, int],
        source: SourceIdentity,
    ):
        self.record, self.source = record, source
        self.lost_frames, self.container_frames = (
            int(item["lost_frames"]),
            int(item["container_frames"]),
        )
        self.odd_size_frames = int(item["odd_size_frames"])
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
        self.face_box: tuple[int, int, int, int] | None = None
        if "face_box" in item and int(item["face_box"][0]) >= 0:
            x, y, w, h = (int(v) for v in item["face_box"])
            self.face_box = (x, y, w, h)
        self.C = len(self.clip_frames)
        self.tokens = np.empty((self.C, *shape), dtype=np.float16)  # [C, V, N, D]
        self.sent = self.filled = 0

    def entry(self) -> VideoEntry:
        r = self.record
        return VideoEntry(
            r.video_id,
            r.label,
            r.actor,
            r.fold,
            self.n_frames,
            self.fps,
            self.clip_frames,
            self.tokens,
            face_status=self.face_status,
            face_box=self.face_box,
            lost_frames=self.lost_frames,
            container_frames=self.container_frames,
            odd_size_frames=self.odd_size_frames,
            source=self.source,
            clip_role=self.clip_role,
        )


class _Batcher:
    """Queues decoded videos and encodes their clips in batches of `batch_size` clips.

    On CUDA the tokens of batch k are copied to pinned memory asynchronously and collected after
    batch k+1 is queued, so the GPU is not idle while the host sorts results into videos.
    """

    def __init__(self, encoder, batch_size: int, views: int, blocks: tuple[int, ...] | None = None):
        self.encoder, self.B = encoder, batch_size
        self.micro = batch_size  # clips per encoder call; halved on CUDA out-of-memory
        self.views = views
        self.blocks = blocks  # `--layers` (0-based), stacked along N; None: the encoder's output
        self.device = torch.device(encoder.device)
        layers = 1 if blocks is None else len(blocks)
        self.shape = (views, layers * encoder.num_tokens, encoder.embed_dim)  # (V, L·N, D)
        self.queue: deque[_Pending] = deque()
        self.queued = 0  # clips not yet sent to the encoder
        self.inflight: deque = deque()
        self.cuda = self.device.type == "cuda"
        # two pinned host buffers, alternating: batch k+1 is copied while batch k is collected
        self.slots = (
            [
                (
                    torch.empty((batch_size, *self.shape), dtype=torch.float16, pin_memory=True),
                    torch.empty((), dtype=torch.bool, pin_memory=True),
                )
                for _ in range(2)
            ]
            if self.cuda
            else []
        )
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
                assert p.augmented is not None, "only augmented copies follow the plain clips"
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

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        """One encoder call: [c, N, D]; with blocks [c, L, N, D] -> [c, L·N, D] (one chunk)."""
        if self.blocks is None:
            return self.encoder.encode(x)
        return self.encoder.encode(x, self.blocks).flatten(1, 2)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encode [b·V, 3, T, R, R] in calls of `micro` clips; on CUDA out-of-memory, halve
        `micro` and retry (the batch size in effect is recorded in each shard)."""
        while True:
            step = self.micro * self.views
            try:
                return torch.cat([self._call(x[i : i + step]) for i in range(0, len(x), step)])
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


class _WriterThread:
    """Writes shards from a bounded queue; an error is kept and raised in the main thread."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.error: BaseException | None = None
        self.error_shard: Path | None = None
        self.written: list[Path] = []
        self.thread = threading.Thread(target=self._loop, name="vjfer-shard-writer", daemon=True)
        self.thread.start()

    def put(self, *op) -> None:
        if self.error is not None:
            self._raise(self.error)
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
                elif writer is None:  # every other op needs an open shard
                    raise CacheError(f"the shard writer thread got {op!r} before 'begin'")
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

    def _raise(self, err: BaseException) -> NoReturn:
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
            self._raise(self.error)
