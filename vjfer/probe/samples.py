"""What a training epoch reads: the order it visits videos in and each video's clips and views.

Small pure functions of seeds and counts, so that a probe's samples never depend on which other
probes share a pass (see `vjfer.probe.train`): `epoch_order` permutes *all* cached videos (seeded by
(order seed, epoch)); `draw_samples` draws every cached video's clips and views (seeded by (probe
seed, epoch)); `reference_clips` maps the reference's 8 training clips to the nearest cached ones;
`plain_clips`, `train_role_clips`, `draw_clips` and `augmented_clips` read per-clip roles;
`draw_copies` picks one augmented copy per clip; `epoch_draws` makes one seed's `EpochDraws` of one
epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vjfer.cache import Cache
from vjfer.clips import DRAW_PLANS, ROLE_AUGMENTED, ROLE_DRAW, ROLE_TRAIN, plan_clips
from vjfer.errors import ConfigError, SplitError
from vjfer.probe.token_augment import token_masks

REFERENCE_CLIPS = len(plan_clips(1, "reference-train"))  # the reference trains on 8 clips a video


def reference_clips(cached_starts: np.ndarray, n_frames: int) -> np.ndarray:
    """For each of the reference's 8 training clips, the cached clip with the nearest start frame
    (ties to the earlier clip): int64 [8] indices into the video's cached clips."""
    targets = plan_clips(n_frames, "reference-train")[:, 0]  # [8] start frames
    distance = np.abs(np.asarray(cached_starts)[None, :] - targets[:, None])  # [8, C]
    return distance.argmin(axis=1).astype(np.int64)


def plain_clips(roles: np.ndarray) -> np.ndarray:
    """int64 [C']: the clips made from the frames as they are (evaluation windows, training
    clips)."""
    return np.flatnonzero(np.asarray(roles) < ROLE_AUGMENTED)


def train_role_clips(roles: np.ndarray) -> np.ndarray | None:
    """int64 [8]: the reference's exact training clips when the cache stores them, else None."""
    train = np.flatnonzero(np.asarray(roles) == ROLE_TRAIN)
    return train if len(train) else None


def draw_clips(roles: np.ndarray) -> np.ndarray:
    """int64 [D]: the training draws of a `stride`/`segments` cache's video (ROLE_DRAW)."""
    return np.flatnonzero(np.asarray(roles) == ROLE_DRAW)


def augmented_clips(roles: np.ndarray) -> np.ndarray:
    """int64 [8, K]: clip index of augmented copy c of training clip k (copies are stored copy by
    copy, each in the order of the 8 training clips); [8, 0] when the video has none."""
    roles = np.asarray(roles)
    copy_roles = roles[(roles >= ROLE_AUGMENTED) & (roles < ROLE_DRAW)]
    copies = int(copy_roles.max(initial=ROLE_AUGMENTED - 1)) - ROLE_AUGMENTED + 1
    out = np.empty((REFERENCE_CLIPS, copies), dtype=np.int64)
    for c in range(copies):
        out[:, c] = np.flatnonzero(roles == ROLE_AUGMENTED + c)
    return out


def draw_copies(num_videos: int, copies: int, seed: int, epoch: int) -> np.ndarray:
    """int [n, 8]: which augmented copy each training clip of every cached video uses this epoch.

    Its own generator, seeded by (seed, epoch, 1), for all cached videos: the draw depends neither
    on which videos a pass needs nor on the clip/view draws of `draw_samples`.
    """
    rng = np.random.default_rng([seed, epoch, 1])
    return rng.integers(0, copies, size=(num_videos, REFERENCE_CLIPS))


def epoch_order(num_videos: int, order_seed: int, epoch: int, how: str = "reshuffle") -> np.ndarray:
    """The order an epoch visits the cache's videos (indices into `cache.videos`): a permutation of
    all of them, so its restriction to any probe's videos is a uniformly random order of those.

    `reshuffle` seeds it by (order seed, epoch); `fixed` takes the epoch-0 permutation every epoch,
    as the reference does (its DistributedSampler(shuffle=True) never gets `set_epoch`).
    """
    if how not in ("reshuffle", "fixed"):
        raise ConfigError(f"epoch_order must be reshuffle or fixed, got {how!r}")
    seed = [order_seed, 0 if how == "fixed" else epoch]
    return np.random.default_rng(seed).permutation(num_videos)


