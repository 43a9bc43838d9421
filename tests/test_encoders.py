"""Tests of vjfer/encoders: the V-JEPA 1 ViT, jepa checkpoint loading, V-JEPA 2, tiny, the registry.

Checkpoints are written here in facebookresearch/jepa's exact layout (app/vjepa/train.py's
save_checkpoint of DDP(MultiMaskWrapper(ViT)) modules) for small configs, since the real weights
cannot be downloaded in tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import pathlib
import pickle
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, tiny_vjepa2
from torch import nn

from vjfer.digests import sha256_file
from vjfer.encoders import ENCODERS, EncoderSpec, list_encoders, load_encoder
from vjfer.encoders.checkpoint import (
    load_strict,
    load_vjepa_checkpoint,
    name_keys,
    read_checkpoint,
    remap_jepa_state_dict,
)
from vjfer.encoders.vjepa import (
    PRESETS,
    ViTConfig,
    build_vit,
    count_params,
    forward_flops,
    random_vit,
    sincos_pos_embed_3d,
)
from vjfer.errors import CheckpointError, ConfigError

SMALL = ViTConfig(embed_dim=32, depth=2, num_heads=2, img_size=32)  # grid (8, 2, 2): 32 tokens


class _Backbone(nn.Module):
    """jepa's MultiMaskWrapper holds the ViT as `backbone`."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone


