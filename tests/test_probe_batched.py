"""`--batch-heads` (`vjfer.probe.batched`): a grid's heads of one family and shape train as one
batched module, equal to the heads trained one at a time within float rounding; everything that
leaves the pass is per head (probe.pt keys, histories, failures, the resume checkpoint)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import GRID, make_entries

from vjfer.cache import build_cache, open_cache
from vjfer.probe.batched import HeadGroup, group_heads
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import make_grid, split_rows, train_grid
from vjfer.probe.head import Head
from vjfer.probe.run import train_folds
from vjfer.probe.train import train_heads

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

CFG = TrainConfig(
    epochs=3, batch_size=4, num_heads=4, num_workers=0, device="cpu", in_memory="no", lr=3e-3
)
# fp32 rounding: the batched kernels sum in another order than one head's, ~1 ulp (6e-8 at 1.0)
# per operation; after 3 epochs (48 AdamW steps on fold 2) the largest parameter difference
# measured was 6.5e-7 (attentive) and 1.2e-7 (linear). 1e-5 is 15x that, yet 100x below what one
# step moves a parameter (AdamW moves each by ~lr = 1e-3): a skipped step, another head's lr or
# weight decay or a gradient clipped with another head's norm fails it.
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Two actors of each RAVDESS fold, 8 classes: 80 videos."""
    settings = {"encoder": "synthetic", "resolution": 64, "plan": "windows", "hop": 8}
    actors = [2, 5, 3, 6, 10, 11, 8, 17, 1, 4]
    root = tmp_path_factory.mktemp("batched") / "cache"
    entries = make_entries(actors=actors)
    return open_cache(build_cache(root, settings, entries, dataset="ravdess", grid=GRID))


def _largest_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()  # the reference module's keys: unstacked on the way out
    return max((sa[n] - sb[n]).abs().max().item() for n in sa)


def test_only_heads_of_one_family_shape_and_videos_are_grouped(cache):
    """A default run (one head per fold) has no group: every head trains as today. A grid's
    points on one fold of one family are one group; k-NN, depth 2, other folds stay alone."""
    fold_of, cpu = cache.videos["fold"].to_numpy(), torch.device("cpu")
    per_fold = [Head(f"f{k}", CFG, split_rows(fold_of, k)[0], cache, cpu) for k in range(1, 6)]
    assert group_heads(per_fold) == per_fold
    rows = split_rows(fold_of, 2)[0]
    grid = make_grid([1e-3, 3e-3], [0.01], [0], probes=("attentive", "linear", "knn"))
    heads = [Head(p.name, p.apply(CFG), rows, cache, cpu) for p in grid]
    heads += [Head("deep", replace(CFG, probe_depth=2), rows, cache, cpu)]
    heads += [Head("deep2", replace(CFG, probe_depth=2, lr=1e-3), rows, cache, cpu)]
    heads += [Head("other-seed", replace(CFG, seed=1), rows, cache, cpu)]
    units = group_heads(heads)
    groups = [u for u in units if isinstance(u, HeadGroup)]
    assert [[h.config.probe for h in g.heads] for g in groups] == [
        ["attentive"] * 2,
        ["linear"] * 2,
    ]
    alone = [u.name for u in units if isinstance(u, Head)]
    assert heads[2].knn and alone == [heads[2].name, "deep", "deep2", "other-seed"]


@pytest.mark.parametrize(
    "probe, options",
    [
        ("attentive", {}),
        ("linear", {}),
        ("attentive", {"pool": "clip", "token_augment": True}),  # per clip, tokens masked
    ],
)
def test_a_batched_grid_equals_its_heads_trained_one_at_a_time_within_rounding(
    cache, probe, options
):
    config = replace(CFG, probe=probe, **options)
    grid = make_grid([1e-3, 3e-3], [0.01, 0.1], [0])
    alone = train_grid(cache, [2], config, grid, progress=False)
    batched = train_grid(cache, [2], replace(config, batch_heads=True), grid, progress=False)
    for key, ours in batched.results.items():
        theirs = alone.results[key]
        assert _largest_difference(ours.probe, theirs.probe) < TOLERANCE, key
        np.testing.assert_allclose(
            [h["loss"] for h in ours.history], [h["loss"] for h in theirs.history], rtol=1e-5
        )
        assert ours.metrics["pbv"] == theirs.metrics["pbv"]
    # and the tolerance is tight: a head of another weight decay or lr differs by far more
    probes = {(p.lr, p.weight_decay): batched.results[(2, p.name)].probe for p in grid}
    assert _largest_difference(probes[1e-3, 0.01], probes[1e-3, 0.1]) > 10 * TOLERANCE
    assert _largest_difference(probes[1e-3, 0.01], probes[3e-3, 0.01]) > 100 * TOLERANCE


def test_a_diverged_head_does_not_poison_its_group(cache):
    """lr 1e30 diverges in epoch 1 (marked failed, as alone); its group-mate trains as if alone."""
    config = replace(CFG, epochs=2, on_nonfinite="skip", batch_heads=True)
    rows, cpu = split_rows(cache.videos["fold"].to_numpy(), 1)[0], torch.device("cpu")
    heads = [Head(f"lr{lr:g}", replace(config, lr=lr), rows, cache, cpu) for lr in (1e30, 1e-3)]
    alone = Head("alone", replace(config, lr=1e-3), rows, cache, cpu)
    train_heads(cache, heads, config, progress=False)
    train_heads(cache, [alone], config, progress=False)  # a group of one: trained as today
    bad, good = heads
    assert bad.failed == {"epoch": 1, "loss": "nan"} and len(bad.history) == 1
    assert good.failed is None and len(good.history) == 2
    assert _largest_difference(good.probe, alone.probe) < TOLERANCE
    assert bad.step < good.step  # it trained no further


