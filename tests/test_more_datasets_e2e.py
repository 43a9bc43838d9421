"""extract -> probe --fold all -> cross -> report on generated DFEW, FERV39k and MAFW trees, on
RAVDESS with the peers' 6-fold protocol, and on list-file datasets of videos and of frame folders
(the tiny encoder, 1 epoch)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli
from vjfer.digests import sha256_file
from vjfer.extract.plan import projected_clip_rate
from vjfer.synthetic import make_ravdess
from vjfer.synthetic_frames import make_dfew, make_ferv39k, make_mafw

EXTRACT = ("--encoder", "tiny", "--workers", "0", "--device", "cpu", "--no-progress")
PROBE = ("--epochs", "1", "--device", "cpu", "--num-workers", "0", "--no-progress")


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("more")
    roots = {
        "dfew": make_dfew(tmp / "DFEW", clips_per_class=1),
        "ferv39k": make_ferv39k(tmp / "FERV39k", clips_per_class=1),
        "mafw": make_mafw(tmp / "MAFW", clips_per_class=1),
    }
    cache, runs, out = tmp / "cache", tmp / "runs", {}
    for name, root in roots.items():
        out[f"extract-{name}"] = run_cli(
            "extract", "--dataset", name, "--root", root, "--cache", cache, *EXTRACT
        )
        out[f"probe-{name}"] = run_cli(
            "probe", "--dataset", name, "--cache", cache, "--out", runs, *PROBE
        )
    out["cross"] = run_cli(
        "cross",
        "--train",
        "dfew",
        "--test",
        "mafw",
        "--runs",
        runs,
        "--cache",
        cache,
        "--device",
        "cpu",
    )
    out["report"] = run_cli(
        "report", str(runs), "--out", tmp / "report", "--cache", cache, "--device", "cpu"
    )
    return {"tmp": tmp, "roots": roots, "cache": cache, "runs": runs, "out": out}


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, folds, videos",
    [("dfew", [1, 2, 3, 4, 5], 7), ("ferv39k", [1], 7), ("mafw", [1, 2, 3, 4, 5], 11)],
)
def test_every_official_fold_is_trained_and_recorded(done, name, folds, videos):
    run_dir = next(done["runs"].glob(f"{name}-*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["folds"] == folds and summary["splits"] == "official"
    tested = sum(
        json.loads((run_dir / f"fold-{k}" / "metrics.json").read_text())["n_test_videos"]
        for k in folds
    )
    assert tested == (
        1 if name == "ferv39k" else videos
    )  # each clip tested once (FERV39k: test set)
    assert "(official splits)" in done["out"][f"probe-{name}"]
    plan = done["out"][f"extract-{name}"]
    assert re.search(rf"^videos\s+{videos} in 1 shards", plan, re.M), plan
    assert re.search(r"^excluded\s+[23] files when indexing", plan, re.M), plan
    sizes = dict(re.findall(r"([\w+]+) ~([\d.e-]+) GB", plan.split("formats", 1)[1].split("\n")[0]))
    assert set(sizes) == {"fp16", "int8", "pool2", "pool2+int8"}, plan  # priced before it starts
    assert float(sizes["int8"]) < float(sizes["fp16"])
    clips = int(re.search(r"^clips\s+~(\d+)", plan, re.M).group(1))
    gpu = re.search(
        r"^gpu time\s+~\S+ \w+ for ~(\d+) clips at a projected ([\d.e+]+) clips/s", plan, re.M
    )
    assert gpu and int(gpu.group(1)) == clips, plan  # the encoder estimate, per dataset
    assert float(gpu.group(2)) == pytest.approx(projected_clip_rate("tiny")[0], rel=1e-2)


def test_the_encoder_estimate_is_the_readmes():
    """ViT-H/16-384 at 50 % of an H100's bf16 peak: ~53 clips/s, so DFEW's 43,853 clips (README,
    "What to expect") take ~13.7 min and FERV39k's 38,935 ~12.2 min."""
    rate, tflop = projected_clip_rate("vjepa-h16-384")
    assert tflop == pytest.approx(9.295, abs=1e-3) and rate == pytest.approx(53.2, abs=0.05)
    assert 43_853 / rate / 60 == pytest.approx(13.7, abs=0.05)
    assert 38_935 / rate / 60 == pytest.approx(12.2, abs=0.05)
    assert projected_clip_rate("vjepa2") is None  # its architecture comes with its weights


@pytest.mark.slow
def test_cross_maps_classes_by_name_and_the_report_names_the_datasets(done):
    cross = json.loads(
        next(done["runs"].glob("*/cross/cross-dfew-to-mafw-*/summary.json")).read_text()
    )
    assert cross["class_names"] == [
        "angry",
        "disgust",
        "fearful",
        "happy",
        "neutral",
        "sad",
        "surprised",
    ]  # MAFW's order, its four extra classes dropped
    table = (done["tmp"] / "report" / "table2.csv").read_text()
    for title, splits, classes in (
        ("DFEW", "official", 7),
        ("FERV39k", "official", 7),
        ("MAFW", "official", 11),
    ):
        assert re.search(rf"^{title},[^\n]*,{splits},{classes},", table, re.M), table
    # the releases name no actors: their intervals resample videos (and Table IV's, by target)
    bootstrap = json.loads((done["tmp"] / "report" / "bootstrap.json").read_text())
    assert {bootstrap["unit"][d] for d in ("dfew", "ferv39k", "mafw")} == {"video"}
    assert "by video: DFEW, FERV39k, MAFW" in (done["tmp"] / "report" / "table2.md").read_text()
    assert ",UAR low,UAR high," in table.splitlines()[0]


