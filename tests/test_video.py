"""vjfer.video and vjfer.decode: decoding generated files (counts, rates, rotation, views of the
decoded frames), bad inputs."""

from __future__ import annotations

import hashlib
import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vjfer.clips import gather_clips, plan_clips
from vjfer.decode import decode_video
from vjfer.errors import ConfigError, VideoError
from vjfer.prepare import (
    crop_views,
    view_geometry,
)

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
    assert decode_video(path, 16).n_frames == kw["n"]


def test_long_flv(tmp_path):
    path = write_video(tmp_path / "long.flv", codec="flv", fmt="flv", n=300, size=(32, 32))
    video = decode_video(path, 16)
    assert video.n_frames == 300 and video.frames.shape == (1, 300, 16, 16, 3)


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
