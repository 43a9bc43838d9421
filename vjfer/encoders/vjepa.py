"""The V-JEPA 1 video ViT of facebookresearch/jepa, for inference.

Follows jepa's `src/models/vision_transformer.py`, `utils/modules.py` (Block, Attention with
`scaled_dot_product_attention`, MLP), `utils/patch_embed.py` (PatchEmbed3D) and `utils/pos_embs.py`
(`get_3d_sincos_pos_embed(..., uniform_power=True)`, as the released configs set). Submodules carry
jepa's names, so a checkpoint's `target_encoder` keys match once their `module.backbone.` prefix is
stripped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjfer.mlp import MLP  # the ViT block's MLP, shared with the probe

LAYER_NORM_EPS = 1e-6  # jepa: partial(nn.LayerNorm, eps=1e-6)
INIT_STD = 0.02  # jepa's init_std; used only for random (non-pretrained) weights
IN_CHANS = 3


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of one V-JEPA 1 ViT. Defaults are ViT-L/16 at 224 px, 16 frames."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    img_size: int = 224
    frames: int = 16
    tubelet: int = 2  # frames per temporal token: 16 frames -> 8 token steps
    patch_size: int = 16
    mlp_ratio: float = 4.0

    def __post_init__(self):
        if self.img_size % self.patch_size or self.frames % self.tubelet:
            raise ValueError(f"{self}: img_size and frames must divide by patch_size and tubelet")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{self}: embed_dim must divide by num_heads")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tokens along (t, h, w)."""
        side = self.img_size // self.patch_size
        return (self.frames // self.tubelet, side, side)

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


PRESETS = {
    "vjepa-l16": ViTConfig(),
    "vjepa-h16": ViTConfig(embed_dim=1280, depth=32),
    "vjepa-h16-384": ViTConfig(embed_dim=1280, depth=32, img_size=384),
}


def _sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """jepa's `get_1d_sincos_pos_embed_from_grid`: [M] -> [M, dim] = [sin(p·ω), cos(p·ω)]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed_3d(embed_dim: int, grid: tuple[int, int, int]) -> Tensor:
    """Fixed 3-D sin-cos position embedding, float32 [t·h·w, D], tokens in (t, h, w) order.

    jepa's "uniform power" variant: each axis gets 2·ceil(D/6) dims, the codes are concatenated
    t | h | w and the result truncated to D (so for D not divisible by 6 the last cosines of the
    w code are dropped). Computed in float64 and rounded once, as jepa does with numpy.
    """
    axis_dim = 2 * math.ceil(embed_dim / 6)
    coords = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in grid), indexing="ij")
    codes = [_sincos_1d(axis_dim, c.reshape(-1)) for c in coords]  # t, h, w: [N, axis_dim] each
    return torch.cat(codes, dim=1)[:, :embed_dim].float()


def forward_flops(config: ViTConfig, grid: tuple[int, int, int] | None = None) -> int:
    """Matmul FLOPs (2 per multiply-add) of one clip's forward pass; norms and softmax excluded."""
    t, h, w = grid or config.grid
    N, D = t * h * w, config.embed_dim
    patch = 2 * N * (IN_CHANS * config.tubelet * config.patch_size**2) * D
    hidden = int(D * config.mlp_ratio)
    linear = 2 * N * (3 * D * D + D * D + 2 * D * hidden)  # qkv, proj, fc1 + fc2
    attention = 2 * 2 * N * N * D  # q·kᵀ and attn·v over all heads
    return patch + config.depth * (linear + attention)


class PatchEmbed3D(nn.Module):
    """[B, 3, T, H, W] -> [B, N, D] by one Conv3d with kernel = stride = tubelet × patch × patch."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        kernel = (config.tubelet, config.patch_size, config.patch_size)
        self.proj = nn.Conv3d(IN_CHANS, config.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, D, t, h, w] -> [B, N, D]


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (with bias)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, C/heads]
        x = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(C/heads), as jepa
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """V-JEPA 1 video encoder: [B, 3, T, H, W] -> tokens [B, N, D], N in (t, h, w) order, no CLS.

    `pos_embed` is a frozen parameter, as in jepa (an `nn.Parameter` with requires_grad=False, so
    checkpoints store it). Inputs of other frames or size get it resized trilinearly, as jepa's
    `interpolate_pos_encoding` does.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.patch_embed = PatchEmbed3D(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_tokens, D), requires_grad=False)
        self.blocks = nn.ModuleList(
            Block(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        self.reset_pos_embed()

    def reset_pos_embed(self) -> None:
        """Set `pos_embed` to the sin-cos code of the model's own grid (no-op on `meta`)."""
        if not self.pos_embed.is_meta:
            code = sincos_pos_embed_3d(self.config.embed_dim, self.config.grid)
            with torch.no_grad():
                self.pos_embed.copy_(code[None])

    def init_random_weights(self, seed: int) -> None:
        """Random weights as jepa initialises a model before training (NOT pretrained weights).

        Truncated normal (std 0.02) linear and conv weights, zero biases, unit LayerNorms, and
        each block's attn.proj / mlp.fc2 weights divided by sqrt(2·layer), as jepa's
        `_rescale_blocks`. Deterministic for a seed, independent of the global RNG.
        """
        generator = torch.Generator(device=self.pos_embed.device).manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv3d)):
                    nn.init.trunc_normal_(module.weight, std=INIT_STD, generator=generator)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
                elif isinstance(module, nn.LayerNorm):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
            for layer, block in enumerate(self.blocks, start=1):
                assert isinstance(block, Block)  # ModuleList iterates as plain Modules
                block.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
        self.reset_pos_embed()

    def resized_pos_embed(self, grid: tuple[int, int, int]) -> Tensor:
        """`pos_embed` [1, N, D] resized trilinearly to another token grid -> [1, t·h·w, D]."""
        if grid == self.config.grid:
            return self.pos_embed
        D = self.config.embed_dim
        code = self.pos_embed.reshape(1, *self.config.grid, D).permute(0, 4, 1, 2, 3)
        # jepa passes scale_factor=(T/N_t, H/N_h, W/N_w); giving the target size instead uses the
        # same source coordinates (scale = in/out) without float rounding of the output size.
        code = F.interpolate(code, size=grid, mode="trilinear")  # [1, D, t, h, w]
        return code.permute(0, 2, 3, 4, 1).reshape(1, -1, D)

    def forward(self, x: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """[B, 3, T, H, W] -> tokens [B, N, D]; with `blocks` (0-based, ascending) the outputs of
        those blocks, each through the final norm, [B, L, N, D] (V-JEPA 2's multilevel form)."""
        B, C, T, H, W = x.shape
        c = self.config
        if T % c.tubelet or H % c.patch_size or W % c.patch_size:
            raise ValueError(
                f"input [B, C, T, H, W] = {list(x.shape)}: T must divide by {c.tubelet}, "
                f"H and W by {c.patch_size}"
            )
        pos = self.resized_pos_embed((T // c.tubelet, H // c.patch_size, W // c.patch_size))
        x = self.patch_embed(x) + pos  # [B, N, D]
        if blocks is None:
            for block in self.blocks:
                x = block(x)
            return self.norm(x)
        outs = []
        for i, block in enumerate(self.blocks[: max(blocks) + 1]):  # later blocks are not needed
            x = block(x)
            if i in blocks:
                # vjepa2 src/models/vision_transformer.py: `outs.append(self.norm(x))` per out_layer
                outs.append(self.norm(x))
        return torch.stack(outs, dim=1)  # [B, L, N, D]


def build_vit(config: ViTConfig, device: str | torch.device = "cpu") -> VisionTransformer:
    """A model with allocated but UNINITIALISED weights (besides `pos_embed`), built without
    PyTorch's default init; fill it with `load_strict` or `init_random_weights`. On `meta` it
    allocates nothing (for counting parameters or loading with assignment)."""
    with torch.device("meta"):
        model = VisionTransformer(config)
    if torch.device(device).type != "meta":
        model.to_empty(device=device)
        model.reset_pos_embed()
    return model


def random_vit(
    config: ViTConfig, seed: int, device: str | torch.device = "cpu"
) -> VisionTransformer:
    """A randomly initialised, NOT pretrained model (tests, benchmarks, the `tiny` encoder)."""
    model = build_vit(config, "cpu")  # initialise on CPU: the same weights on every device
    model.init_random_weights(seed)
    return model.to(device)


def count_params(model: VisionTransformer) -> int:
    """Parameters besides the fixed `pos_embed` (ViT-H/16: 631,648,000)."""
    return sum(p.numel() for name, p in model.named_parameters() if name != "pos_embed")
