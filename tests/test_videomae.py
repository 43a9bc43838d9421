"""VideoMAE through transformers: a tiny random VideoMAEConfig saved as a real directory, loaded
through the registry (shapes, equality with VideoMAEModel, determinism, fingerprint), the errors,
and extract -> probe -> predict end to end from the command line."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from click.testing import CliRunner

from vjfer.cli import cli
from vjfer.encoders import load_encoder
from vjfer.encoders.videomae import VideoMAESpec, read_videomae_spec
from vjfer.errors import CheckpointError, ConfigError
from vjfer.synthetic import make_ravdess

transformers = pytest.importorskip("transformers")

MEAN, STD = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]  # VideoMAE's own preprocessor values


def save_videomae(directory, *, seed: int = 0, use_mean_pooling: bool = False, **overrides):
    """A tiny random VideoMAEModel + preprocessor config written as a Hugging Face directory."""
    sizes = dict(
        image_size=32,
        patch_size=16,
        num_frames=16,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    config = transformers.VideoMAEConfig(
        **{**sizes, **overrides}, use_mean_pooling=use_mean_pooling
    )
    torch.manual_seed(seed)
    transformers.VideoMAEModel(config).save_pretrained(directory)
    side = config.image_size
    processor = transformers.VideoMAEImageProcessor(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_mean=MEAN,
        image_std=STD,
    )
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def mae_dir(tmp_path_factory):
    return save_videomae(tmp_path_factory.mktemp("videomae"))


def test_videomae_tokens_equal_videomae_model(mae_dir):
    encoder = load_encoder("videomae", checkpoint=mae_dir)
    assert (encoder.resolution, encoder.embed_dim, encoder.grid) == (32, 32, (8, 2, 2))
    assert list(encoder.mean) == MEAN and list(encoder.std) == STD  # from preprocessor_config.json
    x = torch.randn(2, 3, 16, 32, 32)
    model = transformers.VideoMAEModel.from_pretrained(mae_dir, local_files_only=True).eval()
    with torch.inference_mode():
        ref = model(pixel_values=x.permute(0, 2, 1, 3, 4)).last_hidden_state
    tokens = encoder.encode(x)
    assert tokens.shape == (2, 8 * 2 * 2, 32)  # every patch token: no CLS, no pooled output
    torch.testing.assert_close(tokens, ref, atol=0, rtol=0)
    # final LayerNorm of a pre-training checkpoint (use_mean_pooling=False): unit-variance tokens
    assert tokens.std(dim=-1).mean().item() == pytest.approx(1.0, abs=0.05)
    torch.testing.assert_close(encoder.encode(x), tokens, atol=0, rtol=0)  # deterministic
    with pytest.raises(ConfigError, match=r"must be \[B, 3, 16, 32, 32\]"):
        encoder.encode(torch.randn(1, 3, 16, 48, 48))


def test_fine_tuned_layout_has_no_final_norm(tmp_path):
    """use_mean_pooling=True (fine-tuned checkpoints): VideoMAEModel has no final norm, and the
    classifier's fc_norm is not applied: the tokens are the last block's raw output."""
    directory = save_videomae(tmp_path / "ft", use_mean_pooling=True)
    encoder = load_encoder("videomae", checkpoint=directory)
    assert encoder.fingerprint["final_norm"] is False
    assert encoder.module.model.layernorm is None
    tokens = encoder.encode(torch.randn(1, 3, 16, 32, 32))
    assert tokens.shape == (1, 32, 32)


def test_fingerprint_records_config_and_follows_weights(mae_dir, tmp_path):
    fp = load_encoder("videomae", checkpoint=mae_dir).fingerprint
    assert (fp["frames"], fp["tubelet"], fp["patch_size"], fp["resolution"]) == (16, 2, 16, 32)
    assert (fp["mean"], fp["std"], fp["final_norm"]) == (MEAN, STD, True)
    other = load_encoder("videomae", checkpoint=save_videomae(tmp_path / "s1", seed=1)).fingerprint
    assert other["checkpoint_sha256"] != fp["checkpoint_sha256"]
    assert {k: v for k, v in other.items() if k != "checkpoint_sha256"} == {
        k: v for k, v in fp.items() if k != "checkpoint_sha256"
    }


def test_spec_read_from_directory_and_flops(mae_dir):
    spec = read_videomae_spec(mae_dir)
    assert (spec.num_frames, spec.tubelet, spec.image_size, spec.depth) == (16, 2, 32, 2)


def test_spec_flops_match_videomae_base():
    """VideoMAE-B (16 x 224², tubelet 2): 1568 tokens, 0.36 TFLOP of matmuls per clip."""
    N, D = 1568, 768
    patch = 2 * N * (3 * 2 * 16 * 16) * D
    block = 2 * N * (4 * D * D + 2 * D * 3072) + 4 * N * N * D  # linears + q·kᵀ and attn·v
    base = VideoMAESpec(224, 16, 16, 2, 768, 12, 12, 3072, True, tuple(MEAN), tuple(STD))
    assert base.grid == (8, 14, 14) and base.flops == patch + 12 * block == 360_689_172_480


def test_videomae_directory_errors(mae_dir, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="videomae needs a local Hugging Face directory"):
        load_encoder("videomae")
    with pytest.raises(ConfigError, match="random weights .* not videomae"):
        load_encoder("videomae", random_weights=True)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_encoder("videomae", checkpoint=tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vjepa2"}))
    with pytest.raises(CheckpointError, match="another architecture: model_type 'vjepa2'"):
        load_encoder("videomae", checkpoint=tmp_path)
    eight = save_videomae(tmp_path / "eight", num_frames=8)
    with pytest.raises(CheckpointError, match="config.json: num_frames is 8; .* 16-frame"):
        load_encoder("videomae", checkpoint=eight)
    no_pre = tmp_path / "no-pre"
    shutil.copytree(mae_dir, no_pre)
    (no_pre / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="no preprocessor_config.json; .*image_mean"):
        load_encoder("videomae", checkpoint=no_pre)
    pre = json.loads((mae_dir / "preprocessor_config.json").read_text())
    (no_pre / "preprocessor_config.json").write_text(json.dumps({**pre, "crop_size": 48}))
    with pytest.raises(CheckpointError, match="crop_size 48 differs from image_size 32"):
        load_encoder("videomae", checkpoint=no_pre)
    (no_pre / "preprocessor_config.json").write_text(json.dumps({**pre, "image_std": 0.2}))
    with pytest.raises(CheckpointError, match="image_std must be a list of 3 numbers"):
        load_encoder("videomae", checkpoint=no_pre)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'vjfer\[hf\]'"):
        load_encoder("videomae", checkpoint=mae_dir)


def run(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_videomae_extract_probe_predict(mae_dir, tmp_path):
    root, cache, runs = tmp_path / "RAVDESS", tmp_path / "cache", tmp_path / "runs"
    make_ravdess(root, actors=(2, 3, 10, 8, 1), emotions=(1, 3), modalities=(2,), seed=3)
    run(
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        root,
        "--encoder",
        "videomae",
        "--checkpoint",
        mae_dir,
        "--cache",
        cache,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    )
    (manifest,) = cache.glob("ravdess/videomae-32-*/manifest.json")
    settings = json.loads(manifest.read_text())["settings"]
    assert settings["encoder_fingerprint"]["name"] == "videomae"
    assert (settings["mean"], settings["std"]) == (MEAN, STD)
    assert json.loads(manifest.read_text())["layout"]["num_tokens"] == 32
    run(
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        cache,
        "--out",
        runs,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    )
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["folds"] == [1, 2, 3, 4, 5]
    video = sorted(root.rglob("*.mp4"))[0]
    out = json.loads(
        run(
            "predict", video, "--run", run_dir, "--checkpoint", mae_dir, "--json", "--device", "cpu"
        )
    )
    (row,) = out["videos"]
    probs = [row[k] for k in row if k.startswith("prob_")]
    assert row["video_id"] == video.stem and sum(probs) == pytest.approx(1.0, abs=1e-4)
