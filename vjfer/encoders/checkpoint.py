"""Reading facebookresearch/jepa checkpoints into a V-JEPA 1 ViT, strictly.

A jepa training checkpoint (`vith16-384.pth.tar`, ...) is a dict with `encoder`, `target_encoder`,
`predictor`, `opt` and more; the encoder state dicts carry
DistributedDataParallel(MultiMaskWrapper)'s `module.backbone.` prefix. Unlike jepa's loaders nothing
falls back silently (no `encoder` for a missing `target_encoder`, no random init of mis-shaped
tensors, no `strict=False`, no unsafe unpickling): every failure is a CheckpointError saying which
kind it is.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import Tensor, nn

from vjfer.digests import sha256_file
from vjfer.encoders.vjepa import VisionTransformer, ViTConfig, build_vit, sincos_pos_embed_3d
from vjfer.errors import CheckpointError, ConfigError
from vjfer.torchfile import ZIP_MAGIC, torch_load

log = logging.getLogger(__name__)

Weights = Literal["target_encoder", "encoder"]
WEIGHT_CHOICES: tuple[str, ...] = ("target_encoder", "encoder")  # EMA (jepa's eval default), online
JEPA_PREFIX = "module.backbone."
# Wrapper prefixes jepa's own loaders strip: DistributedDataParallel (`module.`) around
# MultiMaskWrapper (`backbone.`); a non-DDP save has one, a bare ViT neither. Longest first.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.backbone.", "backbone.", "module.", "")
POS_EMBED_TOLERANCE = 1e-4  # a checkpoint's pos_embed should equal the sin-cos code (float32)


@dataclass(frozen=True)
class LoadReport:
    """What loading a checkpoint did; `notes` are also logged as warnings."""

    path: Path
    sha256: str
    weights: str
    epoch: int | None
    notes: tuple[str, ...]


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> '0..2,5'."""
    parts, start = [], None
    for i, n in enumerate(numbers):
        start = n if start is None else start
        if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
            parts.append(str(n) if n == start else f"{start}..{n}")
            start = None
    return ",".join(parts)


def name_keys(keys: list[str], detail: dict[str, str] | None = None) -> str:
    """Every key, with block indices folded: 'blocks.{24..31}.attn.qkv.weight [..]'.

    Keys that differ only in one number (and share their `detail`) are written once.
    """
    detail = detail or {}
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    plain = []
    for key in keys:
        match = re.fullmatch(r"(.*?)\.(\d+)\.(.*)", key)
        if match:
            groups[(match[1], match[3], detail.get(key, ""))].append(int(match[2]))
        else:
            plain.append(f"{key}{detail.get(key, '')}")
    folded = [
        f"{head}.{{{_ranges(sorted(idx))}}}.{tail}{info}"
        if len(idx) > 1
        else f"{head}.{idx[0]}.{tail}{info}"
        for (head, tail, info), idx in groups.items()
    ]
    return ", ".join(plain + folded)


def remap_jepa_state_dict(ckpt: dict, weights: Weights = "target_encoder") -> dict[str, Tensor]:
    """Raw jepa checkpoint -> state dict named like VisionTransformer. Pure: no model, no I/O."""
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(f"weights must be one of {WEIGHT_CHOICES}, got {weights!r}")
    if not isinstance(ckpt, dict) or weights not in ckpt:
        held = type(ckpt).__name__
        if isinstance(ckpt, dict):
            names = sorted(map(str, ckpt))
            more = ", ..." if len(names) > 8 else ""
            held = f"{len(names)} entries: {', '.join(names[:8])}{more}"
        raise CheckpointError(
            f"another architecture: not a facebookresearch/jepa checkpoint, no {weights!r} entry "
            f"(jepa's hold encoder, target_encoder, predictor, opt, ...); this one holds {held}"
        )
    state = ckpt[weights]
    if not isinstance(state, dict):
        raise CheckpointError(f"another architecture: {weights!r} is a {type(state).__name__}")
    return strip_wrapper_prefix(state, weights)