@pytest.mark.slow
def test_a_killed_batched_pass_resumes_identical(cache, tmp_path, monkeypatch):
    """Killed in its second epoch (after the first's checkpoint), a batched pass of attentive and
    linear grids on two folds (with their inner heads: 4 groups of 2 a fold) resumes to the run an
    uninterrupted batched pass writes, bit for bit."""
    import vjfer.probe.train as train

    config = replace(CFG, batch_size=2, batch_heads=True)
    grid = make_grid([1e-3, 3e-3], [0.01], [0], probes=("attentive", "linear"))
    folds = [1, 2]
    train_folds(cache, folds, config, tmp_path / "whole", grid=grid, progress=False)
    run_epoch = train._run_epoch

    def killed_in_epoch_2(*args):
        if args[6] == 1:  # epoch, 0-based
            raise KeyboardInterrupt
        return run_epoch(*args)

    monkeypatch.setattr(train, "_run_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_folds(cache, folds, config, tmp_path / "cut", grid=grid, progress=False)
    monkeypatch.undo()
    saved = torch.load(tmp_path / "cut.partial" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1
    train_folds(cache, folds, config, tmp_path / "cut", grid=grid, progress=False, mode="resume")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert json.loads((whole / "config.json").read_text())["train"]["batch_heads"] is True
    heads = sorted(p.relative_to(whole) for p in whole.glob("fold-*/heads/*"))
    assert len(heads) == len(folds) * len(grid)
    for head in heads:
        name = "video_predictions.csv"
        assert (whole / head / name).read_bytes() == (cut / head / name).read_bytes()
        ours, theirs = (json.loads((r / head / "metrics.json").read_text()) for r in (whole, cut))
        assert [h["loss"] for h in ours.pop("history")] == [
            h["loss"] for h in theirs.pop("history")
        ]
        for metrics in (ours, theirs):  # the pass's wall time differs run to run
            del metrics["train"]["pass_seconds_share"]
        assert ours == theirs
    for fold in sorted(p.relative_to(whole) for p in whole.glob("fold-*")):
        name = "clip_predictions.csv"
        assert (whole / fold / name).read_bytes() == (cut / fold / name).read_bytes()
        ours, theirs = (torch.load(r / fold / "probe.pt", weights_only=True) for r in (whole, cut))
        assert ours["state_dict"].keys() == theirs["state_dict"].keys()
        for key, tensor in ours["state_dict"].items():
            assert torch.equal(tensor, theirs["state_dict"][key]), f"{fold} {key}"
    assert (whole / "selection.csv").read_bytes() == (cut / "selection.csv").read_bytes()


def test_the_command_line_batches_a_grid_and_records_it_only_then(cache_dir, tmp_path, caplog):
    from conftest import run_cli

    args = ["probe", "--cache", cache_dir, "--fold", "1", "--epochs", "1", "--device", "cpu"]
    args += ["--no-progress", "--probe", "linear", "--lr", "1e-3,3e-3", "--num-workers", "0"]
    with caplog.at_level(logging.INFO, logger="vjfer.probe.train"):
        run_cli(*args, "--out", tmp_path / "batched", "--batch-heads")
    assert "--batch-heads: 4 heads in 2 batched groups" in caplog.text  # fold 1's, inner fold's
    run_cli(*args, "--out", tmp_path / "plain")
    (batched,) = (tmp_path / "batched").iterdir()
    (plain,) = (tmp_path / "plain").iterdir()
    assert json.loads((batched / "config.json").read_text())["train"]["batch_heads"] is True
    assert "batch_heads" not in json.loads((plain / "config.json").read_text())["train"]
    for run in (batched, plain):  # both grid points and their inner heads trained
        assert len(list(run.glob("fold-1/heads/*/metrics.json"))) == 2


@pytest.mark.cuda  # skipped by conftest.py without a GPU
def test_a_batched_grid_on_cuda_equals_its_heads_and_fp16_is_not_batched(cache):
    """fp32 on the GPU: within 1e-4 of the heads one at a time (10x the CPU's tolerance: cuBLAS
    picks its summation order per shape); bf16 autocast trains finite; fp16 (a loss scaler per
    head) is not grouped."""
    rows, gpu = split_rows(cache.videos["fold"].to_numpy(), 2)[0], torch.device("cuda")
    config = replace(CFG, epochs=2, device="cuda", autocast="fp32", batch_heads=True)
    lrs = (1e-3, 3e-3)

    def heads(c):
        return [Head(f"lr{lr:g}", replace(c, lr=lr), rows, cache, gpu) for lr in lrs]

    batched = heads(config)
    train_heads(cache, batched, config, progress=False)
    for lr, head in zip(lrs, batched, strict=True):
        single = replace(config, lr=lr)
        alone = Head("alone", single, rows, cache, gpu)
        train_heads(cache, [alone], single, progress=False)
        assert _largest_difference(head.probe, alone.probe) < 1e-4
    bf16 = replace(config, autocast="bf16")
    pair = heads(bf16)
    assert any(isinstance(u, HeadGroup) for u in group_heads(pair))
    train_heads(cache, pair, bf16, progress=False)
    assert all(np.isfinite(h["loss"]) for head in pair for h in head.history)
    fp16 = heads(replace(config, autocast="fp16"))
    assert group_heads(fp16) == fp16
