"""VideoMAE V2 and MARLIN: one masked-autoencoder video ViT, two checkpoint layouts, for inference.

Both encoders are the VideoMAE encoder (Tong et al. 2022): a Conv3d tubelet embedding, a fixed
1-D sin-cos table over the flattened (t, h, w) token index, pre-norm blocks whose attention has a
bias-free qkv projection plus separate `q_bias` and `v_bias` (k has none), and optionally a final
LayerNorm. The model follows OpenGVLab/VideoMAEv2 `models/modeling_finetune.py` (VisionTransformer,
PatchEmbed, Block, Attention, `get_sinusoid_encoding_table`); its submodules carry that file's
names, so a VideoMAE V2 state dict loads after its wrapper prefix is stripped. MARLIN (Cai et al.
2023, ControlNet/MARLIN `src/marlin_pytorch/model/encoder.py`) is the same network with other names
(`patch_embedding.projection`, `pos_embedding.emb`, `mlp.layers.{0,1}.linear`) and PyTorch's default
LayerNorm eps (1e-5, VideoMAE V2: 1e-6); `remap_marlin` renames. Every checkpoint key is either
loaded or dropped by name (decoders, classifier heads), never silently.

What the file carries decides the variable parts: `q_bias` present or not, a final `norm` (a
pre-training encoder, MARLIN) or none (a fine-tuned VideoMAE V2 with mean pooling: its `fc_norm`
acts on the pooled mean, not on tokens, so it is dropped), a stored `pos_embed` (MARLIN, learnable
tables) or the fixed sin-cos table recomputed, layer scale `gamma_1`/`gamma_2`. The sizes a file
cannot say (heads, input size) come from the registry's preset, checked against the shapes.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjfer.digests import sha256_file
from vjfer.encoders.checkpoint import load_strict, name_keys
from vjfer.encoders.vjepa import IN_CHANS, INIT_STD, ViTConfig
from vjfer.errors import CheckpointError
from vjfer.mlp import MLP
from vjfer.torchfile import ZIP_MAGIC, torch_load

log = logging.getLogger(__name__)

LAYER_NORM_EPS = {"videomae2": 1e-6, "marlin": 1e-5}  # partial(LayerNorm, eps=1e-6) vs LayerNorm
UNSAFE = (
    "refused by torch.load(weights_only=True): it pickles {pickled}, which could run arbitrary "
    "code; vjfer has no unsafe pickle fallback: pass a file that holds tensors, numbers, strings "
    "and the training args only"
)


@dataclass(frozen=True)
class MAEConfig:
    """One VideoMAE-style encoder: the sizes (`vit`, from the preset) and what the file decides."""

    vit: ViTConfig
    qkv_bias: bool = True  # q_bias and v_bias (k has no bias)
    final_norm: bool = True  # a LayerNorm over every output token
    stored_pos_embed: bool = False  # `pos_embed` in the state dict; else the fixed sin-cos table
    layer_scale: bool = False  # gamma_1, gamma_2 (init_values > 0)
    eps: float = 1e-6

    @property
    def mlp_hidden(self) -> int:
        return int(self.vit.embed_dim * self.vit.mlp_ratio)  # the reference's int(dim * ratio)


def sinusoid_table(num_tokens: int, dim: int) -> Tensor:
    """`get_sinusoid_encoding_table`: [1, N, D], angle p / 10000^(2·(j//2)/D), sin at even j, cos
    at odd j (interleaved), over the flattened token index; float64 as numpy, rounded once."""
    position = torch.arange(num_tokens, dtype=torch.float64)[:, None]
    exponent = 2 * torch.div(torch.arange(dim), 2, rounding_mode="floor").double() / dim
    table = position / torch.pow(10000.0, exponent)[None, :]  # [N, D]
    table[:, 0::2] = table[:, 0::2].sin()
    table[:, 1::2] = table[:, 1::2].cos()
    return table.float()[None]


class PatchEmbed(nn.Module):
    """[B, 3, T, H, W] -> [B, N, D] by one Conv3d with kernel = stride = tubelet × patch²."""

    def __init__(self, vit: ViTConfig):
        super().__init__()
        kernel = (vit.tubelet, vit.patch_size, vit.patch_size)
        self.proj = nn.Conv3d(IN_CHANS, vit.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Self-attention: qkv without bias, then + (q_bias, 0, v_bias) as VideoMAE's."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.empty(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.empty(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None and self.v_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(B, N, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, C/heads]
        x = F.scaled_dot_product_attention(q, k, v)  # scale head_dim^-0.5, as qk_scale=None
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm block, with layer scale (gamma_1, gamma_2) where the weights have it."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        D = config.vit.embed_dim
        self.norm1 = nn.LayerNorm(D, eps=config.eps)
        self.attn = Attention(D, config.vit.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(D, eps=config.eps)
        self.mlp = MLP(D, config.mlp_hidden)
        self.gamma_1 = nn.Parameter(torch.empty(D)) if config.layer_scale else None
        self.gamma_2 = nn.Parameter(torch.empty(D)) if config.layer_scale else None

    def forward(self, x: Tensor) -> Tensor:
        if self.gamma_1 is None or self.gamma_2 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class MAEViT(nn.Module):
    """[B, 3, T, H, W] -> every patch token [B, N, D], (t, h, w) order, no CLS, no pooling.

    The position table fits the preset's frames × size exactly (VideoMAE adds it without
    interpolation), so other inputs are refused.
    """

    pos_embed: Tensor  # [1, N, D], a buffer

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        vit = config.vit
        self.patch_embed = PatchEmbed(vit)
        # a buffer: in the state dict only where the checkpoint stores it (MARLIN, learnable)
        table = torch.zeros(1, vit.num_tokens, vit.embed_dim)
        self.register_buffer("pos_embed", table, persistent=config.stored_pos_embed)
        self.blocks = nn.ModuleList(Block(config) for _ in range(vit.depth))
        self.norm = nn.LayerNorm(vit.embed_dim, eps=config.eps) if config.final_norm else None
        self.reset_pos_embed()

    @property
    def depth(self) -> int:
        return self.config.vit.depth

    def _table(self) -> Tensor:
        return sinusoid_table(self.config.vit.num_tokens, self.config.vit.embed_dim)

    def reset_pos_embed(self) -> None:
        """The fixed sin-cos table, unless the checkpoint stores one (no-op on `meta`)."""
        if not self.config.stored_pos_embed and not self.pos_embed.is_meta:
            self.pos_embed.copy_(self._table())

    def init_random_weights(self, seed: int) -> None:
        """Random, NOT pretrained weights (benchmarks): truncated normal (std 0.02) linear and
        conv weights, zero biases, unit norms and layer scales. Deterministic for a seed."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.ndim > 1:  # linear and conv weights
                    nn.init.trunc_normal_(p, std=INIT_STD, generator=generator)
                elif name.endswith(
                    ("norm1.weight", "norm2.weight", "norm.weight", "gamma_1", "gamma_2")
                ):
                    nn.init.ones_(p)
                else:  # biases
                    nn.init.zeros_(p)
            # a stored table starts as the sin-cos code too (MARLIN's is that code, saved)
            self.pos_embed.copy_(self._table())

    def _out(self, x: Tensor) -> Tensor:
        return x if self.norm is None else self.norm(x)

    def forward(self, x: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """[B, 3, T, H, W] -> [B, N, D]; with `blocks` (0-based, ascending) those blocks' outputs
        [B, L, N, D], each through the final norm where the model has one."""
        vit = self.config.vit
        if tuple(x.shape[2:]) != (vit.frames, vit.img_size, vit.img_size):
            raise ValueError(
                f"input [B, C, T, H, W] = {list(x.shape)}: T, H, W must be {vit.frames}, "
                f"{vit.img_size}, {vit.img_size} (a fixed position table)"
            )
        x = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        if blocks is None:
            for block in self.blocks:
                x = block(x)
            return self._out(x)
        outs = []
        for i, block in enumerate(self.blocks[: max(blocks) + 1]):
            x = block(x)
            if i in blocks:
                outs.append(self._out(x))
        return torch.stack(outs, dim=1)


# --- checkpoint layouts -----------------------------------------------------------------------

# MARLIN name -> VideoMAE V2 name, applied to the start / inside of each key (after `encoder.`)
_MARLIN_RENAMES = (
    (r"^patch_embedding\.projection\.", "patch_embed.proj."),
    (r"^pos_embedding\.emb$", "pos_embed"),
    (r"\.mlp\.layers\.0\.linear\.", ".mlp.fc1."),
    (r"\.mlp\.layers\.1\.linear\.", ".mlp.fc2."),
)
# parts of a file that are not the encoder: dropped by name (the reference's loaders do the same)
_VIDEOMAE2_PRETRAIN_EXTRA = ("decoder.", "encoder_to_decoder.", "mask_token")
_VIDEOMAE2_HEAD = ("head.", "fc_norm.")  # a classifier and the norm of its pooled mean
_MARLIN_EXTRA = ("decoder.", "enc_dec_proj.", "discriminator.")


def _entries(ckpt: dict, keys: tuple[str, ...], what: str) -> dict:
    """The state dict inside `ckpt`: the first of `keys` present, else `ckpt` itself when every
    value is a tensor; CheckpointError naming what the file holds otherwise."""
    for key in keys:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt
    names = sorted(map(str, ckpt))
    held = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
    raise CheckpointError(
        f"another architecture: not a {what} checkpoint (no {' / '.join(keys)} state dict, not a "
        f"bare state dict); it holds {len(names)} entries: {held}"
    )


def _split(state: dict, drop: tuple[str, ...]) -> tuple[dict, list[str]]:
    """(kept, the dropped prefixes that occurred)."""
    kept = {k: v for k, v in state.items() if not str(k).startswith(drop)}
    found = sorted({p.rstrip(".") for p in drop for k in state if str(k).startswith(p)})
    return kept, found


def remap_videomae2(ckpt: dict) -> tuple[dict[str, Tensor], list[str], str]:
    """A VideoMAE V2 `.pth` -> (MAEViT state dict, dropped parts, layout). Pure.

    Released files hold the state dict under `model` (run_mae_pretraining / run_class_finetuning
    without deepspeed) or `module` (deepspeed; the distilled vit_s/vit_b files), as the reference's
    `--model_key model|module`; `_orig_mod.` (torch.compile) is stripped as it does. A pre-training
    file (`encoder.` keys beside `decoder.`) keeps its encoder; a fine-tuned one drops its
    classifier `head` and `fc_norm`.
    """
    state = _entries(ckpt, ("model", "module"), "OpenGVLab/VideoMAEv2")
    state = {str(k).removeprefix("_orig_mod."): v for k, v in state.items()}
    if any(k.startswith("encoder.") for k in state):
        state, dropped = _split(state, _VIDEOMAE2_PRETRAIN_EXTRA)
        if stray := [k for k in state if not k.startswith("encoder.")]:
            raise CheckpointError(
                f"another architecture: a VideoMAE V2 pre-training file has encoder.* keys, but "
                f"also {name_keys(stray)}"
            )
        return {k.removeprefix("encoder."): v for k, v in state.items()}, dropped, "pretrain"
    state, dropped = _split(state, _VIDEOMAE2_HEAD)
    return state, dropped, "finetune"


def remap_marlin(ckpt: dict) -> tuple[dict[str, Tensor], list[str], str]:
    """A MARLIN `.pt` (encoder-only or full model) or Lightning `.ckpt` -> (MAEViT state dict,
    dropped parts, layout). Pure. Keys live under `encoder.`; the decoder, `enc_dec_proj` and a
    `.ckpt`'s `discriminator` are dropped, as `Marlin.from_file` does."""
    ckpt_layout = "ckpt" if isinstance(ckpt.get("state_dict"), dict) else "pt"
    state = _entries(ckpt, ("state_dict",), "ControlNet/MARLIN")
    state, dropped = _split({str(k): v for k, v in state.items()}, _MARLIN_EXTRA)
    if stray := [k for k in state if not k.startswith("encoder.")]:
        raise CheckpointError(
            f"another architecture: MARLIN keys live under encoder. (a VideoMAE V2 file? use a "
            f"videomae2-* encoder); not so: {name_keys(stray)}"
        )
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("encoder.")
        for pattern, new in _MARLIN_RENAMES:
            key = re.sub(pattern, new, key)
        renamed[key] = value
    return renamed, dropped, ckpt_layout


REMAP = {"videomae2": remap_videomae2, "marlin": remap_marlin}


def config_from_state(state: dict[str, Tensor], vit: ViTConfig, family: str) -> MAEConfig:
    """The preset's sizes with what the file decides; a file of another size is one line naming
    the preset that does not fit and the sizes the file has."""
    got: dict[str, int] = {}
    patch = state.get("patch_embed.proj.weight")
    if isinstance(patch, Tensor) and patch.ndim == 5:
        got.update(embed_dim=patch.shape[0], tubelet=patch.shape[2], patch_size=patch.shape[3])
    indices = {int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    got["depth"] = max(indices) + 1 if indices else 0
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if isinstance(fc1, Tensor) and fc1.ndim == 2:
        got["mlp_hidden"] = fc1.shape[0]
    want = {
        "embed_dim": vit.embed_dim,
        "tubelet": vit.tubelet,
        "patch_size": vit.patch_size,
        "depth": vit.depth,
        "mlp_hidden": int(vit.embed_dim * vit.mlp_ratio),
    }
    if differ := [k for k in want if k in got and got[k] != want[k]]:
        sizes = ", ".join(f"{k} {got[k]} (preset {want[k]})" for k in differ)
        raise CheckpointError(
            f"another size: the file's encoder has {sizes}; pick the preset of its size "
            "(`vjfer encoders`)"
        )
    return MAEConfig(
        vit=vit,
        qkv_bias="blocks.0.attn.q_bias" in state,
        final_norm="norm.weight" in state,
        stored_pos_embed="pos_embed" in state,
        layer_scale="blocks.0.gamma_1" in state,
        eps=LAYER_NORM_EPS[family],
    )


@dataclass(frozen=True)
class MAELoad:
    """What loading did: the file's hash, its layout and the parts not loaded (by name)."""

    path: Path
    sha256: str
    layout: str
    dropped: tuple[str, ...]


def build_mae(config: MAEConfig, device: str | torch.device = "cpu") -> MAEViT:
    """A model with allocated, UNINITIALISED weights (besides a fixed table); none on `meta`."""
    with torch.device("meta"):
        model = MAEViT(config)
    if torch.device(device).type != "meta":
        model.to_empty(device=device)
        model.reset_pos_embed()
    return model


def random_mae(config: MAEConfig, seed: int) -> MAEViT:
    """Random, NOT pretrained weights of a preset (benchmarks, `random_weights`)."""
    model = build_mae(config)
    model.init_random_weights(seed)
    return model


def load_mae_checkpoint(path: str | Path, vit: ViTConfig, family: str) -> tuple[MAEViT, MAELoad]:
    """The encoder of a VideoMAE V2 or MARLIN file, strictly: every kept key loaded, every
    misfit one CheckpointError line naming the file, the keys and the preset."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        mmap = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    # utils.save_model stores the training `args` (an argparse.Namespace: attributes only, no
    # code runs to rebuild it) beside the state dict; every other global stays refused
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch_load(path, mmap=mmap, unsafe=UNSAFE)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: is not a checkpoint dict (holds {type(ckpt).__name__})")
    try:
        state, dropped, layout = REMAP[family](ckpt)
        config = config_from_state(state, vit, family)
        model = build_mae(config, "meta")
        load_strict(model, state)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err} [{family} preset: {vit}]") from err
    model.float()
    if not config.stored_pos_embed:  # a non-persistent buffer: still on meta after assignment
        model.pos_embed = sinusoid_table(vit.num_tokens, vit.embed_dim)
    if dropped:
        log.info("%s: not the encoder, not loaded: %s", path, ", ".join(dropped))
    return model, MAELoad(path, sha256_file(path), layout, tuple(dropped))


def mae_provenance(model: MAEViT, load: MAELoad | None, seed: int | None = None) -> dict:
    """The fingerprint facts: the file's hash and layout, what it decided, what was not loaded."""
    c = model.config
    base = (
        {"checkpoint_sha256": None, "weights": "random-init", "seed": seed}
        if load is None
        else {"checkpoint_sha256": load.sha256, "weights": "state-dict", "layout": load.layout}
    )
    return {
        **base,
        "tubelet": c.vit.tubelet,
        "patch_size": c.vit.patch_size,
        "qkv_bias": "q,v" if c.qkv_bias else "none",
        "pos_embed": "checkpoint" if c.stored_pos_embed else "sincos",
        "final_norm": c.final_norm,
        "layer_scale": c.layer_scale,
        "unused": list(load.dropped) if load else [],
    }


def random_config(vit: ViTConfig, family: str) -> MAEConfig:
    """Random weights take a pre-training encoder's form: q/v biases, a final norm, the fixed
    sin-cos table, the family's LayerNorm eps."""
    return MAEConfig(vit=vit, eps=LAYER_NORM_EPS[family])
