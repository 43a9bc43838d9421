"""MARLIN: tiny `.pt` / `.ckpt` files in the release's layout, written by a re-creation of
marlin_pytorch's model (ControlNet/MARLIN src/marlin_pytorch/model/, below, kept close to the
published code), loaded through the registry into vjfer's VideoMAE-style ViT; its tokens equal
`Marlin.extract_features(x, keep_seq=True)`; wrong files name the key; extract -> probe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.conftest import encoder_pipeline
from vjfer.encoders import load_encoder
from vjfer.encoders.checkpoint import load_strict
from vjfer.encoders.registry import ENCODERS, EncoderSpec
from vjfer.encoders.videomae2 import build_mae, config_from_state, remap_marlin, sinusoid_table
from vjfer.encoders.vjepa import ViTConfig
from vjfer.errors import CheckpointError

# --- the reference, after marlin_pytorch.model (modules.py, positional_embedding.py, encoder.py,
# marlin.py); dropout (rate 0 in every released config) left out


class PatchEmbedding3d(nn.Module):
    def __init__(self, input_size, patch_size, embedding):
        super().__init__()
        c, t, h, w = input_size
        self.projection = nn.Conv3d(c, embedding, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        x = self.projection(x)
        b, d = x.shape[:2]
        return x.reshape(b, d, -1).permute(0, 2, 1)  # "b d nt nh nw -> b (nt nh nw) d"


class Linear(nn.Module):
    def __init__(self, in_features, out_features, bias=True, build_activation=None):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias)
        self.activation = build_activation() if build_activation is not None else None

    def forward(self, x):
        x = self.linear(x)
        return self.activation(x) if self.activation is not None else x


class MLP(nn.Module):
    def __init__(self, neurons, build_activation=None):
        super().__init__()
        self.layers = nn.ModuleList(
            [Linear(neurons[0], neurons[1], True, build_activation), Linear(neurons[1], neurons[2])]
        )

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.proj = nn.Linear(dim, dim)

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
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(neurons=[dim, int(dim * mlp_ratio), dim], build_activation=nn.GELU)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SinCosPositionalEmbedding(nn.Module):
    def __init__(self, input_shape):
        super().__init__()
        self.input_shape = input_shape
        self.emb = nn.Parameter(torch.zeros(1, *input_shape), requires_grad=False)
        self.emb.data = self.make_embedding().unsqueeze(0)

    def make_embedding(self):
        n_position, d_hid = self.input_shape

        def get_position_angle_vec(position):
            return position / torch.tensor(10000).pow(
                2 * torch.div(torch.arange(d_hid), 2, rounding_mode="trunc") / d_hid
            )

        table = torch.stack([get_position_angle_vec(pos_i) for pos_i in range(n_position)], 0)
        table[:, 0::2] = torch.sin(table[:, 0::2])
        table[:, 1::2] = torch.cos(table[:, 1::2])
        return table.float()

    def forward(self, x):
        return x + self.emb


class MarlinEncoder(nn.Module):
    def __init__(self, img_size, patch_size, n_frames, embed_dim, depth, num_heads, qkv_bias):
        super().__init__()
        self.patch_embedding = PatchEmbedding3d(
            (3, n_frames, img_size, img_size), (2, patch_size, patch_size), embed_dim
        )
        num_patches = (img_size // patch_size) ** 2 * (n_frames // 2)
        self.pos_embedding = SinCosPositionalEmbedding((num_patches, embed_dim))
        self.norm = nn.LayerNorm(embed_dim)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, 4.0, qkv_bias, nn.LayerNorm) for _ in range(depth)]
        )

    def extract_features(self, x, seq_mean_pool):
        x = self.patch_embedding(x)
        x = self.pos_embedding(x)
        for block in self.blocks:
            x = block(x)
        if seq_mean_pool:
            x = x.mean(dim=1)
        return self.norm(x)


class Marlin(nn.Module):
    """`Marlin(as_feature_extractor=...)`: the encoder, plus decoder and enc_dec_proj when full."""

    def __init__(self, as_feature_extractor=True, qkv_bias=True):
        super().__init__()
        self.encoder = MarlinEncoder(32, 16, 16, 32, 2, 2, qkv_bias)
        if not as_feature_extractor:
            self.decoder = nn.Module()
            self.decoder.blocks = nn.ModuleList([Block(16, 2, 4.0, qkv_bias)])
            self.decoder.norm = nn.LayerNorm(16)
            self.decoder.head = nn.Linear(16, 3 * 2 * 16 * 16)
            self.enc_dec_proj = nn.Linear(32, 16, bias=False)

    def extract_features(self, x, keep_seq=True):
        with torch.no_grad():
            return self.encoder.extract_features(x, seq_mean_pool=not keep_seq)


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial weights, the position table kept (it is fixed in MARLIN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.endswith("pos_embedding.emb"):
                p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.ndim > 1 else 0.1) + 0.05)
    return model.eval()


TINY = ViTConfig(embed_dim=32, depth=2, num_heads=2, img_size=32)


@pytest.fixture
def tiny_spec(monkeypatch):
    """A tiny MARLIN preset registered as 'marlin-tiny' (the real factory and normalisation)."""
    real = ENCODERS["marlin-b"]
    spec = EncoderSpec("marlin-tiny", real.factory, "test", TINY, real.mean, real.std)
    monkeypatch.setitem(ENCODERS, spec.name, spec)
    return spec


def clips(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("full", [False, True])
def test_tokens_equal_extract_features_keep_seq(tiny_spec, tmp_path, full):
    """`.encoder.pt` (encoder only) and `.full.pt` (with decoder): a bare state dict."""
    ref = randomise(Marlin(as_feature_extractor=not full), seed=int(full))
    path = tmp_path / ("marlin_t.full.pt" if full else "marlin_t.encoder.pt")
    torch.save(ref.state_dict(), path)
    encoder = load_encoder("marlin-tiny", checkpoint=path)
    x = clips()
    tokens = encoder.encode(x)
    assert tokens.shape == (2, 32, 32) and encoder.layer_norm == "final"
    assert encoder.module.norm.eps == 1e-5  # nn.LayerNorm's default (VideoMAE V2: 1e-6)
    torch.testing.assert_close(tokens, ref.extract_features(x, keep_seq=True), atol=1e-4, rtol=0)
    fp = encoder.fingerprint
    assert (fp["pos_embed"], fp["final_norm"], fp["layout"]) == ("checkpoint", True, "pt")
    assert fp["unused"] == (["decoder", "enc_dec_proj"] if full else [])
    assert (fp["mean"], fp["std"]) == ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])  # frames / 255


def test_lightning_ckpt_and_layers(tiny_spec, tmp_path):
    """A Lightning `.ckpt`: {'state_dict': ..., 'epoch': ...} with discriminator keys (dropped,
    as Marlin.from_file does)."""
    ref = randomise(Marlin(as_feature_extractor=False), seed=2)
    state = {**ref.state_dict(), "discriminator.fc.weight": torch.zeros(1, 32)}
    path = tmp_path / "marlin_t.ckpt"
    torch.save({"state_dict": state, "epoch": 1999, "global_step": 5}, path)
    encoder = load_encoder("marlin-tiny", checkpoint=path)
    x = clips(seed=4)
    want = ref.extract_features(x, keep_seq=True)
    assert encoder.fingerprint["unused"] == ["decoder", "discriminator", "enc_dec_proj"]
    layered = encoder.encode(x, encoder.resolve_layers((-2, -1)))
    torch.testing.assert_close(layered[:, 1], want, atol=1e-4, rtol=0)
    with torch.no_grad():
        e = ref.encoder
        first = e.norm(e.blocks[0](e.pos_embedding(e.patch_embedding(x))))
    torch.testing.assert_close(layered[:, 0], first, atol=1e-4, rtol=0)


def test_marlin_table_is_read_not_recomputed():
    """MARLIN's table is its float32 computation of the VideoMAE code: stored, so loaded as is."""
    emb = SinCosPositionalEmbedding((1568, 64)).emb
    state, dropped, layout = remap_marlin({"encoder.pos_embedding.emb": emb})
    assert list(state) == ["pos_embed"] and torch.equal(state["pos_embed"], emb)
    assert (dropped, layout) == ([], "pt")
    diff = (sinusoid_table(1568, 64) - emb).abs().max().item()
    assert 0 < diff < 1e-3  # float32 angles: close to the float64 table, not equal


