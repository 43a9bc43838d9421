"""vjfer.datasets: splits, file-name parsing, indexing, exclusions and errors, summaries."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import one_frame_video

import vjfer
from vjfer import datasets
from vjfer.cli import cli
from vjfer.datasets import fold_split, index_dataset, scan_dataset
from vjfer.datasets.crema_d import CREMA_D_SENTENCES, parse_crema_d_name
from vjfer.datasets.folds import load_folds, read_folds
from vjfer.datasets.ravdess import parse_ravdess_name
from vjfer.datasets.records import DatasetIndex, VideoRecord
from vjfer.datasets.summary import format_index_summary, summarize
from vjfer.errors import ConfigError, DatasetError, SplitError
from vjfer.synthetic import (
    CREMA_D_EMOTIONS,
    crema_d_name,
    crema_d_trials,
    ravdess_name,
    ravdess_trials,
    write_wav,
)

# DESIGN.md, "The datasets": test actors per fold.
RAVDESS_FOLDS = {
    1: {2, 5, 14, 15, 16},
    2: {3, 6, 7, 13, 18},
    3: {10, 11, 12, 19, 20},
    4: {8, 17, 21, 23, 24},
    5: {1, 4, 9, 22},
}
CREMA_D_FOLDS = {
    k: {1000 + int(a) for a in ids.split()}
    for k, ids in {
        1: "2 3 8 10 14 16 22 32 51 54 60 66 68 70 72 77 78 86 88",
        2: "4 11 12 13 19 30 33 35 39 40 48 49 53 57 67 71 73 81",
        3: "5 6 17 26 28 34 42 44 50 59 64 69 82 83 84 87 90 91",
        4: "7 9 15 21 23 29 36 37 38 41 45 52 55 58 61 62 74 76",
        5: "1 18 20 24 25 27 31 43 46 47 56 63 65 75 79 80 85 89",
    }.items()
}
DESIGN_FOLDS = {"ravdess": RAVDESS_FOLDS, "crema-d": CREMA_D_FOLDS}
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(2000)  # the index reads names, not pictures
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1234567\n"


def touch(path: Path, data: bytes = VIDEO) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def record(dataset: str, actor: int, fold: int, video_id: str = "v") -> VideoRecord:
    return VideoRecord(Path(video_id), video_id, dataset, 0, "neutral", actor, fold)


# ---- splits ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["ravdess", "crema-d"])
def test_folds_match_design(dataset):
    folds = load_folds(dataset)
    by_fold = {k: {a for a, f in folds.items() if f == k} for k in range(1, 6)}
    assert by_fold == DESIGN_FOLDS[dataset]
    assert len(folds) == {"ravdess": 24, "crema-d": 91}[dataset]


@pytest.mark.parametrize("dataset", ["ravdess", "crema-d"])
def test_fold_split_is_disjoint_and_complete(dataset):
    records = [record(dataset, a, f, f"v{a}") for a, f in load_folds(dataset).items()]
    for k in range(1, 6):
        train, test = fold_split(records, k)
        assert {r.actor for r in test} == DESIGN_FOLDS[dataset][k]
        assert not {r.actor for r in test} & {r.actor for r in train}
        assert len(train) + len(test) == len(records)


RAVDESS_CSV = "actor,fold\n" + "".join(f"{a},{(a - 1) % 5 + 1}\n" for a in range(1, 25))


@pytest.mark.parametrize(
    "text, match",
    [
        ("actor;fold\n1;1\n", "header must be 'actor,fold'"),
        ("", "header must be 'actor,fold'"),
        (RAVDESS_CSV + "3,2\n", r"line 26: actor 3 appears twice"),
        (RAVDESS_CSV.replace("\n7,2\n", "\n"), r"actors missing: \[7\]"),
        (RAVDESS_CSV + "25,1\n", r"actors not in ravdess: \[25\]"),
        (RAVDESS_CSV.replace("\n7,2\n", "\n7,6\n"), "line 8: fold 6 outside 1..5"),
        (RAVDESS_CSV.replace("\n7,2\n", "\n7,two\n"), r"line 8: expected two integers"),
        ("actor,fold\n" + "".join(f"{a},1\n" for a in range(1, 25)), r"folds without actors"),
    ],
)
def test_read_folds_rejects_bad_files(tmp_path, text, match):
    path = tmp_path / "ravdess.csv"
    path.write_text(text)
    with pytest.raises(SplitError, match=match) as err:
        read_folds(path, "ravdess")
    assert str(path) in str(err.value)


def test_read_folds_accepts_a_valid_file(tmp_path):
    (tmp_path / "r.csv").write_text(RAVDESS_CSV)
    assert read_folds(tmp_path / "r.csv", "ravdess")[7] == 2


def test_load_folds_prefers_the_installed_package_copy(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "vjfer"
    csv = Path(vjfer.__file__).parent.parent / "splits" / "ravdess.csv"
    touch(package / "splits" / "ravdess.csv", csv.read_bytes().replace(b"\n1,5\n", b"\n1,4\n"))
    monkeypatch.setattr(vjfer, "__file__", str(package / "__init__.py"))
    assert load_folds("ravdess")[1] == 4
    with pytest.raises(SplitError, match=r"no split file crema_d.csv; looked in .*site-packages"):
        load_folds("crema-d")


def test_fold_split_rejects_bad_requests():
    records = [record("ravdess", a, f, f"v{a}") for a, f in load_folds("ravdess").items()]
    with pytest.raises(SplitError, match="fold 6 does not exist; folds are 1..5"):
        fold_split(records, 6)
    leaky = records + [record("ravdess", 2, 3, "w2")]  # actor 2 is tested in fold 1
    with pytest.raises(SplitError, match=r"fold 1: test actors \[2\] also appear in training"):
        fold_split(leaky, 1)
    with pytest.raises(SplitError, match="records mix datasets"):
        fold_split(records + [record("crema-d", 1001, 5)], 1)
    with pytest.raises(SplitError, match="fold 2: 1 training and 0 test videos"):
        fold_split(records[:1], 2)


# ---- names -----------------------------------------------------------------------------------


def test_parse_ravdess_name_reads_every_field():
    assert parse_ravdess_name("02-01-06-02-01-02-12") == {
        "modality": 2,
        "vocal_channel": 1,
        "emotion": 6,
        "intensity": 2,
        "statement": 1,
        "repetition": 2,
        "actor": 12,
    }


@pytest.mark.parametrize(
    "stem, match",
    [
        ("02-01-06-01-02-01", "is not MM-VV-EE-II-SS-RR-AA"),
        ("2-01-06-01-02-01-12", "is not MM-VV-EE-II-SS-RR-AA"),
        ("02-01-06-01-02-01-12-x", "is not MM-VV-EE-II-SS-RR-AA"),
        ("04-01-06-01-02-01-12", "modality 04 not in 01..03"),
        ("02-03-06-01-02-01-12", "vocal_channel 03 not in 01..02"),
        ("02-01-06-03-02-01-12", "intensity 03 not in 01..02"),
        ("02-01-06-01-00-01-12", "statement 00 not in 01..02"),
        ("02-01-06-01-02-03-12", "repetition 03 not in 01..02"),
        ("02-01-09-01-02-01-12", "emotion 09 not in 01..08"),
        ("02-01-00-01-02-01-12", "emotion 00 not in 01..08"),
    ],
)
def test_parse_ravdess_name_names_the_bad_field(stem, match):
    with pytest.raises(DatasetError, match=match):
        parse_ravdess_name(stem)


def test_parse_crema_d_name_reads_every_field():
    assert parse_crema_d_name("1064_IEO_FEA_HI") == {
        "actor": 1064,
        "sentence": "IEO",
        "emotion": "fearful",
        "level": "HI",
    }


@pytest.mark.parametrize(
    "stem, match",
    [
        ("1001_TIE_ANG", "is not AAAA_SSS_EEE_LL"),
        ("101_TIE_ANG_XX", "is not AAAA_SSS_EEE_LL"),
        ("1001_tie_ang_xx", "is not AAAA_SSS_EEE_LL"),
        ("1001_ABC_ANG_XX", "sentence ABC not one of IEO"),
        ("1001_TIE_ANG_ZZ", "level ZZ not one of LO, MD, HI, XX"),
        ("1001_TIE_CAL_XX", "emotion CAL not one of NEU"),
    ],
)
def test_parse_crema_d_name_names_the_bad_field(stem, match):
    with pytest.raises(DatasetError, match=match):
        parse_crema_d_name(stem)


# ---- the complete RAVDESS name set -----------------------------------------------------------


@pytest.fixture(scope="module")
def ravdess_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    assert len(make_ravdess_names(root)) == 7356  # the real release's file count
    return root


@pytest.fixture(scope="module")
def ravdess_index(ravdess_root) -> DatasetIndex:
    return scan_dataset("ravdess", ravdess_root)


def test_full_ravdess_counts(ravdess_index):
    records = ravdess_index.records
    assert len(records) == 2880
    assert len({r.actor for r in records}) == 24
    assert Counter(r.label_name for r in records) == {
        "neutral": 192,
        **{name: 384 for name in vjfer.labels.CLASSES["ravdess"][1:]},
    }
    assert set(Counter(r.actor for r in records).values()) == {120}
    assert {(r.modality, r.vocal_channel) for r in records} == {(1, 1), (2, 1)}
    reasons = Counter(e.reason for e in ravdess_index.excluded)
    assert reasons == {
        datasets.records.AUDIO_ONLY: 2452,
        datasets.records.NOT_SELECTED: 2024,
    }  # .wav; song


def test_ravdess_records_carry_the_parsed_fields(ravdess_index):
    records = ravdess_index.records
    assert [r.video_id for r in records] == sorted(r.video_id for r in records)
    folds = load_folds("ravdess")
    for r in records:
        assert r.video_id == r.path.stem and r.path.parent.name == f"Actor_{r.actor:02d}"
        fields = parse_ravdess_name(r.video_id)
        assert (r.modality, r.vocal_channel, r.intensity, r.statement, r.repetition, r.actor) == (
            fields["modality"],
            fields["vocal_channel"],
            fields["intensity"],
            fields["statement"],
            fields["repetition"],
            fields["actor"],
        )
        assert r.label == fields["emotion"] - 1
        assert r.label_name == vjfer.labels.class_name("ravdess", r.label)
        assert r.fold == folds[r.actor] and r.dataset == "ravdess"
        assert r.sentence is None and r.level is None


@pytest.mark.parametrize(
    "options, count",
    [
        ({"modalities": (1,)}, 1440),
        ({"modalities": (2,)}, 1440),
        ({"vocal_channels": (2,)}, 2024),  # song: 23 actors (not 18) x 44 trials x 2 modalities
        ({"vocal_channels": (1, 2)}, 4904),
        ({"modalities": [2], "vocal_channels": [2]}, 1012),
    ],
)
def test_ravdess_selection_options(ravdess_root, options, count):
    records = index_dataset("ravdess", ravdess_root, **options)
    assert len(records) == count
    assert {r.modality for r in records} == set(options.get("modalities", (1, 2)))
    assert {r.vocal_channel for r in records} == set(options.get("vocal_channels", (1,)))
    if options.get("vocal_channels") == (2,):
        assert 18 not in {r.actor for r in records}
        assert {r.label for r in records} == set(range(6))


def test_summary_of_the_full_set(ravdess_index):
    summary = summarize(ravdess_index)
    assert (summary["videos"], summary["actors"], summary["excluded"]) == (2880, 24, 4476)
    assert summary["per_class"]["videos"].tolist() == [192] + [384] * 7
    assert summary["per_fold"]["videos"].tolist() == [600, 600, 600, 600, 480]
    assert summary["per_fold"]["actors"].tolist() == [5, 5, 5, 5, 4]
    assert summary["problems"]["files"].tolist() == [2452, 2024]
    text = format_index_summary(summary)
    assert "2880 videos, 24 actors, 4476 files excluded" in text
    assert "neutral       192" in text and "surprised     384" in text
    assert "fold 5:   480 videos,  4/4 actors  1:120 4:120 9:120 22:120" in text
    assert "2452  audio-only, no video" in text


# ---- CREMA-D ---------------------------------------------------------------------------------


def make_ravdess_names(root: str | Path) -> list[Path]:
    """Write the complete real RAVDESS file set under `root/Actor_XX/` as tiny files; return them.

    7356 files: speech (60 trials per actor) and song (44 per actor, none for actor 18), each as
    01 and 02 one-frame .mp4 and 03 .wav. The default index keeps the 2880 speech videos:
    24 actors, 192 neutral and 384 per other class.
    """
    root = Path(root)
    video = one_frame_video("mp4")
    buffer = io.BytesIO()
    write_wav(buffer, np.zeros(16, np.float32))
    audio = buffer.getvalue()
    everything = ravdess_trials(range(1, 25), range(1, 9), (1, 2), (1, 2), (1, 2), (1, 2))
    written = []
    for vv, ee, ii, ss, rr, aa in everything:
        folder = root / f"Actor_{aa:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for mm, suffix, data in ((1, ".mp4", video), (2, ".mp4", video), (3, ".wav", audio)):
            written.append(folder / (ravdess_name(mm, vv, ee, ii, ss, rr, aa) + suffix))
            written[-1].write_bytes(data)
    return sorted(written)


CREMA_D_EMPTY = ("1064_TIE_SAD_XX",)  # 0 bytes in the original release


def make_crema_d_names(
    root: str | Path,
    actors: Sequence[int] = range(1001, 1092),
    empty: Sequence[str] = CREMA_D_EMPTY,
) -> list[Path]:
    """Write CREMA-D names for `actors` (82 per actor) under `root/VideoFlash/` as tiny FLV files.

    The full design gives 91 x 82 = 7462 names; the real release lacks 20 of them (7442 files).
    Names in `empty` are written as 0-byte files, as 1064_TIE_SAD_XX is in the release.
    """
    folder = Path(root) / "VideoFlash"
    folder.mkdir(parents=True, exist_ok=True)
    video = one_frame_video("flv")
    written = []
    for trial in crema_d_trials(actors, CREMA_D_EMOTIONS, CREMA_D_SENTENCES):
        name = crema_d_name(*trial)
        written.append(folder / (name + ".flv"))
        written[-1].write_bytes(b"" if name in empty else video)
    return sorted(written)


def test_crema_d_names_with_the_empty_release_file(tmp_path):
    files = make_crema_d_names(tmp_path, actors=(1001, 1064, 1091))
    assert len(files) == 3 * 82
    index = scan_dataset("crema-d", tmp_path)
    assert len(index.records) == 245
    assert [(e.path.name, e.reason) for e in index.excluded] == [
        ("1064_TIE_SAD_XX.flv", datasets.records.EMPTY)
    ]
    counts = Counter(r.label_name for r in index.records)
    assert counts == {
        "neutral": 36,
        "happy": 42,
        "sad": 41,
        "angry": 42,
        "fearful": 42,
        "disgust": 42,
    }
    ieo = [r for r in index.records if r.sentence == "IEO" and r.actor == 1001]
    assert Counter(r.level for r in ieo) == {"LO": 5, "MD": 5, "HI": 5, "XX": 1}
    r = next(r for r in index.records if r.video_id == "1091_DFA_ANG_XX")
    assert (r.actor, r.fold, r.sentence, r.level, r.label, r.label_name) == (
        1091,
        3,
        "DFA",
        "XX",
        vjfer.labels.class_index("crema-d", "angry"),
        "angry",
    )
    assert (r.modality, r.vocal_channel, r.intensity, r.statement, r.repetition) == (None,) * 5
    problems = summarize(index)["problems"]
    assert problems.loc[0, "example"].endswith("1064_TIE_SAD_XX.flv")


def test_crema_d_flat_layout(tmp_path):
    touch(tmp_path / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / "sub" / "1002_IEO_HAP_HI.flv")
    touch(tmp_path / "1001_DFA_ANG_XX.wav")  # AudioWAV files are not part of the video index
    assert [r.video_id for r in index_dataset("crema-d", tmp_path)] == [
        "1001_DFA_ANG_XX",
        "1002_IEO_HAP_HI",
    ]


def test_crema_d_prefers_video_flash(tmp_path):
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    touch(tmp_path / "elsewhere" / "1002_DFA_ANG_XX.flv")
    assert [r.video_id for r in index_dataset("crema-d", tmp_path)] == ["1001_DFA_ANG_XX"]


# ---- bad input -------------------------------------------------------------------------------


def test_bad_ravdess_files_are_listed_with_their_reason(tmp_path):
    good = [
        touch(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4"),
        touch(tmp_path / "02-01-08-02-02-02-24.mp4"),
    ]
    bad = {
        "Actor_01/clip.mp4": datasets.records.UNPARSABLE,
        "Actor_01/01-01-09-01-01-01-01.mp4": datasets.records.UNKNOWN_EMOTION,
        "01-01-01-01-01-01-25.mp4": datasets.records.UNKNOWN_ACTOR,
        "Actor_01/02-01-03-01-01-01-01.mp4": datasets.records.EMPTY,
        "Actor_01/02-01-04-01-01-01-01.mp4": datasets.records.LFS_POINTER,
        "Actor_01/01-01-05-01-01-01-02.mp4": datasets.records.FOLDER_MISMATCH,
        "Actor_01/03-01-05-01-01-01-01.mp4": datasets.records.AUDIO_ONLY,
        "Actor_01/03-01-05-01-01-01-01.wav": datasets.records.AUDIO_ONLY,
        "Actor_01/01-02-05-01-01-01-01.mp4": datasets.records.NOT_SELECTED,
    }
    for name, reason in bad.items():
        touch(
            tmp_path / name,
            {datasets.records.EMPTY: b"", datasets.records.LFS_POINTER: LFS}.get(reason, VIDEO),
        )
    touch(tmp_path / "Actor_01" / "README.txt")  # not a media file: not looked at
    index = scan_dataset("ravdess", tmp_path)
    assert [r.path for r in index.records] == sorted(good, key=lambda p: p.stem)
    assert {str(e.path.relative_to(tmp_path)): e.reason for e in index.excluded} == bad
    details = {e.path.name: e.detail for e in index.excluded}
    assert details["01-01-05-01-01-01-02.mp4"] == "in Actor_01 but AA is 02"
    assert details["02-01-04-01-01-01-01.mp4"].endswith("pointer text")
    assert summarize(index)["problems"]["files"].sum() == len(bad)
    assert "git lfs pull" in format_index_summary(summarize(index))


def test_bad_crema_d_files_are_listed_with_their_reason(tmp_path):
    touch(tmp_path / "VideoFlash" / "1001_DFA_ANG_XX.flv")
    bad = {
        "1001_DFA_XYZ_XX.flv": datasets.records.UNKNOWN_EMOTION,
        "1001_ABC_ANG_XX.flv": datasets.records.UNPARSABLE,
        "1001_DFA_ANG_ZZ.flv": datasets.records.UNPARSABLE,
        "1092_DFA_ANG_XX.flv": datasets.records.UNKNOWN_ACTOR,
        "1000_DFA_ANG_XX.flv": datasets.records.UNKNOWN_ACTOR,
        "1002_DFA_ANG_XX.flv": datasets.records.LFS_POINTER,
        "1064_TIE_SAD_XX.flv": datasets.records.EMPTY,
    }
    for name, reason in bad.items():
        touch(
            tmp_path / "VideoFlash" / name,
            {datasets.records.EMPTY: b"", datasets.records.LFS_POINTER: LFS}.get(reason, VIDEO),
        )
    index = scan_dataset("crema-d", tmp_path)
    assert [r.video_id for r in index.records] == ["1001_DFA_ANG_XX"]
    assert {e.path.name: e.reason for e in index.excluded} == bad


@pytest.mark.parametrize(
    "dataset, env", [("ravdess", "VJFER_RAVDESS"), ("crema-d", "VJFER_CREMA_D")]
)
def test_missing_root_names_the_path_and_the_fix(tmp_path, dataset, env):
    with pytest.raises(
        DatasetError, match=rf"{tmp_path / 'nope'} does not exist; pass --root DIR or set {env}"
    ):
        scan_dataset(dataset, tmp_path / "nope")
    with pytest.raises(DatasetError, match="is not a folder"):
        scan_dataset(dataset, touch(tmp_path / "file.mp4"))


def test_a_root_without_videos_is_an_error(tmp_path):
    with pytest.raises(
        DatasetError, match=r"no \.mp4 videos under .*Actor_XX/MM-VV-EE-II-SS-RR-AA\.mp4"
    ):
        scan_dataset("ravdess", tmp_path)
    touch(tmp_path / "Actor_01" / "03-01-01-01-01-01-01.wav")
    with pytest.raises(DatasetError, match=r"\(only 1 audio files\)"):
        scan_dataset("ravdess", tmp_path)
    with pytest.raises(
        DatasetError, match=r"no \.flv videos under .*VideoFlash/AAAA_SSS_EEE_LL\.flv"
    ):
        scan_dataset("crema-d", tmp_path)


def test_all_files_excluded_is_an_error(tmp_path):
    for name in ("01-01-01-01-01-01-01.mp4", "01-01-02-01-01-01-01.mp4"):
        touch(tmp_path / name, LFS)
    with pytest.raises(
        DatasetError, match=r"no usable ravdess videos .*all 2 excluded \(2 git-LFS pointer"
    ):
        scan_dataset("ravdess", tmp_path)


def test_the_same_video_twice_is_an_error(tmp_path):
    touch(tmp_path / "Actor_01" / "01-01-01-01-01-01-01.mp4")
    touch(tmp_path / "copy" / "Actor_01" / "01-01-01-01-01-01-01.mp4")
    with pytest.raises(
        DatasetError, match="video id 01-01-01-01-01-01-01 found twice: .* keep one copy"
    ):
        scan_dataset("ravdess", tmp_path)


@pytest.mark.parametrize(
    "dataset, options, match",
    [
        ("crema-d", {"modalities": (1,)}, "apply to RAVDESS only"),
        ("ravdess", {"modalities": (3,)}, r"modalities must be a non-empty subset of \(1, 2\)"),
        ("ravdess", {"modalities": ()}, "modalities must be a non-empty subset"),
        (
            "ravdess",
            {"vocal_channels": (0,)},
            r"vocal_channels must be a non-empty subset of \(1, 2\)",
        ),
        ("affectnet", {}, "unknown dataset 'affectnet'"),
    ],
)
def test_bad_options_are_config_errors(tmp_path, dataset, options, match):
    with pytest.raises(ConfigError, match=match):
        scan_dataset(dataset, tmp_path, **options)


def test_index_dataset_is_scan_records(tmp_path):
    touch(tmp_path / "01-01-01-01-01-01-01.mp4")
    touch(tmp_path / "01-02-01-01-01-01-01.mp4")  # song
    records = index_dataset("RAVDESS", str(tmp_path))
    assert records == scan_dataset("ravdess", tmp_path).records
    assert records[0].path.is_absolute()
    assert records[0].video_id == "01-01-01-01-01-01-01" and records[0].fold == 5


def test_broken_links_and_every_excluded_file_are_named(tmp_path):
    touch(tmp_path / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    link = tmp_path / "Actor_01" / "01-01-04-01-01-01-01.mp4"  # an un-fetched git-annex file
    link.symlink_to("../.git/annex/objects/Xk/MD5E-s123--abc.mp4/MD5E-s123--abc.mp4")
    odd = [touch(tmp_path / "Actor_01" / f"take-{i}.mp4") for i in range(5)]
    index = scan_dataset("ravdess", tmp_path)
    reasons = {e.path.name: (e.reason, e.detail) for e in index.excluded}
    assert reasons[link.name] == (datasets.records.BROKEN_LINK, f"-> {os.readlink(link)}")
    summary = summarize(index)
    text = format_index_summary(summary)
    assert "    1  link target missing: fetch it with `git annex get` / `datalad get`" in text
    shown = [p for p in odd if str(p) in text]
    assert len(shown) == datasets.summary.SUMMARY_EXAMPLES and "... 2 more" in text
    assert "2 excluded files not shown: `--all` lists every one" in text
    everything = format_index_summary(summary, show_all=True)
    assert all(str(p) in everything for p in [*odd, link]) and "more" not in everything
    result = CliRunner().invoke(
        cli,
        [
            "index",
            "--dataset",
            "ravdess",
            "--root",
            str(tmp_path),
            "--csv",
            str(tmp_path / "x.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "x.csv").open()))
    assert sorted(Path(r["path"]).name for r in rows) == sorted([link.name, *(p.name for p in odd)])
    assert {r["reason"] for r in rows} == {
        datasets.records.BROKEN_LINK,
        datasets.records.UNPARSABLE,
    }
    assert "6 excluded files written to" in result.output
    result = CliRunner().invoke(
        cli, ["index", "--dataset", "ravdess", "--root", str(tmp_path), "--all"]
    )
    assert all(str(p) in result.output for p in odd)
