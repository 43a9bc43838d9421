"""End to end through the command line: index -> extract -> cache -> probe -> cross -> report ->
predict.

Generated RAVDESS- and CREMA-D-named videos (real codecs), the seeded tiny encoder, 1 epoch. Checks
the files each stage writes and that their numbers agree with each other.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import assert_png, one_frame_video, run_cli
from page_tools import (
    LAPTOP,
    assert_tables_equal_csvs,
    chromium_or_skip,
    dump_dom,
    probe_page,
    read_html_tables,
    screenshot,
)

from vjfer.cli import cli
from vjfer.synthetic import make_crema_d, make_ravdess
from vjfer.timeline import CHOICE_RULE

RAVDESS_ACTORS = (2, 3, 10, 8, 1)  # one test actor in each of the five folds
CREMA_D_ACTORS = (1002, 1004, 1005, 1007, 1001)
REPO = Path(__file__).resolve().parents[1]


run = run_cli  # `vjfer ARGS...` in-process; asserts exit 0 unless ok=False


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    """Generate both datasets, extract, probe all folds, cross both ways; return the paths."""
    tmp = tmp_path_factory.mktemp("e2e")
    roots = {"ravdess": tmp / "RAVDESS", "crema-d": tmp / "CREMA-D"}
    make_ravdess(roots["ravdess"], actors=RAVDESS_ACTORS, emotions=(1, 2, 3, 5, 8), seed=1)
    make_crema_d(roots["crema-d"], actors=CREMA_D_ACTORS, sentences=("TIE",), seed=1)
    cache, runs = tmp / "cache", tmp / "runs"
    outputs = {}
    for dataset, root in roots.items():
        outputs[f"extract-{dataset}"] = run(
            "extract",
            "--dataset",
            dataset,
            "--root",
            root,
            "--encoder",
            "tiny",
            "--cache",
            cache,
            "--workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        )
        outputs[f"probe-{dataset}"] = run(
            "probe",
            "--dataset",
            dataset,
            "--cache",
            cache,
            "--out",
            runs,
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--num-workers",
            "0",
            "--no-progress",
        )
    outputs["cross-r2c"] = run(
        "cross",
        "--train",
        "ravdess",
        "--test",
        "crema-d",
        "--runs",
        runs,
        "--cache",
        cache,
        "--device",
        "cpu",
    )
    outputs["cross-c2r"] = run(
        "cross",
        "--train",
        "crema-d",
        "--test",
        "ravdess",
        "--runs",
        runs,
        "--cache",
        cache,
        "--calm",
        "merge",
        "--device",
        "cpu",
    )
    return {"tmp": tmp, "roots": roots, "cache": cache, "runs": runs, "out": outputs}


def test_index_prints_counts(pipeline):
    out = run("index", "--dataset", "ravdess", "--root", pipeline["roots"]["ravdess"])
    # 5 actors x 5 emotions x 1 statement x 1 repetition x 2 video modalities (speech only)
    counts = re.search(r"^(\d+) videos, (\d+) actors, (\d+) files excluded$", out, re.M)
    assert counts and (int(counts[1]), int(counts[2])) == (50, 5)
    per_class = dict(re.findall(r"^\s+\d+ (\w+)\s+(\d+)$", out, re.M))
    assert per_class["neutral"] == "10" and len(per_class) == 8  # 5 emotions generated, 3 empty
    assert re.search(r"^\s+\d+\s+audio-only", out, re.M)
    out = run(
        "index", "--dataset", "ravdess", "--root", pipeline["roots"]["ravdess"], "--duplicates"
    )
    found = re.search(
        r"duplicates: (\d+) videos have the identical video stream of another \((\d+) groups\)", out
    )
    assert found and (int(found[1]), int(found[2])) == (25, 25)  # every 02 file has its 01 twin
    info = run("cache", "info", pipeline["cache"] / "ravdess")
    assert re.search(r"shared\s+25 videos share the identical video stream of another", info)


def test_index_without_root_names_the_variable(monkeypatch):
    monkeypatch.delenv("VJFER_CREMA_D", raising=False)
    result = CliRunner().invoke(cli, ["index", "--dataset", "crema-d"])
    assert result.exit_code != 0 and "VJFER_CREMA_D" in result.output


def test_extract_writes_verifiable_caches(pipeline):
    videos = re.search(
        r"^videos\s+(\d+) encoded .*, (\d+) already cached, (\d+) failed$",
        pipeline["out"]["extract-ravdess"],
        re.M,
    )
    assert videos and (int(videos[2]), int(videos[3])) == (0, 0)
    caches = sorted(pipeline["cache"].glob("*/*/manifest.json"))
    assert [p.parent.parent.name for p in caches] == ["crema-d", "ravdess"]
    for manifest in caches:
        assert "OK" in run("cache", "verify", manifest.parent)
        info = run("cache", "info", manifest.parent)
        assert re.search(r'^\s+encoder: "tiny"$', info, re.M), info
    root = pipeline["roots"]["ravdess"]
    assert "OK" in run("cache", "verify", caches[1].parent, "--root", root)


def test_probe_writes_every_fold(pipeline):
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["folds"] == [1, 2, 3, 4, 5]
    test_videos = 0
    for k in range(1, 6):
        fold = run_dir / f"fold-{k}"
        videos = pd.read_csv(fold / "video_predictions.csv")
        metrics = json.loads((fold / "metrics.json").read_text())
        assert len(videos) == metrics["n_test_videos"] == 10  # one actor: 5 emotions x 2 modalities
        assert (videos["pbv"] == videos.filter(like="prob_").to_numpy().argmax(1)).all()
        war = (videos["pbv"] == videos["label"]).mean()
        assert metrics["pbv"]["war"] == pytest.approx(war)
        test_videos += len(videos)
    assert test_videos == 50  # every video is tested exactly once over the folds


def test_cross_counts_add_up(pipeline):
    # each cross result lives in its probe run: RUN/cross/cross-<train>-to-<test>-<calm>/
    cross_dirs = sorted(p.name for p in pipeline["runs"].glob("*/cross/cross-*"))
    assert cross_dirs == [
        "cross-crema-d-to-ravdess-merge",
        "cross-ravdess-to-crema-d-drop",
        "cross-ravdess-to-crema-d-merge",
    ]
    (merge,) = pipeline["runs"].glob("crema-d-*/cross/cross-crema-d-to-ravdess-merge")
    summary = json.loads((merge / "summary.json").read_text())
    for fold in summary["folds"]:
        for voting in ("pbv", "mv"):
            scores = fold[voting]
            assert scores["n_kept"] + scores["n_dropped"] == scores["n_total"] == 50
            # merge on the label side: surprised videos (10) are dropped, calm ones count as neutral
            assert scores["n_dropped"] == 10
    assert (
        "ravdess: results on 50 of 50 videos, 0 failed / excluded" in pipeline["out"]["cross-c2r"]
    )
    coverage = json.loads((merge / "coverage.json").read_text())
    assert (coverage["videos"], coverage["total"], coverage["failed"], coverage["excluded"]) == (
        50,
        50,
        0,
        0,
    )


def test_probe_refuses_to_overwrite_a_run(pipeline):
    """A second `vjfer probe` of the same settings is one line naming the run; nothing changes."""
    (run_dir,) = pipeline["runs"].glob("ravdess-*")
    before = (run_dir / "summary.json").read_bytes()
    out = run(
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        pipeline["cache"],
        "--out",
        pipeline["runs"],
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        ok=False,
    )
    assert out.strip() == (
        f"error: run {run_dir} exists: --force replaces it, or choose another --out"
    )
    assert (run_dir / "summary.json").read_bytes() == before
    assert "give one" in run(
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        pipeline["cache"],
        "--out",
        pipeline["runs"],
        "--force",
        "--resume",
        ok=False,
    )


@pytest.fixture(scope="module")
def report_dir(pipeline) -> dict:
    """`vjfer report` of the pipeline's runs, once for the tests that read it."""
    out = pipeline["tmp"] / "report"
    written = run("report", pipeline["runs"], "--out", out, "--cache", pipeline["cache"])
    return {"out": out, "printed": written}


