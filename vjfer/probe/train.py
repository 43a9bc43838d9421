"""Stage 2: train probes from the feature cache alone, many at once from one read of the cache.

The recipe is the reference's frozen evaluation (`vjfer.probe.config` holds the options and the
schedules, `vjfer.probe.head` one probe in training), with the final-epoch probe as the result
(nothing is selected on the test fold). This module is the pass: `plan_pass` (what it will hold and
read, a pure function), `train_heads` (the epochs) and `train_probe` (one head alone).

Each epoch visits the needed videos in one seeded order, reads each video's tokens once
(`vjfer.probe.reader`) and hands the sample to every head that trains on it. The order (a
permutation of all cached videos, seeded by (`order_seed`, epoch)), the clip and view draws (seeded
by (head seed, epoch), for every cached video) and the initialisation (the head's seed) never depend
on which heads share the pass, so fold k trained alone equals fold k trained beside the other four,
bit for bit on the CPU (docs/design.md, "Stage 2: one pass, many heads").

A training sample is one video's 8 clips (`clip_choice`: `reference`, the cached clips nearest the
reference's 8, or `random`, 8 drawn with replacement each epoch), their tokens concatenated into one
[8·N, D] sequence (`pool="joint"`) or each clip scored alone with the losses averaged (`"clip"`);
one view per clip (`train_view`: a random view, or `"middle"`, view V // 2).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from vjfer.cache import Cache
from vjfer.env import resolve_device
from vjfer.errors import ConfigError, TrainingError
from vjfer.probe.batched import HeadGroup, group_heads
from vjfer.probe.config import TrainConfig
from vjfer.probe.head import Head, SharedBatches
from vjfer.probe.reader import ReadStats, open_source
from vjfer.probe.resume import PassCheckpoint
from vjfer.probe.samples import EpochDraws, epoch_draws, epoch_order, rows_of, train_clips
from vjfer.store import decode_raw

log = logging.getLogger(__name__)

POSTFIX_EVERY = 10  # videos between progress-bar updates (each reads the losses from the device)
ADAMW_STATES = 4  # float32 copies per parameter while training: weight, gradient, two moments
SAVED_STATES = 3  # float32 copies per parameter in a checkpoint: weight and the two moments
PER_HEAD = (
    "lr",
    "weight_decay",
    "seed",
    "layer",
    "probe",
    "knn_k",
    "shots",
    "train_fraction",
)  # what may differ between heads of one pass


@dataclass
class FoldResult:
    """One fold's trained probe (on the CPU), its test predictions and metrics."""

    fold: int
    probe: nn.Module
    clips: pd.DataFrame  # evaluate.clip_table rows
    videos: pd.DataFrame  # evaluate.vote_videos rows
    metrics: dict  # evaluate.score_predictions, plus fold, counts and training figures
    history: list[dict] = field(default_factory=list)  # per epoch: loss, share of the pass, reads


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
    checkpoint_bytes: int = 0  # one checkpoint of the pass (`--checkpoint-every`; 0: none)

    def describe(self) -> str:
        gb = 1e9
        held = "" if self.held == "disk" else f", {self.held_bytes / gb:.2f} GB held"
        return (
            f"{self.heads} head(s) trained in one pass over {self.videos} videos × {self.epochs} "
            f"epochs: {self.epoch_bytes / gb:.2f} GB of tokens per epoch (tokens from "
            f"{self.held}{held}); memory: probes {self.probe_bytes / gb:.2f} GB, reader "
            f"{self.reader_bytes / gb:.2f} GB, waiting samples <= {self.pending_bytes / gb:.2f} "
            f"GB; checkpoint {self.checkpoint_bytes / gb:.2f} GB "
            f"({self.checkpoint_bytes / self.heads / 1e6:.1f} MB per head)"
        )


def plan_pass(
    config: TrainConfig,
    *,
    heads: int,
    probe_params: int,
    reads: Sequence[int],
    clip_bytes: int,
    sample_bytes: int,
    held: str,
    held_bytes: int,
) -> PassPlan:
    """What a pass of `heads` heads (`probe_params` parameters in all) holds and reads, given the
    clips an epoch reads of each needed video (`reads`) and the bytes of a clip and of a sample."""
    return PassPlan(
        heads=heads,
        videos=len(reads),
        epochs=config.epochs,
        clip_bytes=clip_bytes,
        epoch_bytes=sum(reads) * clip_bytes,
        probe_bytes=ADAMW_STATES * 4 * probe_params,
        reader_bytes=config.prefetch * max(reads) * clip_bytes,
        pending_bytes=(heads * (config.batch_size - 1) + 2 * config.batch_size) * sample_bytes,
        held=held,
        held_bytes=held_bytes,
        checkpoint_bytes=SAVED_STATES * 4 * probe_params if config.checkpoint_every else 0,
    )