def test_wrong_and_partial_files_name_the_key(tiny_spec, tmp_path):
    state = randomise(Marlin(), seed=5).state_dict()
    torch.save(
        {k: v for k, v in state.items() if "blocks.1.mlp.layers.1" not in k}, tmp_path / "p.pt"
    )
    with pytest.raises(CheckpointError, match=r"p.pt: .*2 missing: blocks.1.mlp.fc2.(weight|bias)"):
        load_encoder("marlin-tiny", checkpoint=tmp_path / "p.pt")
    torch.save({**state, "head.weight": torch.zeros(2, 32)}, tmp_path / "h.pt")
    with pytest.raises(CheckpointError, match=r"MARLIN keys live under encoder\..*; not so: head"):
        load_encoder("marlin-tiny", checkpoint=tmp_path / "h.pt")
    torch.save(state, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match=r"another size: .*depth 2 \(preset 24\)"):
        load_encoder("marlin-l", checkpoint=tmp_path / "s.pt")
    no_bias = randomise(Marlin(qkv_bias=False), seed=6).state_dict()
    torch.save(no_bias, tmp_path / "nb.pt")  # MARLIN's configs all set qkv_bias; read from file
    assert load_encoder("marlin-tiny", checkpoint=tmp_path / "nb.pt").fingerprint["qkv_bias"] == (
        "none"
    )


