"""vjfer.synthetic: real names, layouts and codecs; decodable, deterministic, learnable across
actors."""

from __future__ import annotations

import io
import wave
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import one_frame_video

from vjfer import synthetic
from vjfer.datasets import fold_split, index_dataset, scan_dataset
from vjfer.datasets.crema_d import CREMA_D_SENTENCES
from vjfer.errors import ConfigError
from vjfer.labels import CLASSES

SMALL = dict(actors=(1,), emotions=(1, 3, 8), frames=24, short_every=2, short_frames=10)


def probe(source: Path | bytes) -> dict:
    """What a decoder sees: codec, size, rate, frames counted by decoding, audio streams."""

    def path():
        return io.BytesIO(source) if isinstance(source, bytes) else source

    with av.open(path()) as container:
        video = container.streams.video[0]
        info = {
            "codec": video.codec_context.codec.canonical_name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.codec_context.width, video.codec_context.height),
            "rate": video.average_rate,
            "audio": [s.codec_context.name for s in container.streams.audio],
        }
        info["frames"] = sum(1 for _ in container.decode(video=0))
    with av.open(path()) as container:
        packets = [p for p in container.demux(video=0) if p.dts is not None]
        info["reordered"] = any(p.pts != p.dts for p in packets)
    return info


@pytest.fixture(scope="module")
def ravdess_small(tmp_path_factory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("ravdess")
    return root, synthetic.make_ravdess(root, **SMALL)


def test_ravdess_files_have_the_real_names_and_layout(ravdess_small):
    root, files = ravdess_small
    trials = ["01-01", "01-03", "01-08", "02-01", "02-03"]  # VV-EE: song has no surprised (08)
    expected = [
        f"Actor_01/{mm}-{trial}-01-01-01-01.{'wav' if mm == '03' else 'mp4'}"
        for mm in ("01", "02", "03")
        for trial in trials
    ]
    assert [str(p.relative_to(root)) for p in files] == sorted(expected)


def test_ravdess_videos_decode_as_h264(ravdess_small):
    _, files = ravdess_small
    lengths = {}
    for path in files:
        if path.suffix == ".wav":
            with wave.open(str(path)) as wav:
                assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
                assert wav.getnframes() > 0
            continue
        info = probe(path)
        assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
        assert info["size"] == (160, 90) and info["rate"] == Fraction(30000, 1001)
        assert info["audio"] == (["aac"] if path.name.startswith("01-") else [])
        lengths[path.stem] = info["frames"]
        assert info["reordered"] or info["frames"] < 4  # B-frames, as in real files
    # trials in order (speech 01, 03, 08, song 01, 03); every 2nd is short; 01 and 02 share frames
    trial_lengths = [
        lengths[f"02-{t}-01"]
        for t in (
            "01-01-01-01-01",
            "01-03-01-01-01",
            "01-08-01-01-01",
            "02-01-01-01-01",
            "02-03-01-01-01",
        )
    ]
    assert trial_lengths == [24, 10, 24, 10, 24]
    assert all(lengths["01" + stem[2:]] == n for stem, n in lengths.items())


def test_modality_01_is_the_02_video_plus_audio(ravdess_small):
    root = ravdess_small[0] / "Actor_01"

    def frames(name):
        with av.open(root / name) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])

    np.testing.assert_array_equal(
        frames("01-01-03-01-01-01-01.mp4"), frames("02-01-03-01-01-01-01.mp4")
    )


def test_generated_ravdess_indexes_as_speech_only(ravdess_small):
    root, _ = ravdess_small
    index = scan_dataset("ravdess", root)
    assert [r.video_id for r in index.records] == [
        f"{mm}-01-{ee}-01-01-01-01" for mm in ("01", "02") for ee in ("01", "03", "08")
    ]
    assert Counter(e.reason for e in index.excluded) == {
        "audio-only, no video": 5,
        "modality or vocal channel not selected": 4,
    }


def test_same_seed_same_bytes_other_seed_other_pictures(tmp_path):
    options = dict(actors=(3,), emotions=(2, 5), vocal_channels=(1,), frames=12, short_every=0)
    first = synthetic.make_ravdess(tmp_path / "a", **options)
    again = synthetic.make_ravdess(tmp_path / "b", **options)
    other = synthetic.make_ravdess(tmp_path / "c", seed=1, **options)
    assert [p.name for p in first] == [p.name for p in again] == [p.name for p in other]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(first, again, strict=True))
    videos = [(p, q) for p, q in zip(first, other, strict=True) if p.suffix == ".mp4"]
    assert all(p.read_bytes() != q.read_bytes() for p, q in videos)
    crema = [
        synthetic.make_crema_d(tmp_path / d, actors=(1001,), emotions=("SAD",), frames=8)
        for d in ("d", "e")
    ]
    assert crema[0][0].read_bytes() == crema[1][0].read_bytes()


