"""Image foundation models applied frame by frame, through transformers, from a local directory
(hf extra): DINOv2 (`Dinov2Model`), DINOv3 (`DINOv3ViTModel`), CLIP's and SigLIP's vision towers
(`CLIPVisionModel`, `SiglipVisionModel`).

Each of a clip's 16 frames (the clip plan picks them) is one image: [B, 3, T, R, R] runs as
[B·T, 3, R, R] and the tokens come back stacked over the frames, [B, T·n, D] in (t, h, w) order.
Which tokens of `last_hidden_state` are kept is the spec variant: `patch` (the default: every
patch token, grid (T, h, w), so token masking and the probe see a real (t, h, w) grid), `cls` (one
per frame, grid (T, 1, 1)) or `both` (CLS then the patches per frame, grid (T, 1, 1 + h·w): a flat
row per frame). DINOv3's register tokens are never kept. Architecture sizes come from config.json
(through transformers' own config), the input side and mean/std from preprocessor_config.json.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vjfer.encoders.hf import (
    block_outputs,
    import_transformers,
    no_progress_bars,
    sha256_hf_directory,
)
from vjfer.errors import CheckpointError, ConfigError
from vjfer.files import read_json_object
from vjfer.schemas import HfConfig
from vjfer.torchfile import refused_pickle

log = logging.getLogger(__name__)

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
CLIP_FRAMES = 16  # == clips.FRAMES_PER_CLIP: what every clip plan produces
TOKENS = ("patch", "cls", "both")
# The other tower of a full CLIP / SigLIP checkpoint: present, not used by the vision tower.
_TEXT_TOWER = ("text_model.", "text_projection.", "visual_projection.", "logit_scale", "logit_bias")


@dataclass(frozen=True)
class ImageFamily:
    """How one transformers image model is run: its class, the block list and final norm."""

    model_class: str
    model_types: tuple[str, ...]  # config.json model_type: the tower's or the full model's
    blocks: str  # attribute path of the transformer blocks
    # attribute path of the LayerNorm `last_hidden_state` passes through; None: it has none
    norm: str | None
    has_cls: bool
    fixed_positions: bool  # a learned position table for image_size only (not interpolated)
    example: str  # a Hugging Face repository
    unused_prefixes: tuple[str, ...] = ()  # weights a full checkpoint holds beside the tower


FAMILIES: dict[str, ImageFamily] = {
    # last_hidden_state = layernorm(last block); position table interpolated to the input size
    "dinov2": ImageFamily(
        "Dinov2Model",
        ("dinov2",),
        "encoder.layer",
        "layernorm",
        True,
        False,
        "facebook/dinov2-base",
    ),
    # CLS, register tokens, patches; 2-D RoPE: any input size
    "dinov3": ImageFamily(
        "DINOv3ViTModel",
        ("dinov3_vit",),
        "model.layer",
        "norm",
        True,
        False,
        "facebook/dinov3-vitb16-pretrain-lvd1689m",
    ),
    # last_hidden_state is the last block's raw output: post_layernorm touches only the pooled CLS
    "clip": ImageFamily(
        "CLIPVisionModel",
        ("clip", "clip_vision_model"),
        "encoder.layers",
        None,
        True,
        True,
        "openai/clip-vit-base-patch16",
        _TEXT_TOWER,
    ),
    # no CLS token (the pooled output is an attention-pooling head's, not a token)
    "siglip": ImageFamily(
        "SiglipVisionModel",
        ("siglip", "siglip_vision_model"),
        "encoder.layers",
        "post_layernorm",
        False,
        True,
        "google/siglip-base-patch16-224",
        _TEXT_TOWER,
    ),
}


def image_encoder_names() -> dict[str, tuple[str, str]]:
    """Registry name -> (family, tokens): `<family>` keeps patch tokens, `<family>-cls` and
    `<family>-both` (families with a CLS token) the CLS or both."""
    names = {}
    for family, spec in FAMILIES.items():
        for tokens in TOKENS if spec.has_cls else ("patch",):
            names[family if tokens == "patch" else f"{family}-{tokens}"] = (family, tokens)
    return names


def weights_source(family: str, tokens: str) -> str:
    """The registry's `weights` line of a family's variant."""
    f = FAMILIES[family]
    if tokens != "patch":
        kept = "the CLS token" if tokens == "cls" else "the CLS token, then the patch tokens,"
        return f"as {family}, keeping {kept} of each frame"
    return (
        f"local Hugging Face directory (e.g. {f.example}), needs pip install 'vjfer[hf]'; "
        f"{f.model_class} per frame, sizes from config.json, R and mean/std from "
        "preprocessor_config.json"
    )


@dataclass(frozen=True)
class ImageSpec:
    """The facts of an image model directory vjfer needs."""

    family: str
    tokens: str  # "patch", "cls" or "both"
    resolution: int  # the side each frame is fed at (preprocessor's crop)
    image_size: int  # config.json's: the side the position table was trained at
    patch_size: int
    hidden_size: int
    depth: int
    intermediate_size: int
    mlp_matrices: int  # 2 (fc1, fc2) or 3 (a gated MLP: gate, up, down)
    registers: int  # DINOv3's register tokens (between CLS and the patches)
    map_head: bool  # SigLIP's attention-pooling head (runs in the forward, output unused)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def side(self) -> int:
        return self.resolution // self.patch_size

    @property
    def prefix(self) -> int:
        """Tokens before the patches in the model's sequence: CLS and registers."""
        return int(FAMILIES[self.family].has_cls) + self.registers

    @property
    def grid(self) -> tuple[int, int, int]:
        """Kept tokens along (t, ·, ·): see the module docstring."""
        if self.tokens == "cls":
            return (CLIP_FRAMES, 1, 1)
        if self.tokens == "both":
            return (CLIP_FRAMES, 1, 1 + self.side**2)
        return (CLIP_FRAMES, self.side, self.side)

    @property
    def layer_norm(self) -> str:
        """What `--layers` blocks pass through: "final" (the norm of `last_hidden_state`)."""
        return "none" if FAMILIES[self.family].norm is None else "final"

    @property
    def flops(self) -> int:
        """Matmul FLOPs (2 per multiply-add) of one clip: 16 frames' forward passes."""
        return CLIP_FRAMES * frame_flops(self)


