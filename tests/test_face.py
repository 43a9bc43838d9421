"""Face crops: box geometry, the boxes CSV, OpenCV's Haar cascade following a real face photograph
(scikit-image's astronaut) moved and scaled across the frames of a real H.264 file, a faceless
video, and extraction with --face-crop (boxes stored, counts in `cache info`, `none`
byte-identical)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vjfer.cache import cache_info, open_cache
from vjfer.cli import cli
from vjfer.decode import decode_video
from vjfer.errors import ConfigError, VideoError
from vjfer.face import (
    Box,
    FaceCropConfig,
    FaceCropper,
    config_from_settings,
    detect_faces,
    face_settings,
    median_box,
    parse_face_crop,
    read_boxes,
    square_box,
)
from vjfer.synthetic import RAVDESS_FPS, make_ravdess, ravdess_name, write_video

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

SIZE = (320, 240)  # (width, height)
FRAMES = 40
PORTRAIT = (20, 130, 200, 190)  # (top, left, height, width) of the astronaut photo's head region
FACE_IN_PHOTO = (177, 66, 95, 95)  # (x, y, w, h) the cascade finds in the full 512² photo


def portrait_path(t: float) -> tuple[int, int, float]:
    """Where the head is pasted at time t in [0, 1]: (left, top, scale) — moves right and grows."""
    return round(10 + 120 * t), round(20 + 10 * t), 0.6 + 0.25 * t


def expected_face(t: float) -> np.ndarray:
    """The face box (x, y, w, h) in frame pixels at time t, from the paste transform."""
    left, top, scale = portrait_path(t)
    x, y, w, h = FACE_IN_PHOTO
    py, px = PORTRAIT[0], PORTRAIT[1]
    return np.array([left + (x - px) * scale, top + (y - py) * scale, w * scale, h * scale])


def face_frames(n: int = FRAMES) -> np.ndarray:
    """uint8 [T, H, W, 3]: the astronaut's head on a grey-blue wall, moving and growing."""
    photo = skimage_data.astronaut()
    top, left, h, w = PORTRAIT
    head = photo[top : top + h, left : left + w]
    frames = np.empty((n, SIZE[1], SIZE[0], 3), np.uint8)
    for i in range(n):
        frames[i] = (90, 100, 120)
        x, y, scale = portrait_path(i / (n - 1))
        patch = cv2.resize(head, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        ph, pw = patch.shape[:2]
        frames[i, y : y + ph, x : x + pw] = patch[: SIZE[1] - y, : SIZE[0] - x]
    return frames


def faceless_frames(n: int = FRAMES) -> np.ndarray:
    """A moving gradient: texture, no face."""
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    return np.stack(
        [np.stack([(xs + 3 * i) % 256, (ys * 2) % 256, (xs + ys) % 256], -1) for i in range(n)]
    ).astype(np.uint8)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("faces")
    paths = {"face": tmp / "face.mp4", "none": tmp / "none.mp4"}
    write_video(paths["face"], face_frames(), RAVDESS_FPS, "mp4")
    write_video(paths["none"], faceless_frames(), RAVDESS_FPS, "mp4")
    return paths


# --- geometry and the CSV ------------------------------------------------------------------------


def test_square_box_margin_clamp_and_shift():
    assert square_box(Box(100, 50, 40, 60), 320, 240, 0.25) == Box(75, 35, 90, 90)  # 60 · 1.5
    assert square_box(Box(0, 0, 40, 40), 320, 240, 0.5) == Box(0, 0, 80, 80)  # shifted inside
    assert square_box(Box(300, 200, 40, 40), 320, 240, 0.0) == Box(280, 200, 40, 40)
    assert square_box(Box(10, 10, 300, 300), 320, 240, 0.2) == Box(40, 0, 240, 240)  # short side
    with pytest.raises(ValueError, match="empty box"):
        square_box(Box(0, 0, 0, 5), 320, 240, 0.2)


def test_median_box_ignores_an_outlier():
    boxes = np.array(
        [[10, 10, 20, 20], [12, 10, 20, 20], [200, 150, 90, 90], [11, 11, 20, 20], [11, 10, 20, 20]]
    )
    assert median_box(boxes) == Box(11, 10, 20, 20)


def test_read_boxes_and_its_errors(tmp_path):
    good = tmp_path / "b.csv"
    good.write_text("video_id,x,y,w,h\na,1,2,30,40\nb,5.0,6,7,8\n")
    assert read_boxes(good) == {"a": Box(1, 2, 30, 40), "b": Box(5, 6, 7, 8)}
    (tmp_path / "c.csv").write_text("video,x,y,w,h\na,1,2,3,4\n")
    with pytest.raises(ConfigError, match="c.csv: needs the header video_id,x,y,w,h"):
        read_boxes(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("video_id,x,y,w,h\na,1,2,x,4\n")
    with pytest.raises(ConfigError, match="d.csv, line 2: x, y, w, h must be numbers"):
        read_boxes(tmp_path / "d.csv")
    (tmp_path / "e.csv").write_text("video_id,x,y,w,h\na,1,2,3,4\na,1,2,3,4\n")
    with pytest.raises(ConfigError, match="e.csv, line 3: video_id 'a' repeats"):
        read_boxes(tmp_path / "e.csv")
    (tmp_path / "f.csv").write_text("video_id,x,y,w,h\na,1,2,0,4\n")
    with pytest.raises(ConfigError, match="f.csv, line 2: w and h must be >= 1"):
        read_boxes(tmp_path / "f.csv")


def test_parse_face_crop(tmp_path):
    assert parse_face_crop("none").method == "none"
    assert parse_face_crop("haar", "full", 0.3) == FaceCropConfig("haar", None, "full", 0.3)
    with pytest.raises(ConfigError, match="boxes:nope.csv: no such file"):
        parse_face_crop("boxes:nope.csv")
    with pytest.raises(ConfigError, match="must be none, haar or boxes:FILE"):
        parse_face_crop("mtcnn")
    with pytest.raises(ConfigError, match="face fallback must be one of"):
        parse_face_crop("haar", "skip")


def test_settings_round_trip_and_none_adds_nothing(tmp_path):
    assert face_settings(FaceCropConfig()) is None  # whole frames: the fingerprint is unchanged
    haar = FaceCropConfig("haar", fallback="full", margin=0.3, sample_every=4)
    settings = face_settings(haar)
    assert settings["cascade"] == "haarcascade_frontalface_default.xml"
    assert settings["opencv"] == cv2.__version__
    assert config_from_settings(settings) == haar  # predict crops new videos alike
    (tmp_path / "b.csv").write_text("video_id,x,y,w,h\na,1,2,3,4\n")
    boxes = face_settings(parse_face_crop(f"boxes:{tmp_path / 'b.csv'}"))
    assert boxes["boxes_file"] == "b.csv" and len(boxes["boxes_sha256"]) == 64
    assert "min_neighbors" not in boxes  # detector settings only where a detector runs
    with pytest.raises(ConfigError, match="cropped with --face-crop boxes:b.csv, .* need haar"):
        config_from_settings(boxes)


# --- the Haar cascade on a real face ------------------------------------------------------------


def test_haar_box_follows_the_face(videos):
    track = detect_faces(videos["face"], FaceCropConfig("haar"))
    assert (track.width, track.height) == SIZE
    assert track.frames.tolist() == [0, 8, 16, 24, 32]
    assert len(track.found) == len(track.frames)  # the face is found in every sampled frame
    for index, box in zip(track.frames, track.boxes, strict=True):
        want = expected_face(index / (FRAMES - 1))
        centre, want_centre = box[:2] + box[2:] / 2, want[:2] + want[2:] / 2
        assert np.abs(centre - want_centre).max() < 0.05 * want[2], (index, box, want)
        assert 0.9 < box[2] / want[2] < 1.1, (index, box, want)
    assert np.all(np.diff(track.boxes[:, 0]) > 0)  # moves right ...
    assert track.boxes[-1, 2] > 1.2 * track.boxes[0, 2]  # ... and grows


def test_haar_crop_is_one_square_median_box(videos):
    result = FaceCropper(FaceCropConfig("haar", margin=0.2)).locate(videos["face"], "face")
    assert result.status == "cropped"
    box = result.box
    mid = expected_face(16 / (FRAMES - 1))  # the median sampled frame
    assert box.w == box.h and box.x >= 0 and box.y + box.h <= SIZE[1]
    assert abs(box.x + box.w / 2 - (mid[0] + mid[2] / 2)) < 0.05 * mid[2]
    assert 1.4 * 0.9 * mid[2] < box.w < 1.4 * 1.1 * mid[2]  # longer side · (1 + 2 · margin)
    video = decode_video(videos["face"], 64, crop=(box.x, box.y, box.w, box.h))
    assert video.frames.shape == (1, FRAMES, 64, 64, 3) and (video.width, video.height) == SIZE
    with pytest.raises(VideoError, match="crop box .* is not inside the 320x240 frame"):
        decode_video(videos["face"], 64, crop=(300, 0, 100, 100))


def test_haar_on_a_frame_folder_finds_the_face_and_crops_it(tmp_path):
    """A folder of PNG frames (DFEW-like releases) is detected on and cropped like a video file:
    the boxes follow the drawn face, and the crop goes through the folder's own decoding."""
    folder = tmp_path / "00001"
    folder.mkdir()
    frames = face_frames(17)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    track = detect_faces(folder, FaceCropConfig("haar"))
    assert (track.width, track.height) == SIZE and track.frames.tolist() == [0, 8, 16]
    assert len(track.found) == 3
    for index, box in zip(track.frames, track.boxes, strict=True):
        want = expected_face(index / (len(frames) - 1))
        assert np.abs(box[:2] + box[2:] / 2 - want[:2] - want[2:] / 2).max() < 0.05 * want[2]
    result = FaceCropper(FaceCropConfig("haar", margin=0.2)).locate(folder, "00001")
    assert result.status == "cropped"
    x, y, w, h = result.box.x, result.box.y, result.box.w, result.box.h
    video = decode_video(folder, 32, crop=(x, y, w, h))
    assert video.frames.shape == (1, 17, 32, 32, 3) and (video.width, video.height) == SIZE


def test_faceless_video_fails_or_falls_back(videos):
    with pytest.raises(VideoError, match="no face: the Haar cascade found a face in 0 of 5"):
        FaceCropper(FaceCropConfig("haar")).locate(videos["none"], "none")
    result = FaceCropper(FaceCropConfig("haar", fallback="full")).locate(videos["none"], "none")
    assert (result.box, result.status) == (None, "fallback")


# --- extraction ---------------------------------------------------------------------------------


def run(*args, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def face_dataset(root: Path) -> dict[str, str]:
    """RAVDESS-named videos of the moving astronaut, one actor per fold; actor 1's happy trial
    has no face. Returns video_id -> kind."""
    kinds = {}
    for actor in (2, 3, 10, 8, 1):
        for emotion in (1, 3):
            folder = root / f"Actor_{actor:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = ravdess_name(2, 1, emotion, 1, 1, 1, actor)
            faceless = (actor, emotion) == (1, 3)
            frames = faceless_frames() if faceless else face_frames()[:: 1 if emotion == 1 else -1]
            write_video(folder / f"{name}.mp4", frames, RAVDESS_FPS, "mp4")
            kinds[name] = "none" if faceless else "face"
    return kinds


@pytest.mark.slow
def test_extract_haar_stores_boxes_and_counts(tmp_path):
    root, cache = tmp_path / "RAVDESS", tmp_path / "cache"
    kinds = face_dataset(root)
    base = [
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        root,
        "--encoder",
        "tiny",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    run(*base, "--cache", cache / "haar", "--face-crop", "haar", code=2)  # one video failed
    (directory,) = (cache / "haar" / "ravdess").iterdir()
    info = cache_info(directory)
    assert info["face"] == {"method": "haar", "cropped": 9, "fallback": 0, "failed": 1}
    (failure,) = info["failures"]
    assert kinds[failure["video_id"]] == "none" and failure["reason"].startswith("no face: ")
    assert info["settings"]["face_crop"]["method"] == "haar"
    assert info["settings"]["face_crop"]["cascade"] == "haarcascade_frontalface_default.xml"
    text = run("cache", "info", directory)
    assert "face crop   haar: 9 cropped, 0 fell back to the whole frame, 1 failed (no face)" in text
    videos = open_cache(directory).videos
    assert set(videos["face_status"]) == {"cropped"}
    boxes = np.array(videos["face_box"].tolist())
    assert (boxes[:, 2] == boxes[:, 3]).all() and (boxes[:, 2] > 80).all()  # square, face-sized
    with h5py.File(directory / "shard-00000.h5") as f:
        assert f["face_box"].shape == (9, 4) and f["face_box"].dtype == np.int32

    run(*base, "--cache", cache / "full", "--face-crop", "haar", "--face-fallback", "full")
    (full,) = (cache / "full" / "ravdess").iterdir()
    assert cache_info(full)["face"] == {"method": "haar", "cropped": 9, "fallback": 1, "failed": 0}
    manifest = json.loads((full / "manifest.json").read_text())
    (fallback,) = [v for v in manifest["videos"] if v["face_status"] == "fallback"]
    assert kinds[fallback["video_id"]] == "none" and fallback["face_box"] is None
    assert (
        manifest["fingerprint"]
        != json.loads((directory / "manifest.json").read_text())["fingerprint"]
    )  # the fallback is a fingerprint input


@pytest.mark.slow
def test_extract_boxes_file_and_none_is_byte_identical(tmp_path):
    root, cache = tmp_path / "RAVDESS", tmp_path / "cache"
    make_ravdess(root, actors=(1, 2), emotions=(1, 3), modalities=(2,), seed=5)
    base = [
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        root,
        "--encoder",
        "tiny",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    run(*base, "--cache", cache / "default")
    run(*base, "--cache", cache / "none", "--face-crop", "none")
    (a,), (b,) = (cache / "default" / "ravdess").iterdir(), (cache / "none" / "ravdess").iterdir()
    assert a.name == b.name  # same fingerprint prefix
    for shard in sorted(a.glob("shard-*.h5")):
        assert shard.read_bytes() == (b / shard.name).read_bytes()
        with h5py.File(shard) as f:
            assert "face_box" not in f and "face_crop" not in json.loads(f.attrs["settings"])
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (a, b)]
    assert "face_crop" not in manifests[0]["config"]  # as written before face crops existed
    for m in manifests:
        m["config"].pop("cache_root")
    assert manifests[0] == manifests[1]
    ids = sorted(open_cache(a).videos["video_id"])
    boxes = tmp_path / "boxes.csv"
    pd.DataFrame({"video_id": ids[1:], "x": 40, "y": 10, "w": 50, "h": 60}).to_csv(
        boxes, index=False
    )
    run(*base, "--cache", cache / "boxes", "--face-crop", f"boxes:{boxes}", code=2)
    (c,) = (cache / "boxes" / "ravdess").iterdir()
    info = cache_info(c)
    assert info["face"] == {"method": "boxes", "cropped": 3, "fallback": 0, "failed": 1}
    assert info["failures"][0]["video_id"] == ids[0]
    assert "no row for" in info["failures"][0]["reason"]
    assert info["settings"]["face_crop"]["boxes_file"] == "boxes.csv"
    # 60 · 1.4 = 84 px square around the box's centre (65, 40), shifted inside the 90-row frame
    assert open_cache(c).videos["face_box"].tolist()[0] == [23, 0, 84, 84]


@pytest.mark.slow
def test_face_and_whole_frame_runs_compare_and_predict(tmp_path):
    """The issue's check: probe a whole-frame and a face-cropped cache of the same videos,
    `vjfer compare` them, and predict with the face run (which crops the new video alike)."""
    root, cache, runs = tmp_path / "RAVDESS", tmp_path / "cache", tmp_path / "runs"
    kinds = face_dataset(root)
    base = [
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        root,
        "--encoder",
        "tiny",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    run(*base, "--cache", cache / "none")
    run(*base, "--cache", cache / "haar", "--face-crop", "haar", "--face-fallback", "full")
    probe = [
        "probe",
        "--dataset",
        "ravdess",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    for name in ("none", "haar"):
        run(*probe, "--cache", cache / name, "--out", runs / name)
    (whole,), (face,) = list((runs / "none").iterdir()), list((runs / "haar").iterdir())
    run("compare", whole, face, "--out", tmp_path / "cmp")
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table["Face crop"].tolist() == ["none", "none", "haar", "haar"]
    assert np.isnan(table.loc[0, "Δ UAR"]) and not np.isnan(table.loc[2, "Δ UAR"])
    # actor 2 is a test actor of fold 1: predict must crop as the cache did to give back the
    # probabilities fold 1's evaluation wrote (PBV sums over clips; predict averages them)
    video = root / "Actor_02" / f"{ravdess_name(2, 1, 1, 1, 1, 1, 2)}.mp4"
    assert kinds[video.stem] == "face"
    out = json.loads(
        run("predict", video, "--run", face, "--fold", "1", "--json", "--device", "cpu")
    )
    want = pd.read_csv(face / "fold-1" / "video_predictions.csv").set_index("video_id")
    want = want.loc[video.stem]
    for name in ("neutral", "happy"):
        assert out["videos"][0][f"prob_{name}"] == pytest.approx(
            want[f"prob_{name}"] / want["n_clips"], abs=1e-4
        )


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.text(alphabet=st.sampled_from(list('v1,-.9 \r\n\t"x²') + ["\ufeff"]), max_size=60),
    raw=st.binary(max_size=30),
)
def test_any_boxes_csv_parses_or_is_one_line(tmp_path, body, raw):
    """Hypothesis: hostile text after a boxes header, and hostile bytes: boxes, or one line."""
    path = tmp_path / "boxes.csv"
    for content in (("video_id,x,y,w,h\n" + body).encode("utf-8"), raw):
        path.write_bytes(content)
        try:
            read_boxes(path)
        except ConfigError as err:
            assert "\n" not in str(err)
