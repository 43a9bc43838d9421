"""vjfer.video: clip plan goldens, view geometry, decoding generated files, bad inputs."""

from __future__ import annotations

import hashlib
import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vjfer.clips import CLIP_PLANS, clip_roles, gather_clips, plan_clips
from vjfer.decode import decode_video
from vjfer.errors import ConfigError, VideoError
from vjfer.prepare import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameBuffer,
    crop_views,
    normalize_clips,
    num_views,
    view_geometry,
)
from vjfer.video import count_decoded_frames

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
    windows = []
    for start in range(n - clip_len):
        indices = np.linspace(start, start + clip_len, num=fpc)
        windows.append(np.clip(indices, start, start + clip_len - 1).astype(np.int64))
    return windows


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


# ---------------------------------------------------------------------------- views


@pytest.mark.parametrize(
    "size,R,views,resized,offsets",
    [
        ((1280, 720), 224, "center", (455, 256), [(16, 116)]),  # Python round(115.5) = 116
        ((480, 360), 224, "center", (341, 256), [(16, 58)]),  # round(58.5) = 58 (half to even)
        ((1280, 720), 384, "center", (778, 438), [(27, 197)]),  # short side int(438.86) = 438
        ((720, 1280), 224, "center", (256, 455), [(116, 16)]),
        ((1280, 720), 224, "3crop", (398, 224), [(0, 0), (0, 87), (0, 174)]),
        ((480, 360), 224, "3crop", (298, 224), [(0, 0), (0, 37), (0, 74)]),
        ((360, 480), 224, "3crop", (224, 298), [(0, 0), (37, 0), (74, 0)]),
        ((224, 224), 224, "3crop", (224, 224), [(0, 0)] * 3),
    ],
)
def test_view_geometry(size, R, views, resized, offsets):
    geo = view_geometry(*size, R, views)
    assert (geo.width, geo.height) == resized and list(geo.offsets) == offsets
    image = np.zeros((geo.height, geo.width, 3), np.uint8)
    assert crop_views(image, geo).shape == (num_views(views), R, R, 3)


def test_views_validated():
    assert (num_views("center"), num_views("3crop")) == (1, 3)
    with pytest.raises(ConfigError, match="unknown views 'five'"):
        num_views("five")
    geo = view_geometry(64, 48, 32, "center")
    with pytest.raises(ValueError, match="geometry expects"):
        crop_views(np.zeros((10, 10, 3), np.uint8), geo)


# ---------------------------------------------------------------------------- generated videos


def _image(width, height, index):
    """Red encodes the column, green the row, blue the frame index (mod 8, coarsely)."""
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = np.round(np.linspace(0, 255, width))[None, :]
    image[..., 1] = np.round(np.linspace(0, 255, height))[:, None]
    image[..., 2] = 32 * (index % 8)
    return image


def write_video(
    path,
    codec="libx264",
    fmt=None,
    n=24,
    size=(64, 48),
    pix_fmt="yuv420p",
    rate=30,
    rotation=None,
    options=None,
    container_options=None,
):
    width, height = size
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(rate))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_image(width, height, i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def write_audio(path, codec, fmt, sample_format):
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=16000)
        stream.layout = "mono"
        dtype = np.float32 if sample_format == "fltp" else np.int16
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), dtype), format=sample_format, layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


QUALITY = {"crf": "8", "preset": "ultrafast"}  # near-lossless, fast

GOOD = {  # name: (file name, write_video keyword arguments)
    "h264-mp4": ("clip.mp4", dict(codec="libx264", n=24, options=QUALITY)),
    "flv": ("clip.flv", dict(codec="flv", fmt="flv", n=24, options={"qscale": "2"})),
    "h264-mov": ("clip.mov", dict(codec="libx264", fmt="mov", n=24, options=QUALITY)),
    "vp8-webm": ("clip.webm", dict(codec="libvpx", n=12, options={"deadline": "realtime"})),
    "odd-mpeg4": ("odd.mp4", dict(codec="mpeg4", n=24, size=(97, 55), options={"qscale": "2"})),
    "odd-h264-444": (
        "odd444.mkv",
        dict(codec="libx264", n=24, size=(97, 55), pix_fmt="yuv444p", options=QUALITY),
    ),
    "ntsc-rate": (
        "ntsc.mp4",
        dict(codec="libx264", n=24, rate=Fraction(30000, 1001), options=QUALITY),
    ),
}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    return {name: (write_video(root / file, **kw), kw) for name, (file, kw) in GOOD.items()}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_decode_counts_what_was_written(videos, name):
    path, kw = videos[name]
    width, height = kw.get("size", (64, 48))
    video = decode_video(path, 32, "3crop", threads=1)
    assert video.n_frames == kw["n"] and video.lost_frames == 0
    assert video.frames.shape == (3, kw["n"], 32, 32, 3) and video.frames.dtype == np.uint8
    assert (video.width, video.height) == (width, height)
    assert video.fps == pytest.approx(float(kw.get("rate", 30)), rel=1e-6)
    assert video.path == path