def frame_flops(spec: ImageSpec) -> int:
    """Matmul FLOPs of one frame: patch embedding, every block over CLS + registers + patches,
    and SigLIP's pooling head (one query); norms and softmax excluded."""
    P, S, D, H = spec.side**2, spec.prefix + spec.side**2, spec.hidden_size, spec.intermediate_size
    patch = 2 * P * 3 * spec.patch_size**2 * D
    block = 2 * S * (4 * D * D + spec.mlp_matrices * D * H) + 4 * S * S * D
    # k, v over S tokens, q·kᵀ and attn·v for one query, q and out projections, MLP on one token
    head = 4 * S * D * D + 4 * S * D + 4 * D * D + 4 * D * H if spec.map_head else 0
    return patch + spec.depth * block + head


def _square(value: Any, path: Path, key: str) -> int:
    """An int, or a square [h, w] / {height, width}: -> the side; anything else is an error."""
    if isinstance(value, dict):
        value = [value.get("height"), value.get("width")]
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"{path}: {key} {value} is not square; vjfer crops R×R")
        value = value[0]
    if not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: {key} must be a positive int, got {value!r}")
    return value


def _preprocessing(pre: dict, path: Path, image_size: int) -> tuple[int, tuple, tuple]:
    """preprocessor_config.json -> (side R, mean, std): R is the crop (CLIP, DINOv2), else a
    square resize (SigLIP, DINOv3), else config.json's image_size."""
    if pre.get("do_center_crop", True) and "crop_size" in pre:
        side = _square(pre["crop_size"], path, "crop_size")
    elif isinstance(pre.get("size"), dict) and "height" in pre["size"]:
        side = _square(pre["size"], path, "size")
    else:
        side = image_size
    stats = []
    for key in ("image_mean", "image_std"):
        value = pre.get(key)
        if not (isinstance(value, list) and len(value) == 3):
            raise CheckpointError(f"{path}: {key} must be a list of 3 numbers, got {value!r}")
        stats.append(tuple(float(v) for v in value))
    return side, stats[0], stats[1]


