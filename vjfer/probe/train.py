"""Stage 2: train probes from the feature cache alone, fold by fold, and evaluate them.

Follows the reference's frozen-evaluation recipe (facebookresearch/jepa
`evals/video_classification_frozen/eval.py`, as used by Eing et al.): AdamW with weight decay on
weights only (2-D and up, which includes the query), lr 1e-3 cosine to 0 and weight decay 0.01
cosine to 1e-6 per optimizer step without warm-up, gradient-norm clip 1.0, plain cross-entropy,
and the final-epoch probe as the result (nothing is selected on the test fold).

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
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, get_worker_info
from tqdm.auto import tqdm

from vjfer.datasets import load_folds
from vjfer.errors import ConfigError, SplitError
from vjfer.probe.evaluate import predict_clips, score_predictions, vote_videos
from vjfer.probe.model import PROBES, build_probe
from vjfer.video import plan_clips

log = logging.getLogger(__name__)

ProbeKind = Literal["attentive", "linear"]
ClipChoice = Literal["reference", "random"]
Pool = Literal["joint", "clip"]
TrainView = Literal["random", "middle"]
InMemory = Literal["auto", "yes", "no"]
CHOICES: dict[str, tuple[str, ...]] = {
    "probe": PROBES,
    "clip_choice": ("reference", "random"),
    "pool": ("joint", "clip"),
    "train_view": ("random", "middle"),
    "in_memory": ("auto", "yes", "no"),
}
MEMORY_SHARE = (
    0.5  # in_memory="auto" holds the tokens when they need at most this share of free RAM
)
TOKEN_BYTES = 2  # the cache stores float16
POSTFIX_EVERY = 10  # steps between progress-bar loss updates (each reads the loss from the device)


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
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    in_memory: InMemory = "auto"
    num_workers: int = 4  # DataLoader workers that read the cache and assemble batches
    eval_batch_clips: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # from JSON, betas arrive as a list
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "clips_per_video", "num_heads", "eval_batch_clips"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")


@dataclass
class FoldResult:
    """One fold's trained probe (on the CPU), its test predictions and metrics."""

    fold: int
    probe: nn.Module
    clips: pd.DataFrame  # evaluate.predict_clips rows
    videos: pd.DataFrame  # evaluate.vote_videos rows
    metrics: dict  # evaluate.score_predictions, plus fold, counts and training figures
    history: list[dict] = field(default_factory=list)  # per epoch: loss, seconds, clips_per_s


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


# ---------------------------------------------------------------------------- samples (pure)


def reference_clips(cached_starts: np.ndarray, n_frames: int) -> np.ndarray:
    """For each of the reference's 8 training clips, the cached clip with the nearest start frame
    (ties to the earlier clip): int64 [8] indices into the video's cached clips."""
    targets = plan_clips(n_frames, "reference-train")[:, 0]  # [8] start frames
    distance = np.abs(np.asarray(cached_starts)[None, :] - targets[:, None])  # [8, C]
    return distance.argmin(axis=1).astype(np.int64)


