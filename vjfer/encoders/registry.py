"""The encoder registry and the frozen `Encoder` every stage uses.

`ENCODERS` maps each name to an `EncoderSpec`: architecture, input resolution, normalisation and
where its weights come from (preprocessing travels with the weights, as timm's PretrainedCfg).
`load_encoder` builds one, frozen: eval mode, no gradients, `inference_mode`, bf16 autocast on
CUDA and float32 on CPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

# ImageNet statistics: jepa's eval transforms and transformers' VJEPA2VideoProcessor both use them.
from vjfer.clips import FRAMES_PER_CLIP as FRAMES  # 16 frames, tubelet 2 -> 8 token steps
from vjfer.encoders.checkpoint import WEIGHT_CHOICES, Weights, load_vjepa_checkpoint
from vjfer.encoders.hf import load_vjepa2
from vjfer.encoders.hf_presets import preset_rows
from vjfer.encoders.image import image_encoder_names, load_image_encoder, weights_source
from vjfer.encoders.videomae import load_videomae
from vjfer.encoders.videomae2 import load_mae_checkpoint, mae_provenance, random_config, random_mae
from vjfer.encoders.vjepa import (
    PRESETS,
    ViTConfig,
    build_vit,
    count_params,
    forward_flops,
    random_vit,
)
from vjfer.errors import ConfigError
from vjfer.prepare import IMAGENET_MEAN, IMAGENET_STD
from vjfer.store import StoreFormat

log = logging.getLogger(__name__)

CHECKPOINT_HINT = "give it with --checkpoint or VJFER_CHECKPOINT"


@dataclass(frozen=True)
class Built:
    """What a factory returns: the module and the facts the Encoder and fingerprint need."""

    module: nn.Module  # float [B, 3, T, R, R] -> [B, N, D]
    resolution: int
    embed_dim: int
    grid: tuple[int, int, int]
    provenance: dict  # JSON-able: checkpoint_sha256, weights, seed, ...
    depth: int  # transformer blocks: `--layers` counts negative indices from it
    # what an intermediate block's output passes through before it is cached: "final" (the
    # encoder's last LayerNorm, as vjepa2's multilevel eval wrapper does) or "none" (no such norm)
    layer_norm: str
    # normalisation that came with the weights (VideoMAE's preprocessor_config.json); None: spec's
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


Factory = Callable[["EncoderSpec", "Path | None", Weights, bool, int], Built]


@dataclass(frozen=True)
class EncoderSpec:
    """One registered encoder. `vit` is None where the architecture comes with the weights."""

    name: str
    factory: Factory
    weights_source: str
    vit: ViTConfig | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


# The encoder's compute dtype on CUDA: bf16 autocast (vjfer's default), fp16 autocast (the
# reference's: its eval.py runs torch.cuda.amp.autocast(dtype=torch.float16)) or plain fp32. The CPU
# always computes in fp32. The name recorded in the fingerprint: bf16 keeps the one it always had.
COMPUTE_DTYPES: dict[str, tuple[torch.dtype | None, str]] = {
    "bf16": (torch.bfloat16, "bfloat16-autocast"),
    "fp16": (torch.float16, "float16-autocast"),
    "fp32": (None, "float32"),
}


class Encoder:
    """A frozen video encoder: `encode(clips [B, 3, 16, R, R]) -> tokens [B, N, D]`, (t, h, w)."""

    def __init__(self, spec: EncoderSpec, built: Built, device: torch.device, dtype: str = "bf16"):
        self.name = spec.name
        self.mean = built.mean if built.mean is not None else spec.mean
        self.std = built.std if built.std is not None else spec.std
        self.resolution, self.embed_dim, self.grid = built.resolution, built.embed_dim, built.grid
        self.frames = FRAMES
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.depth, self.layer_norm = built.depth, built.layer_norm
        self.device = device
        self.module = built.module.eval().requires_grad_(False).to(device)
        cuda = device.type == "cuda"
        self._amp = COMPUTE_DTYPES[dtype][0] if cuda else None
        self.compute_dtype = COMPUTE_DTYPES[dtype][1] if cuda else "float32"
        self.fingerprint = {
            "name": self.name,
            **built.provenance,
            "resolution": self.resolution,
            "frames": self.frames,
            "embed_dim": self.embed_dim,
            "grid": list(self.grid),
            "mean": list(self.mean),
            "std": list(self.std),
            "compute_dtype": self.compute_dtype,
        }

    def __repr__(self) -> str:
        return f"Encoder({self.name!r}, D={self.embed_dim}, grid={self.grid}, device={self.device})"

    def _autocast(self):
        if self._amp is not None:
            return torch.autocast("cuda", dtype=self._amp)
        return contextlib.nullcontext()

    def resolve_layers(self, layers: tuple[int, ...]) -> tuple[int, ...]:
        """`--layers` indices (negative from the end: -1 is the last block) -> 0-based block
        indices, ascending; ConfigError naming the option for one outside the encoder or twice."""
        if not layers:
            raise ConfigError("--layers needs at least one block index, e.g. -1 or -4,-3,-2,-1")
        if bad := [i for i in layers if not -self.depth <= i < self.depth]:
            raise ConfigError(
                f"--layers {','.join(map(str, layers))}: {bad} outside {self.name}'s "
                f"{self.depth} blocks (0..{self.depth - 1} or -{self.depth}..-1)"
            )
        blocks = sorted(i % self.depth for i in layers)
        if len(set(blocks)) < len(blocks):
            raise ConfigError(
                f"--layers {','.join(map(str, layers))} names a block twice "
                f"(blocks {blocks} of {self.depth})"
            )
        return tuple(blocks)

    def encode(self, clips: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """Normalised float clips [B, 3, 16, R, R] (any device) -> float32 tokens [B, N, D];
        with `blocks` (from `resolve_layers`) those blocks' outputs, [B, L, N, D]."""
        if clips.ndim != 5 or not clips.is_floating_point():
            raise ConfigError(
                f"{self.name}: expected normalised float clips [B, 3, T, H, W], got "
                f"{clips.dtype} {list(clips.shape)}"
            )
        B, C, T, H, W = clips.shape
        if (C, T, H, W) != (3, self.frames, self.resolution, self.resolution):
            raise ConfigError(
                f"{self.name}: clips [B, C, T, H, W] must be [B, 3, {self.frames}, "
                f"{self.resolution}, {self.resolution}], got {list(clips.shape)}"
            )
        x = clips.to(self.device, torch.float32, non_blocking=True)
        with torch.inference_mode(), self._autocast():
            tokens = self.module(x) if blocks is None else self.module(x, blocks)
        layers = () if blocks is None else (len(blocks),)
        assert tokens.shape == (B, *layers, self.num_tokens, self.embed_dim), tokens.shape
        return tokens.float()


