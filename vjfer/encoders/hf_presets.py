"""The public Hugging Face checkpoints of the encoders whose sizes come with the weights (V-JEPA 2,
VideoMAE, the image models): the config.json (and preprocessor input side) fields that size each,
copied from its hub repository, so `vjfer encoders` states parameters, tokens, FLOPs and cache
bytes per clip without a download. Loading never reads these: a directory's own files decide.

Parameters are counted by building the model from the config on the `meta` device (no memory, no
weights): vjfer's ViT for the video families (V-JEPA 2 and VideoMAE have V-JEPA 1's layout; their
position tables are not parameters), transformers' own class for the image models (None without
transformers installed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from vjfer.encoders.image import FAMILIES as IMAGE_FAMILIES
from vjfer.encoders.image import ImageSpec, image_spec
from vjfer.encoders.vjepa import ViTConfig, build_vit, count_params, forward_flops
from vjfer.errors import ConfigError
from vjfer.store import StoreFormat

HUB = "huggingface.co/"


@dataclass(frozen=True)
class HfPreset:
    """One hub checkpoint: its repository, config.json's sizing fields, the side R frames are
    fed at (the preprocessor's crop or square size), and whether the hub gates it."""

    repo: str
    config: dict = field(hash=False)
    side: int
    gated: bool = False


def _vit(hidden: int, layers: int, heads: int, side: int, patch: int = 16, **extra) -> dict:
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "image_size": side,
        "patch_size": patch,
        **extra,
    }


G_MLP = 48 / 11  # ViT-g: MLP width 6144 at 1408
VIDEO: dict[str, tuple[HfPreset, ...]] = {
    "vjepa2": tuple(
        HfPreset(f"facebook/vjepa2-{name}", _vit(*size, side, mlp_ratio=mlp), side)
        for name, size, side, mlp in (
            ("vitl-fpc64-256", (1024, 24, 16), 256, 4.0),
            ("vith-fpc64-256", (1280, 32, 16), 256, 4.0),
            ("vitg-fpc64-256", (1408, 40, 22), 256, G_MLP),
            ("vitg-fpc64-384", (1408, 40, 22), 384, G_MLP),
        )
    ),
    "videomae": tuple(
        HfPreset(f"MCG-NJU/{name}", _vit(*size, 224, intermediate_size=4 * size[0]), 224)
        for name, size in (
            ("videomae-base", (768, 12, 12)),
            ("videomae-large", (1024, 24, 16)),
            ("videomae-huge-finetuned-kinetics", (1280, 32, 16)),
        )
    ),
}

IMAGE: dict[str, tuple[HfPreset, ...]] = {
    "dinov2": tuple(
        HfPreset(f"facebook/dinov2-{name}", _vit(*size, 518, 14, mlp_ratio=4, **extra), 224)
        for name, size, extra in (
            ("small", (384, 12, 6), {}),
            ("base", (768, 12, 12), {}),
            ("large", (1024, 24, 16), {}),
            ("giant", (1536, 40, 24), {"use_swiglu_ffn": True}),
        )
    ),
    "dinov3": tuple(
        HfPreset(
            f"facebook/dinov3-{name}-pretrain-lvd1689m",
            _vit(*size, 224, intermediate_size=4 * size[0], num_register_tokens=4),
            224,
            gated=True,
        )
        for name, size in (
            ("vits16", (384, 12, 6)),
            ("vitb16", (768, 12, 12)),
            ("vitl16", (1024, 24, 16)),
        )
    ),
    "clip": (
        HfPreset(
            "openai/clip-vit-base-patch16", _vit(768, 12, 12, 224, intermediate_size=3072), 224
        ),
        HfPreset(
            "openai/clip-vit-large-patch14",
            _vit(1024, 24, 16, 224, 14, intermediate_size=4096),
            224,
        ),
    ),
    "siglip": (
        HfPreset(
            "google/siglip-base-patch16-224", _vit(768, 12, 12, 224, intermediate_size=3072), 224
        ),
        HfPreset(
            "google/siglip-so400m-patch14-384",
            _vit(1152, 27, 16, 384, 14, intermediate_size=4304),
            384,
        ),
    ),
}
# transformers' config class of each image family (the model class is `image.FAMILIES`')
_CONFIG_CLASS = {
    "dinov2": "Dinov2Config",
    "dinov3": "DINOv3ViTConfig",
    "clip": "CLIPVisionConfig",
    "siglip": "SiglipVisionConfig",
}


