"""Probe families in one pass (`--probe attentive,linear`) and the deeper attentive probe
(`--probe-depth`): a family's heads train beside the others' from the one read per epoch, and a
head's result does not depend on which heads share the pass; the depth-4 probe is V-JEPA 2's."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vjfer.cache import open_cache
from vjfer.datasets.folds import load_folds
from vjfer.errors import ConfigError
from vjfer.probe.config import OptionError, TrainConfig, parse_probes
from vjfer.probe.evaluate import score_videos
from vjfer.probe.folds import GridPoint, fold_metrics, make_grid, split_rows, train_grid
from vjfer.probe.head import Head
from vjfer.probe.model import AttentiveProbe, KnnProbe, build_probe, load_probe
from vjfer.probe.reader import clip_bytes
from vjfer.probe.run import ProbeRequest, run_request
from vjfer.probe.samples import fixed_clips
from vjfer.probe.train import train_heads

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

CFG = TrainConfig(
    epochs=2,
    batch_size=4,
    num_heads=4,
    num_workers=2,
    prefetch=3,
    device="cpu",
    in_memory="no",
    lr=3e-3,
)
FAMILIES = ("attentive", "linear")
ALL3 = ("attentive", "linear", "knn")


@pytest.fixture(scope="module")
def cache(tiny_cache):
    """Two actors per fold (RAVDESS's folds), 8 classes, 3 views: 80 videos."""
    folds = load_folds("ravdess")
    actors = [a for k in range(1, 6) for a in sorted(a for a, f in folds.items() if f == k)[:2]]
    return open_cache(tiny_cache(actors=actors, views=3, shard_size=16))


def _same(a, b) -> None:
    sa, sb = a.probe.state_dict(), b.probe.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    pd.testing.assert_frame_equal(a.clips, b.clips)
    assert a.metrics["pbv"] == b.metrics["pbv"]


def test_families_are_a_grid_axis_named_only_when_several():
    assert make_grid([1e-3], [0.01], [0]) == [GridPoint(1e-3, 0.01, 0)]  # one family: as before
    assert make_grid([1e-3], [0.01], [0], probes=("linear",)) == [GridPoint(1e-3, 0.01, 0)]
    grid = make_grid([3e-3], [0.01], [0], probes=("linear", "attentive"))
    # each family's reference default first (the first family's first of all), then the rest
    assert [p.name for p in grid] == [
        "lr0.001-wd0.01-seed0-linear",
        "lr0.001-wd0.01-seed0-attentive",
        "lr0.003-wd0.01-seed0-linear",
        "lr0.003-wd0.01-seed0-attentive",
    ]
    assert grid[1].apply(CFG).probe == "attentive" and grid[0].apply(CFG).probe == "linear"
    assert "probe" not in GridPoint(1e-3, 0.01, 0).record() and grid[0].record()["probe"]
    assert parse_probes("attentive, linear,attentive") == FAMILIES
    with pytest.raises(OptionError, match="--probe: 'mlp'"):
        parse_probes("attentive,mlp")


@pytest.mark.slow
def test_a_mixed_family_grid_equals_its_heads_trained_one_at_a_time(cache):
    """Each head of an attentive + linear grid over two folds equals that point trained alone on
    one fold, bit for bit; and the families do differ."""
    grid = make_grid([1e-3, 3e-3], [0.01], [0], probes=ALL3, ks=(1, 3))
    assert [p.name for p in grid if p.probe == "knn"] == [
        "lr0.001-wd0.01-seed0-knn-k1",
        "lr0.001-wd0.01-seed0-knn-k3",
    ]
    together = train_grid(cache, [2, 3], CFG, grid, progress=False)
    for point in grid:
        alone = train_grid(cache, [2], point.apply(CFG), progress=False).reported(2)
        _same(alone, together.results[(2, point.name)])
    assert type(together.results[(2, grid[0].name)].probe).__name__ == "AttentiveProbe"
    assert type(together.results[(2, grid[1].name)].probe).__name__ == "LinearProbe"
    # fold 3 of the two-fold mixed pass equals fold 3's mixed grid alone, selection included
    alone3 = train_grid(cache, [3], CFG, grid, progress=False)
    for point in grid:
        _same(alone3.results[(3, point.name)], together.results[(3, point.name)])
    assert alone3.selected[3] == together.selected[3]
    for family in ALL3:
        assert alone3.family_selected(family)[3] == together.family_selected(family)[3]
        assert f"-{family}" in together.family_selected(family)[3]


def test_the_families_share_one_read_per_epoch(cache):
    """Attentive, linear and k-NN heads of every fold read each needed clip once per epoch; k-NN
    heads alone read once, in the first epoch."""
    size = clip_bytes(cache)
    every = sum(len(np.unique(f)) for f in fixed_clips(cache, np.arange(len(cache)))) * size
    fold_of = cache.videos["fold"].to_numpy()
    device = torch.device("cpu")
    heads = [
        Head(f"f{k}/{p.name}", p.apply(CFG), split_rows(fold_of, k)[0], cache, device)
        for k in range(1, 6)
        for p in make_grid([1e-3], [0.01], [0], probes=ALL3)
    ]
    train_heads(cache, heads, CFG, progress=False)
    assert {h["pass_bytes_read"] for head in heads for h in head.history} == {every}
    assert {type(h.probe).__name__ for h in heads} == {"AttentiveProbe", "LinearProbe", "KnnProbe"}
    knn = [
        Head(f"f{k}", replace(CFG, probe="knn"), split_rows(fold_of, k)[0], cache, device)
        for k in range(1, 6)
    ]
    train_heads(cache, knn, CFG, progress=False)
    assert [h["pass_bytes_read"] for h in knn[0].history] == [every, 0]


def test_knn_with_k_1_scores_every_training_video_right(cache):
    """k = 1 on test videos that are also in the bank: 100 %; a banked clip finds itself (cosine
    1), and the probe's file reloads with its bank."""
    config = replace(CFG, probe="knn", train_view="middle")
    rows = np.arange(len(cache))
    head = Head("all", config, rows, cache, torch.device("cpu"))
    train_heads(cache, [head], config, progress=False)
    probe = head.probe
    assert len(probe.bank) == len(rows) * config.clips_per_video
    clips = score_videos(cache, {"all": (probe, rows)}, device="cpu", progress=False)["all"]
    _, metrics = fold_metrics(0, clips, cache.class_names, len(rows), head.history)
    assert metrics["pbv"]["uar"] == 1.0 and metrics["mv"]["uar"] == 1.0
    assert metrics["clip"]["uar"] == 1.0
    assert torch.allclose((probe.bank[:5] @ probe.bank[:5].t()).diagonal(), torch.ones(5))
    reloaded = build_probe("knn", cache.embed_dim, len(cache.class_names), k=1)
    reloaded.load_state_dict(probe.state_dict())
    assert torch.equal(reloaded.bank, probe.bank)
    tokens = torch.randn(4, 6, cache.embed_dim)
    three = build_probe("knn", cache.embed_dim, len(cache.class_names), k=3)
    three.load_state_dict(probe.state_dict())
    shares = three(tokens).softmax(dim=-1)
    torch.testing.assert_close(shares.sum(dim=-1), torch.ones(4))
    assert ((shares > 0).sum(dim=-1) <= 3).all()


def test_a_run_of_two_families_reports_each_and_a_default_run_is_unchanged(cache_dir, tmp_path):
    config = TrainConfig(epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu")
    default = run_request(
        ProbeRequest(cache=cache_dir, runs=tmp_path, config=config, folds=(1,), progress=False)
    )
    assert default.name.endswith("-attentive-fold1")
    summary = json.loads((default / "summary.json").read_text())
    assert "families" not in summary and summary["probe"] == "attentive"
    run = json.loads((default / "config.json").read_text())
    assert "probe_depth" not in run["train"] and run["grid"] == [
        {"lr": 0.001, "weight_decay": 0.01, "seed": 0, "layer": "concat"}
    ]
    mixed = run_request(
        ProbeRequest(
            cache=cache_dir,
            runs=tmp_path,
            config=config,
            folds=(1,),
            probes=FAMILIES,
            progress=False,
        )
    )
    assert mixed.name.endswith("-attentive-linear-fold1-grid2")
    summary = json.loads((mixed / "summary.json").read_text())
    assert [f["probe"] for f in summary["families"]] == list(FAMILIES)
    for entry in summary["families"]:
        assert entry["head"] == f"lr0.001-wd0.01-seed0-{entry['probe']}"
        assert entry["selected"]["selection"] == {"1": entry["head"]}  # one point per family
        metrics = json.loads(
            (mixed / "fold-1" / "heads" / entry["head"] / "metrics.json").read_text()
        )
        assert entry["per_fold"][0]["pbv"]["uar"] == metrics["pbv"]["uar"]
        assert metrics["head"]["probe"] == entry["probe"]
    assert summary["probe"] == "attentive" and summary["head"].endswith("-attentive")
    assert set(pd.read_csv(mixed / "selection.csv")["probe"]) == set(FAMILIES)
    text = (mixed / "summary.md").read_text()
    assert "| attentive | lr0.001-wd0.01-seed0-attentive |" in text and "| linear |" in text
    assert "Probe families" not in (default / "summary.md").read_text()
    linear = run_request(
        ProbeRequest(
            cache=cache_dir,
            runs=tmp_path,
            config=config,
            folds=(1,),
            probes=("linear",),
            progress=False,
        )
    )
    assert linear.name.endswith("-linear-fold1")
    assert json.loads((linear / "summary.json").read_text())["probe"] == "linear"
    knn = run_request(
        ProbeRequest(
            cache=cache_dir,
            runs=tmp_path,
            config=config,
            folds=(1,),
            probes=("knn",),
            ks=(3, 1),
            progress=False,
        )
    )
    assert knn.name.endswith("-knn-fold1-grid2")
    probe, meta = load_probe(knn / "fold-1" / "probe.pt")
    assert isinstance(probe, KnnProbe) and probe.k == 3 and meta["knn_k"] == 3
    assert (
        len(probe.bank)
        == json.loads((knn / "fold-1" / "metrics.json").read_text())["n_train_videos"]
        * config.clips_per_video
    )


# ------------------------------------------------------------------ V-JEPA 2's deeper probe
# Re-created from facebookresearch/vjepa2 src/models/utils/modules.py (MLP, Attention, Block,
# CrossAttention, CrossAttentionBlock) and src/models/attentive_pooler.py (AttentivePooler,
# AttentiveClassifier) with their defaults for the probe (qkv_bias=True, mlp_ratio 4, SDPA, no
# dropout, no RoPE, complete_block=True), written from that code, independent of vjfer.


class _MLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class _Block(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _MLP(dim, int(dim * 4.0))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _CrossAttention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.kv = nn.Linear(dim, dim, bias=True), nn.Linear(dim, int(dim * 2), bias=True)

    def forward(self, q, x):
        B, n, C = q.shape
        q = self.q(q).reshape(B, n, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        B, N, C = x.shape
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, C // self.num_heads)
        k, v = kv.permute(2, 0, 3, 1, 4)
        q = F.scaled_dot_product_attention(q, k, v)
        return q.transpose(1, 2).reshape(B, n, C)


class _CrossAttentionBlock(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1, self.xattn = nn.LayerNorm(dim), _CrossAttention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), _MLP(dim, int(dim * 4.0))

    def forward(self, q, x):
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class _Pooler(nn.Module):
    def __init__(self, dim, num_heads, depth):
        super().__init__()
        self.query_tokens = nn.Parameter(torch.zeros(1, 1, dim))
        self.cross_attention_block = _CrossAttentionBlock(dim, num_heads)
        self.blocks = nn.ModuleList([_Block(dim, num_heads) for _ in range(depth - 1)])
        nn.init.trunc_normal_(self.query_tokens, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.constant_(m.bias, 0)
        layer_id = 0
        for layer_id, layer in enumerate(self.blocks):
            layer.attn.proj.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))
            layer.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))
        self.cross_attention_block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (layer_id + 1)))

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.cross_attention_block(self.query_tokens.repeat(len(x), 1, 1), x)