def test_report_tables_and_figures(report_dir):
    out, written = report_dir["out"], report_dir["printed"]
    assert str(out / "report.md") in written
    report = (out / "report.md").read_text()
    assert re.search(
        r"- ravdess cache tiny-64-\w+: results on 50 of 50 videos, 0 failed / excluded", report
    )
    assert written.splitlines()[-1] == str(out / "report.html")
    table2 = pd.read_csv(out / "table2.csv")
    assert set(table2["Dataset"]) >= {"RAVDESS", "CREMA-D"}
    assert len(pd.read_csv(out / "table4.csv")) >= 3
    pngs = sorted(out.glob("*.png"))
    assert any(p.name.startswith("pca-") for p in pngs)
    assert any(p.name.startswith("confusion-") for p in pngs)
    for png in pngs:
        assert_png(png, min_height=100)
        assert matplotlib.image.imread(png).ndim == 3
    assert sorted(p.name for p in pngs if p.name.startswith("timeline-")) == [
        f"timeline-{r.name}.png" for r in sorted(pipeline_runs(out))
    ]


def pipeline_runs(report_out: Path) -> list[Path]:
    """The probe runs (not cross runs) of the pipeline whose report is `report_out`."""
    return [p for p in (report_out.parent / "runs").iterdir() if not p.name.startswith("cross-")]


