"""The dataset layer on generated trees in the releases' layouts (vjfer.synthetic_frames): DFEW,
FERV39k and MAFW frame folders with their real split files, a list file of videos and one of
frame folders, RAVDESS under the peers' 6-fold protocol. Counts and folds equal the split files;
every excluded item is named."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from vjfer import datasets
from vjfer.datasets import scan_dataset
from vjfer.datasets.folds import TRAIN_ONLY, group_folds, mae_dfer_folds
from vjfer.errors import ConfigError, DatasetError, SplitError, VjferError
from vjfer.labels import class_names
from vjfer.synthetic import make_ravdess
from vjfer.synthetic_frames import make_dfew, make_ferv39k, make_mafw


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("trees")
    return {
        "dfew": make_dfew(tmp / "dfew", clips_per_class=1),
        "ferv39k": make_ferv39k(tmp / "ferv39k", clips_per_class=1),
        "mafw": make_mafw(tmp / "mafw", clips_per_class=1),
    }


def _dfew_split(root: Path) -> dict[str, tuple[str, int]]:
    """clip -> (label code, test fold), read straight from the split files."""
    out = {}
    for k in range(1, 6):
        path = root / "EmoLabel_DataSplit" / "test(single-labeled)" / f"set_{k}.csv"
        for row in csv.DictReader(path.open()):
            out[f"{int(row['video_name']):05d}"] = (row["label"], k)
    return out


def test_dfew_records_equal_the_split_files(trees):
    index = scan_dataset("dfew", trees["dfew"])
    split = _dfew_split(trees["dfew"])
    got = {r.video_id: (str(r.label + 1), r.fold) for r in index.records}
    missing, unlisted, empty = "00008", "00009", "00010"  # after the tree's 7 clips
    assert got == {c: v for c, v in split.items() if c not in (missing, empty)}
    assert {r.label_name for r in index.records} == set(class_names("dfew"))
    reasons = {(e.path.name, e.reason) for e in index.excluded}
    assert reasons == {
        (missing, datasets.records.NO_FRAMES),
        (unlisted, datasets.records.NOT_LISTED),
        (empty, datasets.records.EMPTY_FOLDER),
    }
    assert all(r.path.is_dir() for r in index.records)


@pytest.mark.parametrize("frame_dir", ["Clip/jpg_224", "Clip/jpg_256"])
def test_dfew_release_variants_are_found(tmp_path, frame_dir):
    """Copies that ship `Clip/jpg_224` (MAE-DFER issue 17) or `Clip/jpg_256` read as the release."""
    root = make_dfew(tmp_path / "dfew", clips_per_class=1, frame_dir=frame_dir)
    index = scan_dataset("dfew", root)
    assert {r.video_id: (str(r.label + 1), r.fold) for r in index.records} == {
        c: v for c, v in _dfew_split(root).items() if c not in ("00008", "00010")
    }
    assert all(r.path.parent == root / frame_dir for r in index.records)


def test_ferv39k_is_one_fold_and_names_its_problems(trees):
    index = scan_dataset("ferv39k", trees["ferv39k"])
    test_rows = (trees["ferv39k"] / "4_setups/All_scenes/test_All.csv").read_text().split("\n")
    tested = {line.split()[0].replace("/", "-") for line in test_rows if line}
    assert {r.video_id for r in index.records if r.fold == 1} == tested
    assert Counter(r.fold for r in index.records) == {TRAIN_ONLY: 6, 1: 1}  # every 4th clip tests
    assert {e.reason for e in index.excluded} == {
        datasets.records.NO_FRAMES,
        datasets.records.NOT_LISTED,
        datasets.records.UNKNOWN_LABEL,
    }
    bored = next(e for e in index.excluded if e.reason == datasets.records.UNKNOWN_LABEL)
    assert bored.detail == "label 'Bored'" and bored.path.parts[-3:] == ("Daily", "Sad", "9002")


def test_mafw_keeps_label_names_in_its_own_order(trees, tmp_path):
    index = scan_dataset("mafw", trees["mafw"])
    assert len(index.records) == 11 and {r.fold for r in index.records} == {1, 2, 3, 4, 5}
    by_id = {r.video_id: r for r in index.records}
    # clip 1 is written "anger" in the split file: class 0 of MAE-DFER's order, named "angry"
    assert (by_id["00001"].label, by_id["00001"].label_name) == (0, "angry")
    assert (by_id["00008"].label_name, by_id["00011"].label_name) == ("contempt", "disappointment")
    # one clip written `anger` in one split file and `Anger` in another is one label, not two
    copy = tmp_path / "mafw"
    shutil.copytree(trees["mafw"], copy)
    split = copy / "split" / "single" / "no_caption" / "set_2" / "train.txt"
    split.write_text(split.read_text() + "00001.mp4 Anger\n")
    again = {r.video_id: r for r in scan_dataset("mafw", copy).records}
    assert again["00001"].label_name == "angry"


def test_a_clip_with_two_labels_or_in_two_test_sets_is_named(tmp_path):
    root = make_dfew(tmp_path / "dfew", clips_per_class=1)
    test1 = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    test2 = root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_2.csv"
    train3 = root / "EmoLabel_DataSplit" / "train(single-labeled)" / "set_3.csv"
    first = test1.read_text().splitlines()[1].split(",")[0]  # a clip tested in fold 1
    test2.write_text(test2.read_text() + f"{first},1\n")  # ... and in fold 2
    second = test2.read_text().splitlines()[1].split(",")[0]
    train3.write_text(train3.read_text() + f"{second},7\n")  # another label for fold 2's clip
    reasons = {e.path.name: e.reason for e in scan_dataset("dfew", root).excluded}
    assert reasons[f"{int(first):05d}"] == datasets.records.DUPLICATE
    assert reasons[f"{int(second):05d}"] == datasets.records.MULTI_LABEL


def test_index_json_lists_counts_and_every_excluded_item(trees, tmp_path):
    out = tmp_path / "index.json"
    text = run_cli("index", "--dataset", "ferv39k", "--root", trees["ferv39k"], "--json", out)
    data = json.loads(out.read_text())
    assert data["videos"] == 7 and data["splits"] == "official"
    assert data["per_fold"] == {"1": {"test": 1, "train": 6}}
    assert sum(data["per_class"].values()) == 7 and len(data["per_class"]) == 7
    assert sorted(e["reason"] for e in data["excluded"]) == sorted(
        [datasets.records.NO_FRAMES, datasets.records.NOT_LISTED, datasets.records.UNKNOWN_LABEL]
    )
    assert re.search(r"^\s+fold 1:\s+1 test,\s+6 train$", text, re.M), text


def test_ravdess_mae_dfer_splits_are_six_folds_of_four_actors(tmp_path):
    assert mae_dfer_folds()[1] == mae_dfer_folds()[4] == 1 and mae_dfer_folds()[24] == 6
    root = tmp_path / "RAVDESS"
    for actor in (1, 8, 24):
        (root / f"Actor_{actor:02d}").mkdir(parents=True)
        (root / f"Actor_{actor:02d}" / f"02-01-03-01-01-01-{actor:02d}.mp4").write_bytes(
            b"x" * 2048
        )
    index = scan_dataset("ravdess", root, splits="mae-dfer")
    assert {r.actor: r.fold for r in index.records} == {1: 1, 8: 2, 24: 6}
    assert index.splits == "mae-dfer"
    assert {r.actor: r.fold for r in scan_dataset("ravdess", root).records} == {1: 5, 8: 4, 24: 4}
    with pytest.raises(SplitError, match="--splits mae-dfer does not apply to crema-d"):
        scan_dataset("crema-d", root, splits="mae-dfer")


def test_group_folds_are_seeded_and_balanced():
    groups = [f"s{i}" for i in range(11)]
    folds = group_folds(groups, 3, seed=0)
    assert folds == group_folds(list(reversed(groups)), 3, seed=0)
    assert sorted(Counter(folds.values()).values()) == [3, 4, 4]
    assert folds != group_folds(groups, 3, seed=1)
    with pytest.raises(SplitError, match="2 groups cannot make 3 group folds"):
        group_folds(["a", "b"], 3, seed=0)


def _list_file(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_list_file_of_videos_and_of_frame_folders(tmp_path, trees):
    videos = make_ravdess(
        tmp_path / "v",
        actors=(1, 2),
        emotions=(1, 3),
        modalities=(2,),
        vocal_channels=(1,),
        short_every=0,
        frames=20,
    )
    folders = []
    for source in sorted((trees["dfew"] / "Clip" / "clip_224x224").iterdir())[:2]:
        shutil.copytree(source, tmp_path / "frames" / source.name)
        folders.append(Path("frames") / source.name)
    rows = ["path,label,group"] + [
        f"{p.relative_to(tmp_path)},{lab},{p.parent.name}"
        for p, lab in zip(videos, ("neutral", "Happy") * 2, strict=True)
    ]
    rows += [
        f"{folders[0]},sad,x",
        f"{folders[1]},Bored,y",
        "missing.mp4,sad,z",
        f"{videos[0].relative_to(tmp_path)},sad,w",
    ]
    listing = _list_file(tmp_path / "list.csv", rows)
    index = scan_dataset("list", tmp_path, list_file=listing)
    by_id = {r.video_id: r for r in index.records}
    assert by_id["frames-00001"].label_name == "sad" and by_id["frames-00001"].path.is_dir()
    assert [by_id[f"v-Actor_0{p.stem[-1]}-{p.stem}"].label_name for p in videos] == [
        "neutral",
        "happy",
        "neutral",
        "happy",
    ]
    assert index.splits == "groups" and {r.fold for r in index.records} <= {1, 2, 3, 4, 5}
    actor_1 = {r.fold for r in index.records if r.video_id.startswith("v-Actor_01")}
    assert len(actor_1) == 1  # one group, one fold
    assert sorted(e.reason for e in index.excluded) == sorted(
        [datasets.records.NO_FRAMES, datasets.records.DUPLICATE]
    )
    # a word the vocabulary lacks is a class of its own; the order is the sorted names
    assert index.classes == ("Bored", "happy", "neutral", "sad")
    assert all(index.classes[r.label] == r.label_name for r in index.records)
    declared = _list_file(tmp_path / "declared.csv", ["# classes: Sadness, happy", *rows])
    index = scan_dataset("list", tmp_path, list_file=declared)
    assert index.classes == ("sad", "happy") and by_id["frames-00001"].label_name == "sad"
    assert {r.video_id: r.label for r in index.records}["frames-00001"] == 0
    unknown = {e.detail for e in index.excluded if e.reason == datasets.records.UNKNOWN_LABEL}
    # neutral twice and Bored; the line numbers count the comment and the header
    assert (
        len(unknown) == 3
        and "line 8: label 'Bored' is not one of the declared classes sad, happy" in unknown
    )
    identity = datasets.listfile.list_identity(declared)
    assert (identity.splits, identity.classes, identity.num_folds) == (
        "groups",
        ("sad", "happy"),
        5,
    )
    assert identity.sha256 != datasets.listfile.list_identity(listing).sha256
    split = _list_file(
        tmp_path / "split.csv",
        [
            "path,label,split",
            f"{videos[0].relative_to(tmp_path)},sad,train",
            f"{folders[0]},happy,test",
        ],
    )
    index = scan_dataset("list", tmp_path, list_file=split)
    assert index.splits == "file" and [r.fold for r in index.records] == [1, TRAIN_ONLY]


def test_wrong_trees_and_options_name_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"dfew: no frame folder under .*Clip/clip_224x224"):
        scan_dataset("dfew", tmp_path)
    (tmp_path / "Clip" / "clip_224x224").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"set_1\.csv is missing; the release ships"):
        scan_dataset("dfew", tmp_path)
    with pytest.raises(ConfigError, match="--list FILE goes with --dataset list"):
        scan_dataset("mafw", tmp_path, list_file=tmp_path / "x.csv")
    with pytest.raises(ConfigError, match="unknown dataset 'afew'; known: ravdess, crema-d"):
        scan_dataset("afew", tmp_path)


def test_text_as_people_write_it(tmp_path, trees):
    """Issue 32: a BOM, CRLF, blank and whitespace-only lines, an empty path, a path leaving the
    root, a Unicode digit, two paths with one id, a Latin-1 file, blank DFEW split lines."""
    frames = sorted((trees["dfew"] / "Clip" / "clip_224x224").iterdir())[:3]
    for source in frames:
        shutil.copytree(source, tmp_path / "a" / source.name)
    shutil.copytree(frames[0], tmp_path / "a-00001")  # `a/00001` and `a-00001`: one id
    rows = [
        "path,label,fold",
        f"a/{frames[0].name},sad,1",
        "   ",
        ",happy,1",
        f"../{frames[1].name},happy,1",
        f"/{frames[1].name},happy,1",
        f"a/{frames[1].name},happy,²",
        "",
        f"a/{frames[2].name},happy,2",
        "a-00001,sad,2",
    ]
    listing = tmp_path / "list.csv"
    listing.write_bytes(("\ufeff" + "\r\n".join(rows) + "\r\n").encode("utf-8"))
    index = scan_dataset("list", tmp_path, list_file=listing)
    assert [(r.video_id, r.fold) for r in index.records] == [("a-00001", 1), ("a-00003", 2)]
    details = sorted(e.detail for e in index.excluded)
    assert details == [
        "line 10: a-00001 has the id a-00001 of line 2 (a/00001): rename one",
        "line 4: path '' is not a path inside --root",
        "line 5: path '../00002' is not a path inside --root",
        "line 6: path '/00002' is not a path inside --root",
        "line 7: fold '²' is not a number",
    ]
    empty = _list_file(tmp_path / "empty.csv", ["path,label", "  "])
    with pytest.raises(DatasetError, match=r"empty.csv: no rows after the header"):
        scan_dataset("list", tmp_path, list_file=empty)
    one = _list_file(tmp_path / "one.csv", ["path,label", f"a/{frames[0].name},sad"])
    with pytest.raises(DatasetError, match=r"one.csv: one class \('sad'\); a classifier needs two"):
        scan_dataset("list", tmp_path, list_file=one)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,label\na/00001,tristesse é\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin.csv: not UTF-8 text \(byte 29: .*save the list"):
        scan_dataset("list", tmp_path, list_file=latin)
    # DFEW: blank trailing lines are no rows, a Unicode digit is a bad row, not a traceback
    split = trees["dfew"] / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_1.csv"
    copy = tmp_path / "dfew"
    shutil.copytree(trees["dfew"], copy)
    split = copy / split.relative_to(trees["dfew"])
    split.write_text(split.read_text() + "²,3\n\n \n")
    index = scan_dataset("dfew", copy)
    bad = [e.detail for e in index.excluded if e.reason == datasets.records.BAD_ROW]
    assert len(bad) == 1 and "'²'" in bad[0], bad


HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from(list("ab,.\"'/ \t\r\n#0129²٣$é-_") + ["\ufeff", "\x00"]),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=HOSTILE_TEXT, raw=st.binary(max_size=40))
def test_any_list_or_split_file_parses_or_is_one_line(trees, tmp_path, body, raw):
    """Hypothesis writes hostile text (and bytes) as a list file and after the rows of a DFEW,
    FERV39k and MAFW split file: the index is built, or one VjferError line names the problem;
    never another exception."""
    listing = tmp_path / "list.csv"
    for content in (("path,label,fold\n" + body).encode("utf-8"), raw):
        listing.write_bytes(content)
        try:
            scan_dataset("list", tmp_path, list_file=listing)
        except VjferError as err:
            assert "\n" not in str(err)
    splits = {
        "dfew": "EmoLabel_DataSplit/test(single-labeled)/set_1.csv",
        "ferv39k": "4_setups/All_scenes/test_All.csv",
        "mafw": "split/single/no_caption/set_1/test.txt",
    }
    for dataset, name in splits.items():  # the split file with hostile text appended
        split = trees[dataset] / name
        original = split.read_bytes()
        try:
            split.write_bytes(original + body.encode("utf-8"))
            try:
                scan_dataset(dataset, trees[dataset])
            except VjferError as err:
                assert "\n" not in str(err)
        finally:
            split.write_bytes(original)
