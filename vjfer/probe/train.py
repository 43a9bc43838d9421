"""Stage 2: train probes from the feature cache alone, many at once from one read of the cache.

Follows the reference's frozen-evaluation recipe (facebookresearch/jepa
`evals/video_classification_frozen/eval.py`, as used by Eing et al.): AdamW with weight decay on
weights only (2-D and up, which includes the query), lr 1e-3 cosine to 0 and weight decay 0.01
cosine to 1e-6 per optimizer step without warm-up, gradient-norm clip 1.0, plain cross-entropy,
and the final-epoch probe as the result (nothing is selected on the test fold).

**One pass, many heads.** A `Head` is one probe in training: its own training videos, batches,
optimizer, schedules and step count. `train_heads` runs the epochs: each epoch visits the needed
videos in one seeded order, reads each video's tokens once (`vjfer.probe.reader`), and hands the
sample to every head that trains on that video. Five folds, inner-validation heads and a grid of
learning rates all share the read, which at ViT-H/384 sizes is what stage 2's time is made of.
A head's result does not depend on which other heads share the pass:

- the epoch order is one permutation of *all* cached videos, seeded by (`order_seed`, epoch), and a
  head sees it restricted to its own videos (a uniformly random order of them);
- clip and view choices are drawn for every cached video from a generator seeded by
  (head seed, epoch), so they do not depend on which videos the pass needs;
- the probe's initialisation comes from the head's seed alone.

So fold k trained alone equals fold k trained beside the other four, bit for bit on the CPU.

A training sample is one video's 8 clips: `reference` takes the cached clips nearest to the
reference's 8 training clips (`vjfer.video.plan_clips(n, "reference-train")`), `random` draws 8
cached clips with replacement each epoch. `pool="joint"` concatenates their tokens into one
[8·N, D] sequence (the reference's "attend across segments"); `pool="clip"` scores each clip alone
and, as the reference does without attending across segments, averages the per-clip losses.
Spatial views: `train_view="random"` draws one cached view per clip and epoch, `"middle"` takes
view V // 2 (the centre crop of `3crop`, the only view of `center`).

Stage 2 never opens a video or loads the encoder: everything comes from `vjfer.cache`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vjfer.cache import Cache
from vjfer.clips import ROLE_EVAL
from vjfer.env import resolve_device
from vjfer.errors import ConfigError, SplitError
from vjfer.probe.evaluate import AUTOCAST_DTYPES, clip_probabilities, clip_table
from vjfer.probe.model import PROBES, build_probe
from vjfer.probe.reader import ClipReader, ReadStats, open_source
from vjfer.probe.samples import (
    REFERENCE_CLIPS,
    augmented_copies,
    copies_per_clip,
    draw_copies,
    draw_samples,
    epoch_order,
    fixed_clips,
    pick_copies,
    plain_clips,
    plain_index,
)
from vjfer.probe.token_augment import token_masks
from vjfer.store import decode_raw

log = logging.getLogger(__name__)

ProbeKind = Literal["attentive", "linear"]
ClipChoice = Literal["reference", "random"]
Pool = Literal["joint", "clip"]
TrainView = Literal["random", "middle", "augmented"]
Autocast = Literal["bf16", "fp16", "fp32"]
InMemory = Literal["auto", "yes", "no", "gpu"]
CHOICES: dict[str, tuple[str, ...]] = {
    "probe": PROBES,
    "clip_choice": ("reference", "random"),
    "pool": ("joint", "clip"),
    "train_view": ("random", "middle", "augmented"),
    "autocast": ("bf16", "fp16", "fp32"),
    "in_memory": ("auto", "yes", "no", "gpu"),
}
POSTFIX_EVERY = 10  # videos between progress-bar updates (each reads the losses from the device)
ADAMW_STATES = 4  # float32 copies per parameter while training: weight, gradient, two moments
PER_HEAD = ("lr", "weight_decay", "seed")  # what may differ between heads of one pass


@dataclass(frozen=True)
class TrainConfig:
    """Every training option and its default (the reference's, where it has one)."""

    probe: ProbeKind = "attentive"
    epochs: int = 20
    batch_size: int = 4  # videos per optimizer step
    lr: float = 1e-3
    final_lr: float = 0.0
    weight_decay: float = 0.01
    final_weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 1.0
    num_heads: int = 16
    clips_per_video: int = 8
    clip_choice: ClipChoice = "reference"
    pool: Pool = "joint"
    train_view: TrainView = "random"
    seed: int = 0  # the probe's initialisation and its clip/view draws
    order_seed: int = 0  # the order a pass visits videos in; shared by every head of the pass
    device: str = "auto"  # auto: cuda when available, else cpu
    in_memory: InMemory = "auto"  # auto: RAM when the training tokens fit; gpu: on the device
    num_workers: int = 4  # reader threads (reads in flight), capped at the cores
    prefetch: int = 4  # videos read ahead of training (bounds the reader's memory)
    eval_batch_clips: int = 64
    # The probe's autocast dtype on CUDA (the CPU always runs float32). The reference runs
    # torch.cuda.amp.autocast(dtype=torch.float16) with a GradScaler (its `use_bfloat16: true`
    # enables that fp16 autocast despite the name); vjfer's default is bf16, which needs no scaler.
    autocast: Autocast = "bf16"
    # vjfer's own approximation (probe/token_augment.py): per clip, drop the tokens outside a random
    # box of the token grid and, at p 0.25, a random box inside it; off: the reference has no such
    token_augment: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # from JSON, betas arrive as a list
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "clips_per_video", "num_heads", "eval_batch_clips",
                     "prefetch"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.train_view == "augmented" and self.clip_choice != "reference":
            raise ConfigError("train_view='augmented' trains on copies of the reference's 8 "
                              f"clips: it needs clip_choice='reference', got {self.clip_choice!r}")  # fmt: skip
        if self.clip_choice == "reference" and self.clips_per_video != REFERENCE_CLIPS:
            raise ConfigError(f"clip_choice='reference' takes {REFERENCE_CLIPS} clips; "
                              f"clips_per_video is {self.clips_per_video}")  # fmt: skip


@dataclass
class FoldResult:
    """One fold's trained probe (on the CPU), its test predictions and metrics."""

    fold: int
    probe: nn.Module
    clips: pd.DataFrame  # evaluate.clip_table rows
    videos: pd.DataFrame  # evaluate.vote_videos rows
    metrics: dict  # evaluate.score_predictions, plus fold, counts and training figures
    history: list[dict] = field(default_factory=list)  # per epoch: loss, seconds, clips/s, reads


# ---------------------------------------------------------------------------- schedules (pure)


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Cosine from `start` to `end` over `total` optimizer steps; `step` counts from 0.

    As jepa's WarmupCosineSchedule/CosineWDSchedule, which advance before each step, step s runs
    at progress (s + 1) / total: the last step runs at `end`.
    """
    if not 0 <= step < total:
        raise ValueError(f"step {step} outside 0..{total - 1}")
    progress = (step + 1) / total
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(step: int, total: int, config: TrainConfig = TrainConfig()) -> float:
    return cosine(step, total, config.lr, config.final_lr)


def wd_at(step: int, total: int, config: TrainConfig = TrainConfig()) -> float:
    return cosine(step, total, config.weight_decay, config.final_weight_decay)


# ---------------------------------------------------------------------------- one head


def param_groups(probe: nn.Module) -> list[dict]:
    """Weight decay on parameters with 2 or more dims (weights, the query); none on biases/norms."""
    decay = [p for p in probe.parameters() if p.ndim >= 2]
    rest = [p for p in probe.parameters() if p.ndim < 2]
    return [{"params": decay, "decay": True}, {"params": rest, "decay": False, "weight_decay": 0.0}]


def _loss(probe: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, pool: str,
          mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Cross-entropy of tokens [B, K, N, D] (mask: bool [B, K, N], True = kept, or None)."""
    B, K, N, D = tokens.shape
    if pool == "joint":
        joint = None if mask is None else mask.reshape(B, K * N)
        logits = probe(tokens.reshape(B, K * N, D), joint)  # the K clips' tokens as one sequence
        return F.cross_entropy(logits.float(), labels)
    alone = None if mask is None else mask.reshape(B * K, N)
    logits = probe(tokens.reshape(B * K, N, D), alone)  # each clip alone; mean of per-clip losses
    return F.cross_entropy(logits.float(), labels.repeat_interleave(K))


class Head:
    """One probe in training: its videos (rows of `cache.videos`), batches, optimizer and schedules.

    `feed` takes one sample at a time (tokens [K, N, D] on the device, float16) and steps the
    optimizer whenever `batch_size` samples are waiting; `end_epoch` steps on the rest.
    """

    def __init__(self, name: str, config: TrainConfig, rows: np.ndarray, cache: Cache,
                 device: torch.device):  # fmt: skip
        self.name, self.config, self.device = name, config, device
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        if len(self.rows) == 0:
            raise SplitError(f"head {name}: no training videos")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            probe = build_probe(config.probe, cache.embed_dim, len(cache.class_names),
                                config.num_heads)  # fmt: skip
        self.probe = probe.to(device).train()
        self.optimizer = torch.optim.AdamW(param_groups(self.probe), lr=config.lr,
                                           betas=config.betas, weight_decay=config.weight_decay)  # fmt: skip
        self.total = config.epochs * math.ceil(len(self.rows) / config.batch_size)
        self.step = 0
        self.history: list[dict] = []
        self._pending: list[tuple[torch.Tensor, int, torch.Tensor | None]] = []
        self._loss_sum, self._batches = torch.zeros((), device=device), 0
        cuda = device.type == "cuda"
        self._amp = AUTOCAST_DTYPES[config.autocast] if cuda else None  # the CPU trains in float32
        # fp16 needs loss scaling (as the reference's GradScaler); bf16 and fp32 do not
        self._scaler = torch.amp.GradScaler("cuda", enabled=self._amp is torch.float16)

    def feed(self, sample: torch.Tensor, label: int, mask: torch.Tensor | None = None) -> None:
        """One sample [K, N, D]; `mask` bool [K, N] (True = kept) with token augmentation."""
        self._pending.append((sample, label, mask))
        if len(self._pending) == self.config.batch_size:
            self._step()

    def _step(self) -> None:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.total, config)
            if group["decay"]:
                group["weight_decay"] = wd_at(self.step, self.total, config)
        tokens = torch.stack(
            [s for s, _, _ in self._pending]
        ).float()  # [B, K, N, D], on the device
        labels = torch.tensor([y for _, y, _ in self._pending], device=self.device)
        masks = [m for _, _, m in self._pending if m is not None]
        assert len(masks) in (0, len(self._pending)), "a head masks every sample or none"
        mask = torch.stack(masks) if masks else None  # [B, K, N]
        self._pending = []
        with torch.autocast(
            "cuda", dtype=self._amp or torch.float32, enabled=self._amp is not None
        ):
            loss = _loss(self.probe, tokens, labels, config.pool, mask)
        self._scaler.scale(loss).backward()  # a no-op scale unless fp16
        self._scaler.unscale_(self.optimizer)  # clip the true gradients, as the reference does
        nn.utils.clip_grad_norm_(self.probe.parameters(), config.clip_grad)
        self._scaler.step(self.optimizer)
        self._scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._loss_sum += loss.detach()  # no per-step host sync on CUDA
        self.step, self._batches = self.step + 1, self._batches + 1

    def running_loss(self) -> float:
        return self._loss_sum.item() / max(self._batches, 1)

    def end_epoch(self, epoch: int, seconds: float, reads: ReadStats) -> None:
        if self._pending:
            self._step()
        self.history.append({
            "epoch": epoch + 1, "loss": self.running_loss(), "seconds": seconds,
            "clips_per_s": len(self.rows) * self.config.clips_per_video / seconds,
            "pass_bytes_read": reads.bytes, "pass_read_gb_s": reads.gb_per_s,
        })  # fmt: skip
        self._loss_sum, self._batches = torch.zeros((), device=self.device), 0