def test_crema_d_videos_decode_as_flv1(tmp_path):
    files = synthetic.make_crema_d(
        tmp_path,
        actors=(1001,),
        emotions=("ANG", "NEU"),
        sentences=("IEO", "TIE"),
        frames=20,
        short_every=3,
        short_frames=9,
    )
    assert [p.name for p in files] == [
        "1001_IEO_ANG_HI.flv",
        "1001_IEO_ANG_LO.flv",
        "1001_IEO_ANG_MD.flv",
        "1001_IEO_NEU_XX.flv",
        "1001_TIE_ANG_XX.flv",
        "1001_TIE_NEU_XX.flv",
    ]
    assert all(p.parent.name == "VideoFlash" for p in files)
    infos = [probe(p) for p in files]
    assert {(i["codec"], i["pix_fmt"], i["size"], i["rate"]) for i in infos} == {
        ("flv1", "yuv420p", (120, 90), Fraction(30))
    }
    assert sorted(i["frames"] for i in infos) == [9, 9, 20, 20, 20, 20]
    with av.open(files[0]) as container:
        assert container.streams.video[0].frames == 0  # FLV headers give no frame count
    assert [r.level for r in index_dataset("crema-d", tmp_path)] == [
        "HI",
        "LO",
        "MD",
        "XX",
        "XX",
        "XX",
    ]


def test_flat_layouts(tmp_path):
    synthetic.make_ravdess(tmp_path / "r", actors=(2,), emotions=(4,), frames=4, flat=True)
    synthetic.make_crema_d(
        tmp_path / "c", actors=(1002,), emotions=("FEA",), sentences=("ITS",), frames=4, flat=True
    )
    assert sorted(p.name for p in (tmp_path / "r").iterdir())[0] == "01-01-04-01-01-01-02.mp4"
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["1002_ITS_FEA_XX.flv"]
    assert len(index_dataset("ravdess", tmp_path / "r")) == 2
    assert len(index_dataset("crema-d", tmp_path / "c")) == 1


def test_odd_sizes_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"size must be even for yuv420p, got \(161, 90\)"):
        synthetic.make_ravdess(tmp_path, size=(161, 90))


def test_a_linear_probe_learns_emotion_across_actors():
    """Ridge regression on 10x20 mean frames, each actor held out in turn, is mostly right."""
    actors, n_classes = np.arange(1, 9), len(CLASSES["ravdess"])
    x, y, who = [], [], []
    for a in actors:
        nuisance = synthetic.actor_nuisance(0, "ravdess", a)
        for e, name in enumerate(CLASSES["ravdess"]):
            style = synthetic.STYLES[name]
            frames = synthetic.render_face(
                style, nuisance, (160, 90), 16, 30.0, synthetic.seeded_rng(0, a, e)
            )
            x.append(frames.reshape(16, 10, 9, 20, 8, 3).mean(axis=(0, 2, 4)).ravel() / 255)
            y.append(e)
            who.append(a)
    x, y, who = np.array(x), np.array(y), np.array(who)
    correct = 0
    for held_out in actors:
        train = who != held_out
        mean = x[train].mean(0)
        targets = np.eye(n_classes)[y[train]]
        gram = (x[train] - mean).T @ (x[train] - mean) + np.eye(x.shape[1])
        weights = np.linalg.solve(gram, (x[train] - mean).T @ (targets - targets.mean(0)))
        correct += np.sum(((x[~train] - mean) @ weights).argmax(1) == y[~train])
    assert correct / len(y) >= 0.75  # chance: 1/8


def test_trial_sets_match_the_real_datasets():
    ravdess = synthetic.ravdess_trials(range(1, 25), range(1, 9), (1, 2), (1, 2), (1, 2), (1, 2))
    assert Counter(t[0] for t in ravdess) == {1: 24 * 60, 2: 23 * 44}  # speech, song
    crema = synthetic.crema_d_trials(
        range(1001, 1092), synthetic.CREMA_D_EMOTIONS, CREMA_D_SENTENCES
    )
    assert len(crema) == 91 * 82  # 7462; the release lacks 20 of these (7442 files)
    assert synthetic.trial_lengths(7, 76, 3, 45) == [76, 76, 45, 76, 76, 45, 76]
    assert synthetic.trial_lengths(3, 76, 0, 45) == [76, 76, 76]


@pytest.mark.parametrize("fmt, codec", [("mp4", "h264"), ("flv", "flv1")])
def test_one_frame_name_set_files_decode(fmt, codec):
    info = probe(one_frame_video(fmt))
    assert (info["codec"], info["frames"], info["size"]) == (codec, 1, (16, 16))


@pytest.mark.slow
def test_demo_datasets_cover_every_fold_and_class(tmp_path):
    roots = synthetic.demo_datasets(tmp_path)
    assert roots == {"ravdess": tmp_path / "ravdess", "crema-d": tmp_path / "crema-d"}
    for dataset, root in roots.items():
        records = index_dataset(dataset, root)
        assert len(records) == {"ravdess": 160, "crema-d": 120}[dataset]
        assert {r.label for r in records} == set(range(len(CLASSES[dataset])))
        for k in range(1, 6):
            train, test = fold_split(records, k)
            assert len({r.actor for r in test}) == 2 and len({r.actor for r in train}) == 8
    lengths = {
        probe(p)["frames"] for p in sorted((tmp_path / "crema-d" / "VideoFlash").iterdir())[:5]
    }
    assert lengths == {synthetic.FRAMES, synthetic.SHORT_FRAMES}
