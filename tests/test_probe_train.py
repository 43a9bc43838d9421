"""Probe training: schedules, clip choice, checks, determinism, and an end-to-end run on a cache."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CLASSES, GRID, D, make_entries  # noqa: E402

from vjfer.cache import build_cache, open_cache
from vjfer.clips import plan_clips
from vjfer.datasets.folds import load_folds
from vjfer.errors import CacheError, ConfigError, SplitError
from vjfer.probe.config import TrainConfig, cosine, lr_at, wd_at
from vjfer.probe.folds import check_folds, split_fold
from vjfer.probe.head import param_groups
from vjfer.probe.model import AttentiveProbe, load_probe
from vjfer.probe.run import run_probe
from vjfer.probe.samples import draw_samples, epoch_order, reference_clips
from vjfer.probe.train import train_probe

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest


SMALL = TrainConfig(epochs=2, batch_size=4, num_heads=4, num_workers=0, device="cpu")


def test_schedules_first_middle_last_step():
    total = 100
    assert lr_at(0, total) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / total)))
    assert lr_at(49, total) == pytest.approx(0.5e-3)  # progress 50/100
    assert lr_at(99, total) == pytest.approx(0.0, abs=1e-15)
    assert wd_at(0, total) == pytest.approx(0.01, rel=1e-3)
    assert wd_at(49, total) == pytest.approx((0.01 + 1e-6) / 2)
    assert wd_at(99, total) == pytest.approx(1e-6)
    lrs = [lr_at(s, total) for s in range(total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    with pytest.raises(ValueError, match="outside"):
        cosine(total, total, 1.0, 0.0)


def test_config_checks_choices():
    with pytest.raises(ConfigError, match="pool must be one of"):
        TrainConfig(pool="mean")
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        TrainConfig(epochs=0)
    assert TrainConfig(betas=[0.9, 0.95]).betas == (0.9, 0.95)
    with pytest.raises(
        ConfigError, match="clip_choice='reference' takes 8 clips; clips_per_video is 4"
    ):
        TrainConfig(clips_per_video=4)
    assert TrainConfig(clips_per_video=4, clip_choice="random").clips_per_video == 4
    with pytest.raises(ConfigError, match="in_memory must be one of"):
        TrainConfig(in_memory="disk")


def test_reference_clips_pick_nearest_cached_start():
    n_frames = 200
    targets = plan_clips(n_frames, "reference-train")[:, 0]
    starts = np.arange(0, 140, 8)  # cached windows every 8 frames
    picked = reference_clips(starts, n_frames)
    assert picked.shape == (8,)
    for t, i in zip(targets, picked, strict=True):
        assert np.abs(starts - t).min() == abs(starts[i] - t)
    assert reference_clips(np.array([0]), 50).tolist() == [0] * 8  # a one-clip video


def test_epoch_order_and_draws_are_seeded_and_in_range():
    n_clips = np.array([3, 5, 1, 7])
    order = epoch_order(4, 0, 0)
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_array_equal(order, epoch_order(4, 0, 0))
    assert any(not np.array_equal(epoch_order(50, 0, e), epoch_order(50, 0, 0)) for e in (1, 2))
    a, b = (
        draw_samples(n_clips, None, 3, 8, True, 0, 0),
        draw_samples(n_clips, None, 3, 8, True, 0, 0),
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    clips, views = a
    assert clips.shape == views.shape == (4, 8)
    assert (clips < n_clips[:, None]).all() and (clips >= 0).all() and views.max() < 3
    assert not np.array_equal(draw_samples(n_clips, None, 3, 8, True, 0, 1)[0], clips)  # epoch
    assert not np.array_equal(draw_samples(n_clips, None, 3, 8, True, 1, 0)[0], clips)  # seed
    fixed = np.tile(np.arange(8), (4, 1))
    middle = draw_samples(n_clips, fixed, 3, 8, False, 0, 0)
    assert (middle[1] == 1).all() and (middle[0] == fixed).all()


def test_weight_decay_only_on_weights():
    probe = AttentiveProbe(D, CLASSES, 4)
    decay, rest = param_groups(probe)
    names = {id(p): n for n, p in probe.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "pooler.query_tokens" in decayed and "linear.weight" in decayed
    assert not any(n.endswith("bias") or "norm" in n for n in decayed)
    assert rest["weight_decay"] == 0.0 and len(decay["params"]) + len(rest["params"]) == 17


def test_leaked_actor_raises(tmp_path):
    folds = dict(load_folds("ravdess"))
    entries = make_entries(actors=[1, 2, 3])
    entries[0].fold = 5 if entries[0].fold != 5 else 4  # actor 1 now has videos in two folds
    cache = open_cache(build_cache(tmp_path / "c", {"x": 1}, entries, dataset="ravdess", grid=GRID))
    with pytest.raises(SplitError, match=r"actors \[1\] appear in more than one fold"):
        check_folds(cache)
    with pytest.raises(SplitError, match=r"test actors \[1\] also appear in training"):
        split_fold(cache.videos, folds[1])


def test_folds_that_disagree_with_splits_raise(tmp_path):
    wrong = {a: 1 + a % 5 for a in range(1, 25)}
    entries = make_entries(actors=[1, 2], folds=wrong)
    cache = open_cache(build_cache(tmp_path / "c", {"x": 1}, entries, dataset="ravdess", grid=GRID))
    with pytest.raises(SplitError, match="splits/ for ravdess put it in fold"):
        check_folds(cache)


def test_cpu_training_is_deterministic_and_in_memory_equals_streamed(cache_dir):
    cache = open_cache(cache_dir)
    train = cache.videos[cache.videos["fold"] != 1].iloc[:40]
    cfg = TrainConfig(epochs=2, num_heads=4, num_workers=0, device="cpu", clip_choice="random")
    states = []
    for in_memory, workers in (("yes", 0), ("yes", 2), ("no", 0), ("no", 2)):
        cfg_i = TrainConfig(**{**cfg.__dict__, "in_memory": in_memory, "num_workers": workers})
        probe, history = train_probe(cache, train, cfg_i, fold=1, progress=False)
        states.append(probe.state_dict())
        assert len(history) == 2 and history[-1]["loss"] > 0
    for other in states[1:]:
        for name, tensor in states[0].items():
            assert torch.equal(tensor, other[name]), name


def test_end_to_end_run_is_above_chance(cache_dir, tmp_path):
    cfg = TrainConfig(epochs=6, num_heads=4, num_workers=0, device="cpu")
    out = run_probe(cache_dir, [1, 3], cfg, tmp_path / "run", dataset="ravdess", progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["folds"] == [1, 3] and summary["dataset"] == "ravdess"
    assert summary["mean"]["pbv"]["uar"]["mean"] > 0.6  # chance is 0.125
    assert "| PBV |" in (out / "summary.md").read_text()
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 6
    fold = out / "fold-1"
    expected = {
        "probe.pt",
        "config.json",
        "clip_predictions.csv",
        "video_predictions.csv",
        "metrics.json",
        "confusion.csv",
        "confusion_mv.csv",
        "confusion_clip.csv",
    }
    assert expected <= {p.name for p in fold.iterdir()}
    videos = pd.read_csv(fold / "video_predictions.csv")
    assert {
        "video_id",
        "actor",
        "label",
        "label_name",
        "prob_calm",
        "votes_calm",
        "pbv",
        "mv",
    } <= set(videos)
    assert set(videos["actor"]) == {a for a, f in load_folds("ravdess").items() if f == 1}
    metrics = json.loads((fold / "metrics.json").read_text())
    assert metrics["n_test_videos"] == len(videos) and len(metrics["history"]) == 6
    assert len(pd.read_csv(fold / "confusion.csv", index_col=0)) == CLASSES

    probe, meta = load_probe(fold / "probe.pt")
    assert meta["class_names"][1] == "calm" and meta["config"]["epochs"] == 6
    assert meta["cache"]["fingerprint"] == open_cache(cache_dir).fingerprint
    assert TrainConfig(**meta["config"]) == cfg


def test_clip_pool_and_linear_probe_learn(cache_dir):
    """Both variants fit their training videos (the classes are mean shifts), and clip pooling
    is a different model from joint pooling (it scores each clip alone)."""
    cache = open_cache(cache_dir)
    train = cache.videos[cache.videos["fold"] != 1]
    base = {**SMALL.__dict__, "epochs": 4, "lr": 3e-3}
    losses = {}
    for name, cfg in (
        ("clip", TrainConfig(**{**base, "pool": "clip"})),
        ("joint", TrainConfig(**base)),
        ("linear", TrainConfig(**{**base, "probe": "linear", "lr": 3e-2})),
    ):
        probe, history = train_probe(cache, train, cfg, progress=False)
        losses[name] = [h["loss"] for h in history]
        assert history[-1]["loss"] < 0.5 * history[0]["loss"], (name, losses[name])
        tokens = torch.from_numpy(cache.tokens(train["video_id"].iloc[0])[:, 0]).float()
        logits = probe(tokens)  # each clip of a training video alone: [C, classes]
        assert (logits.argmax(1) == int(train["label"].iloc[0])).float().mean() >= 0.5, name
    assert losses["clip"] != losses["joint"]


def test_run_refuses_a_cache_that_does_not_fit(cache_dir, tmp_path):
    with pytest.raises(CacheError, match="holds ravdess, asked for crema-d"):
        run_probe(cache_dir, "all", SMALL, tmp_path, dataset="crema-d")
    with pytest.raises(CacheError, match="fingerprint"):
        run_probe(cache_dir, "all", SMALL, tmp_path, fingerprint="0000000")
    with pytest.raises(ConfigError, match=r"fold\(s\) \[7\] not in cache"):
        run_probe(cache_dir, [7], SMALL, tmp_path)


def test_two_seeds_give_two_initial_probes_and_one_seed_one(cache_dir):
    """The probe's initialisation comes from the head's seed alone, not the global RNG."""
    from vjfer.probe.head import Head

    cache = open_cache(cache_dir)
    rows, cpu = np.arange(8), torch.device("cpu")

    def initial(seed: int, global_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)  # the global RNG state must not matter
        return Head("h", replace(SMALL, seed=seed), rows, cache, cpu).probe.state_dict()

    first, again, other = initial(0, 1234), initial(0, 99), initial(1, 1234)
    for name, tensor in first.items():
        assert torch.equal(tensor, again[name]), name
    weights = [n for n, t in first.items() if t.ndim >= 2]
    assert weights and all(not torch.equal(first[n], other[n]) for n in weights)


def test_epoch_order_fixed_repeats_the_first_permutation():
    first = epoch_order(50, 3, 0, "fixed")
    assert all(np.array_equal(epoch_order(50, 3, e, "fixed"), first) for e in range(1, 4))
    np.testing.assert_array_equal(first, epoch_order(50, 3, 0))  # epoch 0 of reshuffle
    assert TrainConfig().epoch_order == "reshuffle"  # the default keeps earlier results
    with pytest.raises(ConfigError, match="epoch_order must be one of"):
        TrainConfig(epoch_order="sorted")


@pytest.mark.parametrize("how", ["fixed", "reshuffle"])
def test_a_pass_visits_videos_in_the_epoch_order(cache_dir, monkeypatch, how):
    from vjfer.probe.head import Head
    from vjfer.probe.reader import ClipReader
    from vjfer.probe.train import train_heads

    calls: list[list[str]] = []
    stream = ClipReader.stream

    def spy(self, requests):
        calls.append([vid for vid, _ in requests])
        return stream(self, requests)

    monkeypatch.setattr(ClipReader, "stream", spy)
    cache = open_cache(cache_dir)
    config = replace(SMALL, epochs=3, in_memory="no", epoch_order=how)
    train_heads(
        cache,
        [Head("h", config, np.arange(40), cache, torch.device("cpu"))],
        config,
        progress=False,
    )
    assert len(calls) == 3 and all(sorted(c) == sorted(calls[0]) for c in calls)
    assert (calls[1] == calls[0] and calls[2] == calls[0]) == (how == "fixed")


def test_probe_refuses_a_cache_with_a_corrupt_clip(tmp_path):
    """`run_probe` and `vjfer probe` read every clip verified: one flipped bit stops the run and
    the error names that clip."""
    from conftest import run_cli

    directory = build_cache(
        tmp_path / "c",
        {"encoder": "synthetic"},
        make_entries(actors=range(1, 7)),
        dataset="ravdess",
        grid=GRID,
    )
    cache = open_cache(directory)
    vid, shard = cache.videos["video_id"][5], cache.videos["shard"][5]
    row = int(cache.videos["first_clip"][5]) + 1
    with open(directory / shard, "r+b") as f:
        f.seek(int(cache.chunks(shard).values[row]) + 64)
        byte = f.read(1)[0]
        f.seek(-1, 1)
        f.write(bytes([byte ^ 0x01]))
    named = rf"clip {row} \({vid}, clip 1\) does not match its checksum"
    with pytest.raises(CacheError, match=named):
        run_probe(directory, "all", replace(SMALL, epochs=1), tmp_path / "run", progress=False)
    out = run_cli(
        "probe",
        "--cache",
        directory,
        "--out",
        tmp_path / "runs",
        "--epochs",
        1,
        "--num-workers",
        0,
        "--device",
        "cpu",
        "--no-progress",
        ok=False,
    )
    assert re.search(named, out), out
