"""Few-shot heads (`--shots N`, `--train-fraction F`): the draw is a pure, seeded, class-balanced
and nested function of a head's training rows (never a test video); few-shot heads share the
pass's one read per epoch, equal the same head trained alone, and give summary.json its curve."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_png, run_cli

from vjfer.cache import open_cache
from vjfer.datasets.folds import load_folds
from vjfer.probe.config import OptionError, TrainConfig, parse_fractions, parse_shots
from vjfer.probe.curve import curve_points, few_shot_curve
from vjfer.probe.fewshot import draw_rows, kept
from vjfer.probe.folds import GridPoint, _grid_heads, make_grid, split_rows, train_grid
from vjfer.probe.head import Head
from vjfer.probe.reader import clip_bytes
from vjfer.probe.run import ProbeRequest, run_request
from vjfer.probe.samples import fixed_clips
from vjfer.probe.train import train_heads
from vjfer.report import figures_for_run

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

CFG = TrainConfig(
    epochs=2, batch_size=4, num_heads=4, num_workers=2, prefetch=3, device="cpu", in_memory="no"
)


@pytest.fixture(scope="module")
def cache(tiny_cache):
    """Two actors per fold (RAVDESS's folds), 8 classes, one video of each per actor: 80 videos."""
    folds = load_folds("ravdess")
    actors = [a for k in range(1, 6) for a in sorted(a for a, f in folds.items() if f == k)[:2]]
    return open_cache(tiny_cache(actors=actors, views=3, shard_size=16))


# ------------------------------------------------------------------------- the draw (pure)

LABELS = np.repeat(np.arange(3), [10, 6, 2])  # 18 videos: 10, 6 and 2 of classes 0, 1, 2
FOLD_OF = np.tile(np.arange(1, 4), 6)  # folds 1..3, each class spread over them


def test_a_draw_is_seeded_class_balanced_and_names_short_classes():
    train, test = split_rows(FOLD_OF, 1)
    draw = draw_rows(train, LABELS, 3, seed=0, shots=4)
    assert draw.rows.tolist() == draw_rows(train, LABELS, 3, seed=0, shots=4).rows.tolist()
    assert draw.rows.tolist() != draw_rows(train, LABELS, 3, seed=1, shots=4).rows.tolist()
    assert not set(draw.rows.tolist()) & set(test.tolist())  # never a test video
    assert set(draw.rows.tolist()) <= set(train.tolist())
    available = np.bincount(LABELS[train], minlength=3).tolist()
    assert draw.available == tuple(available) and available[2] < 4
    assert np.bincount(LABELS[draw.rows], minlength=3).tolist() == [4, 4, available[2]]
    assert draw.short == {2: available[2]}  # fewer than 4: all taken, and said so
    record = draw.record(["a", "b", "c"])
    assert record == {
        "shots": 4,
        "draw_seed": 0,
        "per_class": {"a": 4, "b": 4, "c": available[2]},
        "short_classes": {"c": available[2]},
    }


def test_draws_are_nested_and_fractions_keep_each_class_share():
    rows = np.arange(len(LABELS))
    for seed in range(5):
        small, large = (set(draw_rows(rows, LABELS, 3, seed, shots=n).rows) for n in (2, 5))
        assert small < large
        tenth, half = (set(draw_rows(rows, LABELS, 3, seed, fraction=f).rows) for f in (0.1, 0.5))
        assert tenth < half
    half = draw_rows(rows, LABELS, 3, 0, fraction=0.5)
    assert half.taken == (5, 3, 1) and half.short == {}
    assert draw_rows(rows, LABELS, 3, 0, fraction=1.0).rows.tolist() == rows.tolist()
    assert [kept(n, None, 0.25) for n in (0, 1, 2, 10)] == [0, 1, 1, 3]  # halves up, >= 1
    with pytest.raises(ValueError, match="exactly one"):
        draw_rows(rows, LABELS, 3, 0, shots=2, fraction=0.5)


def test_shots_and_fractions_are_a_grid_axis_and_refused_when_wrong():
    assert parse_shots("4,16,4") == (4, 16, 4) and parse_shots("") == ()
    assert parse_fractions("0.1, 1") == (0.1, 1.0)
    for bad, option in (("0", "--shots"), ("-2", "--shots"), ("1.5", "--train-fraction")):
        with pytest.raises(OptionError, match=f"^{option}: "):
            (parse_shots if option == "--shots" else parse_fractions)(bad)
    with pytest.raises(OptionError, match="--shots: give --shots or --train-fraction, not both"):
        TrainConfig(shots=4, train_fraction=0.5)
    with pytest.raises(OptionError, match="not both"):
        make_grid([1e-3], [0.01], [0], shots=(4,), fractions=(0.5,))
    assert make_grid([1e-3], [0.01], [0]) == [GridPoint(1e-3, 0.01, 0)]  # none: as before
    grid = make_grid([3e-3], [0.01], [0, 1], shots=(16, 4))
    assert [p.name for p in grid] == [
        "lr0.001-wd0.01-seed0-shots16",  # the reference default, at the first setting
        "lr0.003-wd0.01-seed0-shots16",
        "lr0.003-wd0.01-seed1-shots16",
        "lr0.003-wd0.01-seed0-shots4",
        "lr0.003-wd0.01-seed1-shots4",
    ]
    assert grid[3].apply(CFG).shots == 4 and "shots" not in GridPoint(1e-3, 0.01, 0).record()
    assert grid[0].record()["shots"] == 16 and "train_fraction" not in grid[0].record()
    assert make_grid([1e-3], [0.01], [0], fractions=(0.5,))[0].name.endswith("-fraction0.5")


# ------------------------------------------------------------------- in the pass


def test_few_shot_heads_share_the_one_read_per_epoch(cache):
    """Full and few-shot heads of every fold read each needed clip once per epoch; a few-shot-only
    pass reads the clips of the drawn videos only, once per epoch."""
    size = clip_bytes(cache)
    fold_of = cache.videos["fold"].to_numpy()
    cpu = torch.device("cpu")

    def heads(subsets):
        return [
            Head(f"f{k}/{n}/{f}", replace(CFG, shots=n, train_fraction=f), rows, cache, cpu)
            for k in range(1, 6)
            for n, f in subsets
            for rows in [split_rows(fold_of, k)[0]]
        ]

    def needed(rows):
        rows = np.unique(rows)
        return sum(len(np.unique(f)) for f in fixed_clips(cache, rows)[rows]) * size

    mixed = heads([(None, None), (2, None), (None, 0.5)])
    train_heads(cache, mixed, CFG, progress=False)
    every = needed(np.arange(len(cache)))
    assert {h["pass_bytes_read"] for head in mixed for h in head.history} == {every}
    few = heads([(1, None), (2, None)])
    assert {len(h.rows) for h in few} == {8, 16}  # 8 classes, each with 8 training videos
    train_heads(cache, few, CFG, progress=False)
    union = needed(np.concatenate([h.rows for h in few]))
    assert union < every
    assert [h["pass_bytes_read"] for h in few[0].history] == [union] * CFG.epochs


def test_every_few_shot_head_draws_from_its_own_training_actors_only(cache):
    """Outer and inner-validation heads of a few-shot grid: the drawn videos' actors are never
    among the actors the head is scored on (test fold, or inner validation fold)."""
    grid = make_grid([1e-3], [0.01], [0, 1], fractions=(0.25, 0.5))
    heads, evaluates, _ = _grid_heads(cache, [1, 4], CFG, grid, torch.device("cpu"))
    actors = cache.videos["actor"].to_numpy()
    assert len(heads) == 2 * 2 * len(grid)  # each fold's heads and its inner heads
    for head in heads:
        assert head.draw is not None and len(head.rows) == sum(head.draw.taken)
        assert not set(actors[head.rows]) & set(actors[evaluates[head.name]]), head.name
        f, inner = head.config.train_fraction, "/inner" in head.name
        assert set(head.draw.available) == {6 if inner else 8}  # actors: 8 train, 2 inner val
        assert head.draw.taken == tuple(kept(n, None, f) for n in head.draw.available)


def _same(a, b) -> None:
    sa, sb = a.probe.state_dict(), b.probe.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a.clips.equals(b.clips)
    assert (a.metrics["pbv"], a.metrics["few_shot"]) == (b.metrics["pbv"], b.metrics["few_shot"])


def test_a_few_shot_head_equals_the_same_head_trained_alone(cache):
    """Each head of a shots × seed grid over two folds equals that point trained alone on one
    fold, bit for bit; seeds draw other videos; 2 shots' videos are among 4 shots'."""
    grid = make_grid([1e-3], [0.01], [0, 1], probes=("attentive", "knn"), shots=(2, 4))
    together = train_grid(cache, [2, 3], CFG, grid, progress=False)
    for point in grid:
        alone = train_grid(cache, [2], CFG, [point], progress=False).reported(2)
        _same(alone, together.results[(2, point.name)])
    tested = {len(together.results[(2, p.name)].videos) for p in grid}
    assert tested == {16}  # every head is tested on all of fold 2: the draw is of training videos
    metrics = {p.name: together.results[(3, p.name)].metrics for p in grid}
    per_class = {n: m["few_shot"]["per_class"] for n, m in metrics.items()}
    assert set(per_class["lr0.001-wd0.01-seed0-attentive-shots2"].values()) == {2}
    assert all(m["n_train_videos"] == 8 * m["few_shot"]["shots"] for m in metrics.values())
    curve = few_shot_curve(together, "attentive")  # per family and setting, 2 folds × 2 draws
    assert [(e["probe"], e["shots"], e["mean"]["pbv"]["uar"]["n"]) for e in curve] == [
        ("attentive", 2, 4),
        ("attentive", 4, 4),
        ("knn", 2, 4),
        ("knn", 4, 4),
    ]
    assert curve[3]["selection"]["fold 3 seed 1"] == "lr0.001-wd0.01-seed1-knn-k1-shots4"


def test_a_few_shot_run_writes_its_curve_and_a_default_run_none(cache_dir, tmp_path):
    config = TrainConfig(epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu")
    default = run_request(
        ProbeRequest(cache=cache_dir, runs=tmp_path, config=config, folds=(1,), progress=False)
    )
    assert "few_shot" not in json.loads((default / "summary.json").read_text())
    assert "Few-shot" not in (default / "summary.md").read_text()
    run = run_request(
        ProbeRequest(
            cache=cache_dir,
            runs=tmp_path,
            config=config,
            folds=(1, 2),
            seeds=(0, 1),
            shots=(1, 100),
            progress=False,
        ),
        draw=figures_for_run,  # as `vjfer probe` draws: the curve beside summary.md
    )
    assert_png(run / "few_shot.png")
    assert run.name.endswith("-attentive-fold1-2-shots1-100-grid4")
    summary = json.loads((run / "summary.json").read_text())
    curve = summary["few_shot"]
    assert [(e["probe"], e["shots"], e["seeds"]) for e in curve] == [
        ("attentive", 1, [0, 1]),
        ("attentive", 100, [0, 1]),
    ]
    for entry in curve:  # mean ± std over 2 folds × 2 draws
        assert entry["mean"]["pbv"]["uar"]["n"] == 4 and entry["folds"] == [1, 2]
        assert [(r["fold"], r["seed"]) for r in entry["per_fold"]] == [
            (1, 0),
            (1, 1),
            (2, 0),
            (2, 1),
        ]
        head = entry["selection"]["fold 2 seed 1"]
        assert head.endswith(f"seed1-shots{entry['shots']}")
        metrics = json.loads((run / "fold-2" / "heads" / head / "metrics.json").read_text())
        assert entry["per_fold"][3]["pbv"]["uar"] == metrics["pbv"]["uar"]
    assert "short_classes" not in curve[0]
    short = curve[1]["short_classes"]  # 100 shots: every class has fewer, all taken and said so
    assert {s["class"] for s in short} == set(summary["class_names"])
    assert summary["head"] == "lr0.001-wd0.01-seed0-shots1"
    assert summary["selected"]["selection"]["1"].endswith("-shots1")  # never another setting
    text = (run / "summary.md").read_text()
    assert "| attentive | 1 shots | 2 |" in text and "(all taken)" in text
    assert json.loads((run / "config.json").read_text())["train"]["shots"] == 1
    assert curve_points(curve)["attentive"][1][0] == 100.0


def test_the_command_line_trains_a_few_shot_run(cache_dir, tmp_path):
    args = "--device cpu --epochs 1 --fold 1 --train-fraction 0.25 --num-workers 0 --no-progress"
    out = run_cli("probe", "--cache", cache_dir, "--out", tmp_path, *args.split())
    run = next(tmp_path.glob("*-fold1-fraction0.25"))
    assert "| attentive | 25.00 % | 1 |" in out and f"run written to {run}" in out
    entry = json.loads((run / "summary.json").read_text())["few_shot"][0]
    # 19 training actors per class, one video each: round(0.25 · 19) = 5 per class
    assert entry["train_fraction"] == 0.25 and entry["per_fold"][0]["n_train_videos"] == 8 * 5
    assert_png(run / "few_shot.png")
