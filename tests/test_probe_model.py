"""Probes: the factorised pooling equals the K/V form, reference state dicts load, sizes and
init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vjfer.errors import ConfigError
from vjfer.probe.model import AttentiveProbe, LinearProbe, build_probe, strip_reference_prefix

D, H, C = 64, 4, 8


class _RefCrossAttention(nn.Module):
    """The reference's CrossAttention (use_sdpa=False path), written as it is."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q, x):
        B, n, C = q.shape
        q = self.q(q).reshape(B, n, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        B, N, C = x.shape
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        q = (attn @ v).transpose(1, 2).reshape(B, n, C)
        return self.proj(q)


class _RefMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _RefBlock(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.xattn = _RefCrossAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _RefMLP(dim, 4 * dim)

    def forward(self, q, x):
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class _RefPooler(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.randn(1, 1, dim))
        self.cross_attention_block = _RefBlock(dim, num_heads)

    def forward(self, x):
        return self.cross_attention_block(self.query_tokens.repeat(len(x), 1, 1), x)


class _RefClassifier(nn.Module):
    """The reference's AttentiveClassifier, parameter names included."""

    def __init__(self, dim, num_heads, num_classes):
        super().__init__()
        self.pooler = _RefPooler(dim, num_heads)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.linear(self.pooler(x).squeeze(1))


def _randomise(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial values everywhere (LayerNorm gains/biases and biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if p.dim() == 1 else 0.0) * 0.1)


def _tokens(b=3, n=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, D, generator=g) * 2 + 0.5


def test_parameter_count_at_vit_h_width():
    with torch.device("meta"):
        probe = AttentiveProbe(1280, 8)
    assert sum(p.numel() for p in probe.parameters()) == 19_688_968


def test_parameter_names_follow_the_reference():
    probe = AttentiveProbe(D, C, H)
    ref = _RefClassifier(D, H, C)
    assert list(probe.state_dict()) == list(ref.state_dict())


@pytest.mark.parametrize("masked", [False, True])
def test_factorised_equals_kv_form_values_and_grads(masked):
    torch.manual_seed(0)
    probe = AttentiveProbe(D, C, H)
    _randomise(probe)
    x = _tokens().requires_grad_(True)
    mask = torch.rand(3, 40, generator=torch.Generator().manual_seed(2)) > 0.3 if masked else None
    target = torch.tensor([1, 5, 7])

    grads = []
    for forward in (probe.forward, probe.forward_reference):
        probe.zero_grad()
        x.grad = None
        logits = forward(x, mask)
        nn.functional.cross_entropy(logits, target).backward()
        grads.append(
            (
                logits.detach(),
                x.grad.clone(),
                {n: p.grad.clone() for n, p in probe.named_parameters()},
            )
        )
    (fl, fx, fp), (rl, rx, rp) = grads
    torch.testing.assert_close(fl, rl, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fx, rx, atol=1e-5, rtol=1e-5)
    for name in fp:
        torch.testing.assert_close(fp[name], rp[name], atol=1e-5, rtol=1e-5, msg=name)


def test_mask_equals_dropping_the_padding():
    probe = AttentiveProbe(D, C, H)
    _randomise(probe)
    x = _tokens(b=2)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 25:] = False
    out = probe(x, mask)
    torch.testing.assert_close(out[1:], probe(x[1:, :25]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:1], probe(x[:1]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_reference_state_dict_loads_and_gives_same_logits(prefix):
    ref = _RefClassifier(D, H, C)
    _randomise(ref, seed=3)
    state = {prefix + k: v for k, v in ref.state_dict().items()}
    probe = AttentiveProbe(D, C, H)
    probe.load_state_dict(state)
    x = _tokens()
    with torch.no_grad():
        expected = ref(x)
        torch.testing.assert_close(probe.forward_reference(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(probe(x), expected, atol=1e-5, rtol=1e-5)


def test_strip_prefix_only_at_the_start():
    assert strip_reference_prefix({"module.a.module.b": 1, "c": 2}) == {"a.module.b": 1, "c": 2}


def test_load_is_strict():
    probe = AttentiveProbe(D, C, H)
    state = probe.state_dict()
    state.pop("linear.bias")
    with pytest.raises(RuntimeError, match="linear.bias"):
        probe.load_state_dict(state)


def test_init_matches_the_reference():
    torch.manual_seed(0)
    probe = AttentiveProbe(256, C, 8)
    block = probe.pooler.cross_attention_block
    assert probe.pooler.query_tokens.std().item() == pytest.approx(0.02, rel=0.2)
    assert block.xattn.q.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert block.xattn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2), rel=0.05)
    assert block.mlp.fc2.weight.std().item() == pytest.approx(0.02 / math.sqrt(2), rel=0.05)
    for lin in (block.xattn.q, block.xattn.kv, block.xattn.proj, block.mlp.fc1, block.mlp.fc2):
        assert not lin.bias.any()
    assert torch.equal(block.norm1.weight, torch.ones(256)) and not block.norm1.bias.any()
    assert block.norm1.eps == 1e-5
    bound = 1 / math.sqrt(256)  # PyTorch's default Linear init for the head
    assert probe.linear.weight.abs().max().item() <= bound
    assert probe.linear.weight.std().item() > 0.5 * bound / math.sqrt(3)


def test_pooled_is_the_vector_the_head_reads():
    for probe in (AttentiveProbe(D, C, H), LinearProbe(D, C)):
        x = _tokens()
        assert probe.pooled(x).shape == (3, D)
        assert probe(x).shape == (3, C)


def test_linear_probe_is_mean_layernorm_linear():
    probe = LinearProbe(D, C)
    _randomise(probe)
    x = _tokens()
    expected = probe.linear(
        nn.functional.layer_norm(x.mean(1), (D,), probe.norm.weight, probe.norm.bias)
    )
    torch.testing.assert_close(probe(x), expected)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[:, 30:] = False
    torch.testing.assert_close(probe(x, mask), probe(x[:, :30]))


def test_build_probe_rejects_unknown_kind():
    assert isinstance(build_probe("linear", D, C), LinearProbe)
    with pytest.raises(ConfigError, match="unknown probe 'mlp'"):
        build_probe("mlp", D, C)
    with pytest.raises(ConfigError, match="not divisible"):
        AttentiveProbe(30, C, 4)


@pytest.mark.cuda
def test_factorised_matches_kv_form_under_bf16_autocast_on_cuda():
    probe = AttentiveProbe(256, C, 16).cuda()
    x = torch.randn(2, 4 * 128, 256, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast, slow = probe(x).float(), probe.forward_reference(x).float()
    torch.testing.assert_close(fast, slow, atol=3e-2, rtol=3e-2)
    fast.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in probe.parameters())