class _VJepa2Classifier(nn.Module):
    def __init__(self, dim, num_heads, depth, num_classes):
        super().__init__()
        self.pooler = _Pooler(dim, num_heads, depth)
        self.linear = nn.Linear(dim, num_classes, bias=True)

    def forward(self, x):
        return self.linear(self.pooler(x).squeeze(1))


def test_the_depth_4_probe_is_v_jepa_2s_attentive_classifier():
    """Same parameter names and count as V-JEPA 2's module at depth 4, its state dict loads as is,
    and the forward (both pooling forms) equals V-JEPA 2's in fp32."""
    torch.manual_seed(0)
    ours = AttentiveProbe(32, 7, num_heads=4, depth=4).eval()
    theirs = _VJepa2Classifier(32, 4, 4, 7).eval()
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.load_state_dict(ours.state_dict())
    tokens = torch.randn(3, 40, 32)
    with torch.no_grad():
        want = theirs(tokens)
        torch.testing.assert_close(ours(tokens), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours.forward_reference(tokens), want, rtol=1e-5, atol=1e-5)
    # V-JEPA 2's rescaled init: block i's proj and fc2 at std 0.02 / sqrt(2 (i + 1))
    big = AttentiveProbe(256, 7, num_heads=4, depth=4)
    for i, block in enumerate(big.pooler.blocks):
        for w in (block.attn.proj.weight, block.mlp.fc2.weight):
            assert abs(w.std().item() / (0.02 / math.sqrt(2 * (i + 1))) - 1) < 0.1
    fc2 = big.pooler.cross_attention_block.mlp.fc2.weight
    assert abs(fc2.std().item() / (0.02 / math.sqrt(2 * 3)) - 1) < 0.1
    assert big.pooler.cross_attention_block.xattn.proj is None