@dataclass(frozen=True)
class TrainedPass:
    """A finished pass: its plan and, once per pass, each epoch's wall time and reads."""

    plan: PassPlan
    epochs: list[dict]  # per epoch: epoch, seconds, videos, bytes_read, read_gb_s

    @property
    def seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)


def _check_heads(heads: Sequence[Head], config: TrainConfig) -> None:
    for head in heads:
        if replace(head.config, **{k: getattr(config, k) for k in PER_HEAD}) != config:
            raise ConfigError(
                f"head {head.name}: only {PER_HEAD} may differ between heads of a pass"
            )


def _epoch_draws(
    cache: Cache, pool, config: TrainConfig, seeds: list[int], epoch: int
) -> dict[int, EpochDraws]:
    """Each head seed's draws of clips, views (and token boxes) for this epoch."""
    if config.token_augment and cache.layers is not None:
        raise ConfigError(
            f"--token-augment draws boxes on one layer's token grid; cache "
            f"{cache.path} stacks encoder blocks {list(cache.layers)} per clip: "
            "train without --token-augment, or on a cache of one layer"
        )
    grid = cache.grid if config.token_augment else None
    return {
        s: epoch_draws(
            pool,
            num_views=cache.num_views,
            clips_per_video=config.clips_per_video,
            train_view=config.train_view,
            grid=grid,
            seed=s,
            epoch=epoch,
        )
        for s in sorted(set(seeds))
    }


def _postfix(bar, heads: list[Head | HeadGroup], epoch: int, stats: ReadStats) -> None:
    """The progress bar's epoch, the running loss of `heads` and the read rate."""
    loss = np.mean([head.running_loss() for head in heads])
    gb, gb_s = f"{stats.bytes / 1e9:.1f}", f"{stats.gb_per_s:.2f}"
    bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", GB=gb, GB_s=gb_s, refresh=False)


def _sample(
    tokens: torch.Tensor, union: np.ndarray, draws: EpochDraws, i: int, device: torch.device
) -> torch.Tensor:
    """Video i's sample [K, N, D] of one seed's draws, from `tokens` [C', V, N, D] of the clips
    read (`union`, sorted clip numbers)."""
    positions = torch.as_tensor(np.searchsorted(union, draws.clips[i]), device=device)
    return tokens[positions, torch.as_tensor(draws.views[i], device=device)]


def _run_epoch(
    cache: Cache,
    heads: Sequence[Head | HeadGroup],
    source,
    member: np.ndarray,
    pool,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    bar,
    share_of: int | None = None,
) -> dict:
    """One epoch of the pass: visit the needed videos in the epoch's order, read each once, feed
    every head (or `HeadGroup`) that trains on it; `share_of` heads share the epoch's time
    (default: `heads`). Returns the epoch's record (`TrainedPass.epochs`)."""
    start = time.perf_counter()
    seeds = [head.config.seed for head in heads]
    draws = _epoch_draws(cache, pool, config, seeds, epoch)
    order = epoch_order(len(cache.videos), config.order_seed, epoch, config.epoch_order)
    # a k-NN head past its first epoch takes no more samples: the pass reads for the others only
    member = member & np.array([not head.idle for head in heads])[:, None]
    order = order[member[:, order].any(axis=0)]
    takers = [np.flatnonzero(member[:, i]).tolist() for i in order]  # head numbers per video
    # (video_id, sorted union of the clips its heads drew) per visited video
    requests = [
        (pool.ids[i], np.unique(np.concatenate([draws[seeds[h]].clips[i] for h in who])))
        for i, who in zip(order, takers, strict=True)
    ]
    labels = cache.videos["label"].to_numpy()
    source.stats = ReadStats()
    for n, (i, who, (_, union), tokens) in enumerate(
        zip(order, takers, requests, source.stream(requests), strict=True)
    ):
        # stored bytes cross to the device; int8 / fp8 become float16 [C', V, N, D] there
        tokens = decode_raw(tokens.to(device, non_blocking=True), cache.store, cache.shape)
        masks = {}  # per head seed: bool [K, N] token masks of this video, this epoch
        if config.token_augment:
            masks = {
                s: torch.as_tensor(draws[s].mask(int(i)), device=device)
                for s in {seeds[h] for h in who}
            }
        samples: dict[int, torch.Tensor] = {}  # per head seed: its sample [K, N, D], taken once
        for h in who:
            s = seeds[h]
            if s not in samples:  # heads of one seed draw the same clips and views
                samples[s] = _sample(tokens, union, draws[s], int(i), device)
            heads[h].feed(samples[s], int(labels[i]), masks.get(s))
        bar.update()
        if not bar.disable and (n % POSTFIX_EVERY == 0 or n == len(order) - 1):
            _postfix(bar, [heads[h] for h in who], epoch, source.stats)
    seconds = time.perf_counter() - start
    for head in heads:
        head.end_epoch(epoch, seconds / (share_of or len(heads)), source.stats)
    return {
        "epoch": epoch + 1,
        "seconds": seconds,
        "videos": len(order),
        "bytes_read": source.stats.bytes,
        "read_gb_s": source.stats.gb_per_s,
    }