def test_flv_header_has_no_frame_count(videos):
    path, kw = videos["flv"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # so the count above came from decoding
    assert decode_video(path, 16).n_frames == kw["n"] == count_decoded_frames(path)


def test_long_flv(tmp_path):
    path = write_video(tmp_path / "long.flv", codec="flv", fmt="flv", n=300, size=(32, 32))
    video = decode_video(path, 16)
    assert video.n_frames == 300 and video.frames.shape == (1, 300, 16, 16, 3)


def test_frame_buffer_grows_and_returns_the_written_frames():
    buffer = FrameBuffer(views=3, resolution=2, capacity=4)
    for t in range(9):
        buffer.next_slot()[:] = t
    frames = buffer.frames()
    assert buffer.data.shape[1] == 16 and frames.shape == (3, 9, 2, 2, 3)
    np.testing.assert_array_equal(frames[:, :, 0, 0, 0], np.tile(np.arange(9), (3, 1)))
    assert np.shares_memory(frames, buffer.data)  # a view: unwritten capacity is never touched


def _red_column(view):
    """The source column (0..1) that each column of a view shows, from the red channel."""
    return view[..., 0].astype(float).mean(axis=(0, 1)) / 255.0


@pytest.mark.parametrize("views", ["center", "3crop"])
def test_views_show_the_expected_region(tmp_path, views):
    W, H, R = 128, 72, 32
    path = write_video(tmp_path / "wide.mp4", n=3, size=(W, H), options=QUALITY)
    video = decode_video(path, R, views, threads=1)
    geo = view_geometry(W, H, R, views)
    for v, (top, left) in enumerate(geo.offsets):
        columns = left + np.arange(R) + 0.5  # pixel centres in the resized frame
        expected = np.clip((columns * W / geo.width - 0.5) / (W - 1), 0, 1)
        np.testing.assert_allclose(_red_column(video.frames[v]), expected, atol=0.03)
        rows = top + np.arange(R) + 0.5
        expected_rows = np.clip((rows * H / geo.height - 0.5) / (H - 1), 0, 1)
        green = video.frames[v, ..., 1].astype(float).mean(axis=(0, 2)) / 255.0
        np.testing.assert_allclose(green, expected_rows, atol=0.03)
    blue = video.frames[0, :, R // 2, R // 2, 2].astype(int)
    np.testing.assert_allclose(blue, [0, 32, 64], atol=6)  # frames in order


@pytest.mark.parametrize("views", ["center", "3crop"])  # numpy interleaves / swscale packs
def test_prepared_pixels_match_a_plain_rgb_resize(videos, views):
    path, _ = videos["odd-mpeg4"]
    video = decode_video(path, 32, views, threads=1)
    geo = view_geometry(97, 55, 32, views)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    rgb = frame.reformat(geo.width, geo.height, format="rgb24", interpolation="BILINEAR")
    expected = crop_views(rgb.to_ndarray(), geo)
    assert np.abs(expected.astype(int) - video.frames[:, 0]).max() <= 8  # RGB order, same geometry


# rotation (counter-clockwise) -> displayed size, sign of red's trend down the rows and across
# the columns, same for green. Red encodes the stored column, green the stored row.
TURNS = {
    90: ((48, 64), (-1, 0), (0, 1)),  # stored right edge on top, stored top on the left
    -90: ((48, 64), (1, 0), (0, -1)),  # a phone's "rotate=90": stored top on the right
    180: ((64, 48), (0, -1), (-1, 0)),
}


@pytest.mark.parametrize("views", ["center", "3crop"])
@pytest.mark.parametrize("rotation", sorted(TURNS))
def test_rotation_metadata_is_applied(tmp_path, rotation, views):
    size, red_trend, green_trend = TURNS[rotation]
    path = write_video(tmp_path / "turned.mp4", n=2, rotation=rotation, options=QUALITY)
    with av.open(str(path)) as container:
        assert next(container.decode(video=0)).rotation % 360 == rotation % 360
    video = decode_video(path, 16, views, threads=1)
    assert (video.width, video.height) == size
    for view in video.frames[:, 0].astype(float):
        for channel, trend in ((0, red_trend), (1, green_trend)):
            down, across = view[..., channel].mean(axis=1), view[..., channel].mean(axis=0)
            for profile, sign in ((down, trend[0]), (across, trend[1])):
                steps = np.diff(profile)
                assert (np.abs(steps) < 2).all() if sign == 0 else (sign * steps > 0).all()


def test_threads_do_not_change_the_result(videos):
    path, _ = videos["h264-mp4"]
    one, two, auto = (decode_video(path, 32, "3crop", threads=t) for t in (1, 2, 0))
    np.testing.assert_array_equal(one.frames, two.frames)
    np.testing.assert_array_equal(one.frames, auto.frames)


def test_video_shorter_than_one_clip(tmp_path):
    path = write_video(tmp_path / "short.mp4", n=20, options=QUALITY)
    video = decode_video(path, 16)
    clips = plan_clips(video.n_frames)
    # the reference pads: linspace(0, 20, 5) then frame 20, clipped to the last frame 19
    np.testing.assert_array_equal(clips, [[0, 5, 10, 15] + [19] * 12])
    gathered = gather_clips(video.frames, clips)
    assert gathered.shape == (1, 1, 16, 16, 16, 3)
    np.testing.assert_array_equal(gathered[0, 0, -1], video.frames[0, 19])


def test_decode_arguments_validated(videos):
    path, _ = videos["h264-mp4"]
    with pytest.raises(ConfigError, match="unknown views"):
        decode_video(path, 32, "corners")
    with pytest.raises(ValueError, match="need resolution >= 1 and threads >= 0, got 0, 0"):
        decode_video(path, 0)


# ---------------------------------------------------------------------------- bad inputs


def _truncate(source, target, keep):
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * keep)])
    return target