def _spec_vit(spec: EncoderSpec) -> ViTConfig:
    """The ViTConfig of a spec whose factory builds a V-JEPA 1 architecture (or tiny)."""
    if spec.vit is None:
        raise ConfigError(f"{spec.name}: its factory builds a ViT, but the spec has no ViTConfig")
    return spec.vit


def _vit_built(spec: EncoderSpec, module: nn.Module, provenance: dict) -> Built:
    vit = _spec_vit(spec)
    return Built(module, vit.img_size, vit.embed_dim, vit.grid, provenance, vit.depth, "final")


def _make_vjepa(
    spec: EncoderSpec, checkpoint: Path | None, weights: Weights, random_weights: bool, seed: int
) -> Built:
    if random_weights:
        random = {"checkpoint_sha256": None, "weights": "random-init", "seed": seed}
        return _vit_built(spec, random_vit(_spec_vit(spec), seed), random)
    if checkpoint is None:
        raise ConfigError(
            f"{spec.name} needs a checkpoint ({spec.weights_source}): {CHECKPOINT_HINT}"
        )
    model, report = load_vjepa_checkpoint(checkpoint, _spec_vit(spec), weights)
    pos_embed = "recomputed" if any("recomputed" in n for n in report.notes) else "checkpoint"
    provenance = {"checkpoint_sha256": report.sha256, "weights": weights, "pos_embed": pos_embed}
    return _vit_built(spec, model, provenance)


