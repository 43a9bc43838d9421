"""`vjfer bench` (vjfer/bench.py, vjfer/bench_page.py): a real three-family probe run of a tiny
cache tabulated into leaderboard.csv / .html / predictions.parquet (fast), and `vjfer demo --bench`
end to end in headless Chromium (slow: two tiny encoders × two generated datasets)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import PROBE_SETTINGS, assert_png, run_cli
from page_tools import assert_tables_equal_csvs, chromium_or_skip, probe_page, read_html_tables

from vjfer.bench import (
    FAMILIES,
    BenchConfig,
    column_protocols,
    find_inputs,
    leaderboard_table,
    predictions_frame,
    run_bench,
    run_entries,
)
from vjfer.errors import ConfigError
from vjfer.probe.config import TrainConfig

SETTINGS = {**PROBE_SETTINGS, "encoder": "tiny", "encoder_fingerprint": {"seed": 0}}
ACTORS = (2, 3, 10, 8, 1)  # one actor per test fold of the paper's RAVDESS folds
PREDICTION_COLUMNS = [
    "encoder",
    "encoder_family",
    "layer",
    "probe",
    "head",
    "dataset",
    "fold",
    "video",
    "subject",
    "label",
    "label_name",
    "prediction",
    "class_names",
    "probabilities",
]
RAVDESS = "RAVDESS (paper folds)"  # a dataset's columns name its fold protocol
QUICK = TrainConfig(epochs=1, batch_size=4, num_heads=4, device="cpu", num_workers=0)


@pytest.fixture(scope="module")
def bench(tiny_cache, tmp_path_factory, one_thread):
    """A tiny cache benched once: bench probes it (three families, one pass) and tabulates."""
    cache = tiny_cache(actors=ACTORS, settings=SETTINGS)
    out = tmp_path_factory.mktemp("bench")
    result = run_bench([cache], out, BenchConfig(train=QUICK, progress=False))
    return {"cache": cache, "out": out, "result": result}


def test_cache_is_probed_once_in_one_run_of_three_families(bench):
    result = bench["result"]
    (run,) = result.runs
    assert run.parent == bench["out"] / "runs"
    summary = json.loads((run / "summary.json").read_text())
    assert [f["probe"] for f in summary["families"]] == list(FAMILIES)
    assert sorted(e.probe for e in result.entries) == sorted(FAMILIES)


def test_leaderboard_csv_rows_cells_and_intervals(bench):
    frame = pd.read_csv(bench["out"] / "leaderboard.csv")
    assert sorted(frame["Probe"]) == sorted(FAMILIES)
    assert set(frame["Encoder"]) == {"tiny (seed 0)"} and set(frame["Layer"]) == {"output"}
    assert frame["GFLOPs/clip"].notna().all() and frame["Params (M)"].notna().all()
    assert (frame["Cache KB/clip"] == 8 * 32 * 2 / 1e3).all()  # 8 fp16 tokens of 32 values
    for col in (f"{RAVDESS} UAR", f"{RAVDESS} WAR"):
        for suffix in ("", " std", " low", " high"):
            assert frame[col + suffix].notna().all(), col + suffix
        assert (frame[col + " low"] <= frame[col + " high"]).all()
    # each cell is its family's summary entry, in percent
    run = bench["result"].runs[0]
    families = {f["probe"]: f for f in json.loads((run / "summary.json").read_text())["families"]}
    for _, row in frame.iterrows():
        mean = families[row["Probe"]]["mean"]["pbv"]["uar"]
        assert row[f"{RAVDESS} UAR"] == pytest.approx(100 * mean["mean"])
        assert row[f"{RAVDESS} UAR std"] == pytest.approx(100 * mean["std"])
    assert "by actor: RAVDESS" in " ".join(bench["result"].table.notes)
    (protocol,) = column_protocols(bench["result"].entries).values()
    assert protocol.startswith("folds: 5-fold by actor") and "voting: PBV" in protocol


def test_page_holds_the_csv_the_protocols_and_both_figures(bench):
    page = bench["result"].written["html"]
    assert assert_tables_equal_csvs(page) == ["leaderboard"]
    text = page.read_text(encoding="utf-8")
    assert "RAVDESS (paper folds): folds: 5-fold by actor" in text
    assert text.count('src="data:image/png;base64,') == 2
    for name in ("uar_vs_cache_bytes", "uar_vs_gflops"):
        assert_png(bench["out"] / "figures" / f"{name}.png")


def test_predictions_one_row_per_test_video_per_fold_per_head(bench):
    frame = pd.read_parquet(bench["out"] / "predictions.parquet")
    assert list(frame.columns) == PREDICTION_COLUMNS
    run = bench["result"].runs[0]
    summary = json.loads((run / "summary.json").read_text())
    tested = sum(f["n_test_videos"] for f in summary["per_fold"])
    assert len(frame) == tested * len(FAMILIES)
    assert not frame.duplicated(["probe", "fold", "video"]).any()
    for probs, names in zip(frame["probabilities"], frame["class_names"], strict=True):
        assert len(probs) == len(names) == 8 and math.isclose(sum(probs), 1, abs_tol=1e-4)
    # the probe's vote is the argmax of the mean clip probabilities (PBV)
    argmax = frame["probabilities"].map(lambda p: int(p.argmax()))
    assert (argmax == frame["prediction"]).all()


def test_given_runs_are_reused_and_nothing_trained(bench, tmp_path):
    run = bench["result"].runs[0]
    again = run_bench([bench["cache"], run], tmp_path / "b", BenchConfig(progress=False))
    assert again.runs == [run] and not (tmp_path / "b" / "runs").exists()
    assert again.table.frame.equals(bench["result"].table.frame)
    only_knn = run_bench([run], tmp_path / "k", BenchConfig(families=("knn",), progress=False))
    assert list(only_knn.table.frame["Probe"]) == ["knn"]


@pytest.mark.slow  # a second probe run (~8 s)
def test_a_grid_run_shows_each_familys_reported_head(bench, tmp_path):
    """With an lr grid, a family's cell is its first point (the reported head), as summary.json's
    `families` reports it, not the inner-selected one."""
    config = BenchConfig(train=QUICK, lrs=(1e-3, 3e-3), progress=False)
    result = run_bench([bench["cache"]], tmp_path, config)
    (run,) = result.runs
    families = {f["probe"]: f for f in json.loads((run / "summary.json").read_text())["families"]}
    assert {e.probe: e.head for e in result.entries} == {p: f["head"] for p, f in families.items()}
    assert all(e.head.startswith("lr0.001-") for e in result.entries)
    for e in result.entries:
        assert e.mean == families[e.probe]["mean"]["pbv"]


def test_table_of_entries_from_two_runs_sets_datasets_side_by_side(bench):
    entries = run_entries(bench["result"].runs[0])
    other = [e.__class__(**{**e.__dict__, "dataset": "dfew"}) for e in entries]
    frame = leaderboard_table(entries + other).frame
    assert len(frame) == len(FAMILIES)
    assert (frame[f"{RAVDESS} UAR"] == frame["DFEW (paper folds) UAR"]).all()
    assert len(predictions_frame(entries + other)) == 2 * len(predictions_frame(entries))


def test_inputs_errors_name_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty: no complete cache .* extract one"):
        find_inputs([tmp_path / "empty"])
    with pytest.raises(ConfigError, match=r"--probe 'svm'"):
        run_bench([tmp_path], tmp_path / "out", BenchConfig(families=("svm",)))
    for args, words in (
        ((), "empty: no complete cache"),
        (("--probe", "svm"), "svm"),
    ):
        out = run_cli("bench", tmp_path / "empty", "--out", tmp_path / "o", *args, ok=False)
        lines = [line for line in out.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out


@pytest.mark.slow
def test_demo_bench_page_in_a_browser(tmp_path, one_thread):
    """The Done-when: `vjfer demo --bench` -> a page with >= 2 encoders × 3 probe families × 2
    datasets, an interval in every cell, no console error in Chromium, the CSV equal to the page,
    the Parquet loadable with pandas."""
    pytest.importorskip("transformers")
    from vjfer.demo import BenchDemoConfig, run_bench_demo

    result = run_bench_demo(tmp_path, BenchDemoConfig(epochs=1, progress=False))
    out = tmp_path / "bench"
    frame = pd.read_csv(out / "leaderboard.csv")
    assert frame["Encoder"].nunique() >= 2 and frame["Family"].nunique() >= 2
    assert frame["GFLOPs/clip"].notna().all()  # the tiny DINOv2's from its config.json
    assert set(frame["Probe"]) == set(FAMILIES) and len(frame) == 2 * len(FAMILIES)
    for dataset in (RAVDESS, "DFEW (official folds)"):
        for metric in ("UAR", "WAR"):
            for suffix in ("", " std", " low", " high"):
                assert frame[f"{dataset} {metric}{suffix}"].notna().all()
    page = result.written["html"]
    assert assert_tables_equal_csvs(page) == ["leaderboard"]
    tables = read_html_tables(page.read_text(encoding="utf-8"))
    cells = [c for row in tables["leaderboard"]["rows"] for c in row if "data-std" in c[1]]
    assert len(cells) == len(frame) * 4 and all("data-low" in a for _, a in cells)
    chromium = chromium_or_skip()
    seen = probe_page(chromium, page, tmp_path)
    assert seen["errors"] == [] and seen["resources"] == []
    assert len(seen["images"]) == 2 and all(i["naturalWidth"] > 200 for i in seen["images"])
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert set(predictions["dataset"]) == {"ravdess", "dfew"}
    assert predictions.groupby(["encoder", "dataset"])["probe"].nunique().eq(3).all()


def test_bench_refuses_few_shot_options(tmp_path):
    """A few-shot setting is a curve (`vjfer probe --shots`), not a leaderboard cell."""
    for option in (["--shots", "4"], ["--train-fraction", "0.5"]):
        out = run_cli("bench", str(tmp_path), "--out", str(tmp_path / "b"), *option, ok=False)
        assert "few-shot curve" in out and "Traceback" not in out
