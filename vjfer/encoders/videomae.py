"""VideoMAE (Tong et al. 2022) through `transformers.VideoMAEModel`, from a local directory (hf
extra).

Any local VideoMAE directory loads, pre-trained or fine-tuned (a fine-tuned classifier and `fc_norm`
are ignored, logged). vjfer caches `last_hidden_state`: every patch token [B, N, D], (t, h, w)
order, no CLS; whether the encoder ends in a LayerNorm (`use_mean_pooling` False) is `final_norm`
in the fingerprint. The sin-cos position table fits exactly `num_frames` × `image_size`², so a
directory whose `num_frames` is not vjfer's 16 is refused. Normalisation comes from
`preprocessor_config.json`; the spatial view is vjfer's (`--views`), so every encoder sees the same
pixels (docs/encoders.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vjfer.encoders.hf import block_outputs, load_local_model, sha256_hf_directory
from vjfer.encoders.vjepa import ViTConfig, forward_flops
from vjfer.errors import CheckpointError
from vjfer.files import read_json_object
from vjfer.schemas import HfConfig

log = logging.getLogger(__name__)

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
CLIP_FRAMES = 16  # == video.FRAMES_PER_CLIP: what every clip plan produces


@dataclass(frozen=True)
class VideoMAESpec:
    """The facts of a VideoMAE directory vjfer needs, read from its two JSON files."""

    image_size: int
    patch_size: int
    num_frames: int
    tubelet: int
    hidden_size: int
    depth: int
    num_heads: int
    intermediate_size: int
    final_norm: bool  # not use_mean_pooling: a LayerNorm over every output token
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tokens along (t, h, w)."""
        side = self.image_size // self.patch_size
        return (self.num_frames // self.tubelet, side, side)

    def vit(self) -> ViTConfig:
        """The same-shaped plain ViT (for FLOP counts: VideoMAE's blocks are pre-norm ViT's)."""
        return ViTConfig(
            embed_dim=self.hidden_size,
            depth=self.depth,
            num_heads=self.num_heads,
            img_size=self.image_size,
            frames=self.num_frames,
            tubelet=self.tubelet,
            patch_size=self.patch_size,
            mlp_ratio=self.intermediate_size / self.hidden_size,
        )

    @property
    def flops(self) -> int:
        """Matmul FLOPs of one clip's forward pass (2 per multiply-add)."""
        return forward_flops(self.vit())


def _read_json(path: Path, what: str) -> dict:
    missing = f"{path.parent}: no {path.name}; {what}"
    return read_json_object(path, CheckpointError, missing=missing, schema=HfConfig)


def _square(value, path: Path, key: str) -> int:
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


def _num_frames(get: dict, config_path: Path) -> int:
    """config.json's num_frames: vjfer's clip length, whole tubelets."""
    num_frames = get["num_frames"]
    if num_frames != CLIP_FRAMES:
        raise CheckpointError(
            f"{config_path}: num_frames is {num_frames}; vjfer's clip plans give {CLIP_FRAMES} "
            f"frames per clip (every public VideoMAE checkpoint takes {CLIP_FRAMES}): use a "
            f"{CLIP_FRAMES}-frame checkpoint"
        )
    if num_frames % get["tubelet_size"]:
        raise CheckpointError(
            f"{config_path}: num_frames {num_frames} does not divide by tubelet_size "
            f"{get['tubelet_size']}"
        )
    return num_frames


def _normalisation(pre: dict, pre_path: Path) -> dict[str, tuple[float, float, float]]:
    """preprocessor_config.json's image_mean and image_std, 3 numbers each."""
    stats: dict[str, tuple[float, float, float]] = {}
    for key in ("image_mean", "image_std"):
        value = pre.get(key)
        if not (isinstance(value, list) and len(value) == 3):
            raise CheckpointError(f"{pre_path}: {key} must be a list of 3 numbers, got {value!r}")
        stats[key] = (float(value[0]), float(value[1]), float(value[2]))
    return stats


def read_videomae_spec(directory: str | Path) -> VideoMAESpec:
    """config.json + preprocessor_config.json -> VideoMAESpec; CheckpointError naming file, key."""
    directory = Path(directory)
    config_path, pre_path = directory / CONFIG, directory / PREPROCESSOR
    config = _read_json(
        config_path,
        "VideoMAE needs a local Hugging Face directory such as a download of MCG-NJU/videomae-base",
    )
    if config.get("model_type") != "videomae":
        raise CheckpointError(
            f"{directory}: holds another architecture: model_type {config.get('model_type')!r}, "
            "expected 'videomae'"
        )
    pre = _read_json(
        pre_path,
        "it gives the normalisation (image_mean, image_std); copy it from the checkpoint's "
        "Hugging Face repository",
    )
    # VideoMAEConfig's defaults, where a saved config.json omits a key that equals its default.
    defaults = {"image_size": 224, "patch_size": 16, "num_frames": 16, "tubelet_size": 2}
    get = {**defaults, "use_mean_pooling": True, **config}
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if key not in config:
            raise CheckpointError(f"{config_path}: no {key!r}")
    num_frames = _num_frames(get, config_path)
    image_size = _square(get["image_size"], config_path, "image_size")
    patch_size = _square(get["patch_size"], config_path, "patch_size")
    if image_size % patch_size:
        raise CheckpointError(f"{config_path}: image_size {image_size} % patch_size {patch_size}")
    if "crop_size" in pre and _square(pre["crop_size"], pre_path, "crop_size") != image_size:
        raise CheckpointError(
            f"{pre_path}: crop_size {pre['crop_size']} differs from image_size {image_size} of "
            f"{config_path}; the position table fits image_size only"
        )
    stats = _normalisation(pre, pre_path)
    return VideoMAESpec(
        image_size=image_size,
        patch_size=patch_size,
        num_frames=num_frames,
        tubelet=get["tubelet_size"],
        hidden_size=config["hidden_size"],
        depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        final_norm=not get["use_mean_pooling"],
        mean=stats["image_mean"],
        std=stats["image_std"],
    )


class VideoMAEBackbone(nn.Module):
    """vjfer layout [B, 3, T, H, W] ->
    `VideoMAEModel(pixel_values [B, T, 3, H, W]).last_hidden_state`."""

    def __init__(self, model: nn.Module, spec: VideoMAESpec):
        super().__init__()
        self.model = model
        self.spec = spec

    @property
    def depth(self) -> int:
        return self.spec.depth

    def forward(self, x: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """[B, 3, T, H, W] -> [B, N, D]; with `blocks`, those blocks' outputs [B, L, N, D] through
        the model's final LayerNorm where it has one (`final_norm`), as is where it has none."""
        B, C, T, H, W = x.shape
        s = self.spec
        if (T, H, W) != (s.num_frames, s.image_size, s.image_size):
            raise ValueError(
                f"VideoMAE input [B, C, T, H, W] = {list(x.shape)}: T, H, W must be "
                f"{s.num_frames}, {s.image_size}, {s.image_size} (a fixed position table)"
            )
        videos = x.transpose(1, 2)  # pixel_values is [B, T, C, H, W]
        # bool_masked_pos=None: every patch is visible; no pooling happens inside VideoMAEModel.
        if blocks is None:
            return self.model(pixel_values=videos).last_hidden_state  # [B, N, D]
        model: Any = self.model
        return block_outputs(
            model.encoder.layer, blocks, model.layernorm, lambda: model(pixel_values=videos)
        )


def load_videomae(directory: str | Path) -> tuple[VideoMAEBackbone, str]:
    """Load `VideoMAEModel` from a local directory (no network); returns (backbone, sha256)."""
    directory = Path(directory)
    spec = read_videomae_spec(directory)
    model, info = load_local_model("VideoMAEModel", directory, "VideoMAE")
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise CheckpointError(
            f"{directory}: holds another architecture: {len(missing)} VideoMAEModel weights "
            f"missing, first {missing[:5]}"
        )
    if info["unexpected_keys"]:  # a fine-tuned directory's head (fc_norm, classifier): unused
        log.info(
            "%s: %d weights outside VideoMAEModel ignored: %s",
            directory,
            len(info["unexpected_keys"]),
            sorted(info["unexpected_keys"])[:4],
        )
    return VideoMAEBackbone(model, spec), sha256_hf_directory(directory)