class _DDP(nn.Module):
    """DistributedDataParallel holds the wrapped model as `module`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


def jepa_checkpoint(encoder: nn.Module, target_encoder: nn.Module) -> dict:
    """The dict app/vjepa/train.py saves, with a small predictor and a real AdamW state."""
    enc, target = _DDP(_Backbone(encoder)), _DDP(_Backbone(target_encoder))
    predictor = _DDP(_Backbone(nn.Sequential(nn.Linear(SMALL.embed_dim, 16), nn.LayerNorm(16))))
    params = [p for p in [*enc.parameters(), *predictor.parameters()] if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    sum(p.sum() for p in params).backward()
    opt.step()
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
    }
    return {
        "encoder": enc.state_dict(),
        "predictor": predictor.state_dict(),
        "opt": opt.state_dict(),
        "scaler": {**scaler, "_growth_tracker": 0},
        "target_encoder": target.state_dict(),
        "epoch": 300,
        "loss": 0.1234,
        "batch_size": 24,
        "world_size": 8,
        "lr": 6.25e-4,
    }


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    """The online and EMA encoders a checkpoint is written from (different weights)."""
    return {"encoder": random_vit(SMALL, seed=1), "target_encoder": random_vit(SMALL, seed=2)}


@pytest.fixture(scope="module")
def ckpt_path(models, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "vitt16.pth.tar"
    torch.save(jepa_checkpoint(models["encoder"], models["target_encoder"]), path)
    return path


@pytest.fixture
def small_spec(monkeypatch):
    """Register SMALL as a V-JEPA 1 encoder named 'small' (same factory as vjepa-h16-384)."""
    spec = EncoderSpec("small", ENCODERS["vjepa-h16-384"].factory, "test", SMALL)
    monkeypatch.setitem(ENCODERS, "small", spec)
    return spec


def clips(config: ViTConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, config.frames, config.img_size, config.img_size, generator=g)


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(x)


# --- checkpoint loading ----------------------------------------------------------------------


def test_jepa_checkpoint_reproduces_the_saving_model(models, ckpt_path):
    model, report = load_vjepa_checkpoint(ckpt_path, SMALL)
    x = clips(SMALL)
    assert torch.equal(run(model, x), run(models["target_encoder"], x))
    assert report.sha256 == hashlib.sha256(ckpt_path.read_bytes()).hexdigest()
    assert report.sha256 == sha256_file(ckpt_path)
    assert (report.weights, report.epoch, report.notes) == ("target_encoder", 300, ())
    assert not model.pos_embed.requires_grad


def test_encoder_and_target_encoder_are_different_weights(models, ckpt_path):
    online, report = load_vjepa_checkpoint(ckpt_path, SMALL, weights="encoder")
    ema, _ = load_vjepa_checkpoint(ckpt_path, SMALL, weights="target_encoder")
    x = clips(SMALL)
    assert report.weights == "encoder"
    assert torch.equal(run(online, x), run(models["encoder"], x))
    assert not torch.allclose(run(online, x), run(ema, x))


def test_load_encoder_from_checkpoint(small_spec, models, ckpt_path):
    encoder = load_encoder("small", checkpoint=ckpt_path, weights="encoder")
    x = clips(SMALL)
    assert torch.equal(encoder.encode(x), run(models["encoder"], x))
    fp = encoder.fingerprint
    assert fp["checkpoint_sha256"] == sha256_file(ckpt_path)
    assert (fp["weights"], fp["pos_embed"], fp["grid"]) == ("encoder", "checkpoint", [8, 2, 2])
    assert json.loads(json.dumps(fp)) == fp


def _reference_forward(state: dict, x: torch.Tensor, config: ViTConfig) -> torch.Tensor:
    """jepa's ViT forward written out with functional ops on the stripped jepa keys
    (explicit softmax attention, as jepa's use_sdpa=False path)."""
    D, heads, eps = config.embed_dim, config.num_heads, 1e-6
    stride = (config.tubelet, config.patch_size, config.patch_size)
    w = state["patch_embed.proj.weight"]
    x = F.conv3d(x, w, state["patch_embed.proj.bias"], stride=stride).flatten(2).transpose(1, 2)
    x = x + state["pos_embed"]
    for i in range(config.depth):

        def p(name, i=i):
            return state[f"blocks.{i}.{name}"]

        y = F.layer_norm(x, (D,), p("norm1.weight"), p("norm1.bias"), eps)
        B, N, _ = y.shape
        qkv = F.linear(y, p("attn.qkv.weight"), p("attn.qkv.bias"))
        q, k, v = qkv.reshape(B, N, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (D // heads) ** -0.5).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(B, N, D)
        x = x + F.linear(y, p("attn.proj.weight"), p("attn.proj.bias"))
        y = F.layer_norm(x, (D,), p("norm2.weight"), p("norm2.bias"), eps)
        x = x + F.linear(
            F.gelu(F.linear(y, p("mlp.fc1.weight"), p("mlp.fc1.bias"))),
            p("mlp.fc2.weight"),
            p("mlp.fc2.bias"),
        )
    return F.layer_norm(x, (D,), state["norm.weight"], state["norm.bias"], eps)


def test_vit_matches_jepa_math_on_jepa_keys(ckpt_path):
    state = remap_jepa_state_dict(read_checkpoint(ckpt_path))
    model, _ = load_vjepa_checkpoint(ckpt_path, SMALL)
    x = clips(SMALL)
    torch.testing.assert_close(run(model, x), _reference_forward(state, x, SMALL))


def test_checkpoint_of_another_grid_gets_pos_embed_recomputed(tmp_path, models, caplog):
    other = ViTConfig(embed_dim=32, depth=2, num_heads=2, img_size=48)  # grid (8, 3, 3)
    source = random_vit(other, seed=3)
    path = tmp_path / "vitt16-48.pth.tar"
    torch.save(jepa_checkpoint(source, source), path)
    with caplog.at_level(logging.WARNING, logger="vjfer.encoders.checkpoint"):
        model, report = load_vjepa_checkpoint(path, SMALL)
    assert len(report.notes) == 1 and "recomputed" in report.notes[0]
    assert "[1, 72, 32]" in report.notes[0] and "recomputed" in caplog.text
    assert torch.equal(model.pos_embed[0], sincos_pos_embed_3d(32, SMALL.grid))
    assert torch.equal(model.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)


def _save_unsafe(path):
    torch.save({"target_encoder": {}, "args": _NotAllowed()}, path)


class _NotAllowed:
    """A custom class: unpickling it would run arbitrary code, so weights_only refuses it."""


def _corrupt(kind: str, tmp_path, ckpt_path):
    path = tmp_path / f"{kind}.pth.tar"
    data = ckpt_path.read_bytes()
    if kind == "text":
        path.write_text("model weights: see https://example.org\n")
    elif kind == "random":
        g = torch.Generator().manual_seed(0)
        path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=g).tolist()))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated-zip":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "truncated-legacy":
        legacy = tmp_path / "legacy.pth.tar"
        torch.save(
            torch.load(ckpt_path, weights_only=True), legacy, _use_new_zipfile_serialization=False
        )
        path.write_bytes(legacy.read_bytes()[:-1000])
    elif kind == "vit-wider":  # another width: every tensor mis-shaped
        wider = ViTConfig(embed_dim=48, depth=2, num_heads=2, img_size=32)
        torch.save(jepa_checkpoint(random_vit(wider, 0), random_vit(wider, 0)), path)
    elif kind == "vit-shallower":
        shallow = ViTConfig(embed_dim=32, depth=1, num_heads=2, img_size=32)
        torch.save(jepa_checkpoint(random_vit(shallow, 0), random_vit(shallow, 0)), path)
    elif kind == "plain-state-dict":
        torch.save(random_vit(SMALL, 0).state_dict(), path)
    elif kind == "mixed-prefix":  # some keys wrapped, some not: no one prefix to strip
        state = random_vit(SMALL, 0).state_dict()
        mixed = {
            (f"module.backbone.{k}" if i % 2 else k): v for i, (k, v) in enumerate(state.items())
        }
        torch.save({"target_encoder": mixed}, path)
    elif kind == "tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "unsafe":
        _save_unsafe(path)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", r"is not a PyTorch checkpoint"),
        ("random", r"is not a PyTorch checkpoint"),
        ("empty", r"is not a PyTorch checkpoint \(an empty file"),
        ("tensor", r"is not a PyTorch checkpoint dict \(holds Tensor\)"),
        ("truncated-zip", r"truncated or damaged checkpoint"),
        ("truncated-legacy", r"truncated or damaged checkpoint"),
        (
            "vit-wider",
            r"another architecture.*mis-shaped: .*blocks\.\{0\.\.1\}\.attn\.qkv\.weight \[144, "
            r"48\] in checkpoint vs \[96, 32\] in model",
        ),
        (
            "vit-shallower",
            r"another architecture.*12 missing: blocks\.1\.norm1\.weight, blocks\.1\.norm1\.bias",
        ),
        (
            "plain-state-dict",
            r"another architecture: not a facebookresearch/jepa checkpoint, no 'target_encoder' "
            r"entry",
        ),
        (
            "mixed-prefix",
            r"another architecture: the keys of 'target_encoder' mix wrapper prefixes .*not under "
            r"'module\.backbone\.': pos_embed, patch_embed\.proj\.bias",
        ),
        (
            "unsafe",
            r"refused by torch\.load\(weights_only=True\): it pickles .*_NotAllowed.*no unsafe "
            r"pickle fallback",
        ),
    ],
)
def test_bad_checkpoints_say_what_is_wrong(kind, message, tmp_path, ckpt_path):
    path = _corrupt(kind, tmp_path, ckpt_path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_vjepa_checkpoint(path, SMALL)
    assert str(path) in str(info.value)
    assert "weights_only=False" not in str(info.value)  # never advise unsafe loading


@pytest.mark.parametrize("prefix", ["module.backbone.", "backbone.", "module.", ""])
def test_wrapper_prefixes_jepa_strips_are_accepted(prefix, tmp_path):
    """DDP(MultiMaskWrapper) saves `module.backbone.`, a non-DDP run `backbone.`, a DDP bare ViT
    `module.`, a bare ViT nothing: all load the same weights, strictly."""
    source = random_vit(SMALL, 0)
    path = tmp_path / "ckpt.pth.tar"
    state = {f"{prefix}{k}": v for k, v in source.state_dict().items()}
    torch.save({"target_encoder": state}, path)
    model, _ = load_vjepa_checkpoint(path, SMALL)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    state.pop(f"{prefix}norm.bias")
    state[f"{prefix}norm.gain"] = torch.zeros(32)
    torch.save({"target_encoder": state}, path)
    with pytest.raises(CheckpointError, match=r"1 missing: norm\.bias; 1 unexpected: norm\.gain"):
        load_vjepa_checkpoint(path, SMALL)


def test_a_garbage_checkpoint_never_suggests_unsafe_loading(tmp_path):
    path = tmp_path / "garbage.pth.tar"
    path.write_bytes(b"\x80\x02" + bytes(range(256)) * 8)  # a pickle header, then noise
    with pytest.raises(CheckpointError, match="garbage.pth.tar") as info:
        read_checkpoint(path)
    assert "weights_only" not in str(info.value).replace("weights_only=True", "")


def test_weights_only_is_in_force(tmp_path):
    path = tmp_path / "unsafe.pth.tar"
    _save_unsafe(path)
    unsafe = torch.load(path, weights_only=False)  # the file itself is fine, just unsafe
    assert isinstance(unsafe["args"], _NotAllowed)
    with pytest.raises(CheckpointError, match="no unsafe pickle fallback"):
        read_checkpoint(path)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.pth.tar")


def test_remap_and_load_strict_on_in_memory_dicts():
    model = random_vit(SMALL, 0)
    state = {f"module.backbone.{k}": v for k, v in model.state_dict().items()}
    remapped = remap_jepa_state_dict({"encoder": state, "target_encoder": {}}, "encoder")
    assert remapped.keys() == model.state_dict().keys()
    with pytest.raises(ConfigError, match="weights must be one of"):
        remap_jepa_state_dict({"ema": state}, "ema")
    bad = dict(remapped)
    del bad["norm.bias"]
    bad["head.weight"] = torch.zeros(2)
    bad["blocks.0.attn.qkv.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError) as info:
        load_strict(build_vit(SMALL, "meta"), bad)
    text = str(info.value)
    assert "1 missing: norm.bias" in text and "1 unexpected: head.weight" in text
    assert "blocks.0.attn.qkv.bias [5] in checkpoint vs [96] in model" in text


def test_name_keys_folds_block_indices():
    keys = [f"blocks.{i}.attn.qkv.weight" for i in (0, 1, 2, 5, 24, 25)] + ["norm.bias"]
    assert name_keys(keys) == "norm.bias, blocks.{0..2,5,24..25}.attn.qkv.weight"


# --- the ViT ---------------------------------------------------------------------------------


def _code(p: float, dim: int) -> list[float]:
    """[sin(p·ω_0..), cos(p·ω_0..)], ω_k = 10000^(−k/(dim/2)), written out by hand."""
    omegas = [10000 ** (-k / (dim / 2)) for k in range(dim // 2)]
    return [math.sin(p * w) for w in omegas] + [math.cos(p * w) for w in omegas]


def test_pos_embed_golden_values_small_grid():
    grid = (2, 3, 4)  # D = 12: 4 dims per axis, ω = (1, 1/100)
    pe = sincos_pos_embed_3d(12, grid)
    assert pe.shape == (24, 12) and pe.dtype == torch.float32
    t, h, w = 1, 2, 3
    row = pe[(t * 3 + h) * 4 + w]  # tokens in (t, h, w) order
    expected = [
        math.sin(1),
        math.sin(0.01),
        math.cos(1),
        math.cos(0.01),  # t code: sines, then cosines
        math.sin(2),
        math.sin(0.02),
        math.cos(2),
        math.cos(0.02),  # h code
        math.sin(3),
        math.sin(0.03),
        math.cos(3),
        math.cos(0.03),  # w code
    ]
    torch.testing.assert_close(row, torch.tensor(expected))
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 0.0, 1.0, 1.0] * 3))


@pytest.mark.parametrize("dim, axis_dim, cut", [(64, 22, 2), (1280, 428, 4), (1024, 342, 2)])
def test_pos_embed_truncation_when_d_is_not_divisible_by_6(dim, axis_dim, cut):
    """Each axis gets 2·ceil(D/6) dims; the concatenation loses its last `cut` dims (w cosines)."""
    pe = sincos_pos_embed_3d(dim, (8, 3, 3))
    assert pe.shape == (72, dim) and 3 * axis_dim - dim == cut
    t, h, w = 7, 1, 2
    row = pe[(t * 3 + h) * 3 + w].double()
    codes = _code(t, axis_dim) + _code(h, axis_dim) + _code(w, axis_dim)
    torch.testing.assert_close(
        row, torch.tensor(codes[:dim], dtype=torch.float64), atol=1e-6, rtol=0
    )
    half = axis_dim // 2
    assert math.isclose(row[0], math.sin(t), abs_tol=1e-6)  # t code starts with sin(t·ω_0)
    assert math.isclose(
        row[axis_dim - 1], math.cos(t * 10000 ** (-(half - 1) / half)), abs_tol=1e-6
    )
    assert math.isclose(row[2 * axis_dim], math.sin(w), abs_tol=1e-6)  # w code starts
    last = half - 1 - cut  # the last cosine frequency that survives the cut
    assert math.isclose(row[-1], math.cos(w * 10000 ** (-last / half)), abs_tol=1e-6)


def test_vit_h_parameter_count_on_meta():
    for name in ("vjepa-h16", "vjepa-h16-384"):
        model = build_vit(PRESETS[name], "meta")
        assert count_params(model) == 631_648_000
        assert all(p.is_meta for p in model.parameters())
    assert count_params(build_vit(PRESETS["vjepa-l16"], "meta")) == 303_885_312


def test_token_counts_and_flops():
    assert PRESETS["vjepa-h16"].num_tokens == 1568 and PRESETS["vjepa-l16"].num_tokens == 1568
    assert PRESETS["vjepa-h16-384"].num_tokens == 4608
    assert PRESETS["vjepa-h16-384"].grid == (8, 24, 24)
    assert 9.2e12 < forward_flops(PRESETS["vjepa-h16-384"]) < 9.4e12  # ≈ 9.3 TFLOP per clip


def test_trilinear_pos_embed_resize_matches_jepa():
    model = random_vit(SMALL, 0)
    assert model.resized_pos_embed(SMALL.grid) is model.pos_embed
    grid = (4, 4, 3)  # 8 frames at 64 × 48 px
    code = model.pos_embed.reshape(1, 8, 2, 2, 32).permute(0, 4, 1, 2, 3)
    # jepa's interpolate_pos_encoding: scale_factor = (T/N_t, H/N_h, W/N_w), trilinear
    ref = F.interpolate(code, scale_factor=(4 / 8, 4 / 2, 3 / 2), mode="trilinear")
    ref = ref.permute(0, 2, 3, 4, 1).reshape(1, -1, 32)
    resized = model.resized_pos_embed(grid)
    assert resized.shape == (1, 48, 32)
    torch.testing.assert_close(resized, ref, atol=1e-6, rtol=0)
    assert run(model, torch.randn(1, 3, 8, 64, 48)).shape == (1, 48, 32)
    with pytest.raises(ValueError, match="must divide"):
        run(model, torch.randn(1, 3, 8, 60, 48))


# --- the Encoder, tiny and the registry --------------------------------------------------------


def test_tiny_encode_shape_dtype_and_frozen():
    encoder = load_encoder("tiny")
    assert (encoder.embed_dim, encoder.grid, encoder.num_tokens) == (64, (8, 4, 4), 128)
    assert (encoder.resolution, encoder.frames, encoder.device) == (64, 16, torch.device("cpu"))
    tokens = encoder.encode(torch.randn(3, 3, 16, 64, 64, dtype=torch.float64))
    assert tokens.shape == (3, 128, 64) and tokens.dtype == torch.float32
    assert not tokens.requires_grad and not encoder.module.training
    assert not any(p.requires_grad for p in encoder.module.parameters())
    assert encoder.fingerprint["compute_dtype"] == "float32"


def test_tiny_is_deterministic_for_its_seed():
    x = torch.randn(1, 3, 16, 64, 64)
    a, b, c = load_encoder("tiny"), load_encoder("tiny", seed=0), load_encoder("tiny", seed=1)
    assert torch.equal(a.encode(x), b.encode(x))
    assert not torch.allclose(a.encode(x), c.encode(x))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert (a.fingerprint["seed"], a.fingerprint["checkpoint_sha256"]) == (0, None)


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        (
            (1, 3, 16, 32, 32),
            torch.float32,
            r"must be \[B, 3, 16, 64, 64\], got \[1, 3, 16, 32, 32\]",
        ),
        ((1, 3, 8, 64, 64), torch.float32, r"must be \[B, 3, 16, 64, 64\]"),
        ((1, 16, 64, 64, 3), torch.uint8, r"expected normalised float clips"),
    ],
)
def test_encode_rejects_other_inputs(shape, dtype, message):
    with pytest.raises(ConfigError, match=message):
        load_encoder("tiny").encode(torch.zeros(shape, dtype=dtype))


