"""Probes that map a clip's (or a video's) tokens [B, N, D] to class logits [B, C].

`AttentiveProbe` is the reference's attentive classifier (facebookresearch/jepa,
`src/models/attentive_pooler.py` `AttentiveClassifier` with `src/models/utils/modules.py`
`CrossAttentionBlock`): one learnable query, one cross-attention block, an MLP block and a linear
head, with the reference's parameter names and initialisation, so reference state dicts load as they
are. Its default forward pools in a factorised form (derived below) that computes the same function
with about D/heads fewer FLOPs per token; `forward_reference` keeps the straightforward K/V form.

With `depth` > 1 it is V-JEPA 2's deeper probe (facebookresearch/vjepa2,
`src/models/attentive_pooler.py` `AttentivePooler(depth=...)`, its frozen evaluations'
`num_probe_blocks: 4`): depth - 1 pre-norm self-attention blocks over the tokens (`pooler.blocks.i`:
norm1, attn.qkv with bias, attn.proj, norm2, MLP; no drop path) before the cross-attention block,
whose attention has **no** output projection in that code (its `CrossAttention.proj` is commented
out), with V-JEPA 2's init: trunc_normal(0.02) linears, zero biases, unit LayerNorms, block i's
attn.proj and mlp.fc2 divided by sqrt(2 (i + 1)) and the cross block's mlp.fc2 by
sqrt(2 (depth - 1)) (its `_rescale_blocks`, whose layer_id is the last block's index). Depth 1
stays the jepa module above (with `xattn.proj`), keys and init unchanged.

`LinearProbe` (mean-pooled tokens -> LayerNorm -> linear) is the ablation baseline the paper
skipped.

Factorised attention pooling, with one query q (a D-vector) and tokens x (N x D):

    LN(x_n) = xhat_n * g + b                  xhat_n = (x_n - mean) / std, g/b = norm1 gain/bias
    q'_h = (W_q q + b_q)_h                    the query of head h, a d-vector (d = D / H)
    k_hn = W_k,h LN(x_n) + b_k,h              W_k,h: the d x D rows of the key projection for head h
    s_hn = q'_h . k_hn / sqrt(d)
         = LN(x_n) . u_h / sqrt(d) + c_h      u_h = W_k,h^T q'_h (a D-vector), c_h = q'_h . b_k,h
         = xhat_n . (g * u_h) / sqrt(d) + c'_h    c'_h = c_h + b . u_h / sqrt(d)

Softmax over the tokens n is invariant to the per-head constant c'_h, so the attention weights are
a_hn = softmax_n(xhat_n . w_h) with w_h = g * u_h / sqrt(d): one D-vector per head instead of a key
per token. The value path is linear, and the weights of each head sum to one:

    o_h = sum_n a_hn (W_v,h LN(x_n) + b_v,h) = W_v,h (sum_n a_hn LN(x_n)) + b_v,h
        = W_v,h ((sum_n a_hn xhat_n) * g + b) + b_v,h

so each head pools the normalised tokens first (an H x D matrix per sample) and projects after.
Per token this costs ~2·D·H multiply-adds (scores and pooling) instead of 2·D·2D for K and V; at
D = 1280, H = 16 that is 160x fewer, and the probe becomes bound by reading the tokens. The key
bias b_k and the part of the LayerNorm bias seen by the scores get zero gradient in both forms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjfer.errors import CheckpointError, ConfigError
from vjfer.mlp import MLP  # fc1 -> exact GELU -> fc2, as the reference's MLP
from vjfer.probe.layer import LayerView, select_layer
from vjfer.schemas import ProbeFile, validation_error
from vjfer.torchfile import torch_load

INIT_STD = 0.02  # the reference's trunc_normal std for the query and the pooler's linears
MLP_RATIO = 4  # D -> 4D -> D
LN_EPS = 1e-5  # nn.LayerNorm's default, as in the reference
REFERENCE_PREFIX = "module."  # DistributedDataParallel's, in the reference's saved state dicts


def strip_reference_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a leading `module.` from each key (only at the start of a key). Pure."""
    return {k.removeprefix(REFERENCE_PREFIX): v for k, v in state_dict.items()}


def masked_softmax(scores: Tensor, mask: Tensor | None, dim: int) -> Tensor:
    """Softmax of `scores` along `dim`; tokens where `mask` [B, N] is False get weight 0."""
    if mask is not None:
        shape = [mask.shape[0]] + [1] * (scores.dim() - 1)
        shape[dim] = mask.shape[1]
        scores = scores.masked_fill(~mask.view(shape), float("-inf"))
    return scores.softmax(dim=dim)