def test_report_page_tables_equal_the_csvs(report_dir):
    page = report_dir["out"] / "report.html"
    names = assert_tables_equal_csvs(page)
    assert {"settings", "table2", "table3", "table4", "folds", "recall"} <= set(names)
    tables = read_html_tables(page.read_text(encoding="utf-8"))
    table4 = pd.read_csv(report_dir["out"] / "table4.csv")
    assert len(tables["table4"]["rows"]) == len(table4) == 6  # r2c drop, merge; c2r merge; x2
    dropped = tables["table4"]["head"].index("Dropped per probe")
    assert [r[dropped][0] for r in tables["table4"]["rows"]] == table4["Dropped per probe"].tolist()
    settings = pd.read_csv(report_dir["out"] / "settings.csv").set_index("Setting")
    assert set(settings.loc["Encoder"]) == {"tiny"} and set(settings.loc["Probe"]) == {"attentive"}
    assert set(settings.loc["Face crop"]) == {"none (whole frames)"}
    text = page.read_text(encoding="utf-8")
    assert "Which videos: " + CHOICE_RULE in text.replace("&#x27;", "'")
    assert text.count('src="data:image/png;base64,') == len(list(report_dir["out"].glob("*.png")))


def test_report_page_in_a_browser(report_dir, tmp_path):
    """What a person sees in Chromium at laptop width: no console error, every image decoded at
    a non-zero size, no horizontal scrolling (page or table), nothing fetched, the numbers of
    Table II in the DOM; and a screenshot that decodes."""
    chromium = chromium_or_skip()
    page = report_dir["out"] / "report.html"
    seen = probe_page(chromium, page, tmp_path)
    assert seen["errors"] == []
    assert seen["resources"] == []  # figures are inline: no file, no network
    pngs = len(list(report_dir["out"].glob("*.png")))
    assert len(seen["images"]) == pngs
    for image in seen["images"]:
        assert image["complete"] and image["naturalWidth"] > 200 and image["naturalHeight"] > 200
        assert 0 < image["shownWidth"] <= LAPTOP[0]
    assert seen["scrollWidth"] <= seen["clientWidth"] == LAPTOP[0]
    for table in seen["tables"]:
        assert table["width"] <= table["room"], table  # fits: no scrolling inside the table
    dom_tables = read_html_tables(dump_dom(chromium, page, tmp_path))
    table2 = pd.read_csv(report_dir["out"] / "table2.csv")
    uar = dom_tables["table2"]["head"].index("UAR")
    assert [float(r[uar][1]["data-value"]) for r in dom_tables["table2"]["rows"]] == table2[
        "UAR"
    ].tolist()
    shot = screenshot(chromium, page, tmp_path / "report.png", (LAPTOP[0], 3000))
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (3000, LAPTOP[0])
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank page