def epoch_plan(
    n_clips: np.ndarray, fixed: np.ndarray | None, num_views: int, config: TrainConfig, fold: int,
    epoch: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Order and clip/view choice of one epoch, from a generator seeded by (seed, fold, epoch).

    Args:
        n_clips: int [n] cached clips per training video.
        fixed: int [n, K] clip indices of `clip_choice="reference"`, or None to draw them.
    Returns:
        order int [n] (a permutation of the videos), clips int [n, K], views int [n, K].
    """
    rng = np.random.default_rng([config.seed, fold, epoch])
    n, K = len(n_clips), config.clips_per_video
    order = rng.permutation(n)
    if fixed is None:  # K draws with replacement from each video's own clips
        clips = (rng.random((n, K)) * np.asarray(n_clips)[:, None]).astype(np.int64)
    else:
        clips = fixed
    if config.train_view == "random":
        views = rng.integers(0, num_views, size=(n, K))
    else:
        views = np.full((n, K), num_views // 2)
    return order, clips, views


# ---------------------------------------------------------------------------- checks


def check_folds(cache) -> None:
    """SplitError unless every cached actor has one fold, the one in splits/ for its dataset."""
    videos = cache.videos
    per_actor = videos.groupby("actor")["fold"].unique()
    if mixed := [int(a) for a, f in per_actor.items() if len(f) > 1]:
        raise SplitError(f"cache {cache.path}: actors {mixed} appear in more than one fold")
    expected = load_folds(cache.dataset)
    for actor, folds in per_actor.items():
        if int(actor) not in expected:
            raise SplitError(
                f"cache {cache.path}: actor {actor} is not in splits/ for {cache.dataset}"
            )
        if expected[int(actor)] != int(folds[0]):
            raise SplitError(
                f"cache {cache.path}: actor {actor} is in fold {int(folds[0])}, "
                f"splits/ for {cache.dataset} put it in fold {expected[int(actor)]}"
            )


def split_fold(videos: pd.DataFrame, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of fold k: test = the fold's videos; SplitError on leakage or emptiness."""
    test, train = videos[videos["fold"] == k], videos[videos["fold"] != k]
    if leaked := sorted(set(test["actor"]) & set(train["actor"])):
        raise SplitError(f"fold {k}: test actors {leaked} also appear in training")
    if test.empty or train.empty:
        folds = sorted(videos["fold"].unique().tolist())
        raise SplitError(
            f"fold {k}: {len(train)} training and {len(test)} test videos (cache folds: {folds})"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ---------------------------------------------------------------------------- data


def _batch_buffer(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float16 tensor; in a DataLoader worker it lives in shared memory, so handing it to
    the main process copies nothing (what torch's default_collate does)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.float16)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * TOKEN_BYTES)
    return torch.empty(0, dtype=torch.float16).set_(storage).view(shape)


def _as_batch(batch):
    """collate_fn for `EpochTokens.__getitems__`, which already returns whole batches."""
    return batch


class EpochTokens(Dataset):
    """One epoch's samples: (tokens float16 [K, N, D], label) per training video.

    Reads `cache.tokens(video_id)` lazily (the cache opens its files per worker) unless `held`
    gives each video's tokens [C', V, N, D] in memory. A DataLoader fetches whole batches through
    `__getitems__` (collate_fn `_as_batch`): each clip is copied once, into the batch.
    """

    def __init__(
        self, cache, video_ids, labels, clips, views, held: list[np.ndarray] | None = None
    ):
        self.cache, self.video_ids, self.labels = cache, list(video_ids), np.asarray(labels)
        self.clips, self.views, self.held = clips, views, held

    def __len__(self) -> int:
        return len(self.video_ids)

    def _tokens(self, i: int) -> np.ndarray:
        return self.held[i] if self.held is not None else self.cache.tokens(self.video_ids[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self._tokens(i)[self.clips[i], self.views[i]]  # [K, N, D]
        return torch.from_numpy(np.ascontiguousarray(sample)), int(self.labels[i])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens float16 [B, K, N, D] and labels int64 [B] of the videos `indices`."""
        K = self.clips.shape[1]
        out = _batch_buffer((len(indices), K, self.cache.num_tokens, self.cache.embed_dim))
        view = out.numpy()
        for b, i in enumerate(indices):
            tokens = self._tokens(i)
            for k in range(K):
                view[b, k] = tokens[self.clips[i, k], self.views[i, k]]
        return out, torch.as_tensor(self.labels[indices], dtype=torch.int64)


def epoch_loader(dataset: EpochTokens, order: np.ndarray, batch_size: int, num_workers: int,
                 device: torch.device) -> DataLoader:  # fmt: skip
    """Batches (tokens float16 [B, K, N, D], labels [B]) of `dataset` in `order`."""
    return DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), num_workers=num_workers,
                      collate_fn=_as_batch, pin_memory=device.type == "cuda")  # fmt: skip


class _HeldTokens(Dataset):
    """Loads what `in_memory` keeps per video: the chosen clips (reference) or all clips."""

    def __init__(self, cache, video_ids, fixed: np.ndarray | None):
        self.cache, self.video_ids, self.fixed = cache, list(video_ids), fixed

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> np.ndarray:
        tokens = self.cache.tokens(self.video_ids[i])
        return tokens if self.fixed is None else np.ascontiguousarray(tokens[self.fixed[i]])


def _available_memory() -> int:
    """Bytes of RAM available now (MemAvailable), or 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _hold_in_memory(setting: str, need: int) -> bool:
    if setting != "auto":
        return setting == "yes"
    available = _available_memory()
    hold = need <= MEMORY_SHARE * available
    log.info("training tokens need %.2f GB, %.2f GB available: in memory %s",
             need / 1e9, available / 1e9, hold)  # fmt: skip
    return hold


def _load_held(cache, video_ids, fixed, num_workers: int) -> list[np.ndarray]:
    """Read the held tokens with `num_workers` processes; each array is copied out of the
    workers' shared memory, so the held set lives in ordinary memory (not /dev/shm)."""
    loader = DataLoader(_HeldTokens(cache, video_ids, fixed), batch_size=None,
                        num_workers=num_workers)  # fmt: skip
    return [t.numpy().copy() for t in loader]


def _workers(requested: int, held: bool) -> int:
    """DataLoader workers: held tokens reach forked workers for free (copy-on-write), but other
    start methods would pickle them into every worker, so those read in the main process."""
    method = mp.get_start_method(allow_none=True) or mp.get_all_start_methods()[0]
    if held and method != "fork":
        return 0
    return requested


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ---------------------------------------------------------------------------- training


def param_groups(probe: nn.Module) -> list[dict]:
    """Weight decay on parameters with 2 or more dims (weights, the query); none on biases/norms."""
    decay = [p for p in probe.parameters() if p.ndim >= 2]
    rest = [p for p in probe.parameters() if p.ndim < 2]
    return [{"params": decay, "decay": True}, {"params": rest, "decay": False, "weight_decay": 0.0}]


def _loss(probe: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, pool: str) -> torch.Tensor:
    B, K, N, D = tokens.shape
    if pool == "joint":
        logits = probe(tokens.reshape(B, K * N, D))  # the K clips' tokens as one sequence
        return F.cross_entropy(logits.float(), labels)
    logits = probe(tokens.reshape(B * K, N, D))  # each clip alone; mean of per-clip losses
    return F.cross_entropy(logits.float(), labels.repeat_interleave(K))


def train_probe(cache, train: pd.DataFrame, config: TrainConfig, fold: int = 0,
                progress: bool = True) -> tuple[nn.Module, list[dict]]:  # fmt: skip
    """Train a probe on the `train` rows of `cache.videos`; returns it (on the CPU) and its history."""
    device = resolve_device(config.device)
    ids, labels = train["video_id"].tolist(), train["label"].to_numpy()
    n_clips = train["n_clips"].to_numpy()
    K, V = config.clips_per_video, cache.num_views
    fixed = None
    if config.clip_choice == "reference":
        if K != len(plan_clips(1, "reference-train")):
            raise ConfigError(f"clip_choice='reference' takes 8 clips; clips_per_video is {K}")
        fixed = np.stack([reference_clips(cache.clip_frames(v)[:, 0], n)
                          for v, n in zip(ids, train["n_frames"], strict=True)])  # fmt: skip
    held_clips = len(ids) * K if fixed is not None else int(n_clips.sum())
    need = held_clips * V * cache.num_tokens * cache.embed_dim * TOKEN_BYTES
    held = None
    if _hold_in_memory(config.in_memory, need):
        held = _load_held(cache, ids, fixed, config.num_workers)
        if fixed is not None:  # held[i] holds exactly the chosen clips, in order
            fixed = np.tile(np.arange(K), (len(ids), 1))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        probe = build_probe(config.probe, cache.embed_dim, len(cache.class_names), config.num_heads)
    probe.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(probe), lr=config.lr, betas=config.betas,
                                  weight_decay=config.weight_decay)  # fmt: skip
    steps_per_epoch = math.ceil(len(ids) / config.batch_size)
    total = config.epochs * steps_per_epoch
    bar = tqdm(total=total, desc=f"fold {fold}", unit="step", disable=not progress)
    history, step, clips_seen, start = [], 0, 0, time.perf_counter()
    for epoch in range(config.epochs):
        epoch_start, loss_sum, batches = time.perf_counter(), torch.zeros((), device=device), 0
        order, clips, views = epoch_plan(n_clips, fixed, V, config, fold, epoch)
        dataset = EpochTokens(cache, ids, labels, clips, views, held)
        loader = epoch_loader(dataset, order, config.batch_size,
                              _workers(config.num_workers, held is not None), device)  # fmt: skip
        for tokens, targets in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, config)
                if group["decay"]:
                    group["weight_decay"] = wd_at(step, total, config)
            tokens = tokens.to(device, non_blocking=True).float()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = _loss(probe, tokens, targets.to(device), config.pool)
            loss.backward()
            nn.utils.clip_grad_norm_(probe.parameters(), config.clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()  # no per-step host sync on CUDA
            step, batches, clips_seen = step + 1, batches + 1, clips_seen + tokens.shape[0] * K
            bar.update()
            if progress and (batches % POSTFIX_EVERY == 0 or batches == steps_per_epoch):
                rate = clips_seen / (time.perf_counter() - start)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum.item() / batches:.3f}",
                                clips_s=f"{rate:.1f}", refresh=False)  # fmt: skip
        seconds = time.perf_counter() - epoch_start
        history.append({"epoch": epoch + 1, "loss": loss_sum.item() / batches, "seconds": seconds,
                        "clips_per_s": len(ids) * K / seconds})  # fmt: skip
    bar.close()
    return probe.cpu().eval(), history


def train_fold(
    cache, k: int, config: TrainConfig = TrainConfig(), progress: bool = True
) -> FoldResult:
    """Train on every fold but k, evaluate every cached clip of fold k's videos (PBV, MV, clips)."""
    check_folds(cache)
    train, test = split_fold(cache.videos, k)
    probe, history = train_probe(cache, train, config, fold=k, progress=progress)
    device = resolve_device(config.device)
    clips = predict_clips(probe.to(device), cache, test["video_id"].tolist(), device=device,
                          batch_clips=config.eval_batch_clips, num_workers=config.num_workers)  # fmt: skip
    probe.cpu()
    videos = vote_videos(clips, cache.class_names)
    scores = score_predictions(videos, clips, len(cache.class_names))
    scores = {
        "fold": k, "n_train_videos": len(train), "n_test_videos": len(test),
        "n_test_clips": len(clips), "test_actors": sorted(int(a) for a in test["actor"].unique()),
        **scores,
        "train": {"epochs": config.epochs, "final_loss": history[-1]["loss"],
                  "seconds": sum(h["seconds"] for h in history),
                  "clips_per_s": float(np.mean([h["clips_per_s"] for h in history]))},
    }  # fmt: skip
    return FoldResult(k, probe, clips, videos, scores, history)
