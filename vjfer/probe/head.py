"""One probe in training (`Head`): its videos, batches, optimizer and schedules: AdamW with weight
decay on weights only (2-D and up, the query included), `vjfer.probe.config`'s cosine schedules per
optimizer step, gradient-norm clip 1.0 and plain cross-entropy, as the reference's frozen
evaluation. `vjfer.probe.train` feeds heads from one pass over the cache.
"""

from __future__ import annotations

import logging
import math
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjfer.cache import Cache
from vjfer.errors import SplitError
from vjfer.probe.config import AUTOCAST_DTYPES, TrainConfig, lr_at, wd_at
from vjfer.probe.fewshot import Draw, draw_rows
from vjfer.probe.layer import layer_view
from vjfer.probe.model import KnnProbe, build_probe
from vjfer.probe.reader import ReadStats

log = logging.getLogger(__name__)


def param_groups(probe: nn.Module) -> list[dict]:
    """Weight decay on parameters with 2 or more dims (weights, the query); none on biases/norms."""
    decay = [p for p in probe.parameters() if p.ndim >= 2]
    rest = [p for p in probe.parameters() if p.ndim < 2]
    return [{"params": decay, "decay": True}, {"params": rest, "decay": False, "weight_decay": 0.0}]


Pending = list[tuple[torch.Tensor, int, torch.Tensor | None]]  # samples waiting for a step