def _make_tiny(
    spec: EncoderSpec, checkpoint: Path | None, weights: Weights, random_weights: bool, seed: int
) -> Built:
    if checkpoint is not None:
        raise ConfigError(
            f"tiny is randomly initialised from a seed and takes no checkpoint, got {checkpoint}"
        )
    provenance = {"checkpoint_sha256": None, "weights": "random-init", "seed": seed}
    return _vit_built(spec, random_vit(_spec_vit(spec), seed), provenance)


def _make_vjepa2(
    spec: EncoderSpec, checkpoint: Path | None, weights: Weights, random_weights: bool, seed: int
) -> Built:
    if random_weights:
        raise ConfigError("random weights exist for V-JEPA 1 encoders and tiny, not vjepa2")
    if checkpoint is None:
        raise ConfigError(f"vjepa2 needs a local Hugging Face directory: {CHECKPOINT_HINT}")
    vit, sha256 = load_vjepa2(checkpoint)
    side = vit.crop_size // vit.patch_size
    grid = (FRAMES // vit.tubelet, side, side)
    provenance = {"checkpoint_sha256": sha256, "weights": "hf-directory"}
    return Built(vit, vit.crop_size, vit.hidden_size, grid, provenance, vit.depth, "final")


def _make_videomae(
    spec: EncoderSpec, checkpoint: Path | None, weights: Weights, random_weights: bool, seed: int
) -> Built:
    if random_weights:
        raise ConfigError("random weights exist for V-JEPA 1 encoders and tiny, not videomae")
    if checkpoint is None:
        raise ConfigError(f"videomae needs a local Hugging Face directory: {CHECKPOINT_HINT}")
    backbone, sha256 = load_videomae(checkpoint)
    mae = backbone.spec
    # Architecture facts beside the weights' hash, so a cache says what made its tokens.
    provenance = {
        "checkpoint_sha256": sha256,
        "weights": "hf-directory",
        "tubelet": mae.tubelet,
        "patch_size": mae.patch_size,
        "final_norm": mae.final_norm,
    }
    norm = "final" if mae.final_norm else "none"
    facts = (mae.image_size, mae.hidden_size, mae.grid, provenance, mae.depth, norm)
    return Built(backbone, *facts, mean=mae.mean, std=mae.std)


def _make_image(
    spec: EncoderSpec, checkpoint: Path | None, weights: Weights, random_weights: bool, seed: int
) -> Built:
    """An image model run frame by frame (encoders/image.py)."""
    if random_weights:
        raise ConfigError(f"random weights exist for V-JEPA 1 encoders and tiny, not {spec.name}")
    if checkpoint is None:
        raise ConfigError(f"{spec.name} needs a local Hugging Face directory: {CHECKPOINT_HINT}")
    frames, sha256 = load_image_encoder(spec.name, checkpoint)
    s = frames.spec
    provenance = {
        "checkpoint_sha256": sha256,
        "weights": "hf-directory",
        "frame_model": s.family,
        "tokens": s.tokens,
        "patch_size": s.patch_size,
        "image_size": s.image_size,
        "registers": s.registers,
    }
    facts = (s.resolution, s.hidden_size, s.grid, provenance, s.depth, s.layer_norm)
    return Built(frames, *facts, mean=s.mean, std=s.std)


_JEPA = "facebookresearch/jepa {} (dl.fbaipublicfiles.com/jepa/); --checkpoint / VJFER_CHECKPOINT"
ENCODERS: dict[str, EncoderSpec] = {
    "vjepa-l16": EncoderSpec(
        "vjepa-l16", _make_vjepa, _JEPA.format("vitl16.pth.tar"), PRESETS["vjepa-l16"]
    ),
    "vjepa-h16": EncoderSpec(
        "vjepa-h16", _make_vjepa, _JEPA.format("vith16.pth.tar"), PRESETS["vjepa-h16"]
    ),
    "vjepa-h16-384": EncoderSpec(
        "vjepa-h16-384", _make_vjepa, _JEPA.format("vith16-384.pth.tar"), PRESETS["vjepa-h16-384"]
    ),
    "vjepa2": EncoderSpec(
        "vjepa2",
        _make_vjepa2,
        "local Hugging Face directory (e.g. facebook/vjepa2-vitl-fpc64-256), needs "
        "pip install 'vjfer[hf]'; sizes come from its config.json",
    ),
    "videomae": EncoderSpec(
        "videomae",
        _make_videomae,
        "local Hugging Face VideoMAE directory (e.g. MCG-NJU/videomae-base), needs "
        "pip install 'vjfer[hf]'; sizes from config.json, mean/std from preprocessor_config.json",
    ),
    "tiny": EncoderSpec(
        "tiny",
        _make_tiny,
        "none: seeded random init (tests, demo)",
        ViTConfig(embed_dim=64, depth=2, num_heads=4, img_size=64),
    ),
}

# Image foundation models frame by frame: <family> (patch tokens), <family>-cls, <family>-both
ENCODERS.update(
    {
        name: EncoderSpec(name, _make_image, weights_source(family, tokens))
        for name, (family, tokens) in image_encoder_names().items()
    }
)


# --- VideoMAE V2 and MARLIN: one MAE ViT (encoders/videomae2.py), sizes per preset (timm-style:
# heads and input size are not in the file), qkv bias / final norm / position table from the file.
def _make_mae(
    family: str,
    spec: EncoderSpec,
    checkpoint: Path | None,
    weights: Weights,
    random_weights: bool,
    seed: int,
) -> Built:
    vit = _spec_vit(spec)
    if random_weights:
        model = random_mae(random_config(vit, family), seed)
        provenance = mae_provenance(model, None, seed)
    elif checkpoint is None:
        raise ConfigError(
            f"{spec.name} needs a checkpoint ({spec.weights_source}): {CHECKPOINT_HINT}"
        )
    else:
        model, load = load_mae_checkpoint(checkpoint, vit, family)
        provenance = mae_provenance(model, load)
    norm = "final" if model.config.final_norm else "none"  # --layers: as the last block's tokens
    return Built(model, vit.img_size, vit.embed_dim, vit.grid, provenance, vit.depth, norm)


_V2 = "OpenGVLab/VideoMAEv2 .pth ({}; docs/encoders.md); --checkpoint / VJFER_CHECKPOINT"
_MARLIN = "ControlNet/MARLIN releases model_v1 marlin_vit_{}_ytf.encoder.pt (or .full.pt, .ckpt)"
_RAW_PIXELS = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # MARLIN: frames / 255, no normalisation


def _mae_spec(name: str, family: str, vit: ViTConfig, source: str) -> EncoderSpec:
    mean, std = _RAW_PIXELS if family == "marlin" else (IMAGENET_MEAN, IMAGENET_STD)
    where = (_V2 if family == "videomae2" else _MARLIN).format(source)
    return EncoderSpec(name, partial(_make_mae, family), where, vit, mean, std)


_G = ViTConfig(1408, 40, 16, patch_size=14, mlp_ratio=48 / 11)  # ViT-g/14: 2048 tokens
for _spec in (
    _mae_spec(
        "videomae2-s", "videomae2", ViTConfig(384, 12, 6), "distill/vit_s_k710_dl_from_giant.pth"
    ),
    _mae_spec(
        "videomae2-b", "videomae2", ViTConfig(768, 12, 12), "distill/vit_b_k710_dl_from_giant.pth"
    ),
    _mae_spec("videomae2-l", "videomae2", ViTConfig(1024, 24, 16), "ViT-L, download form"),
    _mae_spec("videomae2-h", "videomae2", ViTConfig(1280, 32, 16), "ViT-H, download form"),
    _mae_spec("videomae2-g", "videomae2", _G, "vit_g_hybrid_pt_1200e.pth, download form"),
    _mae_spec("marlin-s", "marlin", ViTConfig(384, 12, 6), "small"),
    _mae_spec("marlin-b", "marlin", ViTConfig(768, 12, 12), "base"),
    _mae_spec("marlin-l", "marlin", ViTConfig(1024, 24, 16), "large"),
):
    ENCODERS[_spec.name] = _spec


def get_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder, or a ConfigError listing the known names."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; known: {', '.join(ENCODERS)}")
    return ENCODERS[name]