def _check_finite(heads: Sequence[Head], config: TrainConfig, reported: set[str]) -> None:
    """TrainingError naming a head whose loss was not finite this epoch, unless the pass goes on
    past it (`on_nonfinite="skip"`); `reported`: the heads already logged as failed."""
    for head in heads:
        if head.failed is None or head.name in reported:
            continue
        loss, epoch = head.failed["loss"], head.failed["epoch"]
        what = f"{head.describe()}: loss {loss} at epoch {epoch} is not finite"
        if config.on_nonfinite == "stop":
            raise TrainingError(f"{what}; lower --lr, or --on-nonfinite skip to go on without it")
        log.warning("%s; it trains no further and is marked failed", what)
        reported.add(head.name)


def _train_epochs(
    cache: Cache,
    heads: Sequence[Head],
    source,
    member: np.ndarray,
    pool,
    config: TrainConfig,
    device: torch.device,
    progress: bool,
    checkpoint: PassCheckpoint | None,
) -> list[dict]:
    """The pass's epochs from the last checkpoint on (or from 0); their records."""
    start, records = checkpoint.restore(heads) if checkpoint else (0, [])
    reported = {h.name for h in heads if h.failed is not None}
    total = (config.epochs - start) * member.any(axis=0).sum()
    # --batch-heads: the restored heads of one family and shape stacked into one module each
    units = group_heads(heads) if config.batch_heads else list(heads)
    if len(units) < len(heads):
        groups = [u for u in units if isinstance(u, HeadGroup)]
        grouped = sum(len(g.heads) for g in groups)
        log.info("--batch-heads: %d heads in %d batched groups", grouped, len(groups))
        member = np.zeros((len(units), member.shape[1]), dtype=bool)
        for u, unit in enumerate(units):
            member[u, unit.rows] = True
    bar = tqdm(total=total, desc="training", unit="video", disable=not progress)
    try:
        for epoch in range(start, config.epochs):
            record = _run_epoch(
                cache, units, source, member, pool, config, epoch, device, bar, len(heads)
            )
            records.append(record)
            _check_finite(heads, config, reported)
            if checkpoint is not None and checkpoint.due(epoch, config.epochs):
                checkpoint.save(epoch, heads, records)
    finally:
        bar.close()
    return records


def train_heads(
    cache: Cache,
    heads: Sequence[Head],
    config: TrainConfig,
    progress: bool = True,
    checkpoint: PassCheckpoint | None = None,
) -> TrainedPass:
    """Train every head for `config.epochs` epochs, reading each needed video once per epoch.

    The heads must agree on everything but lr, weight decay and seed (see PER_HEAD). With a
    `checkpoint`, the pass continues after its last saved epoch and saves as `checkpoint.every`
    says (`vjfer.probe.resume`).
    """
    _check_heads(heads, config)
    device = resolve_device(config.device)
    member = np.zeros((len(heads), len(cache.videos)), dtype=bool)  # member[h, i]: h trains on i
    for h, head in enumerate(heads):
        member[h, head.rows] = True
    needed = np.flatnonzero(member.any(axis=0))
    pool = train_clips(cache, needed, config.clip_choice, config.train_view)
    reader, held, where = open_source(
        cache,
        pool.wanted(),
        in_memory=config.in_memory,
        threads=config.num_workers,
        prefetch=config.prefetch,
        device=device,
        progress=progress,
    )
    K = config.clips_per_video  # a sample: float16 [K, N, D]
    plan = plan_pass(
        config,
        heads=len(heads),
        reads=pool.reads_per_video(K, len({h.config.seed for h in heads})),
        probe_params=sum(p.numel() for h in heads for p in h.probe.parameters()),
        clip_bytes=reader.clip_bytes,
        sample_bytes=K * cache.num_tokens * cache.embed_dim * 2,
        held=where,
        held_bytes=held.nbytes if held is not None else 0,
    )
    log.info("%s", plan.describe())
    shared = SharedBatches()  # heads stepping on the same samples make their batch once
    for head in heads:
        head.shared = shared
    try:
        epochs = _train_epochs(
            cache, heads, held or reader, member, pool, config, device, progress, checkpoint
        )
    finally:
        reader.close()
        for head in heads:
            head.shared = None
    return TrainedPass(plan, epochs)


def train_probe(
    cache: Cache, train: pd.DataFrame, config: TrainConfig, fold: int = 0, progress: bool = True
) -> tuple[nn.Module, list[dict]]:
    """Train one probe on the `train` rows of `cache.videos`: (it, on the CPU; its history)."""
    rows, device = rows_of(cache, train["video_id"]), resolve_device(config.device)
    head = Head(f"fold {fold}", config, rows, cache, device)
    train_heads(cache, [head], config, progress=progress)
    return head.probe.cpu().eval(), head.history