class CrossAttention(nn.Module):
    """Query/key-value/output projections of the reference's CrossAttention (qkv_bias=True);
    `proj` False: none, as V-JEPA 2's (`proj` is then None)."""

    def __init__(self, dim: int, num_heads: int, proj: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)  # rows [0, D) are keys, [D, 2D) values, as the reference
        self.proj = nn.Linear(dim, dim) if proj else None


class CrossAttentionBlock(nn.Module):
    """q + xattn(q, norm1(x)), then q + mlp(norm2(q)); the pooling itself lives in the probe."""

    def __init__(self, dim: int, num_heads: int, proj: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.xattn = CrossAttention(dim, num_heads, proj)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, MLP_RATIO * dim)


class SelfAttention(nn.Module):
    """V-JEPA 2's `Attention` (qkv_bias=True, scale head_dim^-0.5, no dropout)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, H, N, d]
        keep = None if mask is None else mask[:, None, None, :]  # masked tokens are no keys
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class SelfAttentionBlock(nn.Module):
    """V-JEPA 2's `Block`: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = MLP(dim, MLP_RATIO * dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class AttentivePooler(nn.Module):
    """Holds the query and the block under the reference's names (`pooler.*`); with `depth` > 1,
    V-JEPA 2's self-attention blocks (`pooler.blocks.i`) and a cross block without `proj`."""

    def __init__(self, dim: int, num_heads: int, depth: int = 1):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        self.cross_attention_block = CrossAttentionBlock(dim, num_heads, proj=depth == 1)
        # empty at depth 1 (no state-dict keys); after the cross block, as V-JEPA 2 registers it
        self.blocks = nn.ModuleList(SelfAttentionBlock(dim, num_heads) for _ in range(depth - 1))