# ---------------------------------------------------------------------------- the pass


@dataclass(frozen=True)
class PassPlan:
    """What a pass will hold and read, printed before training starts."""

    heads: int
    videos: int  # videos the pass reads each epoch
    epochs: int
    clip_bytes: int
    epoch_bytes: int  # bytes of tokens one epoch needs (each needed clip once)
    probe_bytes: int  # parameters + gradients + AdamW moments of every head
    reader_bytes: int  # tokens in flight in the reader
    pending_bytes: int  # at most: samples waiting in heads' batches, and one float32 batch
    held: str  # "disk", "ram" or the device
    held_bytes: int

    def describe(self) -> str:
        gb = 1e9
        return (f"{self.heads} head(s) trained in one pass over {self.videos} videos × "
                f"{self.epochs} epochs: {self.epoch_bytes / gb:.2f} GB of tokens per epoch "
                f"(tokens from {self.held}{'' if self.held == 'disk' else f', {self.held_bytes / gb:.2f} GB held'}); "
                f"memory: probes {self.probe_bytes / gb:.2f} GB, reader {self.reader_bytes / gb:.2f} GB, "
                f"waiting samples <= {self.pending_bytes / gb:.2f} GB")  # fmt: skip


def train_heads(
    cache, heads: Sequence[Head], config: TrainConfig, progress: bool = True
) -> PassPlan:
    """Train every head for `config.epochs` epochs, reading each needed video once per epoch.

    The heads must agree on everything but lr, weight decay and seed (see PER_HEAD).
    """
    for head in heads:
        if replace(head.config, lr=config.lr, weight_decay=config.weight_decay,
                   seed=config.seed) != config:  # fmt: skip
            raise ConfigError(
                f"head {head.name}: only {PER_HEAD} may differ between heads of a pass"
            )
    device = resolve_device(config.device)
    videos = cache.videos
    member = np.zeros((len(heads), len(videos)), dtype=bool)  # member[h, i]: head h trains on i
    for h, head in enumerate(heads):
        member[h, head.rows] = True
    needed = np.flatnonzero(member.any(axis=0))
    n_clips, labels = videos["n_clips"].to_numpy(), videos["label"].to_numpy()
    ids = videos["video_id"].tolist()
    # Roles: `random` draws among the plain clips (never an augmented copy), `reference` takes the
    # exact training clips where the cache has them, `augmented` one stored copy of each.
    plain = {i: plain_clips(cache.clip_roles(ids[i])) for i in needed.tolist()}
    n_draw = n_clips.copy()  # rows not needed keep any count: the draws do not depend on it
    n_draw[needed] = [len(plain[i]) for i in needed]
    fixed = None
    if config.clip_choice == "reference":
        fixed = fixed_clips(cache, needed)
    copies = augmented_copies(cache, ids, needed) if config.train_view == "augmented" else None
    seeds = sorted({head.config.seed for head in heads})
    if copies is not None:
        wanted = {ids[i]: np.unique(copies[i]) for i in needed.tolist()}
    elif fixed is not None:
        wanted = {ids[i]: np.unique(fixed[i]) for i in needed}
    else:
        wanted = {ids[i]: plain[i] for i in needed}
    reader, held, where = open_source(cache, wanted, in_memory=config.in_memory,
                                      threads=config.num_workers, prefetch=config.prefetch,
                                      device=device, progress=progress)  # fmt: skip
    source = held or reader
    size = reader.index.clip_bytes
    K = config.clips_per_video
    sample_bytes = K * cache.num_tokens * cache.embed_dim * 2  # float16 [K, N, D]
    if fixed is not None and copies is None:
        per_video = [len(c) for c in wanted.values()]
    else:  # at most K draws per seed, and never more than the video's clips
        per_video = [min(len(c), K * len(seeds)) for c in wanted.values()]
    plan = PassPlan(
        heads=len(heads), videos=len(needed), epochs=config.epochs, clip_bytes=size,
        epoch_bytes=sum(per_video) * size,
        probe_bytes=sum(ADAMW_STATES * 4 * sum(p.numel() for p in h.probe.parameters())
                        for h in heads),
        reader_bytes=config.prefetch * max(per_video) * size,
        pending_bytes=(len(heads) * (config.batch_size - 1) + 2 * config.batch_size) * sample_bytes,
        held=where, held_bytes=held.nbytes if held is not None else 0,
    )  # fmt: skip
    log.info("%s", plan.describe())

    bar = tqdm(
        total=config.epochs * len(needed), desc="training", unit="video", disable=not progress
    )
    for epoch in range(config.epochs):
        start = time.perf_counter()
        order = epoch_order(len(videos), config.order_seed, epoch)
        order = order[member[:, order].any(axis=0)]
        draws = {s: draw_samples(n_draw, fixed, cache.num_views, config.clips_per_video,
                                 config.train_view == "random", s, epoch) for s in seeds}  # fmt: skip
        if copies is not None:  # one stored copy per training clip, drawn per (seed, epoch)
            draws = {s: (pick_copies(copies, draw_copies(len(videos), copies_per_clip(copies), s, epoch)),
                         v) for s, (_, v) in draws.items()}  # fmt: skip
        elif fixed is None:  # draws index the plain clips
            draws = {s: (plain_index(c, plain), v) for s, (c, v) in draws.items()}
        takers = [np.flatnonzero(member[:, i]).tolist() for i in order]  # head numbers per video
        requests = []
        for i, who in zip(order, takers, strict=True):
            chosen = np.concatenate([draws[heads[h].config.seed][0][i] for h in who])
            requests.append((ids[i], np.unique(chosen)))
        source.stats = ReadStats()
        for n, (i, who, (_, union), tokens) in enumerate(
            zip(order, takers, requests, source.stream(requests), strict=True)
        ):
            # stored bytes cross to the device; int8 / fp8 become float16 [C', V, N, D] there
            tokens = decode_raw(tokens.to(device, non_blocking=True), cache.store, cache.shape)
            masks = {}  # per head seed: bool [K, N] token masks of this video, this epoch
            if config.token_augment:
                masks = {s: torch.as_tensor(token_masks(s, epoch, int(i), K, cache.grid), device=device)
                         for s in {heads[h].config.seed for h in who}}  # fmt: skip
            for h in who:
                seed = heads[h].config.seed
                clips, views = draws[seed]
                positions = torch.as_tensor(np.searchsorted(union, clips[i]), device=device)
                heads[h].feed(tokens[positions, torch.as_tensor(views[i], device=device)],
                              int(labels[i]), masks.get(seed))  # fmt: skip
            bar.update()
            if progress and (n % POSTFIX_EVERY == 0 or n == len(order) - 1):
                loss = np.mean([heads[h].running_loss() for h in who])
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", GB=f"{source.stats.bytes / 1e9:.1f}",
                                GB_s=f"{source.stats.gb_per_s:.2f}", refresh=False)  # fmt: skip
        seconds = time.perf_counter() - start
        for head in heads:
            head.end_epoch(epoch, seconds, source.stats)
    bar.close()
    reader.close()
    return plan


