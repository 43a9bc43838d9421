"""Token-space augmentation (`vjfer probe --token-augment`): vjfer's own cheap approximation of the
reference's spatial augmentation, for caches without augmented copies (`vjfer extract --augment`).

Each token carries its position (the encoder's sin-cos embedding), so a crop is approximated by
keeping a box of the h x w token grid (`augment.draw_crop` on the grid) and erasing by dropping,
at p 0.25, a box inside it (`augment.draw_erase`), in every time step. Nothing is resized and
dropped tokens are absent rather than noise: an approximation, off by default. The result is a
boolean mask [K, N] (True = kept) that the probe honours, drawn from a generator seeded by (head
seed, epoch, video row), so a head's masks do not depend on the other heads of the pass.
"""

from __future__ import annotations

import numpy as np

from vjfer.augment import draw_crop, draw_erase

_STREAM = 2  # separates these draws from the clip/view (none) and copy (1) draws of an epoch


def token_mask(rng: np.random.Generator, grid: tuple[int, int, int]) -> np.ndarray:
    """bool [t·h·w] (t, h, w order): the tokens a cropped and possibly erased clip keeps."""
    t, h, w = grid
    top, left, hh, ww = draw_crop(rng, h, w)
    keep = np.zeros((h, w), dtype=bool)
    keep[top : top + hh, left : left + ww] = True
    box = draw_erase(rng, h, w)
    if box is not None:
        erased = keep.copy()
        etop, eleft, eh, ew = box
        erased[etop : etop + eh, eleft : eleft + ew] = False
        if erased.any():  # never drop every token of a clip
            keep = erased
    return np.broadcast_to(keep, (t, h, w)).reshape(-1).copy()


def token_masks(
    seed: int, epoch: int, row: int, clips: int, grid: tuple[int, int, int]
) -> np.ndarray:
    """bool [clips, N]: one `token_mask` per clip of a training sample of video `row` this epoch."""
    rng = np.random.default_rng([seed, epoch, _STREAM, row])
    return np.stack([token_mask(rng, grid) for _ in range(clips)])