def _overwrite(source, target, start, length, seed=0):
    data = bytearray(source.read_bytes())
    noise = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    data[start : start + length] = noise
    target.write_bytes(bytes(data))
    return target


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """Incompressible 60-frame videos (so damage lands in frame data), mp4 with the index at the
    end (default) and at the start (faststart), and FLV."""
    root = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(0)
    out = {}
    for name, fmt, codec, options in [
        ("end.mp4", "mp4", "libx264", {}),
        ("start.mp4", "mp4", "libx264", {"movflags": "faststart"}),
        ("noisy.flv", "flv", "flv", {}),
    ]:
        with av.open(str(root / name), "w", format=fmt, options=options) as container:
            stream = container.add_stream(codec, rate=30)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.options = {"preset": "ultrafast"} if codec == "libx264" else {}
            for _ in range(60):
                image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        out[name] = root / name
    return out


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="no such file") as info:
        decode_video(tmp_path / "nowhere.mp4", 32)
    assert info.value.path == tmp_path / "nowhere.mp4"


def test_directory(tmp_path):
    """A folder is a frame folder (vjfer.frame_folders); one without frames is named as such."""
    with pytest.raises(VideoError, match="empty frame folder: no .jpg/.png frames"):
        decode_video(tmp_path, 32)


def test_zero_byte_file(tmp_path):
    (tmp_path / "1064_TIE_SAD_XX.flv").touch()
    with pytest.raises(VideoError, match=r"empty file \(0 bytes\)") as info:
        decode_video(tmp_path / "1064_TIE_SAD_XX.flv", 32)
    assert info.value.path.name == "1064_TIE_SAD_XX.flv"


def test_text_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match="not a readable video") as info:
        decode_video(path, 32)
    assert isinstance(info.value.__cause__, av.FFmpegError)


@pytest.mark.parametrize(
    "name,codec,fmt,sample_format",
    [("speech.m4a", "aac", "mp4", "fltp"), ("speech.wav", "pcm_s16le", "wav", "s16")],
)
def test_audio_only_file(tmp_path, name, codec, fmt, sample_format):
    path = write_audio(tmp_path / name, codec, fmt, sample_format)
    with pytest.raises(VideoError, match=r"no video stream \(streams: audio\)"):
        decode_video(path, 32)


def test_truncated_mp4_without_its_index(noisy, tmp_path):
    path = _truncate(noisy["end.mp4"], tmp_path / "cut.mp4", 0.5)  # moov atom was at the end
    with pytest.raises(VideoError, match="not a readable video"):
        decode_video(path, 32)