def eval_clips(cache: Cache, video_id: str) -> np.ndarray:
    """int64 [C']: the video's evaluation windows (every clip of a cache without roles)."""
    return np.flatnonzero(cache.clip_roles(video_id) == ROLE_EVAL)


def evaluate_heads(cache: Cache, assignments: dict[str, tuple[nn.Module, np.ndarray]], config: TrainConfig,
                   progress: bool = True) -> tuple[dict[str, pd.DataFrame], ReadStats]:  # fmt: skip
    """Score every cached evaluation window of each head's videos, reading each video once for all
    its heads.

    Args:
        assignments: name -> (probe, rows of `cache.videos` it evaluates).
    Returns:
        name -> `evaluate.clip_table` rows (views averaged), and what was read.
    """
    device = resolve_device(config.device)
    videos = cache.videos
    rows = np.unique(np.concatenate([r for _, r in assignments.values()]))
    # evaluation windows only: never the `reference` plan's training clips or augmented copies
    requests = [(videos.at[i, "video_id"], eval_clips(cache, videos.at[i, "video_id"]))
                for i in rows]  # fmt: skip
    reader = ClipReader(cache, threads=config.num_workers, prefetch=config.prefetch,
                        pin=device.type == "cuda")  # fmt: skip
    evaluators: dict[int, list[str]] = {int(i): [] for i in rows}
    for name, (probe, who) in assignments.items():
        probe.to(device).eval()
        for i in who:
            evaluators[int(i)].append(name)
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in assignments}
    bar = tqdm(total=len(rows), desc="evaluating", unit="video", disable=not progress)
    for i, (vid, clips), tokens in zip(rows, requests, reader.stream(requests), strict=True):
        tokens = decode_raw(tokens.to(device, non_blocking=True), cache.store, cache.shape)
        starts = cache.clip_frames(vid)[clips, 0]
        for name in evaluators[int(i)]:
            probs = clip_probabilities(assignments[name][0], tokens, device,
                                       config.eval_batch_clips, config.autocast)  # fmt: skip
            tables[name].append(clip_table(vid, int(videos.at[i, "actor"]), int(videos.at[i, "label"]),
                                           starts, probs, cache.class_names))  # fmt: skip
        bar.update()
    bar.close()
    reader.close()
    return {name: pd.concat(t, ignore_index=True) for name, t in tables.items()}, reader.stats


def rows_of(cache: Cache, video_ids: Sequence[str]) -> np.ndarray:
    """Row numbers in `cache.videos` of `video_ids`."""
    where = pd.Index(cache.videos["video_id"])
    rows = where.get_indexer(list(video_ids))
    if (rows < 0).any():
        missing = [v for v, r in zip(video_ids, rows, strict=True) if r < 0]
        raise SplitError(
            f"{len(missing)} videos are not in cache {cache.path}, first {missing[0]!r}"
        )
    return rows


def train_probe(cache: Cache, train: pd.DataFrame, config: TrainConfig, fold: int = 0,
                progress: bool = True) -> tuple[nn.Module, list[dict]]:  # fmt: skip
    """Train one probe on the `train` rows of `cache.videos`; returns it (on the CPU) and its history."""
    head = Head(f"fold {fold}", config, rows_of(cache, train["video_id"]), cache,
                resolve_device(config.device))  # fmt: skip
    train_heads(cache, [head], config, progress=progress)
    return head.probe.cpu().eval(), head.history
