"""VideoMAE V2: tiny checkpoints written in the release's own layouts by a re-creation of the
reference (OpenGVLab/VideoMAEv2 models/modeling_finetune.py and modeling_pretrain.py, below, kept
close to the published code), loaded through the registry; vjfer's tokens equal the reference's
forward; wrong files are one line naming the key; extract -> probe end to end."""

from __future__ import annotations

import argparse
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import encoder_pipeline, run_cli
from vjfer.encoders import load_encoder
from vjfer.encoders.checkpoint import load_strict
from vjfer.encoders.registry import ENCODERS, EncoderSpec
from vjfer.encoders.videomae2 import build_mae, config_from_state, remap_videomae2, sinusoid_table
from vjfer.encoders.vjepa import ViTConfig, forward_flops
from vjfer.errors import CheckpointError, ConfigError

# --- the reference, after modeling_finetune.py (dropout and drop path left out: eval mode) -------


def get_sinusoid_encoding_table(n_position, d_hid):
    def get_position_angle_vec(position):
        return [position / np.power(10000, 2 * (hid_j // 2) / d_hid) for hid_j in range(d_hid)]

    sinusoid_table = np.array([get_position_angle_vec(pos_i) for pos_i in range(n_position)])
    sinusoid_table[:, 0::2] = np.sin(sinusoid_table[:, 0::2])
    sinusoid_table[:, 1::2] = np.cos(sinusoid_table[:, 1::2])
    return torch.tensor(sinusoid_table, dtype=torch.float, requires_grad=False).unsqueeze(0)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        all_head_dim = head_dim * self.num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, all_head_dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(all_head_dim))
            self.v_bias = nn.Parameter(torch.zeros(all_head_dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.proj = nn.Linear(all_head_dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat(
                (self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias)
            )
        qkv = F.linear(input=x, weight=self.qkv.weight, bias=qkv_bias)
        qkv = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, norm_layer, init_values):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1, self.gamma_2 = None, None

    def forward(self, x):
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            x = x + self.mlp(self.norm2(x))
        else:
            x = x + self.gamma_1 * self.attn(self.norm1(x))
            x = x + self.gamma_2 * self.mlp(self.norm2(x))
        return x


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, embed_dim, num_frames, tubelet_size):
        super().__init__()
        kernel = (tubelet_size, patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2 * (num_frames // tubelet_size)
        self.proj = nn.Conv3d(3, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


NORM = partial(nn.LayerNorm, eps=1e-6)  # the released models' norm_layer


class VisionTransformer(nn.Module):
    """modeling_finetune.VisionTransformer (the fine-tuned and distilled checkpoints)."""

    def __init__(
        self,
        img_size=32,
        patch_size=16,
        num_classes=7,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=4.0,
        qkv_bias=True,
        norm_layer=NORM,
        init_values=0.0,
        use_learnable_pos_emb=False,
        all_frames=16,
        tubelet_size=2,
        use_mean_pooling=True,
        encoder_only=False,  # modeling_pretrain's encoder: always a final norm, no pooling head
    ):
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, embed_dim, all_frames, tubelet_size)
        num_patches = self.patch_embed.num_patches
        if use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.randn(1, num_patches, embed_dim))
        else:
            self.pos_embed = get_sinusoid_encoding_table(num_patches, embed_dim)
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer, init_values)
                for _ in range(depth)
            ]
        )
        self.encoder_only = encoder_only
        if encoder_only:
            self.norm = norm_layer(embed_dim)
            self.head = nn.Identity()
            return
        self.norm = nn.Identity() if use_mean_pooling else norm_layer(embed_dim)
        self.fc_norm = norm_layer(embed_dim) if use_mean_pooling else None
        self.head = nn.Linear(embed_dim, num_classes)

    def tokens(self, x):
        """forward_features up to the pooling (PretrainVisionTransformerEncoder with no mask)."""
        x = self.patch_embed(x)
        x = x + self.pos_embed.expand(x.shape[0], -1, -1).type_as(x).clone().detach()
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward_features(self, x):
        x = self.tokens(x)
        if self.fc_norm is not None:
            return self.fc_norm(x.mean(1))
        return x[:, 0]  # self.norm(x[:, 0]): tokens() has applied norm already


class PretrainVisionTransformer(nn.Module):
    """modeling_pretrain's container: encoder, encoder_to_decoder, mask_token, decoder."""

    def __init__(self, **encoder_args):
        super().__init__()
        self.encoder = VisionTransformer(encoder_only=True, **encoder_args)
        D = self.encoder.patch_embed.proj.out_channels
        self.decoder = nn.Module()
        self.decoder.blocks = nn.ModuleList([Block(16, 2, 4.0, True, nn.LayerNorm, 0.0)])
        self.decoder.norm = nn.LayerNorm(16)
        self.decoder.head = nn.Linear(16, 3 * 2 * 16 * 16)
        self.encoder_to_decoder = nn.Linear(D, 16, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 16))


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights everywhere (biases, norms, layer scale), as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.ndim > 1 else 0.1))
            if p.ndim == 1 and p.shape[0] in (32, 16):
                p.add_(1.0)  # norm weights / biases around 1, still random
    return model.eval()