def test_tokens_equal_the_marlin_pytorch_package(tiny_spec, tmp_path):
    """Where `marlin-pytorch` is installed: its own `Marlin.from_file` and `extract_features`."""
    package = pytest.importorskip("marlin_pytorch")
    from marlin_pytorch.config import register_model_from_yaml

    config = tmp_path / "marlin_tiny.yaml"
    config.write_text(
        "img_size: 32\npatch_size: 16\nclip_frames: 16\ntubelet_size: 2\nmlp_ratio: 4.0\n"
        "qkv_bias: true\nqk_scale: null\ndrop_rate: 0.0\nattn_drop_rate: 0.0\n"
        "norm_layer: LayerNorm\ninit_values: 0.0\n"
        "encoder: {embed_dim: 32, depth: 2, num_heads: 2}\n"
        "decoder: {embed_dim: 16, depth: 1, num_heads: 2}\n"
    )
    register_model_from_yaml("marlin_tiny", str(config))
    path = tmp_path / "marlin_tiny.encoder.pt"  # from_file reads the decoder's own layout
    torch.save(randomise(Marlin(), seed=7).state_dict(), path)
    marlin = package.Marlin.from_file("marlin_tiny", str(path)).eval()
    x = clips(seed=8)
    want = marlin.extract_features(x, keep_seq=True)
    tokens = load_encoder("marlin-tiny", checkpoint=path).encode(x)
    torch.testing.assert_close(tokens, want, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_marlin_extract_probe_cross_report_predict(tiny_spec, tmp_path):
    ckpt = tmp_path / "marlin_t.encoder.pt"
    torch.save(randomise(Marlin(), seed=9).state_dict(), ckpt)
    settings = encoder_pipeline(tmp_path, "marlin-tiny", ckpt)["manifest"]["settings"]
    assert settings["encoder_fingerprint"]["weights"] == "state-dict"
    assert (settings["mean"], settings["std"]) == ([0.0] * 3, [1.0] * 3)


SIZES = {"marlin-s": (384, 12, 6), "marlin-b": (768, 12, 12), "marlin-l": (1024, 24, 16)}


@pytest.mark.parametrize("name", list(SIZES))
def test_presets_fit_the_released_architectures(name, monkeypatch):
    """marlin_pytorch's configs (224 px, patch 16, 16 frames, qkv_bias): each preset takes the
    reference encoder's state dict, shapes only (built on `meta`, the table not computed)."""
    zeros = lambda self: torch.zeros(*self.input_shape)  # noqa: E731
    monkeypatch.setattr(SinCosPositionalEmbedding, "make_embedding", zeros)
    with torch.device("meta"):
        encoder = MarlinEncoder(224, 16, 16, *SIZES[name], qkv_bias=True)
    state, _, _ = remap_marlin({f"encoder.{k}": v for k, v in encoder.state_dict().items()})
    vit = ENCODERS[name].vit
    assert vit is not None
    model = build_mae(config_from_state(state, vit, "marlin"), "meta")
    load_strict(model, state)
    assert model.config.stored_pos_embed and model.config.eps == 1e-5
