"""Few-shot training sets (`vjfer probe --shots N` / `--train-fraction F`): which of a head's
training videos it keeps, a pure function of the head's seed, its candidate rows and their labels.

The draw is made from the rows a head would train on (its fold's training videos, or its inner
split's), so a test or inner-validation video is never drawn and the subject-disjointness of the
folds holds as it is. Per class, the candidate rows (sorted) are permuted by one generator seeded
by (seed, 0, DRAW_STREAM) and the first n_c kept: n_c = min(N, available) with `shots`,
round(F · available) (halves up, at least one) with `fraction`, by video within each class (the
fraction keeps the class balance of the training set). The permutation does not depend on N or F,
so a smaller setting's rows are a subset of a larger one's (nested draws) for the same seed and
candidates; another seed is another draw (several draws: `--seed 0,1,2`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The third word of the draw's seed: no other generator of a pass is seeded by (seed, 0, 2)
# (clip draws: (seed, epoch); augmented copies: (seed, epoch, 1)).
DRAW_STREAM = 2


@dataclass(frozen=True)
class Draw:
    """A head's few-shot rows and, per class index, how many it could and did take."""

    rows: np.ndarray  # kept rows of `cache.videos`, sorted
    available: tuple[int, ...]  # per class: candidate videos
    taken: tuple[int, ...]  # per class: kept videos
    seed: int
    shots: int | None = None
    fraction: float | None = None

    @property
    def short(self) -> dict[int, int]:
        """Class index -> available videos, for the classes with fewer than `shots` (all taken)."""
        if self.shots is None:
            return {}
        return {c: n for c, n in enumerate(self.available) if n < self.shots}

    def record(self, class_names: Sequence[str]) -> dict:
        """metrics.json's `few_shot`: the setting, the draw's seed, the kept videos per class and
        the classes that had fewer than `shots` videos (all of them taken)."""
        setting: dict[str, float] = {}
        if self.shots is not None:
            setting["shots"] = self.shots
        if self.fraction is not None:
            setting["train_fraction"] = self.fraction
        return {
            **setting,
            "draw_seed": self.seed,
            "per_class": dict(zip(class_names, self.taken, strict=True)),
            "short_classes": {class_names[c]: n for c, n in self.short.items()},
        }


def kept(available: int, shots: int | None, fraction: float | None) -> int:
    """Videos a class keeps of `available`: min(shots, available), or round(fraction ·
    available) with halves up and at least one (none of none)."""
    if shots is not None:
        return min(shots, available)
    assert fraction is not None, "give shots or fraction"
    return min(available, max(1, math.floor(fraction * available + 0.5))) if available else 0


def draw_rows(
    rows: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    seed: int,
    *,
    shots: int | None = None,
    fraction: float | None = None,
) -> Draw:
    """The few-shot subset of `rows` (rows of `cache.videos`; `labels`: every cached video's class
    index): per class the first `kept(...)` of a seeded permutation of its candidates."""
    if (shots is None) == (fraction is None):
        raise ValueError("give exactly one of shots and fraction")
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    rng = np.random.default_rng([seed, 0, DRAW_STREAM])
    keep, available, taken = [], [], []
    for c in range(num_classes):
        members = rows[labels[rows] == c]
        n = kept(len(members), shots, fraction)
        keep.append(members[rng.permutation(len(members))][:n])
        available.append(len(members))
        taken.append(n)
    chosen = np.sort(np.concatenate(keep)) if keep else rows[:0]
    return Draw(chosen, tuple(available), tuple(taken), seed, shots, fraction)
