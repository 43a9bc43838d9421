"""One pass, every fold: a head's result does not depend on which others share the pass; reads are
counted; the grid's selection uses inner validation only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from vjfer.cache import open_cache
from vjfer.datasets.folds import load_folds
from vjfer.errors import SplitError
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import GridPoint, inner_fold, make_grid, split_rows, train_grid
from vjfer.probe.head import Head
from vjfer.probe.reader import clip_bytes
from vjfer.probe.run import run_probe
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


@pytest.fixture(scope="module")
def cache(tiny_cache):
    """Two actors per fold (RAVDESS's folds), 8 classes, 3 views: 80 videos."""
    folds = load_folds("ravdess")
    actors = [a for k in range(1, 6) for a in sorted(a for a, f in folds.items() if f == k)[:2]]
    return open_cache(tiny_cache(actors=actors, views=3, shard_size=16))


def _same_probe(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def test_fold_alone_equals_fold_in_a_five_fold_pass(cache):
    config = TrainConfig(**{**CFG.__dict__, "clip_choice": "random"})
    together = train_grid(cache, [1, 2, 3, 4, 5], config, progress=False)
    alone = train_grid(cache, [3], config, progress=False)
    a, b = alone.reported(3), together.reported(3)
    _same_probe(a.probe, b.probe)
    pd.testing.assert_frame_equal(a.clips, b.clips)
    assert a.metrics["pbv"] == b.metrics["pbv"]
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    # and the pass is not a no-op: other folds' probes differ from fold 3's
    assert not torch.equal(together.reported(1).probe.linear.weight, b.probe.linear.weight)


def test_a_two_by_two_grid_equals_its_heads_trained_one_at_a_time(cache):
    grid = make_grid([1e-3, 3e-3], [0.01, 0.1], [0])
    assert len(grid) == 4 and grid[0] == GridPoint(1e-3, 0.01, 0)  # the default first
    together = train_grid(cache, [2], CFG, grid, progress=False)
    for point in grid:
        alone = train_grid(cache, [2], point.apply(CFG), progress=False).reported(2)
        _same_probe(alone.probe, together.results[(2, point.name)].probe)
        assert alone.metrics["pbv"] == together.results[(2, point.name)].metrics["pbv"]
    names = {p.name for p in grid}
    assert together.selected[2] in names and len(together.inner) == 4


def test_an_epoch_reads_each_needed_clip_once_whatever_the_heads(cache):
    """Bytes read per epoch = one read of the needed clips, for 1 head, 5 folds and 5 × 2 × 1
    heads."""
    size = clip_bytes(cache)
    rows = np.arange(len(cache))
    fixed = fixed_clips(cache, rows)
    every = sum(len(np.unique(f)) for f in fixed) * size  # all videos' distinct reference clips
    fold_of = cache.videos["fold"].to_numpy()
    not_1 = sum(len(np.unique(fixed[i])) for i in np.flatnonzero(fold_of != 1)) * size

    def epoch_bytes(heads):
        train_heads(cache, heads, CFG, progress=False)
        return {h["pass_bytes_read"] for head in heads for h in head.history}

    device = torch.device("cpu")
    one = [Head("a", CFG, split_rows(fold_of, 1)[0], cache, device)]
    five = [Head(f"f{k}", CFG, split_rows(fold_of, k)[0], cache, device) for k in range(1, 6)]
    grid = [
        Head(f"f{k}{p.name}", p.apply(CFG), split_rows(fold_of, k)[0], cache, device)
        for k in range(1, 6)
        for p in make_grid([1e-3, 2e-3], [0.01], [0])
    ]
    assert epoch_bytes(one) == {not_1}
    assert epoch_bytes(five) == {every}
    assert epoch_bytes(grid) == {every}
    assert not_1 < every


def test_inner_validation_never_sees_a_test_actor():
    for dataset in ("ravdess", "crema-d"):
        folds = load_folds(dataset)
        actors = np.array(sorted(folds))
        fold_of = np.array([folds[a] for a in actors])
        for k in range(1, 6):
            j = inner_fold(k, range(1, 6))
            assert j != k
            train, val = split_rows(fold_of, k, j)
            test_actors = set(actors[fold_of == k])
            assert not test_actors & (set(actors[train]) | set(actors[val]))
            assert not set(actors[train]) & set(actors[val])
            assert len(train) + len(val) + len(test_actors) == len(actors)
    with pytest.raises(SplitError, match="a grid needs at least 3 folds"):
        inner_fold(1, [1, 2])


def test_a_grid_run_writes_selection_and_keeps_the_layout(cache, tmp_path):
    grid = make_grid([3e-3, 1e-2], [0.01], [0])  # the default (1e-3) is added first
    out = run_probe(cache.path, [1, 2], CFG, tmp_path / "run", progress=False, grid=grid)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["head"] == "lr0.001-wd0.01-seed0"
    assert set(summary["selected"]["selection"]) == {"1", "2"}
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 2 * 3 and selection.groupby("fold")["selected"].sum().tolist() == [
        1,
        1,
    ]
    assert (
        set(selection["inner_fold"]) == {2, 3}
        and (selection["inner_fold"] != selection["fold"]).all()
    )
    text = (out / "grid_test_results.csv").read_text()
    assert text.startswith("# Test-fold scores") and "not a valid result" in text.splitlines()[0]
    grid_rows = pd.read_csv(out / "grid_test_results.csv", comment="#")
    assert len(grid_rows) == 6
    for k in (1, 2):
        chosen = selection[(selection["fold"] == k) & selection["selected"]]["head"].item()
        assert summary["selected"]["selection"][str(k)] == chosen
        selected = json.loads((out / f"fold-{k}" / "selected" / "metrics.json").read_text())
        assert selected["head"]["name"] == chosen
        row = grid_rows[(grid_rows["fold"] == k) & (grid_rows["head"] == chosen)]
        assert row["pbv_uar"].item() == pytest.approx(selected["pbv"]["uar"])
        reported = json.loads((out / f"fold-{k}" / "metrics.json").read_text())
        assert reported["head"]["lr"] == 1e-3
        assert (out / f"fold-{k}" / "probe.pt").exists()
        assert (out / f"fold-{k}" / "selected" / "probe.pt").exists()
    md = (out / "summary.md").read_text()
    assert "| PBV (selected head) |" in md and "| PBV |" in md


def test_a_run_records_coverage_and_environment(cache, tmp_path):
    out = run_probe(cache.path, [1], CFG, tmp_path / "run", progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["coverage"] == {"videos": len(cache), "failed": 0, "excluded": 0}
    assert config["environment"]["torch"] == torch.__version__
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["coverage"]
        == f"results on {len(cache)} of {len(cache)} videos, 0 failed / excluded"
    )
    assert summary["coverage"] in (out / "summary.md").read_text()
