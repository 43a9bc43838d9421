"""Clip sampling as a setting (issue 27): `extract --plan stride|segments` on a generated DFEW tree
stores the loaders' evaluation clips and training draws with their roles, and `probe` trains on the
draws and evaluates the evaluation clips (the tiny encoder, 1 epoch)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli
from tests.test_clips import _dfer_clip_test_indices, _mae_dfer_test_views
from vjfer.cache import open_cache
from vjfer.clips import ROLE_DRAW, ROLE_EVAL, train_draws
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig
from vjfer.extract.config import cache_settings, config_record
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import train_grid
from vjfer.probe.samples import train_clips
from vjfer.synthetic_frames import make_dfew

EXTRACT = ("--encoder", "tiny", "--workers", "0", "--device", "cpu", "--no-progress")
PROBE = ("--epochs", "1", "--device", "cpu", "--num-workers", "0", "--no-progress")
FRAMES = (9, 37, 70)  # fewer than 16, between 16 and 16·4, more than 16·4 (DFEW's step 4)
# --limit 5: clips 1..5, one in each DFEW fold, of 37, 70, 9, 37 and 70 frames


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    return tmp, make_dfew(tmp / "DFEW", clips_per_class=1, frames=FRAMES)


def _extract(tree, *options) -> tuple[str, object]:
    tmp, root = tree
    out = run_cli(
        "extract",
        "--dataset",
        "dfew",
        "--root",
        root,
        "--cache",
        tmp / "cache",
        "--limit",
        "5",
        *EXTRACT,
        *options,
    )
    directory = re.search(r"^cache\s+(\S+)", out, re.M).group(1)
    return out, open_cache(directory)


@pytest.mark.parametrize("plan", ["stride", "segments"])
def test_the_cache_holds_the_loaders_clips_and_probe_runs(tree, plan):
    options = ("--plan", plan, *(("--frame-step", "4") if plan == "stride" else ()))
    out, cache = _extract(tree, *options, "--train-draws", "3")
    line = re.search(r"^sampling +(.*)$", out, re.M).group(1)
    assert line.startswith("stride 4: MAE-DFER's" if plan == "stride" else "segments: DFER-CLIP")
    assert "3 training draws a video" in line
    assert cache.settings["plan"] == plan
    assert cache.settings["frame_step"] == (4 if plan == "stride" else None)
    assert cache.settings["train_draws"] == {"draws": 3, "seed": 0, "version": 1}
    counts = sorted(cache.videos["n_frames"])
    assert counts == sorted([*FRAMES, 37, 70]), counts  # each kind of length is covered
    for vid, n in zip(cache.videos["video_id"], cache.videos["n_frames"], strict=True):
        frames, roles = cache.clip_frames(vid), cache.clip_roles(vid)
        assert set(roles.tolist()) == {ROLE_EVAL, ROLE_DRAW}
        evaluated = frames[cache.eval_clips(vid)].tolist()
        if plan == "stride":
            views = _mae_dfer_test_views(int(n), 4)
            assert evaluated == (views[:1] if views[0] == views[1] else views), n
        else:
            assert evaluated == [_dfer_clip_test_indices(int(n)).tolist()], n
        drawn = frames[roles == ROLE_DRAW]
        assert drawn.tolist() == train_draws(int(n), plan, None, 3, 0, vid).tolist()
    rows = np.arange(len(cache.videos))
    for choice in ("reference", "random"):  # both draw among the training draws alone
        pool = train_clips(cache, rows, choice, "random")
        assert pool.fixed is None
        for i, clips in pool.plain.items():
            assert (cache.clip_roles(cache.videos.at[i, "video_id"])[clips] == ROLE_DRAW).all()
    tmp, _ = tree
    run_cli(
        "probe",
        "--dataset",
        "dfew",
        "--cache",
        cache.path,
        "--out",
        tmp / f"runs-{plan}",
        "--fold",
        "all",
        *PROBE,
    )
    assert len(list((tmp / f"runs-{plan}").glob("*/fold-*/metrics.json"))) == 5
    # predict plans a new video's evaluation clips as the cache did (stride: its step)
    video = tree[1] / "Clip" / "clip_224x224" / "00002"  # 70 frames
    run_dir = next((tmp / f"runs-{plan}").glob("dfew-*"))
    told = json.loads(
        run_cli("predict", video, "--run", run_dir, "--json", "--clips", "--device", "cpu")
    )
    spans = [[c["start_frame"], c["end_frame"]] for c in told["clips"]]
    assert spans == ([[0, 60], [8, 68]] if plan == "stride" else [[2, 67]])
    # a fold alone trains the same probe as in the five-fold pass (the draws depend on seeds only)
    config = TrainConfig(epochs=2, device="cpu", num_workers=0, in_memory="no")
    together = train_grid(cache, [1, 2, 3, 4, 5], config, progress=False).reported(3)
    alone = train_grid(cache, [3], config, progress=False).reported(3)
    for name, value in alone.probe.state_dict().items():
        assert torch.equal(value, together.probe.state_dict()[name]), name
    pd.testing.assert_frame_equal(alone.clips, together.clips)


def test_a_frame_step_beyond_every_video_is_refused(tree):
    tmp, root = tree
    out = run_cli(
        "extract",
        "--dataset",
        "dfew",
        "--root",
        root,
        "--cache",
        tmp / "cache-refused",
        "--limit",
        "3",
        "--plan",
        "stride",
        "--frame-step",
        "70",
        *EXTRACT,
        ok=False,
    )
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "--frame-step 70" in lines[0], out
    assert "every clip would be one frame repeated" in lines[0]


def test_default_caches_record_no_sampling_keys(tmp_path):
    """Today's plans keep their settings and record: frame_step 4 as before, no draws."""
    from vjfer.encoders import load_encoder

    encoder = load_encoder("tiny")
    config = ExtractConfig("ravdess", tmp_path)
    settings = cache_settings(config, encoder)
    assert settings["frame_step"] == 4 and "train_draws" not in settings
    assert "frame_step" not in config_record(config) and "train_draws" not in config_record(config)
    stride = ExtractConfig("ravdess", tmp_path, plan="stride", frame_step=1)
    assert cache_settings(stride, encoder)["frame_step"] == 1
    assert config_record(stride)["frame_step"] == 1 and config_record(stride)["train_draws"] == 8


@pytest.mark.parametrize(
    "options, words",
    [
        ({"frame_step": 2}, r"--frame-step applies to --plan stride; --plan windows has the "),
        ({"plan": "segments", "frame_step": 2}, r"--plan segments has no frame step"),
        ({"plan": "stride", "frame_step": 0}, r"--frame-step must be >= 1"),
        ({"train_draws": 3}, r"--train-draws applies to --plan stride or segments"),
        ({"plan": "segments", "train_draws": 0}, r"--train-draws must be >= 1"),
        ({"plan": "stride", "augment": 1}, r"--augment copies the V-JEPA reference's 8"),
        ({"augment": 254}, r"--augment takes at most 253 copies"),
    ],
)
def test_a_sampling_option_that_cannot_apply_is_refused(tmp_path, options, words):
    with pytest.raises(ConfigError, match=words):
        ExtractConfig("ravdess", tmp_path, **options)
