"""Which frames make a clip: clip plans, clip roles and gathering clips from prepared frames.

Pure index maths (numpy only), so every stage can import it without PyAV. The V-JEPA plans'
formulas are the reference code's (`src/datasets/video_dataset.py` `loadvideo_decord` for the 8
training clips, the full-video evaluation's stride-1 windows: numpy linspace / clip /
astype(int64)). The other two plans are the field's loaders' (`DRAW_PLANS`):

- `stride` (step K): MAE-DFER's `kinetics.py` `VideoClsDatasetFrame`. Evaluation: its 2 test views,
  the first and the last 16 of the frames 0, K, 2K, ... padded with the last to 16 (one view when
  they are the same). Training: its train mode (num_segment 1), 16 frames at linspace over 16·K
  frames from a random start; a video of <= 16·K frames gets one fixed spread, padded.
- `segments`: DFER-CLIP's `dataloader/video_dataloader.py` (16 segments, duration 1). Evaluation:
  the middle frame of each of 16 equal segments. Training: a random frame in each segment.

Clip roles (a cache's per-clip `clip_role`, uint8), so any reader knows what each clip is for:

- ROLE_EVAL (0): an evaluation clip: a window of the V-JEPA plans, a test view of `stride`,
  the segment middles of `segments`. Evaluation scores exactly these (`Cache.eval_clips`).
- ROLE_TRAIN (1): one of the V-JEPA reference's 8 training clips (plan `reference`); a training
  sample takes all 8.
- ROLE_AUGMENTED + c (2 + c, c < MAX_AUGMENT_COPIES): augmented copy c of those 8 (`--augment`).
- ROLE_DRAW (255): one draw of a loader's random training rule (`stride`, `segments`); a training
  sample takes its clips among a video's draws, never an evaluation clip. A role of its own, not
  ROLE_TRAIN: ROLE_TRAIN clips are a fixed set of 8 that every sample takes and that `random` may
  mix with evaluation windows, while draws are 1..D alternatives (identical draws stored once).
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from vjfer.errors import ConfigError

FRAMES_PER_CLIP = 16
FRAME_STEP = 4
CLIP_SPAN = (FRAMES_PER_CLIP - 1) * FRAME_STEP + 1  # 61 frames from a clip's first to last index
REFERENCE_CLIP_LEN = FRAMES_PER_CLIP * FRAME_STEP  # 64: the reference's clip_len = fpc * fstp
REFERENCE_TRAIN_CLIPS = 8  # the reference's num_segments for training

ClipPlan = Literal[
    "windows", "reference-train", "reference-eval", "reference", "stride", "segments"
]
CLIP_PLANS: tuple[str, ...] = (
    "windows",
    "reference-train",
    "reference-eval",
    "reference",
    "stride",
    "segments",
)
DRAW_PLANS = ("stride", "segments")  # the loaders' plans: random training draws, cached
STEP_PLANS = ("stride",)  # the plans whose frame step is a setting (the others: FRAME_STEP or none)
# What each cached clip is for (the cache's per-clip `clip_role`, uint8; the module docstring).
ROLE_EVAL, ROLE_TRAIN, ROLE_AUGMENTED, ROLE_DRAW = 0, 1, 2, 255
MAX_AUGMENT_COPIES = ROLE_DRAW - ROLE_AUGMENTED  # copies 0..252 take roles 2..254
# Of the training draws' maths and seeding: a change of drawn frames bumps it (and the fingerprint).
DRAWS_VERSION = 1
# v2: `windows` takes the reference's evaluation windows (linspace over 64 frames), v1 took frames
# s, s+4, ..., s+60. Part of the cache settings of the plans it changed, so v1 caches are not
# reused.
WINDOWS_VERSION = 2


# ---------------------------------------------------------------------------- clip plans (pure)


def _reference_train(n: int) -> np.ndarray:
    """The reference's 8 training clips (`loadvideo_decord`, num_clips=8, clip overlap allowed)."""
    fpc, step, clip_len, clips = (
        FRAMES_PER_CLIP,
        FRAME_STEP,
        REFERENCE_CLIP_LEN,
        REFERENCE_TRAIN_CLIPS,
    )
    partition_len = n // clips
    if partition_len > clip_len:
        # The reference draws a random window inside each partition; vjfer takes the first one.
        base = np.clip(np.linspace(0, clip_len, num=fpc), 0, clip_len - 1).astype(np.int64)
        return np.stack([base + i * partition_len for i in range(clips)])
    sample_len = min(clip_len, n) - 1
    spread = np.linspace(0, sample_len, num=sample_len // step)
    spread = np.concatenate((spread, np.ones(fpc - sample_len // step) * sample_len))
    # For n = 1 the reference clips to [0, -1], giving -1, which decord reads as the last frame (0).
    base = np.clip(spread, 0, sample_len - 1).astype(np.int64) % n
    clip_step = (n - clip_len) // (clips - 1) if n > clip_len else 0
    return np.stack([base + i * clip_step for i in range(clips)])


def _reference_eval(n: int) -> np.ndarray:
    """The reference's evaluation windows: one per start s in range(n - 64), stride 1."""
    fpc, step, clip_len = FRAMES_PER_CLIP, FRAME_STEP, REFERENCE_CLIP_LEN
    if n <= clip_len:  # one window over the whole video, padded with n, clipped to n - 1
        base = np.linspace(0, n, num=n // step)
        base = np.concatenate((base, np.ones(fpc - n // step) * n))
        return np.clip(base, 0, n - 1).astype(np.int64)[None, :]
    starts = np.arange(n - clip_len, dtype=np.int64)[:, None]  # [C, 1]
    indices = np.linspace(starts, starts + clip_len, num=fpc, axis=1)[:, :, 0]  # [C, 16]
    return np.clip(indices, starts, starts + clip_len - 1).astype(np.int64)


def _windows(n: int, hop: int) -> np.ndarray:
    """The reference's evaluation windows (`_reference_eval`) at starts 0, hop, 2·hop, ... plus the
    last one, so every cached window is one the reference evaluates; one padded clip when
    n <= 64."""
    windows = _reference_eval(n)  # [n - 64, 16], or [1, 16] for a short video
    keep = np.arange(0, len(windows), hop)
    if keep[-1] != len(windows) - 1:
        keep = np.append(keep, len(windows) - 1)
    return windows[keep]


def _strided(n: int, step: int) -> list[int]:
    """MAE-DFER's strided frames: 0, K, 2K, ... < n, the last repeated until there are 16."""
    idx = list(range(0, n, step))
    idx += [idx[-1]] * (FRAMES_PER_CLIP - len(idx))  # nothing when there are 16 or more
    return idx


def _stride_views(n: int, step: int) -> np.ndarray:
    """MAE-DFER's 2 test views (test_num_segment 2): the strided frames from int(c·s), c in {0, 1},
    s = max(L - 16, 0) of the L strided frames; one view when the two are the same (L = 16)."""
    idx = _strided(n, step)
    last = max(len(idx) - FRAMES_PER_CLIP, 0)
    starts = [0] if last == 0 else [0, last]
    return np.array([idx[s : s + FRAMES_PER_CLIP] for s in starts], dtype=np.int64)


def _segment_middles(n: int) -> np.ndarray:
    """DFER-CLIP's test indices: the middle frame of each of 16 equal segments; a video of 16
    frames or fewer: all of them, the last repeated to 16. int64 [1, 16]."""
    if n > FRAMES_PER_CLIP:
        tick = n / FRAMES_PER_CLIP
        idx = [int(tick / 2.0 + tick * x) for x in range(FRAMES_PER_CLIP)]
    else:
        idx = [*range(n), *[n - 1] * (FRAMES_PER_CLIP - n)]
    return np.array([idx], dtype=np.int64)


def stride_draw(n: int, step: int, rng: np.random.Generator) -> np.ndarray:
    """One MAE-DFER training clip (train mode, num_segment 1): int64 [16].

    Over 16·K frames (`converted_len`) from a random end in [16·K, n), 16 frames at linspace,
    clipped below the end; a video of n <= 16·K frames: linspace(0, n, n // K) padded with n,
    clipped to n - 1 (no draw). Not the test views' `range(0, n, K)`: the loader's own rule.
    """
    fpc, span = FRAMES_PER_CLIP, FRAMES_PER_CLIP * step
    if n <= span:
        index = np.linspace(0, n, num=n // step)
        index = np.concatenate((index, np.ones(fpc - n // step) * n))
        return np.clip(index, 0, n - 1).astype(np.int64)
    end = int(rng.integers(span, n))  # np.random.randint(converted_len, seg_len)
    start = end - span
    return np.clip(np.linspace(start, end, num=fpc), start, end - 1).astype(np.int64)


def segment_draw(n: int, rng: np.random.Generator) -> np.ndarray:
    """One DFER-CLIP training clip (`_get_train_indices`, duration 1): int64 [16]: a random frame in
    each of 16 segments of n // 16 frames (n >= 16), else all frames, the last repeated. (Its
    third case, 16 sorted random frames when n // 16 = 0 and n > 16, cannot occur at duration 1.)"""
    fpc = FRAMES_PER_CLIP
    average = n // fpc
    if average > 0:
        return np.arange(fpc, dtype=np.int64) * average + rng.integers(0, average, size=fpc)
    return np.array([*range(n), *[n - 1] * (fpc - n)], dtype=np.int64)


def video_key(video_id: str) -> int:
    """A stable 64-bit number for a video id (seeds must not depend on Python's str hash)."""
    return int.from_bytes(hashlib.sha256(video_id.encode("utf-8")).digest()[:8], "little")


def draw_rng(seed: int, video_id: str, draw: int) -> np.random.Generator:
    """The generator of training draw `draw` of a video: one per (seed, video, draw), so a draw
    depends neither on the other videos, their order, nor on how many draws are made."""
    return np.random.default_rng([seed, video_key(video_id), draw])


def train_draws(
    n_frames: int, plan: ClipPlan, step: int | None, draws: int, seed: int, video_id: str
) -> np.ndarray:
    """The training clips of a `DRAW_PLANS` video: `draws` draws of its loader's training rule,
    identical draws stored once (first-draw order): int64 [D', 16], 1 <= D' <= draws."""
    if plan not in DRAW_PLANS:
        raise ConfigError(f"plan {plan!r} has no training draws; expected one of {DRAW_PLANS}")
    if draws < 1:
        raise ConfigError(f"train draws must be >= 1, got {draws}")
    step = _step(plan, step)
    clips = [
        stride_draw(n_frames, step, draw_rng(seed, video_id, d))
        if plan == "stride"
        else segment_draw(n_frames, draw_rng(seed, video_id, d))
        for d in range(draws)
    ]
    unique = [c for i, c in enumerate(clips) if not any((c == p).all() for p in clips[:i])]
    return np.stack(unique)


def _step(plan: ClipPlan, step: int | None) -> int:
    """The frame step of `plan`: `step` for `stride` (None: FRAME_STEP), else FRAME_STEP (the
    V-JEPA plans' fixed step; `segments` has none and ignores it)."""
    if step is not None and plan not in STEP_PLANS:
        raise ConfigError(f"a frame step applies to the plans {STEP_PLANS}, not {plan!r}")
    if step is not None and step < 1:
        raise ConfigError(f"frame step must be >= 1, got {step}")
    return FRAME_STEP if step is None else step


def plan_clips(
    n_frames: int, plan: ClipPlan = "windows", hop: int = 8, step: int | None = None
) -> np.ndarray:
    """Frame indices of each clip of a video with `n_frames` frames: int64 [C, 16].

    Args:
        n_frames: decoded frame count (>= 1).
        plan: "windows" (every hop-th of the reference's evaluation windows, plus the last),
            "reference-train" (the reference's 8 spread clips), "reference-eval" (every stride-1
            window), "reference" (the 8 training clips, then the "windows" windows; see
            `clip_roles`), "stride" (MAE-DFER's test views) or "segments" (DFER-CLIP's test
            indices); the last two's training clips are `train_draws`.
        hop: starts between windows for "windows" and "reference".
        step: the frame step K of "stride" (None: FRAME_STEP); refused for the other plans.
    """
    if plan not in CLIP_PLANS:
        raise ConfigError(f"unknown clip plan {plan!r}; expected one of {CLIP_PLANS}")
    if hop < 1:
        raise ConfigError(f"hop must be >= 1, got {hop}")
    if n_frames < 1:
        raise ValueError(f"a clip plan needs at least 1 frame, got n_frames={n_frames}")
    K = _step(plan, step)
    if plan == "windows":
        clips = _windows(n_frames, hop)
    elif plan == "reference":
        clips = np.concatenate([_reference_train(n_frames), _windows(n_frames, hop)])
    elif plan == "reference-train":
        clips = _reference_train(n_frames)
    elif plan == "stride":
        clips = _stride_views(n_frames, K)
    elif plan == "segments":
        clips = _segment_middles(n_frames)
    else:
        clips = _reference_eval(n_frames)
    assert clips.shape[1] == FRAMES_PER_CLIP and 0 <= clips.min() and clips.max() < n_frames
    return clips


def clip_roles(
    n_frames: int, plan: ClipPlan = "windows", hop: int = 8, step: int | None = None
) -> np.ndarray:
    """uint8 [C]: the role of each clip of `plan_clips(n_frames, plan, hop, step)`.

    Only "reference" mixes roles (its 8 training clips first, ROLE_TRAIN, then the windows,
    ROLE_EVAL); every clip of the other plans is evaluated, as before roles existed (the training
    draws of "stride" and "segments", ROLE_DRAW, come from `train_draws`).
    """
    clips = plan_clips(n_frames, plan, hop, step)
    roles = np.full(len(clips), ROLE_EVAL, dtype=np.uint8)
    if plan == "reference":
        roles[:REFERENCE_TRAIN_CLIPS] = ROLE_TRAIN
    return roles


def eval_windows(
    n_frames: int, plan: ClipPlan = "windows", hop: int = 8, step: int | None = None
) -> np.ndarray:
    """int [C', 16]: the frames of the clips of `plan` that are evaluated (role ROLE_EVAL), as
    `Cache.eval_clips` selects them from a cache made with that plan."""
    clips = plan_clips(n_frames, plan, hop, step)
    return clips[clip_roles(n_frames, plan, hop, step) == ROLE_EVAL]


# ---------------------------------------------------------------------------- clips from frames


def gather_clips(frames: np.ndarray, clip_frames: np.ndarray) -> np.ndarray:
    """Clips from prepared frames: uint8 [V, T, R, R, 3] and int [C, 16] -> [C, V, 16, R, R, 3]."""
    V, T = frames.shape[:2]
    clip_frames = np.asarray(clip_frames)
    if clip_frames.ndim != 2 or not np.issubdtype(clip_frames.dtype, np.integer):
        raise ValueError(
            f"clip_frames must be an int array [C, 16], got {clip_frames.dtype} {clip_frames.shape}"
        )
    if clip_frames.size and (clip_frames.min() < 0 or clip_frames.max() >= T):
        raise ValueError(
            f"clip frame indices span {clip_frames.min()}..{clip_frames.max()}, "
            f"the video has frames 0..{T - 1}"
        )
    C, F = clip_frames.shape
    out = np.empty((C, V, F, *frames.shape[2:]), dtype=frames.dtype)
    for v in range(V):  # mode="clip" writes straight into the strided `out`; bounds checked above
        np.take(frames[v], clip_frames, axis=0, out=out[:, v], mode="clip")
    return out
