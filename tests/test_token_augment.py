"""Token-space augmentation: the masks' shapes and structure, their seeding, and training with
them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GRID

from vjfer.cache import open_cache
from vjfer.probe.config import TrainConfig
from vjfer.probe.head import Head
from vjfer.probe.token_augment import token_mask, token_masks
from vjfer.probe.train import train_heads

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

CFG = TrainConfig(
    epochs=2,
    batch_size=4,
    num_heads=4,
    num_workers=0,
    device="cpu",
    in_memory="no",
    clip_choice="random",
    token_augment=True,
)


def test_a_mask_is_a_box_of_the_grid_in_every_time_step_minus_an_erased_box():
    rng = np.random.default_rng(0)
    grid = (8, 24, 24)  # ViT-H/16 at 384
    erased, areas = 0, []
    for _ in range(500):
        keep = token_mask(rng, grid).reshape(grid)
        assert keep.dtype == bool and keep.any()
        assert (keep == keep[:1]).all()  # the same spatial mask in every time step
        rows, cols = np.flatnonzero(keep[0].any(axis=1)), np.flatnonzero(keep[0].any(axis=0))
        box = keep[0, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        areas.append(box.size / (24 * 24))
        erased += not box.all()  # a hole (or a cut edge) inside the crop box
    assert 0 < min(areas) and max(areas) <= 1.0  # (an erased box may cut a crop's edge off)
    assert 0.45 < np.mean(areas) < 0.6  # crop area uniform in 0.08..1: mean 0.54
    assert 0.1 < erased / 500 < 0.3  # p 0.25 (less where the erased box cuts off an edge)


def test_masks_are_seeded_by_seed_epoch_and_video():
    a = token_masks(0, 1, 5, 8, GRID)
    assert a.shape == (8, int(np.prod(GRID))) and a.dtype == bool
    np.testing.assert_array_equal(a, token_masks(0, 1, 5, 8, GRID))
    big = (8, 24, 24)
    base = token_masks(0, 1, 5, 8, big)
    for other in ((1, 1, 5), (0, 2, 5), (0, 1, 6)):
        assert not np.array_equal(base, token_masks(*other, 8, big)), other


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return open_cache(tiny_cache(actors=range(1, 7)))


def test_training_feeds_each_head_its_own_masks(cache, monkeypatch):
    fed = []
    feed = Head.feed

    def spy(self, sample, label, mask=None):
        fed.append((self.name, mask))
        return feed(self, sample, label, mask)

    monkeypatch.setattr(Head, "feed", spy)
    rows = np.flatnonzero(cache.videos["actor"] != 1)
    head = Head("a", CFG, rows, cache, torch.device("cpu"))
    train_heads(cache, [head], CFG, progress=False)
    masks = [m for _, m in fed]
    assert len(masks) == CFG.epochs * len(rows)
    assert all(m.shape == (8, int(np.prod(GRID))) and m.dtype == torch.bool for m in masks)
    assert any(not m.all() for m in masks)  # tokens were dropped


def test_a_head_with_token_augmentation_does_not_depend_on_the_others(cache):
    rows = np.flatnonzero(cache.videos["actor"] != 1)
    alone = Head("a", CFG, rows, cache, torch.device("cpu"))
    train_heads(cache, [alone], CFG, progress=False)
    other = TrainConfig(**{**CFG.__dict__, "seed": 7})
    pair = [
        Head("a", CFG, rows, cache, torch.device("cpu")),
        Head("b", other, np.flatnonzero(cache.videos["actor"] != 3), cache, torch.device("cpu")),
    ]
    train_heads(cache, pair, CFG, progress=False)
    for name, tensor in alone.probe.state_dict().items():
        assert torch.equal(tensor, pair[0].probe.state_dict()[name]), name
    plain = Head(
        "a",
        TrainConfig(**{**CFG.__dict__, "token_augment": False}),
        rows,
        cache,
        torch.device("cpu"),
    )
    train_heads(cache, [plain], plain.config, progress=False)
    assert plain.history[-1]["loss"] != alone.history[-1]["loss"]
