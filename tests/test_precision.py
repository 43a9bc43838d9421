"""Precision options: the encoder's compute dtype (`vjfer extract --dtype`, in the fingerprint) and
the probe's autocast dtype (`TrainConfig.autocast`, in the run config)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GRID, make_entries

from vjfer.cache import build_cache, open_cache
from vjfer.encoders import load_encoder
from vjfer.encoders.registry import COMPUTE_DTYPES
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig
from vjfer.probe.config import TrainConfig
from vjfer.probe.head import Head
from vjfer.probe.run import run_probe
from vjfer.probe.train import train_heads


def test_extract_and_train_configs_check_the_dtype(tmp_path):
    with pytest.raises(
        ConfigError, match=r"dtype must be one of \('bf16', 'fp16', 'fp32'\), got 'fp8'"
    ):
        ExtractConfig(dataset="ravdess", root=tmp_path, dtype="fp8")
    with pytest.raises(ConfigError, match="autocast must be one of"):
        TrainConfig(autocast="fp8")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        load_encoder("tiny", dtype="half")
    assert ExtractConfig(dataset="ravdess", root=tmp_path).dtype == "bf16"
    assert TrainConfig().autocast == "bf16"


@pytest.mark.parametrize("dtype", list(COMPUTE_DTYPES))
def test_the_cpu_computes_float32_whatever_the_option(dtype):
    # the fingerprint records what ran: on the CPU every option runs float32, so caches agree
    encoder = load_encoder("tiny", dtype=dtype)
    assert encoder.fingerprint["compute_dtype"] == "float32"


@pytest.mark.cuda
@pytest.mark.parametrize(
    "dtype,name", [("bf16", "bfloat16-autocast"), ("fp16", "float16-autocast"), ("fp32", "float32")]
)
def test_cuda_compute_dtype_is_in_the_fingerprint(dtype, name):
    encoder = load_encoder("tiny", device="cuda", dtype=dtype)
    assert encoder.fingerprint["compute_dtype"] == name
    clips = torch.randn(2, 3, 16, encoder.resolution, encoder.resolution)
    reference = load_encoder("tiny").encode(clips)
    tokens = encoder.encode(clips).cpu()
    tolerance = {"bf16": 0.1, "fp16": 0.02, "fp32": 1e-3}[dtype]  # bf16 keeps 8 mantissa bits
    assert (tokens - reference).abs().max() < tolerance * reference.abs().max()


@pytest.mark.cuda
def test_fp16_probe_training_scales_the_loss_and_stays_finite(tmp_path):
    cache = open_cache(
        build_cache(
            tmp_path / "c", {"e": "x"}, make_entries(actors=[1, 2]), dataset="ravdess", grid=GRID
        )
    )
    config = TrainConfig(epochs=2, num_heads=4, num_workers=0, device="cuda", autocast="fp16")
    head = Head("h", config, np.arange(len(cache.videos)), cache, torch.device("cuda"))
    assert head._scaler.is_enabled()
    train_heads(cache, [head], config, progress=False)
    assert all(np.isfinite(h["loss"]) for h in head.history)


def test_the_run_config_records_the_autocast(tmp_path):
    entries = make_entries(actors=range(1, 25), videos_per_class=1)
    cache = build_cache(tmp_path / "c", {"e": "x"}, entries, dataset="ravdess", grid=GRID)
    config = TrainConfig(epochs=1, num_heads=4, num_workers=0, device="cpu", autocast="fp16")
    run_probe(cache, 1, config, tmp_path / "run", progress=False)
    recorded = json.loads((Path(tmp_path / "run") / "config.json").read_text())
    assert recorded["train"]["autocast"] == "fp16"