def test_random_weights_are_labelled_and_take_no_checkpoint(small_spec, ckpt_path):
    encoder = load_encoder("small", random_weights=True, seed=5)
    assert encoder.fingerprint["weights"] == "random-init" and encoder.fingerprint["seed"] == 5
    with pytest.raises(ConfigError, match="without a checkpoint"):
        load_encoder("small", checkpoint=ckpt_path, random_weights=True)


def test_registry_errors():
    with pytest.raises(
        ConfigError,
        match="unknown encoder 'vit-x'; known: vjepa-l16, vjepa-h16, vjepa-h16-384, vjepa2, "
        "videomae, tiny",
    ):
        load_encoder("vit-x")
    with pytest.raises(
        ConfigError, match="vjepa-h16-384 needs a checkpoint .*--checkpoint or VJFER_CHECKPOINT"
    ):
        load_encoder("vjepa-h16-384")
    with pytest.raises(ConfigError, match="tiny .* takes no checkpoint"):
        load_encoder("tiny", checkpoint="x.pth.tar")
    with pytest.raises(ConfigError, match="weights must be one of"):
        load_encoder("tiny", weights="ema")


def test_list_encoders_rows():
    rows = {row["name"]: row for row in list_encoders()}
    assert list(rows) == list(ENCODERS)
    assert rows["vjepa-h16-384"] == {
        **rows["vjepa-h16-384"],
        "params": 631_648_000,
        "embed_dim": 1280,
        "resolution": 384,
        "tokens": 4608,
    }
    assert "vith16-384.pth.tar" in rows["vjepa-h16-384"]["weights"]
    h = rows["vjepa-h16-384"]  # the figures docs/datasets.md and RESULTS.md quote
    assert (round(h["gflops"]), round(h["mb_fp16"], 2), round(h["mb_int8"], 2)) == (
        9295,
        11.8,
        5.91,
    )
    assert h["family"] == "latent prediction (V-JEPA)" and h["frames"] == 16
    assert rows["marlin-b"]["family"].startswith("pixel reconstruction")
    assert rows["clip"]["family"] == "image-text contrastive, per frame"
    assert rows["tiny"]["tokens"] == 128 and rows["vjepa2"]["params"] is None
    assert (
        rows["videomae"]["params"] is None and "preprocessor_config" in rows["videomae"]["weights"]
    )