def _mlp(config: Any) -> tuple[int, int]:
    """(hidden width, matrices) of a block's MLP from the config."""
    if getattr(config, "use_swiglu_ffn", False):  # DINOv2-g: Dinov2SwiGLUFFN's rounding
        hidden = (int(config.hidden_size * config.mlp_ratio * 2 / 3) + 7) // 8 * 8
        return hidden, 3
    if hasattr(config, "intermediate_size"):
        return config.intermediate_size, 3 if getattr(config, "use_gated_mlp", False) else 2
    return int(config.hidden_size * config.mlp_ratio), 2  # Dinov2Config has mlp_ratio


def read_preprocessor(directory: Path) -> dict:
    """preprocessor_config.json of the directory; CheckpointError saying where to get it."""
    missing = (
        f"{directory}: no {PREPROCESSOR}; it gives the input size and normalisation (image_mean, "
        "image_std): copy it from the checkpoint's Hugging Face repository"
    )
    return read_json_object(
        directory / PREPROCESSOR, CheckpointError, missing=missing, schema=HfConfig
    )


def image_spec(family: str, tokens: str, directory: Path, config: Any, pre: dict) -> ImageSpec:
    """The facts from the loaded model's config (read from config.json) and the preprocessor's."""
    pre_path = directory / PREPROCESSOR
    config_path = directory / CONFIG
    image_size = _square(config.image_size, config_path, "image_size")
    patch_size = _square(config.patch_size, config_path, "patch_size")
    side, mean, std = _preprocessing(pre, pre_path, image_size)
    # at the model's own size a remainder is the model's (SigLIP so400m/14 at 384: 27 × 27
    # patches, its convolution leaves 6 pixels out); elsewhere it would be vjfer's
    if side % patch_size and side != image_size:
        raise CheckpointError(
            f"{pre_path}: input side {side} does not divide by patch {patch_size}"
        )
    if FAMILIES[family].fixed_positions and side != image_size:
        raise CheckpointError(
            f"{pre_path}: input side {side} differs from image_size {image_size} of "
            f"{config_path}; the position table fits image_size only"
        )
    hidden, matrices = _mlp(config)
    return ImageSpec(
        family=family,
        tokens=tokens,
        resolution=side,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=config.hidden_size,
        depth=config.num_hidden_layers,
        intermediate_size=hidden,
        mlp_matrices=matrices,
        registers=getattr(config, "num_register_tokens", 0) if family == "dinov3" else 0,
        map_head=family == "siglip" and getattr(config, "vision_use_head", True),
        mean=mean,
        std=std,
    )