def strip_wrapper_prefix(state: dict, what: str = "state dict") -> dict:
    """Remove the one wrapper prefix every key shares (`module.backbone.`, `backbone.`, `module.`
    or none); keys that mix prefixes are an error naming them. Only the start of a key changes,
    never text inside it (unlike `k.replace("module.", "")`)."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
            stripped = {k.removeprefix(prefix): v for k, v in state.items()}
            if not any(k.startswith(("module.", "backbone.")) for k in stripped):
                return stripped
    stray = [k for k in state if not str(k).startswith(JEPA_PREFIX)]
    raise CheckpointError(
        f"another architecture: the keys of {what!r} mix wrapper prefixes (expected all or none of "
        f"{JEPA_PREFIX!r}, 'backbone.', 'module.'); not under {JEPA_PREFIX!r}: {name_keys(stray)}"
    )


def fit_pos_embed(
    state: dict[str, Tensor], config: ViTConfig
) -> tuple[dict[str, Tensor], list[str]]:
    """Replace a `pos_embed` made for another token grid by the sin-cos code of `config.grid`.

    The position embedding is a fixed function of the grid, so recomputing it is exact (jepa's
    eval keeps its freshly initialised one in this case). Returns the state and notes saying so;
    a same-grid `pos_embed` that is not the uniform-power sin-cos code is kept and noted.
    """
    notes: list[str] = []
    got = state.get("pos_embed")
    if not isinstance(got, Tensor):
        return state, notes  # load_strict names it as missing or not a tensor
    code = sincos_pos_embed_3d(config.embed_dim, config.grid)[None]  # [1, N, D]
    if got.shape[-1] != config.embed_dim:
        return state, notes  # another width: an architecture mismatch, left to load_strict
    if got.shape != code.shape:
        notes.append(
            f"pos_embed {list(got.shape)} in the checkpoint is for another grid; recomputed the "
            f"sin-cos code for grid (t, h, w) = {config.grid}, shape {list(code.shape)}"
        )
        return {**state, "pos_embed": code}, notes
    if (diff := (got.float() - code).abs().max().item()) > POS_EMBED_TOLERANCE:
        notes.append(f"pos_embed differs from the uniform-power sin-cos code by {diff:.3g}; kept")
    return state, notes


def load_strict(model: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """Load every tensor of `state_dict` into `model`, or raise naming each misfit key.

    Missing, unexpected, non-tensor and mis-shaped keys are all errors. A model on `meta` gets
    the tensors assigned (no copy); its parameters take the state dict's dtype.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    not_tensor = [k for k in state_dict if k in expected and not isinstance(state_dict[k], Tensor)]
    shapes = {
        k: f" {list(state_dict[k].shape)} in checkpoint vs {list(v.shape)} in model"
        for k, v in expected.items()
        if isinstance(state_dict.get(k), Tensor) and state_dict[k].shape != v.shape
    }
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {name_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {name_keys(unexpected)}")
    if not_tensor:
        problems.append(f"{len(not_tensor)} not tensors: {name_keys(not_tensor)}")
    if shapes:
        problems.append(f"{len(shapes)} mis-shaped: {name_keys(list(shapes), shapes)}")
    if problems:
        raise CheckpointError(
            f"another architecture: the state dict does not fit {type(model).__name__} "
            f"({len(expected)} keys): " + "; ".join(problems)
        )
    on_meta = any(t.is_meta for t in expected.values())
    model.load_state_dict(state_dict, strict=True, assign=on_meta)


# A jepa checkpoint that pickles a global torch refuses (`vjfer.torchfile.torch_load`).
UNSAFE_CHECKPOINT = (
    "refused by torch.load(weights_only=True): it pickles {pickled}, which could run arbitrary "
    "code; vjfer has no unsafe pickle fallback: use a checkpoint that holds tensors only (the "
    "facebookresearch/jepa release files do)"
)


def read_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True) a checkpoint dict onto the CPU (zip files memory-mapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        mmap = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC  # read only the tensors used, lazily
    ckpt = torch_load(path, mmap=mmap, unsafe=UNSAFE_CHECKPOINT)
    if not isinstance(ckpt, dict):
        raise CheckpointError(
            f"{path}: is not a PyTorch checkpoint dict (holds {type(ckpt).__name__})"
        )
    return ckpt


def load_vjepa_checkpoint(
    path: str | Path, config: ViTConfig, weights: Weights = "target_encoder"
) -> tuple[VisionTransformer, LoadReport]:
    """Build the ViT of `config` with the `weights` encoder of a jepa checkpoint, strictly."""
    path = Path(path)
    ckpt = read_checkpoint(path)
    try:
        state = remap_jepa_state_dict(ckpt, weights)
        state, notes = fit_pos_embed(state, config)
        model = build_vit(config, "meta")
        load_strict(model, state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err} [the model: {config}]") from err
    model.float()  # the compute-dtype policy starts from float32 weights
    for note in notes:
        log.warning("%s: %s", path, note)
    epoch = ckpt["epoch"] if isinstance(ckpt.get("epoch"), int) else None
    report = LoadReport(path, sha256_file(path), weights, epoch, tuple(notes))
    return model, report
