"""Heads of one shape trained as one batched module (`--batch-heads`): `group_heads` and
`HeadGroup`.

A pass's heads of one family and shape (the same probe kind, layer, seed and training videos, so
the same samples in the same order: `train._epoch_draws` draws per seed) step together: their
parameters are stacked [H, ...] and one kernel per operation serves all heads (the depth-1
attentive probe's forward written for stacked heads, `attentive_logits`; the linear probe's under
`torch.func.vmap`); what does not depend on a head, such as the LayerNorm of the tokens, runs
once. Each head keeps its own loss (cross-entropy), its own gradient-norm clip (1.0) and its own
AdamW update with its lr and weight decay from the schedules of `vjfer.probe.config`, applied to
the stacked tensors at once (torch's AdamW formula, per-head factors broadcast). A head whose loss
is not finite leaves the group at the epoch's end (its slices are dropped) and trains no further,
as alone.

Everything that leaves the pass is per head: at every epoch's end the group writes each head's
parameters and AdamW moments back into its `Head` (the reference module's keys, torch's AdamW
state format), so histories, failures, the pass's checkpoint and each probe.pt are what separate
heads write. The numbers equal separate heads' within float rounding, not bit for bit (batched
matmuls and reductions sum in another order), which is why batching is an option and a group of
one head is never made. Not grouped (trained as today): k-NN heads, the deeper attentive probe
(its self-attention blocks are not written for stacked heads, and under vmap its attention would
loop per head), fp16 autocast (loss scaling per head), heads already failed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, vmap

from vjfer.probe.config import lr_at, wd_at
from vjfer.probe.head import Head, batch_inputs
from vjfer.probe.layer import select_layer
from vjfer.probe.model import LN_EPS, AttentiveProbe, masked_softmax
from vjfer.probe.reader import ReadStats

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s: max_norm / (norm + 1e-6)


def group_key(head: Head) -> tuple | None:
    """What heads must share to step as one batched module (the pass's heads already share depth,
    attention heads, batch size and schedule; PER_HEAD in `vjfer.probe.train`): the family, the
    layer (the same tokens), the seed (the same initialisation and draws) and the training videos
    (the same samples and steps). None: the head trains alone."""
    c = head.config
    deep = c.probe == "attentive" and c.probe_depth > 1
    if head.knn or deep or head.failed is not None or head._scaler.is_enabled():
        return None
    return (c.probe, c.layer, c.seed, head.rows.tobytes())


def group_heads(heads: Sequence[Head]) -> list[Head | HeadGroup]:
    """The pass's heads as training units, in the order of each unit's first head: a
    `HeadGroup` per `group_key` shared by two heads or more, every other head alone."""
    groups: dict[tuple, list[Head]] = {}
    units: list[Head | list[Head]] = []
    for head in heads:
        key = group_key(head)
        if key is None:
            units.append(head)
        elif key in groups:
            groups[key].append(head)
        else:
            units.append(groups.setdefault(key, [head]))
    out: list[Head | HeadGroup] = []
    for unit in units:
        if isinstance(unit, list):
            out.append(HeadGroup(unit) if len(unit) > 1 else unit[0])
        else:
            out.append(unit)
    return out


def _per_head(values: Sequence[float], like: Tensor) -> Tensor:
    """Per-head scalars (computed in double, as torch's optimizer computes them) as a float32
    [H, 1, ...] tensor broadcasting over a stacked tensor `like`."""
    shape = (len(values),) + (1,) * (like.dim() - 1)
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)


def _linear(x: Tensor, params: dict[str, Tensor], name: str) -> Tensor:
    """Each head's nn.Linear `name` on its rows: x [G, B, in] -> [G, B, out]."""
    weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]  # [G, out, in], [G, out]
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def _layer_norm(x: Tensor, params: dict[str, Tensor], name: str) -> Tensor:
    """Each head's nn.LayerNorm `name` on its rows [G, B, D]."""
    normed = F.layer_norm(x, x.shape[-1:], None, None, LN_EPS)
    return normed * params[f"{name}.weight"][:, None] + params[f"{name}.bias"][:, None]