def test_depth_1_keeps_todays_module_and_a_mask_drops_tokens():
    torch.manual_seed(0)
    one = build_probe("attentive", 16, 3, 4)
    assert "pooler.cross_attention_block.xattn.proj.weight" in one.state_dict()
    assert not any(k.startswith("pooler.blocks") for k in one.state_dict())
    torch.manual_seed(0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            one.state_dict().values(),
            AttentiveProbe(16, 3, 4, depth=1).state_dict().values(),
            strict=True,
        )
    )
    deep = AttentiveProbe(16, 3, 4, depth=2).eval()
    tokens, mask = torch.randn(2, 10, 16), torch.ones(2, 10, dtype=torch.bool)
    mask[:, 6:] = False
    with torch.no_grad():
        torch.testing.assert_close(deep(tokens, mask), deep(tokens[:, :6]))
    with pytest.raises(ConfigError, match="probe_depth must be >= 1"):
        TrainConfig(probe_depth=0)


def _numbers(metrics: dict, timing=("seconds", "pass_seconds_share", "pass_read_gb_s")) -> dict:
    """A metrics.json without the figures that differ run to run (wall times, read rates)."""
    if isinstance(metrics, dict):
        return {k: _numbers(v) for k, v in metrics.items() if k not in timing}
    if isinstance(metrics, list):
        return [_numbers(v) for v in metrics]  # type: ignore[return-value]
    return metrics