@pytest.mark.slow
def test_ravdess_mae_dfer_and_list_files_run_end_to_end(tmp_path, done):
    root = tmp_path / "RAVDESS"
    make_ravdess(
        root,
        actors=(1, 5, 9, 13, 17, 21),
        emotions=(1, 3),
        modalities=(2,),
        vocal_channels=(1,),
        short_every=0,
        frames=24,
    )
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    run_cli("extract", "--dataset", "ravdess", "--root", root, "--cache", cache, *EXTRACT)
    out = run_cli(
        "probe",
        "--dataset",
        "ravdess",
        "--splits",
        "mae-dfer",
        "--cache",
        cache,
        "--out",
        runs,
        *PROBE,
    )
    summary = json.loads(next(runs.glob("ravdess-*-mae-dfer")).joinpath("summary.json").read_text())
    assert summary["folds"] == [1, 2, 3, 4, 5, 6] and summary["splits"] == "mae-dfer"
    assert "(mae-dfer splits)" in out
    paper = run_cli("probe", "--dataset", "ravdess", "--cache", cache, "--out", runs, *PROBE)
    assert "Folds 1, 2, 4, 5 (paper splits)" in paper  # the same cache: actors 1..21 miss fold 3


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _list_run(tmp_path: Path, name: str, root: Path, listing: Path) -> dict:
    """index -> extract -> probe --fold all of one list-file dataset, each in its own folders."""
    cache, runs = tmp_path / f"cache-{name}", tmp_path / f"runs-{name}"
    out = {"index": run_cli("index", "--dataset", "list", "--root", root, "--list", listing)}
    out["extract"] = run_cli(
        "extract",
        "--dataset",
        "list",
        "--root",
        root,
        "--list",
        listing,
        "--cache",
        cache,
        *EXTRACT,
    )
    out["probe"] = run_cli(
        "probe", "--dataset", "list", "--fold", "all", "--cache", cache, "--out", runs, *PROBE
    )
    (directory,) = (cache / "list").iterdir()
    return {
        **out,
        "manifest": json.loads((directory / "manifest.json").read_text()),
        "extract.json": json.loads((directory / "extract.json").read_text()),
        "summary": json.loads(next(runs.glob("list-*/summary.json")).read_text()),
        "runs": runs,
    }


@pytest.mark.slow
def test_list_files_of_videos_and_of_frame_folders_run_end_to_end(tmp_path, done):
    """A list of video files (seeded group folds, labels in release spellings) and a list of
    frame folders (a fold column, a declared class order): index, extract, probe --fold all,
    cross by class name and report, with the list's sha256, classes and folds in the cache."""
    videos = make_ravdess(
        tmp_path / "v",
        actors=(1, 5, 9, 13, 17, 21),
        emotions=(1, 3),
        modalities=(2,),
        vocal_channels=(1,),
        short_every=0,
        frames=24,
    )
    words = {"01": "Neutral", "03": "happiness"}  # RAVDESS EE: spellings the vocabulary knows
    plain = _write(
        tmp_path / "videos.csv",
        ["path,label,group"]
        + [
            f"{p.relative_to(tmp_path)},{words[p.name.split('-')[2]]},{p.parent.name}"
            for p in videos
        ],
    )
    dfew = done["roots"]["dfew"]
    folders = sorted((dfew / "Clip" / "clip_224x224").iterdir())[:6]
    framed = _write(
        tmp_path / "frames.csv",
        ["# classes: sad, happy", "path,label,fold"]
        + [
            f"{p.relative_to(dfew)},{('sad', 'happy')[i % 2]},{i // 2 % 2 + 1}"
            for i, p in enumerate(folders)
        ]
        + [f"{folders[0].relative_to(dfew)}x,angry,1"],
    )
    a, b = (
        _list_run(tmp_path, "videos", tmp_path, plain),
        _list_run(tmp_path, "frames", dfew, framed),
    )

    assert re.search(r"^12 videos, ", a["index"], re.M) and re.search(
        r"^6 videos, ", b["index"], re.M
    )
    for run, listing, splits, classes, folds in (
        (a, plain, "groups", ["happy", "neutral"], 5),
        (b, framed, "file", ["sad", "happy"], 2),
    ):
        recorded = run["manifest"]["settings"]["list"]
        assert recorded["sha256"] == sha256_file(listing) and recorded["splits"] == splits
        assert run["manifest"]["class_names"] == classes == run["summary"]["class_names"]
        assert run["summary"]["folds"] == list(range(1, folds + 1))
        assert run["summary"]["splits"] == splits and f"({splits} splits)" in run["probe"]
        command = run["extract.json"]["command"]
        assert command[command.index("--list") + 1] == str(listing)  # the resume command has it
    labels = {v["video_id"]: v["label"] for v in b["manifest"]["videos"]}
    assert [labels[f"Clip-clip_224x224-{p.name}"] for p in folders] == [0, 1] * 3  # sad, happy
    assert any(e["reason"] == "unknown label" for e in b["manifest"]["excluded"])

    cross = run_cli(
        "cross",
        "--train",
        "list",
        "--test",
        "dfew",
        "--runs",
        a["runs"],
        "--cache",
        done["cache"],
        "--device",
        "cpu",
        "--calm",
        "drop",
    )
    assert "happy, neutral (matched by name)" in cross, cross  # DFEW's order: happy .. neutral
    run_cli("report", a["runs"], b["runs"], "--out", tmp_path / "report", "--device", "cpu")
    table = (tmp_path / "report" / "table2.csv").read_text()
    for splits, folds in (("groups", 5), ("file", 2)):
        assert re.search(rf"^List file,[^\n]*,{folds},{splits},2,", table, re.M), table