class AttentiveProbe(nn.Module):
    """The reference's attentive classifier: tokens [B, N, D] -> logits [B, C] (16 heads in the
    reference). `factorised`: `forward` pools in the factorised form (default) or the K/V form."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        num_heads: int = 16,
        factorised: bool = True,
        depth: int = 1,
    ):
        super().__init__()
        if depth < 1:
            raise ConfigError(f"probe depth must be >= 1, got {depth}")
        self.embed_dim, self.num_classes, self.num_heads = embed_dim, num_classes, num_heads
        self.factorised, self.depth = factorised, depth
        self.pooler = AttentivePooler(embed_dim, num_heads, depth)
        self.linear = nn.Linear(embed_dim, num_classes)  # PyTorch's default init, as the reference
        # the stored layer it reads of a multi-layer cache's clips (`--layer K`); not a parameter
        self.layer_view: LayerView | None = None
        self._init_reference()

    @torch.no_grad()
    def _init_reference(self) -> None:
        """trunc_normal(std 0.02) query and pooler linears, zero biases, unit LayerNorms, and the
        reference's `_rescale_blocks`: xattn.proj and mlp.fc2 weights divided by sqrt(2 * 1); with
        depth > 1, V-JEPA 2's (module docstring)."""
        nn.init.trunc_normal_(self.pooler.query_tokens, std=INIT_STD)
        for m in self.pooler.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=INIT_STD)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        block = self.pooler.cross_attention_block
        if block.xattn.proj is not None:  # depth 1: the jepa reference's
            block.xattn.proj.weight.div_(math.sqrt(2.0))
            block.mlp.fc2.weight.div_(math.sqrt(2.0))
            return
        for i, layer in enumerate(cast(list[SelfAttentionBlock], self.pooler.blocks)):
            layer.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
            layer.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))
        block.mlp.fc2.weight.div_(math.sqrt(2.0 * (self.depth - 1)))

    def load_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False
    ):
        """Load a vjfer or reference state dict; a leading `module.` on its keys is dropped."""
        return super().load_state_dict(strip_reference_prefix(state_dict), strict, assign)

    def _query(self) -> Tensor:
        """The projected query q' [H, d] (shared by every sample)."""
        xattn = self.pooler.cross_attention_block.xattn
        return xattn.q(self.pooler.query_tokens[0, 0]).view(self.num_heads, -1)

    def _attend_factorised(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """Attention output before `proj`, factorised (module docstring): [B, N, D] -> [B, D]."""
        block = self.pooler.cross_attention_block
        xattn, norm = block.xattn, block.norm1
        B, N, D = tokens.shape
        H = self.num_heads
        w_k, w_v = xattn.kv.weight[:D].view(H, D // H, D), xattn.kv.weight[D:].view(H, D // H, D)
        u = torch.einsum("hdk,hd->hk", w_k, self._query())  # u_h = W_k,h^T q'_h: [H, D]
        w = u * norm.weight * xattn.scale  # [H, D]
        xhat = F.layer_norm(tokens, (D,), None, None, norm.eps)  # [B, N, D]
        attn = masked_softmax(xhat @ w.to(xhat.dtype).t(), mask, dim=1)  # [B, N, H]
        pooled = attn.transpose(1, 2) @ xhat  # sum_n a_hn xhat_n: [B, H, D]
        pooled = pooled * norm.weight + norm.bias  # sum_n a_hn LN(x_n)
        out = torch.einsum("bhk,hdk->bhd", pooled, w_v.to(pooled.dtype))  # [B, H, d]
        return out.reshape(B, D) + xattn.kv.bias[D:]

    def _attend_reference(self, tokens: Tensor, mask: Tensor | None) -> Tensor:
        """Attention output before `proj`, the reference's way (keys and values for every token)."""
        block = self.pooler.cross_attention_block
        xattn = block.xattn
        B, N, D = tokens.shape
        H = self.num_heads
        q = self._query()  # [H, d]
        kv = xattn.kv(block.norm1(tokens)).view(B, N, 2, H, D // H)
        k, v = kv[:, :, 0], kv[:, :, 1]  # [B, N, H, d]
        scores = torch.einsum("hd,bnhd->bhn", q.to(k.dtype), k) * xattn.scale  # [B, H, N]
        attn = masked_softmax(scores, mask, dim=2)
        return torch.einsum("bhn,bnhd->bhd", attn, v).reshape(B, D)

    def _pool(self, tokens: Tensor, mask: Tensor | None, factorised: bool) -> Tensor:
        tokens, mask = select_layer(self.layer_view, tokens, mask)
        for layer in self.pooler.blocks:  # depth > 1: V-JEPA 2's self-attention blocks first
            tokens = layer(tokens, mask)
        block = self.pooler.cross_attention_block
        attend = self._attend_factorised if factorised else self._attend_reference
        attended = attend(tokens, mask)
        if block.xattn.proj is not None:
            attended = block.xattn.proj(attended)
        q = self.pooler.query_tokens[0] + attended  # [B, D]
        return q + block.mlp(block.norm2(q))

    def pooled(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """The pooled D-vector per sample (the pooler's output): [B, N, D] -> [B, D]. `mask`:
        optional bool [B, N], True for real tokens (padding gets attention weight 0)."""
        return self._pool(tokens, mask, self.factorised)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits [B, C] from tokens [B, N, D] (and an optional bool mask [B, N])."""
        return self.linear(self.pooled(tokens, mask))

    def forward_reference(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits by the straightforward K/V form (what tests compare `forward` to)."""
        return self.linear(self._pool(tokens, mask, factorised=False))


class LinearProbe(nn.Module):
    """Mean-pooled tokens -> LayerNorm -> linear: tokens [B, N, D] -> logits [B, C]."""

    def __init__(self, embed_dim: int, num_classes: int):
        super().__init__()
        self.embed_dim, self.num_classes = embed_dim, num_classes
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.linear = nn.Linear(embed_dim, num_classes)
        self.layer_view: LayerView | None = None  # as AttentiveProbe's

    def pooled(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean over the (unmasked) tokens: [B, N, D] -> [B, D]."""
        tokens, mask = select_layer(self.layer_view, tokens, mask)
        if mask is None:
            return tokens.mean(dim=1)
        weights = mask.to(tokens.dtype).unsqueeze(-1)  # [B, N, 1]
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.linear(self.norm(self.pooled(tokens, mask)))


KNN_TEMPERATURE = 0.07  # DINO's k-NN evaluation (eval_knn.py `--temperature`), after Wu et al.


class KnnProbe(nn.Module):
    """Training-free k-NN: a bank of L2-normalised clip embeddings (each clip's tokens averaged,
    as `LinearProbe.pooled`) of the training videos, each with its video's label, gathered in
    the pass's first epoch (`add`). A clip [1, N, D] is scored against the bank by cosine
    similarity; its k nearest vote with weight exp(sim / 0.07), summed per class: the rule of
    DINO's k-NN evaluation (facebookresearch/dino `eval_knn.py` `knn_classifier`, from Wu et al.
    2018). `forward` returns the log of the normalised votes, so the softmax of evaluation gives
    the vote shares, and PBV/MV vote over a video's clips as for every probe."""

    bank: Tensor  # [M, D] float32, L2-normalised
    bank_labels: Tensor  # [M] int64

    def __init__(self, embed_dim: int, num_classes: int, k: int = 1):
        super().__init__()
        if k < 1:
            raise ConfigError(f"k-NN needs k >= 1, got {k}")
        self.embed_dim, self.num_classes, self.k = embed_dim, num_classes, k
        self.register_buffer("bank", torch.zeros(0, embed_dim))
        self.register_buffer("bank_labels", torch.zeros(0, dtype=torch.long))
        self.layer_view: LayerView | None = None  # as AttentiveProbe's

    def pooled(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """L2-normalised mean of the (unmasked) tokens, float32: [B, N, D] -> [B, D]."""
        tokens, mask = select_layer(self.layer_view, tokens.float(), mask)
        if mask is None:
            pooled = tokens.mean(dim=1)
        else:
            weights = mask.to(tokens.dtype).unsqueeze(-1)
            pooled = (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def add(self, tokens: Tensor, label: int, mask: Tensor | None = None) -> None:
        """Bank the clips [K, N, D] of one training video (mask: bool [K, N] or None)."""
        embedded = self.pooled(tokens, mask).to(self.bank.device)
        labels = torch.full((len(embedded),), label, dtype=torch.long, device=self.bank.device)
        self.bank = torch.cat([self.bank, embedded])
        self.bank_labels = torch.cat([self.bank_labels, labels])

    @torch.no_grad()
    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        """Log vote shares [B, C] of clips [B, N, D] (-inf for a class no neighbour has)."""
        if len(self.bank) == 0:
            raise ConfigError("k-NN probe has an empty bank: it saw no training video")
        with torch.autocast(tokens.device.type, enabled=False):  # similarities in float32
            sims = self.pooled(tokens, mask) @ self.bank.t()  # cosine: [B, M]
        top, index = sims.topk(min(self.k, len(self.bank)), dim=1)
        votes = torch.zeros(len(sims), self.num_classes, device=sims.device)
        votes.scatter_add_(1, self.bank_labels[index], (top / KNN_TEMPERATURE).exp())
        return (votes / votes.sum(dim=1, keepdim=True)).log()

    def load_state_dict(
        self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False
    ):
        """A bank of any size: the module's buffers take its size first, then load as usual."""
        if "bank" in state_dict and "bank_labels" in state_dict:
            self.bank = self.bank.new_zeros(state_dict["bank"].shape)
            self.bank_labels = self.bank_labels.new_zeros(state_dict["bank_labels"].shape)
        return super().load_state_dict(state_dict, strict, assign)


Probe = AttentiveProbe | LinearProbe | KnnProbe  # what build_probe and load_probe return
PROBES = ("attentive", "linear", "knn")


def build_probe(
    kind: str,
    embed_dim: int,
    num_classes: int,
    num_heads: int = 16,
    depth: int = 1,
    k: int = 1,
) -> Probe:
    """`AttentiveProbe` (of `depth` blocks), `LinearProbe` or `KnnProbe` (`k` neighbours) by
    name; raises ConfigError naming the known kinds."""
    if kind == "attentive":
        return AttentiveProbe(embed_dim, num_classes, num_heads, depth=depth)
    if kind == "linear":
        return LinearProbe(embed_dim, num_classes)
    if kind == "knn":
        return KnnProbe(embed_dim, num_classes, k)
    raise ConfigError(f"unknown probe {kind!r}; known: {', '.join(PROBES)}")


CHECKPOINT_FORMAT = "vjfer-probe"
CHECKPOINT_VERSION = 1


def probe_checkpoint(probe: nn.Module, meta: dict) -> dict:
    """What `probe.pt` holds: the state dict (CPU) plus `meta` (probe kind, embed_dim, num_classes,
    num_heads, class names, training config, cache fingerprint, ...), loadable with weights_only;
    `layer_view` the stored layer it reads (`vjfer.probe.layer`), when it reads one."""
    state = {k: v.detach().cpu() for k, v in probe.state_dict().items()}
    if (view := getattr(probe, "layer_view", None)) is not None:
        meta = {**meta, "layer_view": asdict(view)}
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **meta, "state_dict": state}


def load_probe(path: str | Path, device: str | torch.device = "cpu") -> tuple[Probe, dict]:
    """Rebuild a probe from a `probe.pt` written by training; returns (probe in eval mode, meta)."""
    path = Path(path)
    ckpt = torch_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    if (problem := validation_error(ckpt, ProbeFile)) is not None:  # before a field is used
        raise CheckpointError(f"{path}: {problem}; not a probe.pt vjfer wrote, or damaged")
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    probe = build_probe(
        meta["probe"],
        meta["embed_dim"],
        meta["num_classes"],
        meta["num_heads"],
        meta.get("probe_depth", 1),  # recorded only when > 1
        meta.get("knn_k", 1),  # k-NN probes only
    )
    try:
        probe.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: state dict does not fit the probe: {err}") from err
    if "layer_view" in meta:  # trained on one layer of a multi-layer cache: reads it again
        probe.layer_view = LayerView(**meta["layer_view"])
    return probe.to(device).eval(), meta