@pytest.mark.cuda
def test_cuda_encode_runs_in_bf16():
    encoder = load_encoder("tiny", device="cuda")
    seen = []
    encoder.module.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    tokens = encoder.encode(torch.randn(2, 3, 16, 64, 64))
    assert seen == [torch.bfloat16] and tokens.dtype == torch.float32 and tokens.is_cuda


# --- V-JEPA 2 (transformers) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def vjepa2_dir(tmp_path_factory):
    pytest.importorskip("transformers")
    return tiny_vjepa2(tmp_path_factory.mktemp("vjepa2"), layers=2)


def test_vjepa2_matches_transformers(vjepa2_dir):
    import transformers

    encoder = load_encoder("vjepa2", checkpoint=vjepa2_dir)
    assert (encoder.resolution, encoder.embed_dim, encoder.grid) == (32, 32, (8, 2, 2))
    x = torch.randn(2, 3, 16, 32, 32)
    model = transformers.VJEPA2Model.from_pretrained(vjepa2_dir, local_files_only=True).eval()
    with torch.inference_mode():
        ref = model(pixel_values_videos=x.permute(0, 2, 1, 3, 4), skip_predictor=True)
    torch.testing.assert_close(encoder.encode(x), ref.last_hidden_state, atol=0, rtol=0)
    assert encoder.fingerprint["checkpoint_sha256"] is not None
    with pytest.raises(ConfigError, match=r"must be \[B, 3, 16, 32, 32\]"):
        encoder.encode(torch.randn(1, 3, 16, 48, 48))