def attentive_logits(
    probe: AttentiveProbe, params: dict[str, Tensor], tokens: Tensor, mask: Tensor | None
) -> Tensor:
    """The depth-1 `AttentiveProbe.forward` (its factorised pooling) of G heads at once, their
    parameters stacked [G, ...] in the module's layout: tokens [B, N, D] -> logits [G, B, C].

    The tokens' part runs once for every head: one LayerNorm, the scores of all G·H attention
    heads in one product with the tokens, and the pooling in one product per sample ([G·H, N] by
    [N, D]); vmap would copy the tokens G times for the pooling. The rest is per head and small.
    The same function as the module's (`tests/test_probe_batched.py` holds them together)."""
    tokens, mask = select_layer(probe.layer_view, tokens, mask)
    B, N, D = tokens.shape
    block = "pooler.cross_attention_block."
    query = params["pooler.query_tokens"].reshape(-1, 1, D)  # [G, 1, D]
    G, H = query.shape[0], probe.num_heads
    q = _linear(query, params, block + "xattn.q").reshape(G, H, D // H)  # q'_h per head
    kv, kv_bias = params[block + "xattn.kv.weight"], params[block + "xattn.kv.bias"]
    w_k, w_v = kv[:, :D].reshape(G, H, D // H, D), kv[:, D:].reshape(G, H, D // H, D)
    gain, shift = params[block + "norm1.weight"], params[block + "norm1.bias"]  # [G, D]
    u = torch.einsum("ghdk,ghd->ghk", w_k, q)  # u_h = W_k,h^T q'_h: [G, H, D]
    w = (u * gain[:, None] * probe.pooler.cross_attention_block.xattn.scale).reshape(G * H, D)
    xhat = F.layer_norm(tokens, (D,), None, None, LN_EPS)  # [B, N, D], once
    # scores [B, G·H, N]: the softmax runs along the last, contiguous axis
    scores = torch.bmm(w.to(xhat.dtype).expand(B, -1, -1), xhat.transpose(1, 2))
    attn = masked_softmax(scores, mask, dim=2)
    pooled = (attn @ xhat).view(B, G, H, D).transpose(0, 1)  # [G, B, H, D]
    pooled = pooled * gain[:, None, None] + shift[:, None, None]  # sum_n a_hn LN(x_n)
    out = torch.einsum("gbhk,ghdk->gbhd", pooled, w_v.to(pooled.dtype)).reshape(G, B, D)
    out = _linear(out + kv_bias[:, None, D:], params, block + "xattn.proj")
    x = query + out  # [G, B, D]
    hidden = F.gelu(_linear(_layer_norm(x, params, block + "norm2"), params, block + "mlp.fc1"))
    return _linear(x + _linear(hidden, params, block + "mlp.fc2"), params, "linear")


class HeadGroup:
    """Heads of one `group_key` trained as one batched module; fed like a `Head`."""

    def __init__(self, heads: Sequence[Head]):
        self.heads = list(heads)
        first = self.heads[0]
        self.config, self.rows, self.device = first.config, first.rows, first.device
        self.total, self.step = first.total, first.step
        self._amp = first._amp
        # the module whose forward runs per head; its parameters never used (meta: no memory)
        self._module = copy.deepcopy(first.probe).to("meta")
        self._stack()
        self._pending: list[tuple[Tensor, int, Tensor | None]] = []
        self._loss_sum, self._batches = torch.zeros(len(self.heads), device=self.device), 0
        if isinstance(self._module, AttentiveProbe):  # depth 1 (`group_key`)
            probe = self._module
            self._forward = lambda params, x, mask: attentive_logits(probe, params, x, mask)
        else:  # linear: vmap of its forward (the mean of the tokens runs once, unbatched)
            self._forward = vmap(
                lambda params, x, mask: functional_call(self._module, params, (x, mask)),
                in_dims=(0, None, None),
            )

    def _stack(self) -> None:
        """Stack the heads' parameters and AdamW moments (zeros before the first step). A
        matrix is stacked transposed, [H, in, out]: its batched gradient comes out in that
        layout, where [H, out, in] would cost a transposing copy per step (vmap's linear)."""
        named = [dict(h.probe.named_parameters()) for h in self.heads]
        self.names = list(named[0])
        self.decay = {n: named[0][n].ndim >= 2 for n in self.names}  # as `head.param_groups`
        self.flipped = {n for n in self.names if named[0][n].ndim == 2}
        self.params = {
            n: self._stacked(n, [p[n].detach() for p in named]).requires_grad_() for n in self.names
        }
        self.moments: dict[str, list[Tensor]] = {}
        for n in self.names:
            pairs = [
                (h.optimizer.state.get(p[n], {}), p[n])
                for h, p in zip(self.heads, named, strict=True)
            ]
            self.moments[n] = [
                self._stacked(n, [state.get(k, torch.zeros_like(p)) for state, p in pairs])
                for k in ("exp_avg", "exp_avg_sq")
            ]

    def _stacked(self, name: str, tensors: list[Tensor]) -> Tensor:
        stacked = torch.stack(tensors)
        return stacked.transpose(1, 2).contiguous() if name in self.flipped else stacked

    def _head_view(self, name: str, stacked: Tensor) -> Tensor:
        """A stacked tensor in the module's layout, [H, ...] (a view)."""
        return stacked.transpose(1, 2) if name in self.flipped else stacked

    @property
    def idle(self) -> bool:
        return False

    def feed(self, sample: Tensor, label: int, mask: Tensor | None = None) -> None:
        if not self.heads:  # every head failed (--on-nonfinite skip)
            return
        self._pending.append((sample, label, mask))
        if len(self._pending) == self.config.batch_size:
            self._step()

    def _step(self) -> None:
        shared = self.heads[0].shared
        make = shared.get if shared is not None else batch_inputs
        x, mask, labels = make(self._pending, self.device, self.config.pool)
        self._pending = []
        H = len(self.heads)
        with torch.autocast(
            "cuda", dtype=self._amp or torch.float32, enabled=self._amp is not None
        ):
            params = {n: self._head_view(n, p) for n, p in self.params.items()}
            logits = self._forward(params, x, mask)  # [H, B, C]
        targets = labels[:, None].expand(-1, H)  # [B, H]: each head's loss is its own mean
        losses = F.cross_entropy(logits.float().permute(1, 2, 0), targets, reduction="none")
        losses = losses.mean(dim=0)  # [H]
        losses.sum().backward()  # heads share no parameter: each gets its own loss's gradient
        self._clip()
        self._adamw()
        self._loss_sum += losses.detach()
        self.step, self._batches = self.step + 1, self._batches + 1

    @torch.no_grad()
    def _clip(self) -> None:
        """Each head's gradients scaled to norm <= clip_grad, as clip_grad_norm_ does alone."""
        grads = [cast(Tensor, self.params[n].grad) for n in self.names]
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), 2, dim=1) for g in grads])
        total = torch.linalg.vector_norm(norms, 2, dim=0)  # [H]
        coef = (self.config.clip_grad / (total + CLIP_EPS)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view((-1,) + (1,) * (g.dim() - 1)))

    @torch.no_grad()
    def _adamw(self) -> None:
        """torch's AdamW step on each stacked tensor at once (a few kernels per tensor, whatever
        the heads), each head at its lr and weight decay ([H, 1, ...] factors)."""
        beta1, beta2 = self.config.betas
        t = self.step + 1  # AdamW's step count after this step
        bias1, bias2_sqrt = 1 - beta1**t, (1 - beta2**t) ** 0.5
        lrs = [lr_at(self.step, self.total, h.config) for h in self.heads]
        decays = [
            1 - lr * wd_at(self.step, self.total, h.config)
            for lr, h in zip(lrs, self.heads, strict=True)
        ]
        for n in self.names:
            param, grad = self.params[n], cast(Tensor, self.params[n].grad)
            exp_avg, exp_avg_sq = self.moments[n]
            if self.decay[n]:
                param.mul_(_per_head(decays, param))
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(bias2_sqrt).add_(1e-8)  # AdamW's default eps
            # param - step * exp_avg / denom, as torch's addcdiv_(value=-step), one temporary
            param.addcdiv_(exp_avg, denom.div_(_per_head([-lr / bias1 for lr in lrs], param)))
            param.grad = None

    def running_loss(self) -> float:
        return (self._loss_sum.sum() / max(len(self.heads), 1)).item() / max(self._batches, 1)

    def _unstack(self) -> None:
        """Write each head's parameters, AdamW state and step count back into its `Head`."""
        last = max(self.step - 1, 0)
        for h, head in enumerate(self.heads):
            named = dict(head.probe.named_parameters())
            for n in self.names:
                with torch.no_grad():
                    named[n].copy_(self._head_view(n, self.params[n])[h])
                exp_avg, exp_avg_sq = (
                    self._head_view(n, m)[h].clone(memory_format=torch.contiguous_format)
                    for m in self.moments[n]
                )
                step = torch.tensor(float(self.step))
                head.optimizer.state[named[n]] = {
                    "step": step,
                    "exp_avg": exp_avg,
                    "exp_avg_sq": exp_avg_sq,
                }
            for group in head.optimizer.param_groups:  # as the head's last step left them
                group["lr"] = lr_at(last, self.total, head.config)
                if group["decay"]:
                    group["weight_decay"] = wd_at(last, self.total, head.config)
            head.step = self.step

    def end_epoch(self, epoch: int, share: float, reads: ReadStats) -> None:
        """Step on the rest, hand each head its state and its epoch's loss (`Head.end_epoch`
        records it), and drop the heads whose loss was not finite."""
        if not self.heads:
            return
        if self._pending:
            self._step()
        self._unstack()
        for h, head in enumerate(self.heads):
            head._loss_sum, head._batches = self._loss_sum[h], self._batches
            head.end_epoch(epoch, share, reads)
        keep = [h for h, head in enumerate(self.heads) if head.failed is None]
        if len(keep) < len(self.heads):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            self.heads = [self.heads[h] for h in keep]
            for n in self.names:
                self.params[n] = self.params[n].detach()[index].requires_grad_()
                self.moments[n] = [m[index] for m in self.moments[n]]
        self._loss_sum, self._batches = torch.zeros(len(self.heads), device=self.device), 0