def batch_inputs(
    pending: Pending, device: torch.device, pool: str
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Waiting samples (tokens [K, N, D], label, mask bool [K, N] (True = kept) or None) as one
    probe input: (tokens float32, mask or None, labels). `joint`: the K clips' tokens of a sample
    as one sequence [B, K·N, D]; `clip`: each clip alone [B·K, N, D], its video's label repeated
    (the loss is then the mean of per-clip losses)."""
    tokens = torch.stack([s for s, _, _ in pending]).float()  # [B, K, N, D], on the device
    labels = torch.tensor([y for _, y, _ in pending], device=device)
    masks = [m for _, _, m in pending if m is not None]
    assert len(masks) in (0, len(pending)), "a head masks every sample or none"
    mask = torch.stack(masks) if masks else None  # [B, K, N]
    B, K, N, D = tokens.shape
    if pool == "joint":
        joint = None if mask is None else mask.reshape(B, K * N)
        return tokens.reshape(B, K * N, D), joint, labels
    alone = None if mask is None else mask.reshape(B * K, N)
    return tokens.reshape(B * K, N, D), alone, labels.repeat_interleave(K)


class SharedBatches:
    """The last batch `batch_inputs` made, handed again to the next head that steps on the same
    sample tensors (the pass gives every head of one seed the same tensor of a video, and heads of
    one seed and videos step together): the float32 batch is made once, not once per head. Holds
    its samples, so their ids stay theirs while they are the key."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._held: Pending = []
        self._batch: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None

    def get(
        self, pending: Pending, device: torch.device, pool: str
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        key = (pool, tuple((id(s), y, id(m)) for s, y, m in pending))
        if self._batch is None or key != self._key:
            self._key, self._held = key, list(pending)
            self._batch = batch_inputs(pending, device, pool)
        return self._batch


def _few_shot(name: str, config: TrainConfig, rows: np.ndarray, cache: Cache) -> Draw | None:
    """The few-shot draw of a head's rows (`vjfer.probe.fewshot`), or None on every video; a
    class with fewer videos than `shots` gives all it has, with a warning (and in metrics.json)."""
    if config.shots is None and config.train_fraction is None:
        return None
    labels = cache.videos["label"].to_numpy()
    classes = len(cache.class_names)
    draw = draw_rows(
        rows, labels, classes, config.seed, shots=config.shots, fraction=config.train_fraction
    )
    if draw.short:
        short = ", ".join(f"{cache.class_names[c]} {n}" for c, n in draw.short.items())
        log.warning(
            "head %s: fewer than %d training videos of class(es) %s: all taken",
            name,
            config.shots,
            short,
        )
    return draw


class Head:
    """One probe in training: its videos (rows of `cache.videos`), batches, optimizer and schedules.

    `feed` takes one sample at a time (tokens [K, N, D] on the device, float16) and steps the
    optimizer whenever `batch_size` samples are waiting; `end_epoch` steps on the rest.
    """

    def __init__(
        self, name: str, config: TrainConfig, rows: np.ndarray, cache: Cache, device: torch.device
    ):
        self.name, self.config, self.device = name, config, device
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        # a few-shot head keeps a seeded subset of its rows (`--shots`, `--train-fraction`)
        self.draw = _few_shot(name, config, self.rows, cache)
        if self.draw is not None:
            self.rows = self.draw.rows
        if len(self.rows) == 0:
            raise SplitError(f"head {name}: no training videos")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            probe = build_probe(
                config.probe,
                cache.embed_dim,
                len(cache.class_names),
                config.num_heads,
                config.probe_depth,
                config.knn_k,
            )
        # the probe takes its layer of each clip itself: every head shares the pass's one read
        probe.layer_view = layer_view(cache.layers, cache.layer_tokens, config.layer)
        self.probe = probe.to(device).train()
        # a k-NN probe trains nothing: it banks its videos' clips in the first epoch (`feed`)
        self.knn = isinstance(probe, KnnProbe)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.probe) if not self.knn else [nn.Parameter(torch.zeros(0))],
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
        )
        self.total = config.epochs * math.ceil(len(self.rows) / config.batch_size)
        self.step = 0
        self.history: list[dict] = []
        self.failed: dict | None = None  # {"epoch", "loss"} once a loss was not finite
        self._pending: Pending = []
        self._loss_sum, self._batches = torch.zeros((), device=device), 0
        self.shared: SharedBatches | None = None  # set by the pass: batches made once for all
        cuda = device.type == "cuda"
        self._amp = AUTOCAST_DTYPES[config.autocast] if cuda else None  # the CPU trains in float32
        # fp16 needs loss scaling (as the reference's GradScaler); bf16 and fp32 do not
        self._scaler = torch.amp.GradScaler("cuda", enabled=self._amp is torch.float16)

    def feed(self, sample: torch.Tensor, label: int, mask: torch.Tensor | None = None) -> None:
        """One sample [K, N, D]; `mask` bool [K, N] (True = kept) with token augmentation."""
        if self.failed is not None:  # a diverged head trains no further (--on-nonfinite skip)
            return
        if self.knn:
            cast(KnnProbe, self.probe).add(sample, label, mask)
            return
        self._pending.append((sample, label, mask))
        if len(self._pending) == self.config.batch_size:
            self._step()

    def _step(self) -> None:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.total, config)
            if group["decay"]:
                group["weight_decay"] = wd_at(self.step, self.total, config)
        make = self.shared.get if self.shared is not None else batch_inputs
        tokens, mask, labels = make(self._pending, self.device, config.pool)
        self._pending = []
        with torch.autocast(
            "cuda", dtype=self._amp or torch.float32, enabled=self._amp is not None
        ):
            loss = F.cross_entropy(self.probe(tokens, mask).float(), labels)
        self._scaler.scale(loss).backward()  # a no-op scale unless fp16
        self._scaler.unscale_(self.optimizer)  # clip the true gradients, as the reference does
        nn.utils.clip_grad_norm_(self.probe.parameters(), config.clip_grad)
        self._scaler.step(self.optimizer)
        self._scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._loss_sum += loss.detach()  # no per-step host sync on CUDA
        self.step, self._batches = self.step + 1, self._batches + 1

    @property
    def idle(self) -> bool:
        """Nothing more to learn: a k-NN head after its first epoch (the pass reads for it no
        more)."""
        return self.knn and bool(self.history)

    def running_loss(self) -> float:
        return self._loss_sum.item() / max(self._batches, 1)

    def end_epoch(self, epoch: int, share: float, reads: ReadStats) -> None:
        """Step on the rest and record the epoch: the loss, this head's share of the pass's wall
        time (`share`: the epoch's seconds over the heads of the pass; the pass's own time is
        recorded once, by `train_heads`) and what the shared pass read.

        The epoch's summed loss is read once here (no per-step host sync on CUDA): losses are
        >= 0, so the sum is finite exactly when every step's loss was; a non-finite one marks
        the head `failed` (the pass decides whether that stops it); a failed head records nothing
        more."""
        if self.failed is not None:
            return
        if self._pending:
            self._step()
        loss = self.running_loss()
        if not math.isfinite(loss):
            self.failed = {"epoch": epoch + 1, "loss": str(loss)}  # str: JSON has no nan
        self.history.append(
            {
                "epoch": epoch + 1,
                "loss": loss,
                "pass_seconds_share": share,
                "pass_bytes_read": reads.bytes,
                "pass_read_gb_s": reads.gb_per_s,
            }
        )
        self._loss_sum, self._batches = torch.zeros((), device=self.device), 0

    def describe(self) -> str:
        """The head's name and per-head settings, for errors and logs."""
        c = self.config
        return f"head {self.name} (lr {c.lr:g}, wd {c.weight_decay:g}, seed {c.seed})"

    def state(self) -> dict:
        """What a resumed pass needs of this head at an epoch's end (nothing is pending then):
        probe, AdamW moments and step counts, GradScaler, optimizer steps, history, failure."""
        assert not self._pending and self._batches == 0, "a head is saved between epochs only"
        return {
            "probe": self.probe.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self._scaler.state_dict(),
            "step": self.step,
            "history": self.history,
            "failed": self.failed,
        }

    def load_state(self, state: dict) -> None:
        """Continue from `state()` (as saved, on any device)."""
        self.probe.load_state_dict(state["probe"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._scaler.load_state_dict(state["scaler"])
        self.step, self.history, self.failed = state["step"], state["history"], state["failed"]