def test_vjepa2_directory_errors(vjepa2_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="vjepa2 needs a local Hugging Face directory"):
        load_encoder("vjepa2")
    with pytest.raises(CheckpointError, match="is not a Hugging Face model directory"):
        load_encoder("vjepa2", checkpoint=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(CheckpointError, match="another architecture: model_type 'vit'"):
        load_encoder("vjepa2", checkpoint=tmp_path)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'vjfer\[hf\]'"):
        load_encoder("vjepa2", checkpoint=vjepa2_dir)


def test_a_hugging_face_folder_of_the_wrong_shape_or_an_unsafe_pickle_is_one_line(
    vjepa2_dir, tmp_path
):
    """Issue 32: a config.json that is a list; a pytorch_model.bin that pickles a call. Each is
    one CheckpointError naming the file, no code runs, and torch's advice to load unsafely
    (`weights_only=False`) is never passed on."""
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config.json: expected a JSON object, got list"):
        load_encoder("vjepa2", checkpoint=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": 7}))
    with pytest.raises(CheckpointError, match=r"config.json: Expected `str \| null`.*model_type"):
        load_encoder("vjepa2", checkpoint=tmp_path)
    hostile = tmp_path / "model"
    hostile.mkdir()
    (hostile / "config.json").write_bytes((vjepa2_dir / "config.json").read_bytes())
    ran = tmp_path / "code-ran"

    class Call:
        def __reduce__(self):
            return (pathlib.Path.touch, (ran,))

    (hostile / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Call()}))
    with pytest.raises(CheckpointError) as refused:
        load_encoder("vjepa2", checkpoint=hostile)
    message = str(refused.value)
    assert message.startswith(f"{hostile}: a weights file that pickles more than tensors: refused")
    assert "weights_only" not in message and "\n" not in message and not ran.exists()