def test_predict_any_container(pipeline, tmp_path):
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    video = sorted(pipeline["roots"]["ravdess"].rglob("*.mp4"))[0]
    flv = sorted(pipeline["roots"]["crema-d"].rglob("*.flv"))[0]
    out = json.loads(
        run("predict", video, flv, "--run", run_dir, "--json", "--clips", "--device", "cpu")
    )
    assert [v["video_id"] for v in out["videos"]] == [video.stem, flv.stem]
    for row in out["videos"]:
        probs = [row[k] for k in row if k.startswith("prob_")]
        assert len(probs) == 8 and sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["emotion"] == max((row[k], k[5:]) for k in row if k.startswith("prob_"))[1]
    assert {c["video_id"] for c in out["clips"]} == {video.stem, flv.stem}


def test_predict_plots_a_timeline(pipeline, tmp_path):
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    videos = sorted(pipeline["roots"]["ravdess"].rglob("*.mp4"))[:2]
    plot = tmp_path / "timeline.png"
    args = [
        "predict",
        *videos,
        "--run",
        run_dir,
        "--json",
        "--clips",
        "--device",
        "cpu",
        "--plot",
        plot,
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0 and f"timeline written to {plot}" in result.stderr
    clips = json.loads(result.stdout)["clips"]  # stdout stays JSON; the plot's path is on stderr
    for clip in clips:  # the centre lies halfway between the clip's first and last frame
        assert clip["start_s"] < clip["centre_s"]
    image = matplotlib.image.imread(plot)
    assert image.ndim == 3 and image.shape[1] > 800  # two videos: two panels side by side
    result = CliRunner().invoke(
        cli, ["predict", str(videos[0]), "--run", str(run_dir), "--plot", str(tmp_path / "t.pdf")]
    )
    assert result.exit_code == 2 and "ending in .png" in result.output


def test_predict_matches_the_cached_tokens(pipeline):
    """Prediction rebuilds the cache's pipeline: one fold's probe gives the probabilities that the
    fold's evaluation wrote for the same video."""
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    fold = run_dir / "fold-1"
    expected = pd.read_csv(fold / "video_predictions.csv").iloc[0]
    (video,) = pipeline["roots"]["ravdess"].rglob(f"{expected['video_id']}.mp4")
    out = json.loads(
        run("predict", video, "--run", run_dir, "--fold", "1", "--json", "--device", "cpu")
    )
    row = out["videos"][0]
    n = expected["n_clips"]
    for name in ("neutral", "happy", "surprised"):
        assert row[f"prob_{name}"] == pytest.approx(expected[f"prob_{name}"] / n, abs=1e-4)


def test_predict_reports_a_broken_file(pipeline, tmp_path):
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    result = CliRunner().invoke(
        cli, ["predict", str(broken), "--run", str(run_dir), "--device", "cpu"]
    )
    assert result.exit_code == 1 and "broken.mp4" in result.output


def test_probe_refuses_an_ambiguous_cache_folder(pipeline):
    result = CliRunner().invoke(
        cli, ["probe", "--cache", str(pipeline["cache"]), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert "2 any dataset caches" in result.output and "--cache" in result.output


def test_encoders_lists_the_registry():
    out = run("encoders")
    for name in ("vjepa-l16", "vjepa-h16", "vjepa-h16-384", "vjepa2", "videomae", "tiny"):
        assert name in out
    assert "631.6M" in out or "632" in out


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
@pytest.mark.slow
def test_make_reproduce_runs_and_resumes(tmp_path):
    """`make reproduce` on generated data with the tiny encoder: every step, then a rerun that
    finds nothing left to do, then, after the report is deleted, a dry run (`make -n`: the same
    decision on the same files, without paying for a second report) that would redo only the
    report."""
    roots = {"RAVDESS": tmp_path / "RAVDESS", "CREMA_D": tmp_path / "CREMA-D"}
    make_ravdess(roots["RAVDESS"], actors=RAVDESS_ACTORS, emotions=(1, 3), seed=2)
    make_crema_d(
        roots["CREMA_D"], actors=CREMA_D_ACTORS, emotions=("NEU", "HAP"), sentences=("TIE",), seed=2
    )
    out = tmp_path / "repro"
    vjfer = Path(sys.executable).parent / "vjfer"
    args = [
        "make",
        "-C",
        str(REPO),
        "reproduce",
        f"OUT={out}",
        f"VJFER={vjfer}",
        "ENCODER=tiny",
        "CHECKPOINT=",
        "EXTRACT_FLAGS=--workers 0 --device cpu",
        "PROBE_FLAGS=--epochs 1 --device cpu --num-workers 0",
        *(f"{k}={v}" for k, v in roots.items()),
    ]
    first = subprocess.run(args, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (out / "report" / "report.md").is_file()
    assert len(list((out / "runs").glob("*/cross/cross-*"))) == 4
    again = subprocess.run(args, capture_output=True, text=True)
    assert again.returncode == 0 and "vjfer extract" not in again.stdout
    (out / "report" / "report.md").unlink()
    third = subprocess.run([*args[:1], "-n", *args[1:]], capture_output=True, text=True)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "vjfer report" in third.stdout
    assert not re.search(r"vjfer (extract|probe|cross)", third.stdout), third.stdout


def test_make_reproduce_names_missing_inputs(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    result = subprocess.run(
        ["make", "-C", str(REPO), "reproduce", f"OUT={tmp_path}", "RAVDESS=", "VJFER_RAVDESS="],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "RAVDESS=DIR" in result.stderr


# ---- issue 14: messages ------------------------------------------------------------------------


def _ravdess_run(pipeline) -> Path:
    (run_dir,) = [p for p in pipeline["runs"].iterdir() if p.name.startswith("ravdess-")]
    return run_dir


def test_predict_names_an_lfs_pointer(pipeline, tmp_path):
    pointer = tmp_path / "01-01-03-01-01-01-01.mp4"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n")
    result = CliRunner().invoke(
        cli, ["predict", str(pointer), "--run", str(_ravdess_run(pipeline)), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert (
        f"failed: {pointer}: a git-LFS pointer, not a video: fetch the videos with `git lfs pull`"
        in result.output
    )


def test_predict_refuses_a_run_with_a_missing_fold_unless_told(pipeline, tmp_path):
    run_dir = Path(shutil.copytree(_ravdess_run(pipeline), tmp_path / "run"))
    (run_dir / "fold-3" / "probe.pt").unlink()
    video = sorted(pipeline["roots"]["ravdess"].rglob("*.mp4"))[0]
    args = ["predict", str(video), "--run", str(run_dir), "--device", "cpu", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert (
        "fold-3/probe.pt is missing: pass --folds 1,2,4,5 to predict with the probes"
        in result.output
    )
    out = json.loads(run(*args, "--folds", "1,2,4,5"))
    assert [v["video_id"] for v in out["videos"]] == [video.stem]
    result = CliRunner().invoke(cli, [*args, "--folds", "1,3"])
    assert result.exit_code == 1 and "has no fold 3; it has folds [1, 2, 4, 5]" in result.output


def test_options_that_do_not_apply_are_rejected(pipeline, tmp_path):
    ckpt = tmp_path / "vith16-384.pth.tar"
    ckpt.write_bytes(b"not used")
    video = sorted(pipeline["roots"]["ravdess"].rglob("*.mp4"))[0]
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(video),
            "--run",
            str(_ravdess_run(pipeline)),
            "--checkpoint",
            str(ckpt),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1
    assert "--checkpoint does not apply: the run's cache was made with tiny" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "extract",
            "--dataset",
            "ravdess",
            "--root",
            str(pipeline["roots"]["ravdess"]),
            "--encoder",
            "tiny",
            "--checkpoint",
            str(ckpt),
            "--cache",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "--checkpoint does not apply to --encoder tiny" in result.output
    assert not (tmp_path / "ravdess").exists()
    env = {"VJFER_CHECKPOINT": str(ckpt)}  # the variable serves real encoders: ignored for tiny
    result = CliRunner().invoke(
        cli,
        ["predict", str(video), "--run", str(_ravdess_run(pipeline)), "--device", "cpu"],
        env=env,
    )
    assert result.exit_code == 0, result.output


def test_probe_names_an_interrupted_cache_and_how_to_resume_it(pipeline, tmp_path):
    (source,) = [p for p in (pipeline["cache"] / "ravdess").iterdir()]
    cache_dir = Path(shutil.copytree(source, tmp_path / "cache" / "ravdess" / source.name))
    (cache_dir / "manifest.json").unlink()  # as an extraction killed mid-run leaves it
    (cache_dir / "shard-00000.h5").rename(cache_dir / "shard-00000.h5.partial")
    result = CliRunner().invoke(
        cli, ["probe", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    )
    assert result.exit_code == 1
    assert (
        f"cache {cache_dir} is incomplete (0 shards complete, no finished manifest)"
        in result.output
    )
    root = pipeline["roots"]["ravdess"]
    assert (
        f"resume it with `vjfer extract --dataset ravdess --root {root} --encoder tiny"
        in result.output
    )
    assert "run `vjfer extract` first" not in result.output


@pytest.mark.slow
def test_reference_fidelity_options_reach_the_cache_and_the_run(pipeline, tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    # two of the pipeline's five emotions (links to its videos): the options' path, at 2/5 the cost
    root = tmp_path / "RAVDESS"
    for video in pipeline["roots"]["ravdess"].rglob("*.mp4"):
        if video.name.split("-")[2] in ("01", "03"):
            (root / video.parent.name).mkdir(parents=True, exist_ok=True)
            (root / video.parent.name / video.name).symlink_to(video)
    out = run(
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        root,
        "--encoder",
        "tiny",
        "--cache",
        cache,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--plan",
        "reference",
        "--augment",
        "1",
        "--dtype",
        "fp16",
        "--no-progress",
    )
    line = next(x for x in out.splitlines() if x.startswith("augmented"))
    assert "1 × 8 = 8 extra clips a video" in line
    (directory,) = [p.parent for p in cache.rglob("manifest.json")]
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["settings"]["augment"]["copies"] == 1
    assert manifest["settings"]["plan"] == "reference" and manifest["config"]["dtype"] == "fp16"
    run(
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        cache,
        "--out",
        runs,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
        "--train-view",
        "augmented",
        "--token-augment",
        "--autocast",
        "fp16",
    )
    (run_dir,) = list(runs.iterdir())
    config = json.loads((run_dir / "config.json").read_text())["train"]
    assert (config["train_view"], config["token_augment"], config["autocast"]) == (
        "augmented",
        True,
        "fp16",
    )
    metrics = json.loads((run_dir / "fold-1" / "metrics.json").read_text())
    assert 0.0 <= metrics["mv"]["tie_fraction"] <= 1.0


def test_predict_says_when_a_video_is_shorter_than_one_clip(pipeline, tmp_path):
    """Issue 20: the JSON gains each video's frame count, and a video shorter than one clip
    (its one clip padded) is named, not scored in silence."""
    short = tmp_path / "short.mp4"
    short.write_bytes(one_frame_video("mp4"))
    out = json.loads(
        run("predict", short, "--run", _ravdess_run(pipeline), "--json", "--device", "cpu")
    )
    rows = [(v["video_id"], v["n_frames"], v["n_clips"]) for v in out["videos"]]
    assert rows == [("short", 1, 1)]
    assert out["notes"] == [
        f"{short}: 1 frame(s), shorter than one clip (65 frames): its one "
        "clip repeats the last frame (the reference's padding)"
    ]
