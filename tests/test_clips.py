"""vjfer.clips: clip plan goldens, the reference's formulas, clip roles, gathering clips."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from vjfer.clips import (
    CLIP_PLANS,
    ROLE_EVAL,
    clip_roles,
    draw_rng,
    eval_windows,
    gather_clips,
    plan_clips,
    segment_draw,
    stride_draw,
    train_draws,
)
from vjfer.errors import ConfigError

# ---------------------------------------------------------------------------- clip plans

W4 = [4 * i for i in range(16)]  # 0, 4, ..., 60
TRAIN_BASE = [0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62]  # n >= 64 (issue text)
EVAL_BASE = [0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]  # int(linspace(0,64,16))


def _rows(*rows):
    return np.array(rows, dtype=np.int64)


GOLDEN = {
    # windows: every hop-th of the reference's evaluation windows, plus its last one
    ("windows", 1): _rows([0] * 16),
    ("windows", 60): _rows([0, 4, 8, 12, 17, 21, 25, 30, 34, 38, 42, 47, 51, 55, 59, 59]),
    ("windows", 61): _rows([0, 4, 8, 13, 17, 21, 26, 30, 34, 39, 43, 47, 52, 56, 60, 60]),
    ("windows", 64): _rows(EVAL_BASE),
    ("windows", 65): _rows(EVAL_BASE),
    ("windows", 71): _rows(EVAL_BASE, [6 + x for x in EVAL_BASE]),
    ("windows", 100): _rows(*[[s + x for x in EVAL_BASE] for s in (0, 8, 16, 24, 32, 35)]),
    ("windows", 520): _rows(*[[s + x for x in EVAL_BASE] for s in [*range(0, 449, 8), 455]]),
    ("reference-train", 1): _rows(*[[0] * 16] * 8),
    ("reference-train", 60): _rows(
        *[[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 58, 58]] * 8
    ),
    ("reference-train", 61): _rows(
        *[[0, 4, 8, 12, 17, 21, 25, 30, 34, 38, 42, 47, 51, 55, 59, 59]] * 8
    ),
    ("reference-train", 64): _rows(*[TRAIN_BASE] * 8),
    ("reference-train", 65): _rows(*[TRAIN_BASE] * 8),  # clip step (65 - 64) // 7 = 0
    ("reference-train", 71): _rows(*[[x + i for x in TRAIN_BASE] for i in range(8)]),
    ("reference-train", 100): _rows(*[[x + 5 * i for x in TRAIN_BASE] for i in range(8)]),
    ("reference-train", 520): _rows(
        *[[x + 65 * i for x in EVAL_BASE] for i in range(8)]
    ),  # 520//8 > 64
    ("reference-eval", 1): _rows([0] * 16),
    ("reference-eval", 60): _rows([0, 4, 8, 12, 17, 21, 25, 30, 34, 38, 42, 47, 51, 55, 59, 59]),
    ("reference-eval", 61): _rows([0, 4, 8, 13, 17, 21, 26, 30, 34, 39, 43, 47, 52, 56, 60, 60]),
    ("reference-eval", 64): _rows(EVAL_BASE),
    ("reference-eval", 65): _rows(EVAL_BASE),
    ("reference-eval", 71): _rows(*[[x + s for x in EVAL_BASE] for s in range(7)]),
    ("reference-eval", 100): _rows(*[[x + s for x in EVAL_BASE] for s in range(36)]),
    ("reference-eval", 520): _rows(*[[x + s for x in EVAL_BASE] for s in range(456)]),
}


@pytest.mark.parametrize("plan,n", sorted(GOLDEN))
def test_plan_golden(plan, n):
    clips = plan_clips(n, plan)
    assert clips.dtype == np.int64
    np.testing.assert_array_equal(clips, GOLDEN[plan, n])


@pytest.mark.parametrize("plan", CLIP_PLANS)
def test_plan_needs_a_frame(plan):
    with pytest.raises(ValueError, match="at least 1 frame, got n_frames=0"):
        plan_clips(0, plan)


def test_plan_bad_options():
    with pytest.raises(ConfigError, match="unknown clip plan 'random'"):
        plan_clips(100, "random")
    with pytest.raises(ConfigError, match="hop must be >= 1, got 0"):
        plan_clips(100, "windows", hop=0)


def _reference_loop(n, num_clips=8, fpc=16, fstp=4):
    """The reference loader's index arithmetic, loop by loop (first window where it draws one)."""
    clip_len = fpc * fstp
    partition_len = n // num_clips
    clips = []
    for i in range(num_clips):
        if partition_len > clip_len:
            indices = np.linspace(0, clip_len, num=fpc)
            indices = np.clip(indices, 0, clip_len - 1).astype(np.int64) + i * partition_len
        else:
            sample_len = min(clip_len, n) - 1
            indices = np.linspace(0, sample_len, num=sample_len // fstp)
            indices = np.concatenate((indices, np.ones(fpc - sample_len // fstp) * sample_len))
            indices = np.clip(indices, 0, sample_len - 1).astype(np.int64)
            clip_step = (n - clip_len) // (num_clips - 1) if n > clip_len else 0
            indices = indices + i * clip_step
        clips.append(np.where(indices < 0, indices + n, indices))  # decord: -1 is the last frame
    return np.stack(clips)


def test_reference_train_matches_the_reference_loop():
    for n in range(1, 1200):
        np.testing.assert_array_equal(
            plan_clips(n, "reference-train"), _reference_loop(n), f"n={n}"
        )


def test_reference_eval_matches_per_window_linspace():
    for n in (66, 97, 130, 301):
        expected = [
            np.clip(np.linspace(s, s + 64, 16), s, s + 63).astype(np.int64) for s in range(n - 64)
        ]
        np.testing.assert_array_equal(plan_clips(n, "reference-eval"), np.stack(expected))


def _reference_full_video(n, fpc=16, fstp=4):
    """The reference's evaluation index (full_video_dataset.py), start by start: one window per
    start in range(n - 64); a video of <= 64 frames gives one window padded with frame n - 1."""
    clip_len = fpc * fstp
    if n - clip_len < 1:
        indices = np.linspace(0, n, num=n // fstp)
        indices = np.concatenate((indices, np.ones(fpc - n // fstp) * n))
        return [np.clip(indices, 0, n - 1).astype(np.int64)]
    return [_reference_window(start, clip_len, fpc) for start in range(n - clip_len)]


@functools.cache
def _reference_window(start, clip_len, fpc):
    """The reference's window at `start` (the same for every video length: computed once)."""
    indices = np.linspace(start, start + clip_len, num=fpc)
    return np.clip(indices, start, start + clip_len - 1).astype(np.int64)


def test_every_plan_matches_the_reference_formulas_for_every_length_up_to_600():
    for n in range(1, 601):
        evaluation = np.stack(_reference_full_video(n))  # [n - 64 or 1, 16]
        np.testing.assert_array_equal(plan_clips(n, "reference-eval"), evaluation, f"n={n}")
        train = _reference_loop(n)
        np.testing.assert_array_equal(plan_clips(n, "reference-train"), train, f"n={n}")
        for hop in (1, 8, 16):
            keep = [*range(0, len(evaluation), hop)]
            keep += [] if keep[-1] == len(evaluation) - 1 else [len(evaluation) - 1]
            windows = plan_clips(n, "windows", hop=hop)
            np.testing.assert_array_equal(windows, evaluation[keep], f"n={n} hop={hop}")
            both = plan_clips(n, "reference", hop=hop)
            np.testing.assert_array_equal(both, np.concatenate([train, windows]), f"n={n}")
            roles = clip_roles(n, "reference", hop=hop)
            assert roles.dtype == np.uint8 and roles.tolist() == [1] * 8 + [0] * len(windows)
            assert not clip_roles(n, "windows", hop=hop).any()


def test_reference_train_repeats_its_last_frame():
    # 64 frames and up: linspace(0, 63, 15) then 63, clipped to 62 -> ..., 58, 62, 62
    assert plan_clips(200, "reference-train")[0, -3:].tolist() == [58, 62, 62]
    assert plan_clips(200, "windows")[0, -3:].tolist() == [55, 59, 63]  # eval windows do not


@pytest.mark.parametrize("hop", [1, 3, 8, 61, 100])
def test_windows_cover_what_the_reference_evaluates(hop):
    for n in (1, 30, 60, 61, 62, 130, 1000):
        clips = plan_clips(n, "windows", hop=hop)
        # the reference's last window starts at n - 65: its last frame n - 1 is never evaluated
        assert clips.min() == 0 and clips.max() == (n - 2 if n > 64 else n - 1)
        assert (np.diff(clips[:, 0]) > 0).all() and (np.diff(clips[:, 0])[:-1] == hop).all()


# ---------------------------------------------------------------------------- the loaders' plans


def _mae_dfer_test_views(num_frames, frame_sample_rate, clip_len=16, test_num_segment=2):
    """MAE-DFER kinetics.py VideoClsDatasetFrame, test mode, as it is written: `load_video`'s
    all_index, then __getitem__'s temporal_step / temporal_start per chunk_nb."""
    all_index = [x for x in range(0, num_frames, frame_sample_rate)]
    while len(all_index) < clip_len:
        all_index.append(all_index[-1])
    buffer = all_index  # the frames it loads, in order
    views = []
    for chunk_nb in range(test_num_segment):
        temporal_step = max(1.0 * (len(buffer) - clip_len) / (test_num_segment - 1), 0)
        temporal_start = int(chunk_nb * temporal_step)
        views.append(buffer[temporal_start : temporal_start + clip_len])
    return views


def _dfer_clip_test_indices(num_frames, num_segments=16, duration=1):
    """DFER-CLIP dataloader/video_dataloader.py `_get_test_indices`, as it is written."""
    if num_frames > num_segments + duration - 1:
        tick = (num_frames - duration + 1) / float(num_segments)
        offsets = np.array([int(tick / 2.0 + tick * x) for x in range(num_segments)])
    else:
        offsets = np.pad(np.array(list(range(num_frames))), (0, num_segments - num_frames), "edge")
    return offsets


def _mae_dfer_train_index(num_frames, frame_sample_rate, end_idx, clip_len=16):
    """MAE-DFER's train-mode `load_video` (num_segment 1) with its np.random.randint(converted_len,
    seg_len) given as `end_idx` (ignored when seg_len <= converted_len: no draw)."""
    converted_len = int(clip_len * frame_sample_rate)
    seg_len = num_frames
    if seg_len <= converted_len:
        index = np.linspace(0, seg_len, num=seg_len // frame_sample_rate)
        index = np.concatenate((index, np.ones(clip_len - seg_len // frame_sample_rate) * seg_len))
        index = np.clip(index, 0, seg_len - 1).astype(np.int64)
    else:
        str_idx = end_idx - converted_len
        index = np.linspace(str_idx, end_idx, num=clip_len)
        index = np.clip(index, str_idx, end_idx - 1).astype(np.int64)
    return list(index)


@pytest.mark.parametrize("step", [1, 4])
def test_stride_evaluation_clips_are_mae_dfers_test_views(step):
    for n in range(1, 901):
        views = _mae_dfer_test_views(n, step)
        expected = views[:1] if views[0] == views[1] else views  # one view when L = 16
        assert plan_clips(n, "stride", step=step).tolist() == expected, f"n={n}"
        assert eval_windows(n, "stride", step=step).tolist() == expected, f"n={n}"
        assert (clip_roles(n, "stride", step=step) == ROLE_EVAL).all()


def test_segments_evaluation_clip_is_dfer_clips_test_indices():
    for n in range(1, 901):
        expected = [_dfer_clip_test_indices(n).tolist()]
        assert plan_clips(n, "segments").tolist() == expected, f"n={n}"
        assert eval_windows(n, "segments").tolist() == expected, f"n={n}"


def test_a_frame_step_only_where_a_plan_takes_one():
    assert plan_clips(100, "stride").tolist() == plan_clips(100, "stride", step=4).tolist()
    with pytest.raises(ConfigError, match="frame step applies to the plans"):
        plan_clips(100, "windows", step=4)
    with pytest.raises(ConfigError, match="frame step must be >= 1, got 0"):
        plan_clips(100, "stride", step=0)


@pytest.mark.parametrize("step", [1, 4])
def test_stride_draws_follow_mae_dfers_training_rule(step):
    span = 16 * step
    for n in [*range(1, 90), 200, 847]:
        ends = set()
        for d in range(40):
            clip = stride_draw(n, step, draw_rng(0, "v", d))
            end = int(clip[0]) + span  # the loader's end_idx: the clip starts at end - 16·K
            assert clip.tolist() == _mae_dfer_train_index(n, step, end), f"n={n}"
            ends.add(end)
        if n > span:  # a random start: every end in [16·K, n) is drawn (few ends: all seen)
            assert ends <= set(range(span, n)) and (len(ends) > 1 or n == span + 1)
            if n - span <= 4:
                assert ends == set(range(span, n)), f"n={n}"
        else:
            assert len(ends) == 1  # no draw: one fixed spread


def test_segment_draws_follow_dfer_clips_training_rule():
    for n in [*range(1, 70), 200, 847]:
        seen = set()
        for d in range(40):
            clip = segment_draw(n, draw_rng(3, "v", d))
            assert clip.dtype == np.int64 and len(clip) == 16
            average = n // 16
            if average > 0:  # one random frame in each segment [x·avg, (x+1)·avg)
                offsets = clip - np.arange(16) * average
                assert ((0 <= offsets) & (offsets < average)).all(), f"n={n}"
                seen.update(offsets.tolist())
            else:  # np.pad(range(n), edge)
                assert clip.tolist() == [*range(n), *[n - 1] * (16 - n)]
        if average in (2, 3):  # every offset of the segment drawn
            assert seen == set(range(average)), f"n={n}"


@pytest.mark.parametrize("plan", ["stride", "segments"])
def test_train_draws_are_seeded_per_video_and_draw(plan):
    a = train_draws(200, plan, None, 8, 0, "a")
    assert a.dtype == np.int64 and a.shape[1] == 16 and 1 <= len(a) <= 8
    assert len({tuple(c) for c in a.tolist()}) == len(a)  # identical draws stored once
    np.testing.assert_array_equal(a, train_draws(200, plan, None, 8, 0, "a"))  # reproducible
    assert a.tolist() != train_draws(200, plan, None, 8, 0, "b").tolist()  # per video
    assert a.tolist() != train_draws(200, plan, None, 8, 1, "a").tolist()  # per seed
    # fewer draws are the first ones: a draw depends on (seed, video, draw) alone
    first = train_draws(200, plan, None, 3, 0, "a")
    assert first.tolist() == a[: len(first)].tolist()
    # a video too short for a random draw (stride: <= 16·K frames; segments: < 32) has one
    assert len(train_draws(30, plan, None, 8, 0, "a")) == 1


# ---------------------------------------------------------------------------- clips to tensors


def test_gather_clips():
    V, T, R = 3, 10, 4
    frames = np.arange(V * T, dtype=np.uint8).reshape(V, T, 1, 1, 1) * np.ones(
        (1, 1, R, R, 3), np.uint8
    )
    clips = np.array([[0] * 8 + [9] * 8, list(range(16))]) % T
    out = gather_clips(frames, clips)
    assert out.shape == (2, V, 16, R, R, 3) and out.flags.c_contiguous
    for c in range(2):
        for v in range(V):
            np.testing.assert_array_equal(out[c, v, :, 0, 0, 0], v * T + clips[c])
    with pytest.raises(ValueError, match="the video has frames 0..9"):
        gather_clips(frames, np.array([[10] * 16]))
