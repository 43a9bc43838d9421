"""Frame folders as videos (vjfer.frame_folders): natural order, the same preparation as a decoded
file, lost and missing frames counted, a content identity, and the path from `decode_video`."""

from __future__ import annotations

import io
import json
import os
import zlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli
from vjfer.cache import open_cache
from vjfer.cache.format import MANIFEST
from vjfer.decode import decode_native, decode_video, source_identity
from vjfer.errors import VideoError
from vjfer.extract import ExtractConfig, extract, plan_extraction
from vjfer.frame_folders import FOLDER_FPS, frame_files, missing_frames
from vjfer.synthetic import write_video
from vjfer.synthetic_frames import make_dfew, write_frames


def _frames(n: int = 12, size=(48, 32)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, size[1], size[0], 3), dtype=np.uint8)  # [T, H, W, 3]


@pytest.fixture()
def folder(tmp_path):
    frames = _frames()
    for i, frame in enumerate(frames, start=1):  # 1.png ... 12.png: natural, not text, order
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
    return tmp_path, frames


def test_files_are_in_natural_order(folder):
    path, _ = folder
    assert [f.name for f in frame_files(path)][:3] == ["1.png", "2.png", "3.png"]
    assert [f.name for f in frame_files(path)][-3:] == ["10.png", "11.png", "12.png"]