def test_the_hugging_face_families_list_their_public_checkpoints():
    """Sizes of the hub's checkpoints from their configs (no download): the figures
    docs/encoders.md quotes; parameters as the model classes build them (transformers' for the
    image models: CLIP ViT-B/16's vision tower 85.8M, SigLIP so400m 428.2M)."""
    rows = {row["name"]: row for row in list_encoders()}
    vjepa2 = {p["name"]: p for p in rows["vjepa2"]["presets"]}
    vitl = vjepa2["facebook/vjepa2-vitl-fpc64-256"]
    assert (vitl["params"], vitl["tokens"], round(vitl["gflops"])) == (303_885_312, 2048, 1656)
    assert vjepa2["facebook/vjepa2-vitg-fpc64-384"]["tokens"] == 4608
    siglip = rows["siglip"]["presets"][1]  # patch 14 at 384: 27 × 27 patches a frame
    assert siglip["name"] == "google/siglip-so400m-patch14-384" and siglip["tokens"] == 16 * 729
    assert round(siglip["params"] / 1e5) == 4282 and round(siglip["gflops"] / 1e3, 2) == 10.73
    clip = rows["clip"]["presets"][0]
    assert round(clip["params"] / 1e5) == 858 and round(clip["mb_fp16"], 1) == 4.8
    assert rows["clip-cls"]["presets"][0]["tokens"] == 16  # the CLS token of each frame
    assert "gated" in rows["dinov3"]["presets"][0]["weights"]
    assert all(not row["presets"] for row in rows.values() if row["params"])
    out = run_cli("encoders")
    assert "huggingface.co/facebook/dinov2-giant: 1136.5M params, D=1536" in out
