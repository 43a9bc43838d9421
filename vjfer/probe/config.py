"""Stage 2's training options and schedules: `TrainConfig` (every option and its default, the
reference's where it has one) and the per-step learning-rate and weight-decay cosines of the
reference's frozen evaluation (facebookresearch/jepa `evals/video_classification_frozen/eval.py`):
AdamW, lr 1e-3 cosine to 0 and weight decay 0.01 cosine to 1e-6 per step, no warm-up, clip 1.0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from vjfer.errors import ConfigError
from vjfer.probe.layer import ALL, CONCAT, LayerChoice
from vjfer.probe.model import PROBES
from vjfer.probe.samples import REFERENCE_CLIPS

ProbeKind = Literal["attentive", "linear", "knn"]
ClipChoice = Literal["reference", "random"]
Pool = Literal["joint", "clip"]
TrainView = Literal["random", "middle", "augmented"]
Autocast = Literal["bf16", "fp16", "fp32"]
InMemory = Literal["auto", "yes", "no", "gpu"]
EpochOrder = Literal["reshuffle", "fixed"]
OnNonFinite = Literal["stop", "skip"]
CHOICES: dict[str, tuple[str, ...]] = {
    "probe": PROBES,
    "clip_choice": ("reference", "random"),
    "pool": ("joint", "clip"),
    "train_view": ("random", "middle", "augmented"),
    "autocast": ("bf16", "fp16", "fp32"),
    "in_memory": ("auto", "yes", "no", "gpu"),
    "epoch_order": ("reshuffle", "fixed"),
    "on_nonfinite": ("stop", "skip"),
}
AUTOCAST_DTYPES = {
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp32": None,
}  # TrainConfig.autocast
# Options that change how a pass runs but not one number it produces (the in-memory and streamed
# passes are equal bit for bit): a resumed pass may differ from its checkpoint in these.
RUN_ONLY = ("in_memory", "num_workers", "prefetch", "eval_batch_clips", "checkpoint_every")
MAX_SEED = 2**63 - 1  # seeds reach numpy's generators and torch.manual_seed
POSITIVE = (
    "probe_depth",
    "epochs",
    "batch_size",
    "clips_per_video",
    "num_heads",
    "eval_batch_clips",
    "prefetch",
)


@dataclass(frozen=True)
class TrainConfig:
    """Every training option and its default (the reference's, where it has one)."""

    probe: ProbeKind = "attentive"
    # the attentive probe's blocks: 1, the jepa reference's; 4, V-JEPA 2's (`probe.model`)
    probe_depth: int = 1
    # the k-NN probe's neighbours (`probe.model.KnnProbe`; `--k`, a grid axis of its heads)
    knn_k: int = 1
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
    # reshuffle: a new visit order every epoch, seeded by (order_seed, epoch); fixed: the epoch-0
    # order every epoch, as the reference (its DistributedSampler never gets set_epoch)
    epoch_order: EpochOrder = "reshuffle"
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
    # a head whose epoch loss is not finite stops the pass (stop), or stops alone and is marked
    # failed, never selected (skip: for grid points other than the reported default)
    on_nonfinite: OnNonFinite = "stop"
    checkpoint_every: int = 1  # epochs between the pass's checkpoints (`--resume`); 0: none
    # The stored encoder layer a head reads (`vjfer.probe.layer`): a block number of a cache made
    # with `extract --layers`, or concat: every stored token (on a one-layer cache: that layer)
    layer: LayerChoice = CONCAT
    # A few-shot head (`vjfer.probe.fewshot`): N training videos per class, or a fraction F of
    # each class's, drawn from its training rows by its seed; None (both): every training video
    shots: int | None = None
    train_fraction: float | None = None
    # heads of one family and shape (probe, layer, seed, videos) step as one batched module
    # (`vjfer.probe.batched`): equal to separate heads within float rounding, not bit for bit
    batch_heads: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))  # from JSON, betas arrive as a list
        is_block = isinstance(self.layer, int) and not isinstance(self.layer, bool)
        if self.layer != CONCAT and not is_block:
            raise ConfigError(f"layer must be a block number or {CONCAT!r}, got {self.layer!r}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_workers", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("seed", "order_seed"):  # numpy takes no negative seed, torch none >= 2**64
            if not 0 <= getattr(self, name) <= MAX_SEED:
                raise ConfigError(f"{name} must be in 0..{MAX_SEED}, got {getattr(self, name)}")
        check_subset(
            () if self.shots is None else (self.shots,),
            () if self.train_fraction is None else (self.train_fraction,),
        )
        if self.train_view == "augmented" and self.clip_choice != "reference":
            raise ConfigError(
                "train_view='augmented' trains on copies of the reference's 8 "
                f"clips: it needs clip_choice='reference', got {self.clip_choice!r}"
            )
        if self.clip_choice == "reference" and self.clips_per_video != REFERENCE_CLIPS:
            raise ConfigError(
                f"clip_choice='reference' takes {REFERENCE_CLIPS} clips; "
                f"clips_per_video is {self.clips_per_video}"
            )


# ------------------------------------------------------------------ option values (one parser each)


class OptionError(ConfigError):
    """A bad option value: `option` names it (`--lr` on the command line), `message` says why."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option, self.message = option, message


def list_entries(value: str, option: str) -> list[str]:
    """The comma-separated entries of an option value; an empty entry ("1e-3,,2") is an error."""
    entries = [v.strip() for v in str(value).split(",")]
    if "" in entries:
        raise OptionError(
            option,
            f"{value!r} has an empty entry (position {entries.index('') + 1}); "
            "separate the values by single commas",
        )
    return entries


def check_numbers(
    values: Sequence[float], option: str, low: float, strict: bool = False, text: str | None = None
) -> None:
    """OptionError unless every value is finite and >= low (> low with `strict`); `text`: the
    option value the numbers were read from, named in the message."""
    for v in values:
        if not math.isfinite(v) or v < low or (strict and v == low):
            bound = f"> {low:g}" if strict else f">= {low:g}"
            where = f" in {text!r}" if text is not None else ""
            raise OptionError(option, f"{v!r}{where}: each value must be finite and {bound}")


def parse_numbers(
    value: str, kind: Callable, option: str, low: float | None = None, strict: bool = False
) -> tuple:
    """ "1e-3,3e-3" -> (0.001, 0.003), each parsed with `kind` and, with `low`, finite and >= low
    (> low with `strict`)."""
    try:
        values = tuple(kind(v) for v in list_entries(value, option))
    except ValueError as err:
        raise OptionError(option, f"{value!r}: {err}") from err
    if low is not None:
        check_numbers(values, option, low, strict, text=value)
    return values


def check_subset(shots: Sequence[int], fractions: Sequence[float]) -> None:
    """OptionError unless every shots value is an integer >= 1, every fraction in (0, 1], and
    not both are given (a few-shot head keeps N per class or a fraction, never both)."""
    if shots and fractions:
        raise OptionError("--shots", "give --shots or --train-fraction, not both")
    for n in shots:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise OptionError("--shots", f"{n!r}: give whole videos per class, >= 1 (e.g. 4,16)")
    for f in fractions:
        if isinstance(f, bool) or not (isinstance(f, numbers.Real) and 0.0 < f <= 1.0):
            raise OptionError(
                "--train-fraction", f"{f!r}: give a fraction in (0, 1] (e.g. 0.1,0.5)"
            )


def parse_shots(value: str, option: str = "--shots") -> tuple[int, ...]:
    """ "4,16" -> (4, 16), each a whole number of videos per class, >= 1; "" -> () (not given)."""
    if not str(value).strip():
        return ()
    try:
        shots = tuple(int(v) for v in list_entries(value, option))
    except ValueError:
        raise OptionError(
            option, f"{value!r}: give whole videos per class, >= 1 (e.g. 4,16)"
        ) from None
    check_subset(shots, ())
    return shots


def parse_fractions(value: str, option: str = "--train-fraction") -> tuple[float, ...]:
    """ "0.1,0.5" -> (0.1, 0.5), each in (0, 1]; "" -> () (not given)."""
    if not str(value).strip():
        return ()
    fractions = parse_numbers(value, float, option)
    check_subset((), fractions)
    return fractions


def parse_folds(value: str, option: str = "--fold") -> str | tuple[int, ...]:
    """ "all", or comma-separated fold numbers (checked against a cache's folds later)."""
    if value.strip().lower() == "all":
        return "all"
    try:
        return tuple(int(v) for v in list_entries(value, option))
    except ValueError:
        raise OptionError(
            option,
            f"{value!r}: give all, or fold numbers separated by commas "
            "(the cache's folds, e.g. 1 or 1,3)",
        ) from None


def parse_probes(value: str, option: str = "--probe") -> tuple[str, ...]:
    """Comma-separated probe families (`PROBES`), duplicates dropped, in the order given."""
    entries = [v.lower() for v in list_entries(value, option)]
    if bad := [v for v in entries if v not in PROBES]:
        raise OptionError(option, f"{bad[0]!r}: give {' or '.join(PROBES)}, or several by commas")
    return tuple(dict.fromkeys(entries))


def parse_layers(value: str, option: str = "--layer") -> tuple[LayerChoice, ...]:
    """Comma-separated block numbers (negative: from the end of the stored list), concat or all;
    checked against a cache's stored blocks later (`vjfer.probe.layer.layer_axis`)."""
    entries = [v.lower() for v in list_entries(value, option)]
    try:
        return tuple(v if v in (CONCAT, ALL) else int(v) for v in entries)
    except ValueError:
        raise OptionError(
            option,
            f"{value!r}: give a block number as `vjfer cache info` shows it "
            "(negative: from the end of the stored list), concat or all, "
            "or several separated by commas",
        ) from None


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