def test_a_folder_is_prepared_exactly_as_the_same_frames_in_a_video_file(folder, tmp_path):
    """PNG frames vs the same frames in a lossless rgb24 video: identical views, center at 224,
    3crop and whole (48x32 squashed to 24x24)."""
    path, frames = folder
    video = tmp_path / "same.mov"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("png", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 48, 32, "rgb24"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    for resolution, views in ((224, "center"), (40, "3crop"), (24, "whole")):
        a, b = decode_video(path, resolution, views), decode_video(video, resolution, views)
        assert a.frames.shape == b.frames.shape == (len(b.frames), 12, resolution, resolution, 3)
        np.testing.assert_array_equal(a.frames, b.frames)
    assert (a.n_frames, a.lost_frames, a.fps, a.width, a.height) == (12, 0, FOLDER_FPS, 48, 32)
    np.testing.assert_array_equal(decode_native(path, np.array([0, 11])), frames[[0, 11]])


def test_whole_at_the_frames_own_size_is_the_frames(tmp_path):
    """`whole` on 32x32 frames at R = 32: nothing is resized, from a folder and from a lossless
    video of the same frames alike: the views are the frames, pixel for pixel."""
    frames = _frames(6, (32, 32))
    write_frames(tmp_path / "f", frames, "{i}.png")
    video = tmp_path / "same.mov"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("png", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    for source in (tmp_path / "f", video):
        np.testing.assert_array_equal(decode_video(source, 32, "whole").frames[0], frames)


def test_whole_with_a_face_crop_is_the_crop_resized(folder, tmp_path):
    """`whole` with a crop box resizes the box alone to R×R: the views of frames cut beforehand."""
    path, frames = folder
    write_frames(tmp_path / "cut", frames[:, 4:28, 10:40], "{i}.png")  # box (10, 4, 30, 24)
    np.testing.assert_array_equal(
        decode_video(path, 16, "whole", crop=(10, 4, 30, 24)).frames,
        decode_video(tmp_path / "cut", 16, "whole").frames,
    )


def test_unreadable_and_missing_frames_are_lost_frames(folder):
    path, _ = folder
    (path / "5.png").write_bytes(b"not an image")
    (path / "8.png").unlink()  # a gap in 1..12
    video = decode_video(path, 32)
    assert (video.n_frames, video.lost_frames, video.container_frames) == (10, 2, 12)
    assert missing_frames(frame_files(path)) == 1


def test_identity_follows_the_files_content(folder):
    path, _ = folder
    first = source_identity(path, "clip")
    assert first == source_identity(path, "clip") and first.path == "clip"
    (path / "3.png").rename(path / "13.png")  # the same bytes in another frame position
    assert source_identity(path, "clip").sha256 != first.sha256


def test_an_empty_folder_is_a_video_error(tmp_path):
    with pytest.raises(VideoError, match="empty frame folder: no .jpg/.png frames"):
        decode_video(tmp_path, 32)


@pytest.mark.parametrize("views", ["center", "whole"])
def test_frames_of_another_size_are_resized_each_on_its_own(tmp_path, views):
    """48x32, 32x40, 48x32: the middle frame gets its own geometry (as if it were alone in a
    folder), is counted, and the folder keeps the first frame's size."""
    mixed, alone = tmp_path / "mixed", tmp_path / "alone"
    mixed.mkdir()
    alone.mkdir()
    odd = _frames(1, (32, 40))[0]
    for i, frame in enumerate([_frames(1)[0], odd, _frames(2)[1]], start=1):
        Image.fromarray(frame).save(mixed / f"{i}.png")
    Image.fromarray(odd).save(alone / "1.png")
    video = decode_video(mixed, 24, views)
    assert (video.n_frames, video.odd_size_frames, video.width, video.height) == (3, 1, 48, 32)
    np.testing.assert_array_equal(video.frames[:, 1], decode_video(alone, 24, views).frames[:, 0])
    assert decode_video(alone, 24, views).odd_size_frames == 0
    # native frames (for --augment) stack: the odd one resized to the first frame's 48x32
    assert decode_native(mixed, np.array([0, 1, 2])).shape == (3, 32, 48, 3)
    # a face-crop box is checked against every frame: 40 px wide does not fit the 32 px one
    with pytest.raises(VideoError, match=r"crop box \(0, 0, 40, 30\) is not inside the 32x40"):
        decode_video(mixed, 24, views, crop=(0, 0, 40, 30))


def _same_size_other_jpeg(path: Path) -> bytes:
    """A JPEG of other pixels (a flat grey frame of the same shape) padded with a comment segment
    to exactly the byte size of the file at `path`."""
    old = path.read_bytes()
    with Image.open(path) as image:
        size = image.size
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, "JPEG", quality=50)
    new = buf.getvalue()
    pad = len(old) - len(new) - 4  # FF FE, a 2-byte length, the comment
    assert 0 <= pad < 65534, (len(old), len(new))
    new = new[:2] + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"\0" * pad + new[2:]
    assert len(new) == len(old) and new != old
    return new


def test_a_frame_rewritten_at_the_same_size_is_re_encoded(tmp_path):
    """A DFEW frame replaced by other pixels of the same byte size, name and mtime_ns: the folder
    identity's content digest (not its size or mtime) sends that clip's shard to be re-encoded."""
    root = make_dfew(tmp_path / "DFEW", clips_per_class=1)
    config = ExtractConfig(
        dataset="dfew",
        root=root,
        cache_root=tmp_path / "cache",
        encoder="tiny",
        shard_size=3,
        workers=0,
    )
    first = extract(config, progress=False, plan=plan_extraction(config))
    with open_cache(first.cache_dir) as c:
        clip = str(c.videos.video_id[0])  # in shard 0
        before = c.tokens(clip)
    folder = root / "Clip" / "clip_224x224" / clip
    frame = frame_files(folder)[0]  # in every plan's first clip
    identity, st = source_identity(folder), frame.stat()
    frame.write_bytes(_same_size_other_jpeg(frame))
    os.utime(frame, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = source_identity(folder)
    assert (now.size, now.mtime_ns) == (identity.size, identity.mtime_ns)  # stat cannot tell
    assert now.xxh3 != identity.xxh3 and now.sha256 != identity.sha256
    again = extract(config, progress=False, plan=plan_extraction(config))
    assert (again.shards_written, again.shards_skipped) == (1, 2)
    with open_cache(again.cache_dir) as c:
        assert not np.array_equal(c.tokens(clip), before)  # the new frame's tokens
    rows = json.loads((again.cache_dir / MANIFEST).read_text())["videos"]
    assert next(r for r in rows if r["video_id"] == clip)["source"]["xxh3"] == now.xxh3


def test_extract_views_whole_on_a_jpg_224_release(tmp_path):
    """`vjfer extract --views whole` on a DFEW copy that ships Clip/jpg_224: one view a clip, the
    view recorded (a fingerprint input), the tokens of whole frames; `center` is another cache.
    A frame of another size in one folder is resized on its own and counted in the cache."""
    root = make_dfew(tmp_path / "DFEW", clips_per_class=1, frame_dir="Clip/jpg_224")
    odd = sorted((root / "Clip" / "jpg_224").iterdir())[0]
    last = sorted(odd.iterdir())[-1]
    Image.open(last).resize((160, 120)).save(last)
    for views in ("whole", "center"):
        run_cli(
            "extract",
            *("--dataset", "dfew", "--root", root, "--cache", tmp_path / "cache", "--encoder"),
            *("tiny", "--workers", "0", "--device", "cpu", "--no-progress", "--views", views),
        )
    made = {
        json.loads((p / MANIFEST).read_text())["settings"]["views"]: p
        for p in (tmp_path / "cache" / "dfew").iterdir()
    }
    whole, center = made["whole"], made["center"]
    assert whole.name != center.name
    with open_cache(whole) as c, open_cache(center) as d:
        assert c.num_views == d.num_views == 1 and len(c) == len(d) == 7
        assert json.loads((whole / MANIFEST).read_text())["config"]["views"] == "whole"
        clip = str(c.videos.video_id[0])
        assert not np.array_equal(c.tokens(clip), d.tokens(clip))  # other pixels, other tokens
    videos = json.loads((whole / MANIFEST).read_text())["videos"]
    assert [(v["video_id"], v["odd_size_frames"]) for v in videos if v.get("odd_size_frames")] == [
        (odd.name, 1)
    ]
    info = run_cli("cache", "info", whole)
    assert (
        "odd sizes   1 frame folders hold frames of another size than their first (1 frames" in info
    )


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few bytes whose header declares width x height grey pixels (a decompression
    bomb: PIL learns the size from the header, before any pixel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_every_bad_frame_kind_costs_a_frame_never_the_run(tmp_path):
    """Issue 32: a folder, a broken and a self-looping link, a FIFO and a decompression bomb, each
    named like a frame, in five clips of a DFEW tree: the extraction finishes, every clip encoded,
    each bad entry a lost frame; a FIFO is never opened (it would block)."""
    root = make_dfew(tmp_path / "DFEW", clips_per_class=1, frames=(20,))
    clips = sorted((root / "Clip" / "clip_224x224").iterdir())[:5]
    (clips[0] / f"{clips[0].name}_00021.jpg").mkdir()
    (clips[1] / f"{clips[1].name}_00021.jpg").symlink_to(tmp_path / "nowhere.jpg")
    loop = clips[2] / f"{clips[2].name}_00021.jpg"
    loop.symlink_to(loop)
    os.mkfifo(clips[3] / f"{clips[3].name}_00021.jpg")
    (clips[4] / f"{clips[4].name}_00021.png").write_bytes(_png_declaring(15000, 15000))
    run_cli(
        "extract",
        *("--dataset", "dfew", "--root", root, "--cache", tmp_path / "cache", "--encoder"),
        *("tiny", "--workers", "0", "--device", "cpu", "--no-progress", "--decode-timeout", "60"),
    )
    (cache,) = (tmp_path / "cache" / "dfew").iterdir()
    videos = {v["video_id"]: v for v in json.loads((cache / MANIFEST).read_text())["videos"]}
    assert all(v["status"] == "ok" for v in videos.values()) and len(videos) == 7
    for clip in clips:
        assert (videos[clip.name]["n_frames"], videos[clip.name]["lost_frames"]) == (20, 1)


def test_a_16_bit_frame_folder_equals_its_8_bit_twin(tmp_path):
    """16-bit grey PNG frames (`I;16`) are scaled to their top 8 bits, as their 8-bit twin holds
    them, not clipped to white: the same prepared frames, so the same tokens."""
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, size=(4, 40, 48), dtype=np.uint16)
    for name, frames in (("deep", deep), ("twin", (deep >> 8).astype(np.uint8))):
        (tmp_path / name).mkdir()
        for i, frame in enumerate(frames):  # uint16 -> mode I;16, uint8 -> L
            Image.fromarray(frame).save(tmp_path / name / f"{i + 1}.png")
    with Image.open(tmp_path / "deep" / "1.png") as probe:
        assert probe.mode.startswith("I")  # PIL reads them as 16-bit, the case under test
    a, b = (decode_video(tmp_path / n, 32, "whole") for n in ("deep", "twin"))
    assert a.lost_frames == b.lost_frames == 0
    np.testing.assert_array_equal(a.frames, b.frames)
    assert 20 < a.frames.mean() < 235  # grey noise, not a white frame


def test_max_frame_pixels_bounds_folders_and_files(tmp_path):
    """`--max-frame-pixels`: a larger frame of a folder is a lost frame (all of them: no frame to
    decode), a video file of larger frames a VideoError naming the option, before decoding."""
    frames = np.random.default_rng(0).integers(0, 255, (3, 40, 48, 3), dtype=np.uint8)
    write_frames(tmp_path / "f", frames, "{i}.png")
    assert decode_video(tmp_path / "f", 32, "whole", max_pixels=40 * 48).n_frames == 3
    with pytest.raises(VideoError, match=r"no decodable frame \(3 of 3 files failed\)"):
        decode_video(tmp_path / "f", 32, "whole", max_pixels=40 * 48 - 1)
    write_video(tmp_path / "v.mp4", frames, Fraction(25), "mp4")
    assert decode_video(tmp_path / "v.mp4", 32, "whole", max_pixels=40 * 48).n_frames == 3
    with pytest.raises(VideoError, match=r"48x40 frames, more than --max-frame-pixels 100"):
        decode_video(tmp_path / "v.mp4", 32, "whole", max_pixels=100)