@pytest.mark.slow
def test_a_resumed_mixed_family_grid_equals_an_uninterrupted_one(tiny_cache, tmp_path, monkeypatch):
    """Killed in its second epoch (after the first's checkpoint: k-NN banks saved), the pass of
    attentive, linear and k-NN heads resumes to the run an uninterrupted pass writes."""
    import vjfer.probe.train as train
    from vjfer.probe.run import train_folds

    folds = load_folds("ravdess")
    actors = [min(a for a, f in folds.items() if f == k) for k in range(1, 6)]
    cache = open_cache(tiny_cache(actors=actors, shard_size=20))
    config = replace(CFG, num_workers=0, batch_size=2)
    grid = make_grid([1e-3], [0.01], [0], probes=ALL3, ks=(1, 3))
    train_folds(cache, [1, 2, 3, 4, 5], config, tmp_path / "whole", grid=grid, progress=False)
    run_epoch = train._run_epoch

    def killed_in_epoch_2(*args):
        if args[6] == 1:  # epoch, 0-based
            raise KeyboardInterrupt
        return run_epoch(*args)

    monkeypatch.setattr(train, "_run_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_folds(cache, [1, 2, 3, 4, 5], config, tmp_path / "cut", grid=grid, progress=False)
    monkeypatch.undo()
    train_folds(
        cache, [1, 2, 3, 4, 5], config, tmp_path / "cut", grid=grid, progress=False, mode="resume"
    )
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    heads = sorted(p.relative_to(whole) for p in whole.glob("fold-*/heads/*"))
    assert len(heads) == 5 * len(grid)
    for head in heads:
        ours, theirs = (json.loads((r / head / "metrics.json").read_text()) for r in (whole, cut))
        assert _numbers(ours) == _numbers(theirs)
        assert (whole / head / "video_predictions.csv").read_bytes() == (
            cut / head / "video_predictions.csv"
        ).read_bytes()
    summary = [json.loads((r / "summary.json").read_text()) for r in (whole, cut)]
    assert [f["mean"] for f in summary[0]["families"]] == [
        f["mean"] for f in summary[1]["families"]
    ]
    assert (whole / "selection.csv").read_bytes() == (cut / "selection.csv").read_bytes()


def test_the_command_line_takes_families_and_k_as_lists(cache_dir, tmp_path):
    from conftest import run_cli

    out = run_cli("probe", "--cache", cache_dir, "--probe", "attentive,mlp", ok=False)
    assert "--probe" in out and "'mlp'" in out
    out = run_cli("probe", "--cache", cache_dir, "--probe", "knn", "--k", "0", ok=False)
    assert "--k" in out
    run_cli(
        "probe",
        "--cache",
        cache_dir,
        "--out",
        tmp_path,
        "--fold",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        "--probe",
        "linear,knn",
        "--k",
        "1,3",
    )
    (run,) = tmp_path.glob("*-linear-knn-fold1-grid3")
    summary = json.loads((run / "summary.json").read_text())
    assert [f["probe"] for f in summary["families"]] == ["linear", "knn"]


def test_a_depth_2_run_records_its_depth_and_reloads_it(cache_dir, tmp_path):
    config = TrainConfig(
        epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu", probe_depth=2
    )
    run = run_request(
        ProbeRequest(cache=cache_dir, runs=tmp_path, config=config, folds=(1,), progress=False)
    )
    assert run.name.endswith("-attentive-depth2-fold1")
    assert json.loads((run / "config.json").read_text())["train"]["probe_depth"] == 2
    probe, meta = load_probe(run / "fold-1" / "probe.pt")
    assert probe.depth == 2 and meta["probe_depth"] == 2 and len(probe.pooler.blocks) == 1