TINY = ViTConfig(embed_dim=32, depth=2, num_heads=2, img_size=32)


@pytest.fixture
def tiny_spec(monkeypatch):
    """A tiny VideoMAE V2 preset registered as 'videomae2-tiny' (the real factory)."""
    spec = EncoderSpec("videomae2-tiny", ENCODERS["videomae2-b"].factory, "test", TINY)
    monkeypatch.setitem(ENCODERS, spec.name, spec)
    return spec


def clips(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, 16, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_sinusoid_table_equals_the_reference():
    for n, d in ((392, 384), (64, 1408)):  # ViT-S at 112 px; ViT-g's width
        assert torch.equal(sinusoid_table(n, d), get_sinusoid_encoding_table(n, d))


def test_distilled_layout_tokens_and_pooled_features_equal_the_reference(tiny_spec, tmp_path):
    """The distilled vit_s/vit_b files: {'module': VisionTransformer.state_dict()}, mean pooling:
    vjfer caches the last block's raw tokens; fc_norm(mean) of them is the reference's feature."""
    ref = randomise(VisionTransformer(), seed=1)
    path = tmp_path / "vit_t_k710_dl.pth"
    torch.save({"module": ref.state_dict()}, path)
    encoder = load_encoder("videomae2-tiny", checkpoint=path)
    x = clips()
    with torch.inference_mode():
        want_tokens, want_pooled = ref.tokens(x), ref.forward_features(x)
    tokens = encoder.encode(x)
    assert tokens.shape == (2, 8 * 2 * 2, 32) and encoder.layer_norm == "none"
    torch.testing.assert_close(tokens, want_tokens, atol=1e-4, rtol=0)
    pooled = F.layer_norm(tokens.mean(1), (32,), ref.fc_norm.weight, ref.fc_norm.bias, 1e-6)
    torch.testing.assert_close(pooled, want_pooled, atol=1e-4, rtol=0)
    fp = encoder.fingerprint
    assert (fp["layout"], fp["final_norm"], fp["pos_embed"], fp["qkv_bias"]) == (
        "finetune",
        False,
        "sincos",
        "q,v",
    )
    assert fp["unused"] == ["fc_norm", "head"] and fp["weights"] == "state-dict"
    assert encoder.module.blocks[0].norm1.eps == 1e-6  # partial(nn.LayerNorm, eps=1e-6)
    assert fp["mean"] == [0.485, 0.456, 0.406]  # the release's data pipeline: ImageNet


def test_pretrain_layout_keeps_the_encoder_and_its_norm(tiny_spec, tmp_path):
    """A pre-training file: {'model': PretrainVisionTransformer.state_dict(), 'epoch': ...}: the
    `encoder.` part, with its final norm; decoder, encoder_to_decoder, mask_token dropped."""
    ref = randomise(PretrainVisionTransformer(init_values=0.1), seed=2)
    path = tmp_path / "vit_t_hybrid_pt.pth"
    optimizer = torch.optim.AdamW(ref.parameters())
    args = argparse.Namespace(model="pretrain_videomae_tiny", mask_ratio=0.9, lr=1e-3)
    # utils.save_model's dict (without deepspeed)
    saved = {"model": ref.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 799}
    torch.save({**saved, "scaler": {"scale": 65536.0}, "args": args}, path)
    encoder = load_encoder("videomae2-tiny", checkpoint=path)
    x = clips(seed=3)
    with torch.inference_mode():
        want = ref.encoder.tokens(x)
    torch.testing.assert_close(encoder.encode(x), want, atol=1e-4, rtol=0)
    fp = encoder.fingerprint
    assert (fp["layout"], fp["final_norm"], fp["layer_scale"]) == ("pretrain", True, True)
    assert fp["unused"] == ["decoder", "encoder_to_decoder", "mask_token"]
    # --layers: intermediate blocks through the final norm, the last equal to the output
    blocks = encoder.resolve_layers((0, -1))
    layered = encoder.encode(x, blocks)
    assert layered.shape == (2, 2, 32, 32) and encoder.layer_norm == "final"
    torch.testing.assert_close(layered[:, 1], want, atol=1e-4, rtol=0)
    with torch.inference_mode():
        first = ref.encoder.patch_embed(x) + ref.encoder.pos_embed
        first = ref.encoder.norm(ref.encoder.blocks[0](first))
    torch.testing.assert_close(layered[:, 0], first, atol=1e-4, rtol=0)


def test_learnable_table_and_no_qkv_bias_come_from_the_file(tiny_spec, tmp_path):
    ref = randomise(
        VisionTransformer(use_learnable_pos_emb=True, qkv_bias=False, use_mean_pooling=False), 4
    )
    path = tmp_path / "learned.pth"
    torch.save(ref.state_dict(), path)  # a bare state dict
    encoder = load_encoder("videomae2-tiny", checkpoint=path)
    x = clips(seed=5)
    with torch.inference_mode():
        want = ref.tokens(x)
    torch.testing.assert_close(encoder.encode(x), want, atol=1e-4, rtol=0)
    fp = encoder.fingerprint
    assert (fp["pos_embed"], fp["qkv_bias"], fp["final_norm"]) == ("checkpoint", "none", True)


def test_wrong_and_partial_files_name_the_key(tiny_spec, tmp_path):
    state = randomise(VisionTransformer(), seed=6).state_dict()
    partial_state = {k: v for k, v in state.items() if k != "blocks.1.attn.v_bias"}
    torch.save({"module": partial_state}, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match=r"partial.pth: .*1 missing: blocks.1.attn.v_bias"):
        load_encoder("videomae2-tiny", checkpoint=tmp_path / "partial.pth")
    extra = {**state, "blocks.0.attn.scale": torch.zeros(2, 1, 1)}  # cos_attn: not supported
    torch.save({"module": extra}, tmp_path / "cos.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected: blocks.0.attn.scale"):
        load_encoder("videomae2-tiny", checkpoint=tmp_path / "cos.pth")
    torch.save({"optimizer": {}, "epoch": 3}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"not a OpenGVLab/VideoMAEv2 checkpoint.*epoch"):
        load_encoder("videomae2-tiny", checkpoint=tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"another size: .*embed_dim 32 \(preset 768\)"):
        load_encoder("videomae2-b", checkpoint=tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match="videomae2-b needs a checkpoint"):
        load_encoder("videomae2-b")
    torch.save({"module": state, "log": open}, tmp_path / "code.pth")  # a pickled function
    with pytest.raises(CheckpointError, match=r"code.pth: refused .* pickles io.open"):
        load_encoder("videomae2-tiny", checkpoint=tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_encoder("videomae2-tiny", checkpoint=tmp_path / "absent.pth")


def test_presets_flops_and_random_weights(tiny_spec):
    """The presets state the release's sizes; FLOPs are forward_flops of the same ViT."""
    g = ENCODERS["videomae2-g"].vit
    assert g is not None and (g.patch_size, g.grid, int(g.embed_dim * g.mlp_ratio)) == (
        14,
        (8, 16, 16),
        6144,
    )
    b = ENCODERS["videomae2-b"].vit
    assert b is not None and forward_flops(b) == 360_689_172_480  # as VideoMAE-B (v1)
    encoder = load_encoder("videomae2-tiny", random_weights=True, seed=3)
    again = load_encoder("videomae2-tiny", random_weights=True, seed=3)
    x = clips(1)
    torch.testing.assert_close(encoder.encode(x), again.encode(x), atol=0, rtol=0)
    assert encoder.fingerprint["weights"] == "random-init" and encoder.layer_norm == "final"


@pytest.mark.slow
def test_videomae2_extract_probe_cross_report_predict(tiny_spec, tmp_path):
    ref = randomise(PretrainVisionTransformer(), seed=7)
    ckpt = tmp_path / "pt.pth"
    torch.save({"model": ref.state_dict()}, ckpt)
    settings = encoder_pipeline(tmp_path, "videomae2-tiny", ckpt)["manifest"]["settings"]
    fp = settings["encoder_fingerprint"]
    assert (fp["name"], fp["layout"], fp["final_norm"]) == ("videomae2-tiny", "pretrain", True)
    assert settings["mean"] == [0.485, 0.456, 0.406]


# modeling_finetune's @register_model sizes (qkv_bias=True, eps 1e-6 in all five)
RELEASED = {
    "videomae2-s": dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4),
    "videomae2-b": dict(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4),
    "videomae2-l": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4),
    "videomae2-h": dict(patch_size=16, embed_dim=1280, depth=32, num_heads=16, mlp_ratio=4),
    "videomae2-g": dict(patch_size=14, embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_presets_fit_the_released_architectures(name, monkeypatch):
    """Each preset takes the state dict of the reference's model of that name (shapes only: built
    on `meta`, nothing computed), and every preset's table has the reference's token count."""
    monkeypatch.setitem(globals(), "get_sinusoid_encoding_table", lambda n, d: torch.zeros(1, n, d))
    with torch.device("meta"):
        ref = VisionTransformer(img_size=224, num_classes=710, **RELEASED[name])
    state, dropped, layout = remap_videomae2({"module": ref.state_dict()})
    vit = ENCODERS[name].vit
    assert vit is not None and vit.num_tokens == ref.patch_embed.num_patches
    model = build_mae(config_from_state(state, vit, "videomae2"), "meta")
    load_strict(model, state)  # every key, every shape
    assert (dropped, layout, model.config.final_norm) == (["fc_norm", "head"], "finetune", False)


def test_encoders_command_lists_the_presets():
    out = run_cli("encoders")
    for name in (*RELEASED, "marlin-s", "marlin-b", "marlin-l"):
        assert name in out
    assert "vit_b_k710_dl_from_giant.pth" in out and "marlin_vit_base_ytf.encoder.pt" in out
