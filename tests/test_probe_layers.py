"""`vjfer probe --layer K|concat|all` on caches of several encoder layers (`extract --layers`).

A 3-layer cache stacks blocks 0, 1, 2 layer-major along each clip's N (one chunk per clip), so:
`--layer K` trains the probe a cache of block K alone trains, bit for bit on the CPU; `--layer all`
trains one head per layer in one pass that reads each clip once per epoch (the bytes of a single
head's read) and writes the per-layer table and figure, which the report shows; predict and cross
on a `--layer K` run read layer K.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GRID, assert_png, make_entries, run_cli, write_tiny_cache

from vjfer.cache import open_cache
from vjfer.cross import cross_evaluate
from vjfer.datasets.folds import load_folds
from vjfer.errors import ConfigError
from vjfer.probe.config import TrainConfig
from vjfer.probe.layer import CONCAT, layer_axis, resolve_layer
from vjfer.probe.model import load_probe
from vjfer.probe.reader import clip_bytes
from vjfer.probe.run import run_probe
from vjfer.probe.samples import fixed_clips

pytestmark = pytest.mark.usefixtures("one_thread")

ACTORS = (2, 3, 10, 8, 1)  # one actor in each of RAVDESS's five folds
BLOCKS = (0, 1, 2)
CFG = TrainConfig(epochs=2, num_heads=4, num_workers=0, device="cpu", in_memory="no", lr=3e-3)


def _settings(blocks) -> dict:
    """Cache settings as `extract --layers` records them (the fake encoder has depth 3)."""
    layers = {"blocks": list(blocks), "depth": 3, "norm": "final"}
    return {"encoder": "layers-test", "layers": layers}


def _stacked(entries, seed: int = 5):
    """Each video's tokens as 3 layers, layer-major along N: the class signal grows with depth."""
    rng = np.random.default_rng(seed)
    out = []
    for e in entries:
        deep = e.tokens.astype(np.float32)
        noise = rng.normal(size=deep.shape)
        layers = [w * deep + noise * s for w, s in ((0.1, 2), (0.5, 1), (1, 0))]
        out.append(replace(e, tokens=np.concatenate(layers, axis=2).astype(np.float16)))
    return out


def _block(entries, k: int):
    """The entries of a cache of block k alone (`extract --layers k`): its slice of each clip."""
    n = int(np.prod(GRID))
    return [replace(e, tokens=e.tokens[:, :, k * n : (k + 1) * n].copy()) for e in entries]


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> dict:
    """RAVDESS and CREMA-D caches of blocks 0-2, and of block 1 alone made of the same tokens
    (named r3, r1, c3, c1: run names carry the cache's name)."""
    tmp = tmp_path_factory.mktemp("layers")
    ravdess = _stacked(make_entries(actors=ACTORS))
    crema = _stacked(
        [e for e in make_entries(actors=(1001, 1002), folds=load_folds("crema-d")) if e.label < 6],
        seed=6,
    )
    out = {}
    for name, dataset, entries in (("r", "ravdess", ravdess), ("c", "crema-d", crema)):
        stored = {"dataset": dataset, "shard_size": 16}
        out[f"{name}3"] = write_tiny_cache(
            tmp / f"{name}3", entries=entries, settings=_settings(BLOCKS), **stored
        )
        out[f"{name}1"] = write_tiny_cache(
            tmp / f"{name}1", entries=_block(entries, 1), settings=_settings([1]), **stored
        )
    return out


@pytest.fixture(scope="module")
def block1_runs(caches, tmp_path_factory) -> dict:
    """Fold 1 trained with `--layer 1` on the 3-layer cache and on the cache of block 1 alone."""
    tmp = tmp_path_factory.mktemp("runs")
    layer = run_probe(caches["r3"], [1], replace(CFG, layer=1), tmp / "layer1", progress=False)
    alone = run_probe(caches["r1"], [1], CFG, tmp / "alone", progress=False)
    return {"layer": layer, "alone": alone}


def test_layer_values_resolve_against_the_stored_blocks():
    assert layer_axis(BLOCKS, [2, -3, "concat"]) == [2, 0, CONCAT]
    assert layer_axis(BLOCKS, ["all", 1]) == [0, 1, 2]  # duplicates dropped
    assert layer_axis(None, [-1]) == layer_axis((5,), [5, "all"]) == [CONCAT]  # one layer: today's
    with pytest.raises(ConfigError, match=r"--layer 3: the cache holds blocks \[0, 1, 2\]"):
        layer_axis(BLOCKS, [3])
    with pytest.raises(ConfigError, match="encoder's output alone"):
        layer_axis(None, [0])


def test_layer_k_of_three_equals_a_cache_of_block_k(block1_runs, caches, tmp_path):
    (layer, meta), (alone, _) = (
        load_probe(block1_runs[k] / "fold-1" / "probe.pt") for k in ("layer", "alone")
    )
    assert meta["layer_view"] == {"block": 1, "index": 1, "layers": 3, "tokens": 8}
    assert meta["config"]["layer"] == 1
    sa, sb = layer.state_dict(), alone.state_dict()
    assert sa.keys() == sb.keys() and "pooler.query_tokens" in sa  # the reference's names
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name
    for table in ("clip_predictions.csv", "video_predictions.csv"):
        pd.testing.assert_frame_equal(
            pd.read_csv(block1_runs["layer"] / "fold-1" / table),
            pd.read_csv(block1_runs["alone"] / "fold-1" / table),
        )
    # and the layer matters: block 0 of the same cache trains another probe
    other = run_probe(caches["r3"], [1], replace(CFG, layer=0), tmp_path / "l0", progress=False)
    w0, _ = load_probe(other / "fold-1" / "probe.pt")
    assert not torch.equal(w0.linear.weight, layer.linear.weight)