# What each family learnt from: the comparison the field asks for (a name's prefix -> family).
FAMILIES = {
    "vjepa": "latent prediction (V-JEPA)",
    "videomae": "pixel reconstruction (MAE)",
    "marlin": "pixel reconstruction (MAE, faces)",
    "dinov": "image self-distillation (DINO), per frame",
    "clip": "image-text contrastive, per frame",
    "siglip": "image-text contrastive, per frame",
    "tiny": "random (tests, demo)",
}


def family_of(name: str) -> str:
    """The training family of a registered encoder, from its name."""
    return next((f for prefix, f in FAMILIES.items() if name.startswith(prefix)), "other")


def list_encoders() -> list[dict]:
    """Per encoder: name, family, params, embed_dim, resolution, frames, tokens, GFLOP and MB
    (fp16, int8) a clip, weights; None where the sizes come with the weights (config.json), whose
    `presets` are the same figures for each public Hugging Face checkpoint (`hf_presets`)."""
    rows = []
    for spec in ENCODERS.values():
        vit = spec.vit
        sizes = [
            StoreFormat.parse(s).clip_nbytes(1, vit.num_tokens, vit.embed_dim) if vit else None
            for s in ("fp16", "int8")
        ]
        rows.append(
            {
                "name": spec.name,
                "family": family_of(spec.name),
                "params": count_params(build_vit(vit, "meta")) if vit else None,
                "embed_dim": vit.embed_dim if vit else None,
                "resolution": vit.img_size if vit else None,
                "frames": vit.frames if vit else None,
                "tokens": vit.num_tokens if vit else None,
                "gflops": forward_flops(vit) / 1e9 if vit else None,
                "mb_fp16": sum(sizes[0]) / 1e6 if sizes[0] else None,
                "mb_int8": sum(sizes[1]) / 1e6 if sizes[1] else None,
                "weights": spec.weights_source,
                "presets": [] if vit else preset_rows(spec.name),
            }
        )
    return rows


