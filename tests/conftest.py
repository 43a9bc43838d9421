"""Shared pytest set-up and helpers: CUDA-marked tests skip, with the reason printed, on machines
without a GPU; `make_entries` builds learnable token caches for the probe tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vjfer.cache import VideoEntry
from vjfer.datasets import load_folds
from vjfer.video import plan_clips


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


D, GRID, CLASSES = 32, (2, 2, 2), 8  # N = 8 tokens per clip


def make_entries(videos_per_class=1, actors=range(1, 25), views=1, seed=0, folds=None):
    """Videos whose tokens carry the class as a mean shift (plus an actor shift and noise)."""
    rng = np.random.default_rng(seed)
    folds = folds or load_folds("ravdess")
    prototypes = rng.normal(size=(CLASSES, D)) * 1.5
    entries = []
    for actor in actors:
        actor_shift = rng.normal(size=D) * 0.5
        for label in range(CLASSES):
            for rep in range(videos_per_class):
                n_frames = int(rng.integers(70, 130))
                frames = plan_clips(n_frames, "windows", hop=8)
                C = len(frames)
                tokens = (
                    rng.normal(size=(C, views, math.prod(GRID), D))
                    + prototypes[label]
                    + actor_shift
                )
                entries.append(VideoEntry(
                    video_id=f"{actor:02d}-{label}-{rep}", label=label, actor=actor, fold=folds[actor],
                    n_frames=n_frames, fps=30.0, frames=frames, tokens=tokens.astype(np.float16),
                ))  # fmt: skip
    return entries