def video_vit(preset: HfPreset) -> ViTConfig:
    """A video preset's architecture as vjfer's ViTConfig (16 frames, tubelet 2)."""
    c = preset.config
    mlp = c.get("mlp_ratio", c.get("intermediate_size", 4 * c["hidden_size"]) / c["hidden_size"])
    return ViTConfig(
        c["hidden_size"],
        c["num_hidden_layers"],
        c["num_attention_heads"],
        img_size=preset.side,
        patch_size=c["patch_size"],
        mlp_ratio=mlp,
    )


def preset_image_spec(family: str, tokens: str, preset: HfPreset) -> ImageSpec:
    """An image preset's `ImageSpec` as `image_spec` reads it from a directory (mean/std are
    placeholders: only the sizes are used)."""
    square = {"height": preset.side, "width": preset.side}
    pre = {"do_center_crop": False, "size": square, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    return image_spec(family, tokens, Path(preset.repo), SimpleNamespace(**preset.config), pre)


def image_params(family: str, preset: HfPreset) -> int | None:
    """The parameters transformers' model of the preset's config has (built on `meta`); None
    without transformers."""
    try:
        import transformers
    except ImportError:
        return None
    config_class = getattr(transformers, _CONFIG_CLASS[family], None)
    model_class = getattr(transformers, IMAGE_FAMILIES[family].model_class, None)
    if config_class is None or model_class is None:  # an older transformers
        return None
    with torch.device("meta"):
        model = model_class(config_class(**preset.config))
    return sum(p.numel() for p in model.parameters())


def _row(repo: str, params, dim: int, side: int, tokens: int, flops: float, gated: bool) -> dict:
    sizes = [sum(StoreFormat.parse(s).clip_nbytes(1, tokens, dim)) / 1e6 for s in ("fp16", "int8")]
    where = HUB + repo + (" (gated: accept the licence on the hub first)" if gated else "")
    return {
        "name": repo,
        "params": params,
        "embed_dim": dim,
        "resolution": side,
        "frames": 16,
        "tokens": tokens,
        "gflops": flops / 1e9,
        "mb_fp16": sizes[0],
        "mb_int8": sizes[1],
        "weights": where,
    }


def preset_rows(name: str) -> list[dict]:
    """`list_encoders`' rows of a registered encoder's hub checkpoints (none for an encoder
    whose sizes are fixed by vjfer); ConfigError for an unknown name."""
    if name in VIDEO:
        rows = []
        for p in VIDEO[name]:
            vit = video_vit(p)
            params = count_params(build_vit(vit, "meta"))
            flops = forward_flops(vit)
            rows.append(_row(p.repo, params, vit.embed_dim, p.side, vit.num_tokens, flops, p.gated))
        return rows
    from vjfer.encoders.image import image_encoder_names

    if name not in image_encoder_names():
        raise ConfigError(f"{name}: no Hugging Face presets (its sizes are vjfer's)")
    family, tokens = image_encoder_names()[name]
    rows = []
    for p in IMAGE[family]:
        s = preset_image_spec(family, tokens, p)
        n = s.grid[0] * s.grid[1] * s.grid[2]
        rows.append(
            _row(p.repo, image_params(family, p), s.hidden_size, s.resolution, n, s.flops, p.gated)
        )
    return rows