def load_encoder(
    name: str,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    weights: Weights = "target_encoder",
    *,
    random_weights: bool = False,
    seed: int = 0,
    dtype: str = "bf16",
) -> Encoder:
    """A frozen encoder ready for `encode`.

    Args:
        name: a key of ENCODERS.
        checkpoint: jepa `.pth.tar` file (V-JEPA 1), Hugging Face directory (vjepa2, videomae,
            the image models dinov2, dinov3, clip, siglip and their -cls/-both); none for tiny.
        device: where the model runs; clips are moved there by `encode`.
        weights: "target_encoder" (EMA, the default) or "encoder" of a jepa checkpoint.
        random_weights: build a V-JEPA 1 architecture with random, NOT pretrained, weights
            (benchmarks, tests); no checkpoint allowed.
        seed: the random weights' seed (tiny and random_weights).
        dtype: compute dtype on CUDA, a key of COMPUTE_DTYPES ("fp16" is the reference's).
    """
    spec = get_spec(name)
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(f"weights must be one of {WEIGHT_CHOICES}, got {weights!r}")
    if random_weights and checkpoint is not None:
        raise ConfigError(f"random_weights builds {name} without a checkpoint, got {checkpoint}")
    if dtype not in COMPUTE_DTYPES:
        raise ConfigError(f"dtype must be one of {tuple(COMPUTE_DTYPES)}, got {dtype!r}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device} requested but torch.cuda.is_available() is False")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    built = spec.factory(spec, checkpoint, weights, random_weights, seed)
    encoder = Encoder(spec, built, device, dtype)
    log.info("loaded %r: %s", encoder, encoder.fingerprint)
    return encoder