class FrameEncoder(nn.Module):
    """vjfer layout [B, 3, T, R, R] -> the image model on [B·T, 3, R, R] -> kept tokens
    [B, T·n, D]; with `blocks`, [B, L, T·n, D]."""

    def __init__(self, model: nn.Module, spec: ImageSpec):
        super().__init__()
        self.model = model
        self.spec = spec
        family = FAMILIES[spec.family]
        self._blocks: Any = reduce(getattr, family.blocks.split("."), model)
        norm = family.norm
        self._norm: nn.Module | None = reduce(getattr, norm.split("."), model) if norm else None

    def _keep(self, seq: Tensor) -> Tensor:
        """[..., S, D] model sequence -> [..., n, D] kept tokens (registers dropped)."""
        patches = seq[..., self.spec.prefix :, :]
        if self.spec.tokens == "patch":
            return patches
        cls = seq[..., :1, :]
        return cls if self.spec.tokens == "cls" else torch.cat([cls, patches], dim=-2)

    def forward(self, x: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """[B, 3, T, R, R] -> [B, T·n, D]; with `blocks`, those blocks' outputs [B, L, T·n, D]
        through the final norm of `last_hidden_state` (none for CLIP, whose has none)."""
        B, C, T, H, W = x.shape
        R = self.spec.resolution
        if (H, W) != (R, R):
            raise ValueError(f"{self.spec.family} input {list(x.shape)}: frames must be {R}×{R}")
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        if blocks is None:
            kept = self._keep(self.model(pixel_values=frames).last_hidden_state)  # [B·T, n, D]
            return kept.reshape(B, T * kept.shape[1], kept.shape[2])
        outs = block_outputs(
            self._blocks, blocks, self._norm, lambda: self.model(pixel_values=frames)
        )  # [B·T, L, S, D]
        kept = self._keep(outs)
        L, n, D = kept.shape[1:]
        return kept.reshape(B, T, L, n, D).transpose(1, 2).reshape(B, L, T * n, D)


@contextlib.contextmanager
def _quiet(transformers) -> Iterator[None]:
    """transformers' load report off (vjfer raises its own one line); the level is restored."""
    hf_logging = transformers.utils.logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _model_type(directory: Path, family: ImageFamily) -> None:
    """config.json must hold this family's architecture: one line naming what it holds."""
    config_path = directory / CONFIG
    missing = (
        f"{directory}: is not a Hugging Face model directory (no {CONFIG}); {family.model_class} "
        f"needs a local directory such as a download of {family.example}"
    )
    config = read_json_object(config_path, CheckpointError, missing=missing, schema=HfConfig)
    if config.get("model_type") not in family.model_types:
        expected = " or ".join(repr(t) for t in family.model_types)
        raise CheckpointError(
            f"{directory}: holds another architecture: model_type {config.get('model_type')!r}, "
            f"expected {expected}"
        )


def _check_loading(directory: Path, family: ImageFamily, info: dict) -> None:
    """Strict: every weight of the tower loaded with its shape, nothing else in the files but
    a full checkpoint's other tower; one line naming the first offending keys."""
    name = family.model_class
    if mismatched := sorted(info["mismatched_keys"]):
        key, file_shape, model_shape = mismatched[0]
        raise CheckpointError(
            f"{directory}: {len(mismatched)} weights of the wrong shape for {name}, first {key}: "
            f"{list(file_shape)} in the file, {list(model_shape)} in config.json's model"
        )
    if missing := sorted(info["missing_keys"]):
        raise CheckpointError(
            f"{directory}: partial or another checkpoint: {len(missing)} {name} weights missing, "
            f"first {missing[:5]}"
        )
    extra = sorted(k for k in info["unexpected_keys"] if not k.startswith(family.unused_prefixes))
    if extra:
        raise CheckpointError(
            f"{directory}: {len(extra)} weights {name} does not have (another checkpoint?), "
            f"first {extra[:5]}"
        )
    if info.get("error_msgs"):
        raise CheckpointError(f"{directory}: cannot load {name}: {info['error_msgs'][0]}")
    if unused := info["unexpected_keys"]:
        log.info("%s: %d weights of the other tower not used", directory, len(unused))


def load_image_encoder(name: str, directory: str | Path) -> tuple[FrameEncoder, str]:
    """Registry name (`image_encoder_names`) + local directory -> (FrameEncoder, sha256)."""
    family_name, tokens = image_encoder_names()[name]
    family = FAMILIES[family_name]
    directory = Path(directory)
    _model_type(directory, family)
    pre = read_preprocessor(directory)
    transformers = import_transformers()
    model_class = getattr(transformers, family.model_class, None)
    if model_class is None:
        raise ConfigError(
            f"{name} needs transformers' {family.model_class}, which transformers "
            f"{transformers.__version__} lacks: pip install -U 'vjfer[hf]'"
        )
    try:
        with no_progress_bars(transformers), _quiet(transformers), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            # a mis-shaped weight: vjfer reports it (one line naming it); transformers would raise
            model, info = model_class.from_pretrained(
                directory,
                local_files_only=True,
                dtype=torch.float32,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
    except pickle.UnpicklingError as err:
        raise refused_pickle(directory, err) from None
    except (OSError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{directory}: cannot load {family.model_class}: {first}") from err
    _check_loading(directory, family, info)
    spec = image_spec(family_name, tokens, directory, model.config, pre)
    return FrameEncoder(model, spec), sha256_hf_directory(directory)


def config_costs(name: str, directory: Path) -> dict:
    """{"params", "gflops"} of a registered image encoder from its directory's config.json and
    preprocessor_config.json alone (the model built on the meta device: no weights read), for
    tables that set encoders against their cost (`vjfer.bench`)."""
    family_name, tokens = image_encoder_names()[name]
    family = FAMILIES[family_name]
    _model_type(directory, family)
    model_class = getattr(import_transformers(), family.model_class)
    config = model_class.config_class.from_pretrained(directory, local_files_only=True)
    spec = image_spec(family_name, tokens, directory, config, read_preprocessor(directory))
    with torch.device("meta"):
        model = model_class(config)
    return {"params": sum(p.numel() for p in model.parameters()), "gflops": spec.flops / 1e9}