def test_cross_on_a_layer_run_reads_that_layer(block1_runs, caches):
    """The --layer 1 run's probe scores CREMA-D's 3-layer cache as the block-1 run scores the
    CREMA-D cache of block 1 alone."""
    a = cross_evaluate(block1_runs["layer"], caches["c3"], device="cpu")
    b = cross_evaluate(block1_runs["alone"], caches["c1"], device="cpu")
    frames = [pd.read_csv(r.out_dir / "fold-1" / "video_predictions.csv") for r in (a, b)]
    pd.testing.assert_frame_equal(*frames)
    assert len(frames[0]) == len(open_cache(caches["c3"]).videos)


@pytest.mark.slow
def test_layer_all_reads_each_clip_once_and_writes_the_per_layer_table(caches, tmp_path):
    common = (
        "probe",
        "--cache",
        caches["r3"],
        "--out",
        tmp_path / "runs",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--in-memory",
        "no",
        "--no-progress",
    )
    refused = run_cli(*common, "--layer", "3", ok=False)  # one line naming what is stored
    assert "--layer 3: the cache holds blocks [0, 1, 2]" in refused
    run_cli(*common, "--layer", "all")
    run_cli(*common, "--layer", "-1")  # one head per fold, on the deepest stored block
    every, deepest = (
        tmp_path / "runs" / f"ravdess-r3-attentive-layer{x}" for x in ("0-1-2-grid3", "2")
    )
    cache = open_cache(caches["r3"])
    clips = sum(len(np.unique(f)) for f in fixed_clips(cache, np.arange(len(cache))))
    once = clips * clip_bytes(cache)  # every video's distinct reference clips, read once
    for run in (every, deepest):
        history = json.loads((run / "fold-1" / "metrics.json").read_text())["history"]
        assert [h["pass_bytes_read"] for h in history] == [once, once]  # 15 + 15 heads or 5
    summary = json.loads((every / "summary.json").read_text())
    assert [e["layer"] for e in summary["layers"]] == [0, 1, 2]
    assert summary["head"] == "lr0.001-wd0.01-seed0-layer2"  # the deepest stored block
    uar = [e["mean"]["pbv"]["uar"]["mean"] for e in summary["layers"]]
    assert uar[2] > uar[0]  # the signal the tokens carry grows with depth
    md = (every / "summary.md").read_text()
    assert all(f"| block {k} |" in md for k in BLOCKS) and "Figure: layers.png" in md
    assert_png(every / "layers.png")
    selection = pd.read_csv(every / "selection.csv")
    assert sorted(set(selection["layer"])) == [0, 1, 2] and selection["selected"].sum() == 5
    assert not (deepest / "layers.png").exists() and "layers" not in json.loads(
        (deepest / "summary.json").read_text()
    )
    # the report shows the table and the figure
    run_cli("report", every, "--out", tmp_path / "report", "--cache", caches["r3"])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Per-layer results (video level)" in report and "layers-" in report
    layers = pd.read_csv(tmp_path / "report" / "layers.csv")
    assert list(layers["Layer"].unique()) == ["block 0", "block 1", "block 2"]
    pbv = layers.loc[layers["Voting"] == "PBV", "UAR"].tolist()
    assert pbv == pytest.approx([100 * u for u in uar])
    page = (tmp_path / "report" / "report.html").read_text()
    assert 'id="layers"' in page and 'data-table="layers"' in page
    assert_png(next((tmp_path / "report").glob("layers-*.png")))


@pytest.mark.slow
def test_predict_on_a_layer_run_encodes_and_reads_that_layer(tmp_path):
    """Real videos and the tiny encoder: `--layer 0` of a `--layers 0,1` cache predicts a video as
    the run on the cache of block 0 alone does, probability for probability."""
    from vjfer.synthetic import make_ravdess

    root = tmp_path / "RAVDESS"
    make_ravdess(
        root, actors=(2, 3), emotions=(1, 8), vocal_channels=(1,), modalities=(2,), short_every=0
    )
    runs = {}
    for name, layers, layer in (("both", "0,1", "0"), ("zero", "0", "concat")):
        cache = tmp_path / f"cache-{name}"
        run_cli(
            "extract",
            "--dataset",
            "ravdess",
            "--root",
            root,
            "--encoder",
            "tiny",
            "--cache",
            cache,
            "--layers",
            layers,
            "--workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        )
        run_cli(
            "probe",
            "--cache",
            cache,
            "--fold",
            "1",
            "--layer",
            layer,
            "--epochs",
            "1",
            "--out",
            tmp_path / name,
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--no-progress",
        )
        (runs[name],) = (tmp_path / name).iterdir()
    video = sorted(root.rglob("*.mp4"))[0]
    out = {
        name: json.loads(
            run_cli("predict", video, "--run", run, "--json", "--clips", "--device", "cpu")
        )
        for name, run in runs.items()
    }
    assert runs["both"].name.endswith("-layer0") and out["both"]["videos"] == out["zero"]["videos"]
    clips = [pd.DataFrame(out[name]["clips"]).filter(like="prob_") for name in runs]
    pd.testing.assert_frame_equal(*clips)  # every clip's probabilities, exactly
    assert clips[0].shape[0] > 1


def test_a_block_of_a_one_layer_cache_names_a_cache_that_holds_it():
    """Issue 32: on a cache of the encoder's output alone, `--layer 1` advised `extract --layers
    1`, the same cache when block 1 is the last; the advice now names a cache of both."""
    with pytest.raises(ConfigError, match=r"output alone .*`vjfer extract --layers 1,-1`"):
        resolve_layer(None, 1)
    assert resolve_layer(None, -1) == CONCAT