def test_truncated_mp4_keeps_what_decodes(noisy, tmp_path, caplog):
    path = _truncate(noisy["start.mp4"], tmp_path / "cut.mp4", 0.5)
    with caplog.at_level(logging.WARNING, logger="vjfer.video"):
        video = decode_video(path, 32, threads=1)
    assert 0 < video.n_frames < 60 and video.lost_frames == 60 - video.n_frames
    assert "frames lost" in caplog.text


@pytest.mark.parametrize("name", ["end.mp4", "noisy.flv"])
def test_corrupt_middle_keeps_what_decodes(noisy, tmp_path, name):
    source = noisy[name]
    path = _overwrite(source, tmp_path / name, source.stat().st_size // 2, 1500)
    video = decode_video(path, 32, threads=1)
    assert video.lost_frames > 0 and 30 < video.n_frames < 60
    assert video.n_frames + video.lost_frames <= 60


def test_truncated_flv_keeps_what_decodes(noisy, tmp_path):
    path = _truncate(noisy["noisy.flv"], tmp_path / "cut.flv", 0.5)
    video = decode_video(path, 32, threads=1)
    # The last, partial frame is flagged corrupt and dropped; FLV has no index, so frames cut
    # off after it cannot be counted.
    assert 10 < video.n_frames < 40 and video.lost_frames == 1


@pytest.mark.parametrize("name", ["end.mp4", "noisy.flv"])
def test_no_decodable_frame(noisy, tmp_path, name):
    source = noisy[name]
    data = source.read_bytes()
    if name.endswith(".mp4"):  # every byte of the mdat payload: the index stays, the frames go
        at = data.find(b"mdat")
        start, end = at + 4, at - 4 + int.from_bytes(data[at - 4 : at], "big")
    else:  # everything after the FLV header and the first tags
        start, end = 400, len(data)
    path = _overwrite(source, tmp_path / name, start, end - start)
    with pytest.raises(VideoError, match="no decodable frame"):
        decode_video(path, 32)
    with pytest.raises(VideoError, match="no decodable frame"):
        count_decoded_frames(path)


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


def test_normalize_clips():
    clips = torch.randint(0, 256, (2, 16, 8, 8, 3), dtype=torch.uint8)
    x = normalize_clips(clips)
    assert x.shape == (2, 3, 16, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = ((clips.float() / 255 - mean) / std).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expected uint8 clips"):
        normalize_clips(clips.float())


@pytest.mark.cuda  # skipped by conftest.py without a GPU
def test_normalize_clips_on_gpu():
    clips = torch.randint(0, 256, (1, 16, 8, 8, 3), dtype=torch.uint8)
    x = normalize_clips(clips.cuda())
    assert x.device.type == "cuda"
    torch.testing.assert_close(x.cpu(), normalize_clips(clips))


def test_a_truncated_file_decodes_the_same_frames_at_any_thread_count(tmp_path, truncated_mp4):
    """Frame threads lost the frames in flight at the cut (12 of 76 with 2+ threads, 14 with 1)."""
    path = tmp_path / "cut.mp4"
    truncated_mp4(path)
    videos = [decode_video(path, 32, threads=t) for t in (0, 1, 2, 4)]
    assert {(v.n_frames, v.lost_frames, v.container_frames) for v in videos} == {(14, 62, 76)}
    for v in videos[1:]:
        np.testing.assert_array_equal(v.frames, videos[0].frames)
    assert videos[0].source.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert videos[0].source.size == path.stat().st_size


def test_decoding_past_the_timeout_is_an_error(videos, monkeypatch):
    path = videos[sorted(videos)[0]][0]
    clock = iter(range(0, 10_000, 5))  # every look at the clock: 5 s later
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    with pytest.raises(VideoError, match=r"decoding timed out after 12 s \(--decode-timeout\)"):
        decode_video(path, 32, timeout=12)


def test_lfs_pointers_and_broken_links_are_named(tmp_path):
    pointer = tmp_path / "a.mp4"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12345\n")
    with pytest.raises(VideoError, match=r"a.mp4: a git-LFS pointer, not a video: .*git lfs pull"):
        decode_video(pointer, 32)
    link = tmp_path / "b.mp4"
    link.symlink_to(tmp_path / "annex" / "missing-object")
    with pytest.raises(
        VideoError, match=r"b.mp4: link target missing: fetch it with `git annex get`"
    ):
        decode_video(link, 32)