def draw_samples(
    n_clips: np.ndarray,
    fixed: np.ndarray | None,
    num_views: int,
    clips_per_video: int,
    random_view: bool,
    seed: int,
    epoch: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip and view choice of one epoch for every cached video, seeded by (seed, epoch).

    Args:
        n_clips: int [n] cached clips of each video of the cache.
        fixed: int [n, K] clip indices (the reference's clips), or None to draw K with replacement.
        random_view: draw a view per clip; otherwise take the middle view V // 2 (the centre crop
            of `3crop`, the only view of `center`).
    Returns:
        clips int [n, K], views int [n, K].
    """
    rng = np.random.default_rng([seed, epoch])
    n, K = len(n_clips), clips_per_video
    if fixed is None:
        clips = (rng.random((n, K)) * np.asarray(n_clips)[:, None]).astype(np.int64)
    else:
        clips = np.asarray(fixed, dtype=np.int64)
    if random_view:
        views = rng.integers(0, num_views, size=(n, K))
    else:
        views = np.full((n, K), num_views // 2)
    return clips, views


def fixed_clips(cache: Cache, rows: np.ndarray) -> np.ndarray:
    """int [n, 8]: the reference's 8 training clips of the cache's videos at `rows` (0 for the
    other rows): the exact ones where the cache stores them (plan `reference`), else
    `reference_clips` among the plain clips."""
    videos = cache.videos
    fixed = np.zeros((len(videos), REFERENCE_CLIPS), dtype=np.int64)
    for i in rows:
        vid, n_frames = videos.at[i, "video_id"], int(videos.at[i, "n_frames"])
        roles = cache.clip_roles(vid)
        if (train := train_role_clips(roles)) is not None:
            fixed[i] = train
            continue
        plain = plain_clips(roles)
        fixed[i] = plain[reference_clips(cache.clip_frames(vid)[plain, 0], n_frames)]
    return fixed


def augmented_copies(cache: Cache, ids: list[str], needed: np.ndarray) -> dict[int, np.ndarray]:
    """Row -> int [8, K]: the stored augmented copies of each needed video's training clips."""
    copies = {i: augmented_clips(cache.clip_roles(ids[i])) for i in needed}
    counts = {a.shape[1] for a in copies.values()}
    if counts != {next(iter(counts))} or 0 in counts:
        raise ConfigError(
            f"--train-view augmented: cache {cache.path} holds {sorted(counts)} augmented copies "
            "per video (need the same K >= 1 for every video); re-extract it with "
            "`vjfer extract --augment K`, or train with --train-view random|middle"
        )
    return copies


def copies_per_clip(copies: dict[int, np.ndarray]) -> int:
    """K, the augmented copies per training clip (equal for every video)."""
    return next(iter(copies.values())).shape[1]


def pick_copies(copies: dict[int, np.ndarray], choice: np.ndarray) -> np.ndarray:
    """int [n, 8]: clip index of the chosen copy (choice [n, 8]) of each training clip."""
    clips = np.zeros(choice.shape, dtype=np.int64)
    for i, table in copies.items():
        clips[i] = table[np.arange(REFERENCE_CLIPS), choice[i]]
    return clips


def plain_index(drawn: np.ndarray, plain: dict[int, np.ndarray]) -> np.ndarray:
    """int [n, K]: clip indices of draws made among each video's plain clips."""
    clips = drawn.copy()
    for i, table in plain.items():
        clips[i] = table[drawn[i]]
    return clips


@dataclass(frozen=True)
class TrainClips:
    """What a pass's samples are drawn from, per row of `cache.videos` it needs (other rows hold
    placeholders: every draw is made for all cached videos, whichever a pass needs)."""

    ids: list[str]  # video_id per row of `cache.videos`
    n_draw: np.ndarray  # int [n]: clips `random` draws among (a needed row's `plain`)
    # needed row -> int [C']: the clips drawn among: its plain clips (`plain_clips`), or on a
    # `stride`/`segments` cache its training draws (`draw_clips`)
    plain: dict[int, np.ndarray]
    fixed: np.ndarray | None  # int [n, 8]: the reference's 8 clips (`reference`), else None
    copies: dict[int, np.ndarray] | None  # needed row -> int [8, K] stored copies (`augmented`)

    def wanted(self) -> dict[str, np.ndarray]:
        """video_id -> sorted clip indices the pass may read of each needed video."""
        if self.copies is not None:
            return {self.ids[i]: np.unique(c) for i, c in self.copies.items()}
        if self.fixed is not None:
            return {self.ids[i]: np.unique(self.fixed[i]) for i in self.plain}
        return {self.ids[i]: c for i, c in self.plain.items()}

    def reads_per_video(self, clips_per_video: int, seeds: int) -> list[int]:
        """Clips an epoch reads of each needed video (in `wanted` order), at most."""
        wanted = self.wanted().values()
        if self.fixed is not None and self.copies is None:
            return [len(c) for c in wanted]
        return [min(len(c), clips_per_video * seeds) for c in wanted]  # K draws per seed at most


def train_clips(cache: Cache, needed: np.ndarray, clip_choice: str, train_view: str) -> TrainClips:
    """The `TrainClips` of the needed rows. Roles: `random` draws among the plain clips (never an
    augmented copy), `reference` takes the exact training clips where the cache has them,
    `augmented` one stored copy of each. On a `stride`/`segments` cache both choices draw among the
    video's training draws (its loader's rule; never an evaluation clip): the cache has no
    reference clips, and its draws are what that loader trains on."""
    ids = cache.videos["video_id"].tolist()
    if cache.settings.get("plan") in DRAW_PLANS:
        if train_view == "augmented":
            raise ConfigError(
                f"--train-view augmented: cache {cache.path} (plan {cache.settings['plan']}) holds "
                "training draws, no augmented copies; train with --train-view random|middle"
            )
        draws = {i: draw_clips(cache.clip_roles(ids[i])) for i in needed.tolist()}
        n_draw = cache.videos["n_clips"].to_numpy().copy()
        n_draw[needed] = [len(draws[i]) for i in needed]
        return TrainClips(ids, n_draw, draws, None, None)
    plain = {i: plain_clips(cache.clip_roles(ids[i])) for i in needed.tolist()}
    n_draw = cache.videos["n_clips"].to_numpy().copy()  # rows not needed keep any count
    n_draw[needed] = [len(plain[i]) for i in needed]
    fixed = fixed_clips(cache, needed) if clip_choice == "reference" else None
    copies = augmented_copies(cache, ids, needed) if train_view == "augmented" else None
    return TrainClips(ids, n_draw, plain, fixed, copies)


@dataclass(frozen=True)
class EpochDraws:
    """One seed's samples of one epoch for every cached video: which clips, views and copies, and
    (with token augmentation) the token masks."""

    seed: int
    epoch: int
    clips: np.ndarray  # int [n, K]: clip indices within each video
    views: np.ndarray  # int [n, K]
    copies: np.ndarray | None  # int [n, 8]: the augmented copy each training clip takes, or None
    grid: tuple[int, int, int] | None  # the token grid when masking (`--token-augment`), else None

    def mask(self, row: int) -> np.ndarray | None:
        """bool [K, N] token mask of the video at `row` (True = kept), or None without masking."""
        if self.grid is None:
            return None
        return token_masks(self.seed, self.epoch, row, self.clips.shape[1], self.grid)


def epoch_draws(
    pool: TrainClips,
    *,
    num_views: int,
    clips_per_video: int,
    train_view: str,
    grid: tuple[int, int, int] | None,
    seed: int,
    epoch: int,
) -> EpochDraws:
    """The `EpochDraws` of (seed, epoch): `draw_samples`' clips and views, then (augmented) one
    stored copy per training clip or (random) the draws mapped onto the plain clips."""
    clips, views = draw_samples(
        pool.n_draw, pool.fixed, num_views, clips_per_video, train_view == "random", seed, epoch
    )
    copies = None
    if pool.copies is not None:  # one stored copy per training clip, drawn per (seed, epoch)
        copies = draw_copies(len(pool.ids), copies_per_clip(pool.copies), seed, epoch)
        clips = pick_copies(pool.copies, copies)
    elif pool.fixed is None:  # draws index the plain clips
        clips = plain_index(clips, pool.plain)
    return EpochDraws(seed, epoch, clips, views, copies, grid)


def rows_of(cache: Cache, video_ids: Sequence[str]) -> np.ndarray:
    """Row numbers in `cache.videos` of `video_ids`."""
    where = pd.Index(cache.videos["video_id"])
    rows = where.get_indexer(list(video_ids))
    if (rows < 0).any():
        missing = [v for v, r in zip(video_ids, rows, strict=True) if r < 0]
        raise SplitError(
            f"{len(missing)} videos are not in cache {cache.path}, first {missing[0]!r}"
        )
    return rows
