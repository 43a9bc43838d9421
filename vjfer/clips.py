"""Which frames make a clip: clip plans, clip roles and gathering clips from prepared frames.

Pure index maths (numpy only), so every stage can import it without PyAV. The formulas are the
reference code's (`src/datasets/video_dataset.py` `loadvideo_decord` for the 8 training clips, the
full-video evaluation's stride-1 windows: numpy linspace / clip / astype(int64)).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from vjfer.errors import ConfigError

FRAMES_PER_CLIP = 16
FRAME_STEP = 4
CLIP_SPAN = (FRAMES_PER_CLIP - 1) * FRAME_STEP + 1  # 61 frames from a clip's first to last index
REFERENCE_CLIP_LEN = FRAMES_PER_CLIP * FRAME_STEP  # 64: the reference's clip_len = fpc * fstp
REFERENCE_TRAIN_CLIPS = 8  # the reference's num_segments for training

ClipPlan = Literal["windows", "reference-train", "reference-eval", "reference"]
CLIP_PLANS: tuple[str, ...] = ("windows", "reference-train", "reference-eval", "reference")
# What each cached clip is for (the cache's per-clip `clip_role`, uint8): an evaluation window,
# one of the reference's 8 training clips, or augmented copy c of a training clip
# (ROLE_AUGMENTED + c).
ROLE_EVAL, ROLE_TRAIN, ROLE_AUGMENTED = 0, 1, 2
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


def plan_clips(n_frames: int, plan: ClipPlan = "windows", hop: int = 8) -> np.ndarray:
    """Frame indices of each clip of a video with `n_frames` frames: int64 [C, 16].

    Args:
        n_frames: decoded frame count (>= 1).
        plan: "windows" (every hop-th of the reference's evaluation windows, plus the last),
            "reference-train" (the reference's 8 spread clips), "reference-eval" (every stride-1
            window) or "reference" (the 8 training clips, then the "windows" windows; see
            `clip_roles`).
        hop: starts between windows for "windows" and "reference".
    """
    if plan not in CLIP_PLANS:
        raise ConfigError(f"unknown clip plan {plan!r}; expected one of {CLIP_PLANS}")
    if hop < 1:
        raise ConfigError(f"hop must be >= 1, got {hop}")
    if n_frames < 1:
        raise ValueError(f"a clip plan needs at least 1 frame, got n_frames={n_frames}")
    if plan == "windows":
        clips = _windows(n_frames, hop)
    elif plan == "reference":
        clips = np.concatenate([_reference_train(n_frames), _windows(n_frames, hop)])
    elif plan == "reference-train":
        clips = _reference_train(n_frames)
    else:
        clips = _reference_eval(n_frames)
    assert clips.shape[1] == FRAMES_PER_CLIP and 0 <= clips.min() and clips.max() < n_frames
    return clips


def clip_roles(n_frames: int, plan: ClipPlan = "windows", hop: int = 8) -> np.ndarray:
    """uint8 [C]: the role of each clip of `plan_clips(n_frames, plan, hop)`.

    Only "reference" mixes roles (its 8 training clips first, ROLE_TRAIN, then the windows,
    ROLE_EVAL); every clip of the other plans is evaluated, as before roles existed.
    """
    clips = plan_clips(n_frames, plan, hop)
    roles = np.full(len(clips), ROLE_EVAL, dtype=np.uint8)
    if plan == "reference":
        roles[:REFERENCE_TRAIN_CLIPS] = ROLE_TRAIN
    return roles


def eval_windows(n_frames: int, plan: ClipPlan = "windows", hop: int = 8) -> np.ndarray:
    """int [C', 16]: the frames of the clips of `plan` that are evaluated (role ROLE_EVAL), as
    `Cache.eval_clips` selects them from a cache made with that plan."""
    return plan_clips(n_frames, plan, hop)[clip_roles(n_frames, plan, hop) == ROLE_EVAL]


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
