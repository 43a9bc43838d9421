"""Report: table rendering parses back, tables from run summaries, peers, report files."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import assert_png

from vjfer import report, run_protocol
from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.errors import ConfigError
from vjfer.labels import DATASETS, class_names
from vjfer.metrics import bootstrap_interval
from vjfer.probe.evaluate import video_embeddings
from vjfer.probe.model import LinearProbe
from vjfer.report import (
    CrossRun,
    ProbeRun,
    build_report,
    find_runs,
    load_peers,
    table_ii,
    table_iii,
    table_iv,
)
from vjfer.tables import Table, get_renderer, render_csv, render_markdown, write_table


def parse_markdown(text: str) -> pd.DataFrame:
    """A pipe table (the lines starting with '|', minus the ---|--- rule) read back by pandas."""
    rows = [line for line in text.splitlines() if line.startswith("|") and "---" not in line]
    body = "\n".join(line.strip().strip("|") for line in rows)
    frame = pd.read_csv(io.StringIO(body), sep=r"(?<!\\)\|", engine="python")  # not at "\|"
    frame.columns = [c.strip() for c in frame.columns]
    return frame.apply(lambda col: col.str.strip() if pd.api.types.is_string_dtype(col) else col)


TABLE = Table(
    "demo",
    "A demo table",
    pd.DataFrame(
        {
            "Method": ["ours | PBV", "paper"],
            "UAR": [71.234, 76.4],
            "UAR std": [2.5, float("nan")],
            "Videos": [60, 61],
        }
    ),
    ["a note"],
)


def test_markdown_parses_back_with_std_folded():
    text = render_markdown(TABLE)
    assert text.startswith("## A demo table\n") and "- a note" in text
    frame = parse_markdown(text)
    assert list(frame.columns) == ["Method", "UAR", "Videos"]  # "UAR std" folded into "UAR"
    assert frame["UAR"].tolist() == ["71.23 ± 2.50", "76.40"]
    assert frame["Method"].tolist() == ["ours \\| PBV", "paper"]  # a pipe in a cell is escaped
    assert frame["Videos"].tolist() == [60, 61]


def test_csv_parses_back_exactly():
    frame = pd.read_csv(io.StringIO(render_csv(TABLE)))
    pd.testing.assert_frame_equal(frame, TABLE.frame)


def test_renderers_by_name(tmp_path):
    assert get_renderer("md") is render_markdown and get_renderer("csv") is render_csv
    with pytest.raises(ConfigError, match="unknown table format 'tex'"):
        get_renderer("tex")
    paths = write_table(TABLE, tmp_path / "tables")
    assert [p.name for p in paths] == ["demo.md", "demo.csv"]


def test_packaged_peers_are_sourced():
    peers = load_peers()
    assert set(peers["dataset"]) <= set(DATASETS)
    assert peers["source"].str.len().min() > 10  # every number names where it came from
    values = peers[["uar", "war"]]
    assert ((values > 0) & (values <= 100) | values.isna()).all().all()  # empty cells stay empty


def test_packaged_peers_are_table_iii_as_printed(tmp_path):
    """The paper's Table III: 8 methods; "–" cells empty; the one-number cells in the UAR column
    with a note; rendered as dashes in Markdown and empty in CSV."""
    peers = load_peers()
    assert len(peers.drop_duplicates(["method", "modality"])) == 8
    frame = table_iii([], peers).frame.set_index(["Method", "Modality"])
    hicmae = frame.loc[("HiCMAE-B", "video")]
    assert (hicmae["RAVDESS UAR"], hicmae["CREMA-D WAR"]) == (71.35, 77.21)
    one = frame.loc[("MultiMAE-DER", "video")]
    assert (one["RAVDESS UAR"], one["CREMA-D UAR"]) == (74.13, 77.83)
    assert np.isnan(one["RAVDESS WAR"]) and np.isnan(one["CREMA-D WAR"])
    human = frame.loc[("Human perception", "video + audio")]
    assert human["RAVDESS WAR"] == 77.94 and np.isnan(human["CREMA-D UAR"])
    table = table_iii([], peers)
    parsed = parse_markdown(render_markdown(table)).set_index("Method")
    assert parsed.loc["Human perception", "CREMA-D UAR"] == "—"
    assert parsed.loc["Ours (V-JEPA ViT-H, attentive probe)", "CREMA-D WAR"] == "78.86"
    assert any(
        "MultiMAE-DER (video), RAVDESS, CREMA-D: one number, unlabelled" in n for n in table.notes
    )
    csv = pd.read_csv(io.StringIO(render_csv(table)))
    assert csv.loc[csv["Method"] == "Human perception", "CREMA-D WAR"].isna().all()


def test_peers_missing_column(tmp_path):
    (tmp_path / "p.csv").write_text("method,dataset,uar\nx,ravdess,1\n")
    with pytest.raises(ConfigError, match="missing column"):
        load_peers(tmp_path / "p.csv")


def _agg(mean: float, std: float) -> dict:
    return {"mean": mean, "std": std, "n": 5, "values": [mean] * 5}


def probe_run(dataset: str, tmp_path, uar=0.5, war=0.6, precision=0.55) -> ProbeRun:
    """A ProbeRun shaped like `vjfer.probe.run.train_folds` output (summary + fold metrics)."""
    scores = {
        "uar": _agg(uar, 0.01),
        "war": _agg(war, 0.02),
        "macro_precision": _agg(precision, 0.03),
    }
    n = len(class_names(dataset))
    confusion = (np.eye(n, dtype=int) * 3 + 1).tolist()
    folds = {
        k: {"pbv": {"confusion": confusion}, "mv": {"confusion": confusion}} for k in range(1, 6)
    }
    summary = {
        "dataset": dataset,
        "probe": "attentive",
        "folds": [1, 2, 3, 4, 5],
        "per_fold": [],
        "mean": {"pbv": scores, "mv": scores},
    }
    return ProbeRun(tmp_path / f"{dataset}-run", dataset, "attentive", summary, folds)


def test_table_ii_beside_paper(tmp_path):
    table = table_ii([probe_run("ravdess", tmp_path), probe_run("crema-d", tmp_path)])
    frame = table.frame
    assert len(frame) == 4 and list(frame["Voting"]) == ["PBV", "MV", "PBV", "MV"]
    row = frame.iloc[0]
    assert (row["Dataset"], row["UAR"], row["UAR std"]) == ("RAVDESS", 50.0, 1.0)
    assert row["Macro precision"] == pytest.approx(55.0)
    assert (row[report.PAPER_UAR], row["Paper WAR"]) == (76.40, 72.93)
    assert frame.iloc[3][report.PAPER_UAR] == 79.13  # CREMA-D MV
    parsed = parse_markdown(render_markdown(table))
    assert parsed["UAR"].iloc[0] == "50.00 ± 1.00"


def test_table_iii_peers_beside_ours(tmp_path):
    peers = pd.DataFrame(
        [["Peer A", "ravdess", 70.0, 71.0, "video", "doi:x"]], columns=list(report.PEERS_COLUMNS)
    )
    frame = table_iii([probe_run("ravdess", tmp_path)], peers).frame
    assert frame["Method"].tolist()[0] == "Peer A" and frame.iloc[0]["RAVDESS WAR"] == 71.0
    ours = frame[frame["Source"] == "this run"]
    assert len(ours) == 2 and ours.iloc[0]["RAVDESS UAR"] == 50.0
    assert np.isnan(ours.iloc[0]["CREMA-D UAR"])  # no CREMA-D run given


def cross_summary() -> dict:
    """A cross run's summary.json (RAVDESS → CREMA-D, merge, 5 probes of 60 videos)."""
    fold = {"n_kept": 50, "n_dropped": 10, "n_total": 60}
    return {
        "kind": "cross",
        "source": "ravdess",
        "target": "crema-d",
        "calm": "merge",
        "n_videos": 60,
        "class_names": list(class_names("crema-d")),
        "folds": [{"fold": k, "pbv": fold, "mv": fold} for k in range(1, 6)],
        "mean": {"pbv": {"uar": _agg(0.4, 0.1)}, "mv": {"uar": _agg(0.3, 0.1)}},
    }


def test_table_iv_counts_and_paper(tmp_path):
    frame = table_iv([CrossRun(tmp_path, cross_summary())]).frame
    assert frame["Voting"].tolist() == ["PBV", "MV"]
    row = frame.iloc[0]
    assert (row["Train"], row["Test"], row["UAR"]) == ("RAVDESS", "CREMA-D", 40.0)
    assert row["Dropped per probe"] == "10 10 10 10 10" and row["Videos"] == 60
    assert (row[report.PAPER_UAR], row["Paper WAR"]) == (58.72, 54.90)
    assert np.isnan(row["WAR"])  # absent from the summary: shown as a dash, not invented


def test_report_lists_what_is_missing(tmp_path):
    written = build_report([tmp_path / "runs-none", tmp_path], tmp_path / "out")
    tables = {f"{t}.{x}" for t in ("table3", "protocols") for x in ("md", "csv")}
    assert {p.name for p in written} == {*tables, "report.md", "report.html"}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "does not exist" in text
    assert "Table II: no probe runs" in text and "Table IV: no cross-dataset runs" in text


def test_report_from_summaries_without_caches(tmp_path):
    """Runs whose cache is gone still give tables and confusions; the PCA is listed as missing."""
    run = tmp_path / "runs" / "ravdess-attentive"
    fake = probe_run("ravdess", tmp_path)
    for k, metrics in fake.folds.items():
        (run / f"fold-{k}").mkdir(parents=True)
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(metrics))
    (run / "summary.json").write_text(json.dumps(fake.summary))
    written = build_report([tmp_path / "runs"], tmp_path / "out")
    pngs = sorted(p.name for p in written if p.suffix == ".png")
    assert pngs == ["confusion-ravdess-attentive-mv.png", "confusion-ravdess-attentive-pbv.png"]
    for name in pngs:
        assert_png(tmp_path / "out" / name)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "PCA figure for" in text and "no CREMA-D probe run" in text
    assert len(pd.read_csv(tmp_path / "out" / "table2.csv")) == 2
    # a run being written (RUN.partial) and the one a publish replaced (RUN.old) are not runs
    for staged in ("ravdess-attentive.partial", "ravdess-attentive.old"):
        shutil.copytree(run, tmp_path / "runs" / staged)
    probe_runs, _, _ = find_runs([tmp_path / "runs"])
    assert [r.path.name for r in probe_runs] == ["ravdess-attentive"]


def test_video_embeddings_of_a_linear_probe_are_mean_pooled(tmp_path):
    rng = np.random.default_rng(0)
    entries = [
        VideoEntry(
            f"v{i}",
            i % 6,
            1001,
            5,
            40,
            30.0,
            np.zeros((1 + i % 3, 16), int),
            rng.normal(size=(1 + i % 3, 2, 8, 4)).astype(np.float16),
        )
        for i in range(6)
    ]
    cache = open_cache(
        build_cache(tmp_path / "c", {"encoder": "x"}, entries, dataset="crema-d", grid=(2, 2, 2))
    )
    mean_pooled, pooled, y = video_embeddings(LinearProbe(4, 6), cache, ["v2", "v0"])
    assert mean_pooled.shape == pooled.shape == (2, 4) and y.tolist() == [2, 0]
    expect = cache.tokens("v2").astype(np.float32).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(mean_pooled[0], expect, rtol=1e-5)
    np.testing.assert_allclose(pooled, mean_pooled, rtol=1e-5, atol=1e-6)


def _fold_predictions(run, fold: int, truth, pbv, mv) -> None:
    """fold-K/video_predictions.csv with the columns the pooled figures read."""
    (run / f"fold-{fold}").mkdir(parents=True, exist_ok=True)
    ids = [f"v{fold}-{i}" for i in range(len(truth))]
    frame = pd.DataFrame({"video_id": ids, "label": truth, "pbv": pbv, "mv": mv})
    frame.to_csv(run / f"fold-{fold}" / "video_predictions.csv", index=False)


def test_pooled_figures_are_over_every_fold_s_predictions(tmp_path):
    """Fold k: k neutral videos (PBV and MV right) and 2 calm ones (PBV: one right; MV: both
    called neutral). Pooled over the 25 videos: PBV UAR (1 + 5/10) / 2, WAR 20/25; MV UAR
    (1 + 0) / 2, WAR 15/25; the fold mean would weigh fold 1's 3 videos as fold 5's 7."""
    run = tmp_path / "runs" / "ravdess-attentive"
    fake = probe_run("ravdess", tmp_path)
    for k, metrics in fake.folds.items():
        _fold_predictions(run, k, [0] * k + [1, 1], [0] * k + [1, 0], [0] * (k + 2))
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(metrics))
    (run / "summary.json").write_text(json.dumps(fake.summary))
    build_report([tmp_path / "runs"], tmp_path / "out")
    table2 = pd.read_csv(tmp_path / "out" / "table2.csv").set_index("Voting")
    assert table2.loc["PBV", "Pooled UAR"] == pytest.approx(75.0)
    assert table2.loc["PBV", "Pooled WAR"] == pytest.approx(80.0)
    assert table2.loc["MV", "Pooled UAR"] == pytest.approx(50.0)
    assert table2.loc["MV", "Pooled WAR"] == pytest.approx(60.0)
    assert table2.loc["PBV", "UAR"] == 50.0  # the fold mean from the summary, beside it
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("Method")
    assert table3.loc["vjfer, attentive probe, MV", "RAVDESS pooled WAR"] == pytest.approx(60.0)
    notes = (tmp_path / "out" / "table3.md").read_text()
    assert "the SVFAP paper pools" in notes and "README Total is the mean" in notes


def test_peer_protocol_cells():
    aspects = run_protocol.peer_aspects("folds: official train/test; figure: one split")
    assert aspects["folds"] == "official train/test" and aspects["figure"] == "one split"
    assert aspects["sampling"] == run_protocol.NOT_STATED
    old = run_protocol.peer_aspects("5-fold by actor (a, b)")  # an older peers file: its folds
    assert old["folds"] == "5-fold by actor (a, b)" and old["voting"] == run_protocol.NOT_STATED
    assert set(run_protocol.peer_aspects(float("nan")).values()) == {run_protocol.NOT_STATED}
    with pytest.raises(ConfigError, match="names no aspect"):
        run_protocol.peer_aspects("folds: x; split: y", "p.csv")


def test_run_protocol_of_today_s_caches_and_the_new_plans():
    today = {"plan": "windows", "hop": 8, "views": "center", "resolution": 384, "encoder": "e"}
    aspects = run_protocol.run_aspects("ravdess", "paper", "attentive", "pbv", today)
    assert aspects["sampling"] == "16 frames over 64 (V-JEPA linspace)"  # no frame_step: 4
    assert aspects["test views"].startswith("every hop-8 window")
    assert aspects["spatial"] == "short side to 438, centre 384×384"
    assert aspects["folds"] == "5-fold by actor (the paper's splits), 01 and 02 files"
    assert aspects["training"] == "frozen e + attentive probe" and aspects["voting"][:3] == "PBV"
    stride = {**today, "plan": "stride", "frame_step": 1, "hop": None, "views": "whole"}
    aspects = run_protocol.run_aspects("ferv39k", "official", "attentive", "mv", stride)
    assert aspects["sampling"].startswith("stride 1: frames 0, 1, 2, ...,")
    assert aspects["test views"].startswith("2 views")
    assert aspects["spatial"] == "whole frame resized to 384×384"
    assert aspects["folds"] == "official train/test" and aspects["voting"][:2] == "MV"
    segments = run_protocol.run_aspects(
        "dfew", "official", "attentive", "pbv", {"plan": "segments"}
    )
    assert segments["test views"] == "1 view: the 16 segment middles"
    gone = run_protocol.run_aspects("ravdess", "mae-dfer", "linear", "pbv", None, modality=2)
    assert gone["sampling"] == run_protocol.NO_CACHE and gone["folds"].startswith("6-fold")
    assert gone["folds"].endswith("02 (video-only) files only")  # the run's --modality


def test_intervals_in_every_metric_cell_resampled_by_actor(tmp_path):
    """Two folds of RAVDESS predictions with actors: Table II and III cells carry the pooled
    figure's bootstrap interval (CSV low/high columns, `[low, high]` in Markdown), drawn by
    actor, the same bytes at every report; bootstrap.json records the resamples and the seed; a
    run without predictions and a peer row show no interval."""
    runs = tmp_path / "runs"
    run = runs / "ravdess-attentive"
    fake = probe_run("ravdess", tmp_path)
    fake.summary["folds"] = [1, 2]
    rng = np.random.default_rng(0)
    for k in (1, 2):
        truth = rng.integers(0, 8, 60)
        right = rng.random(60) < 0.6
        pbv = np.where(right, truth, (truth + 1) % 8)
        frame = pd.DataFrame(
            {
                "video_id": [f"v{k}-{i}" for i in range(60)],
                "actor": np.repeat(np.arange(6) + 6 * k, 10),  # 6 test actors a fold
                "label": truth,
                "pbv": pbv,
                "mv": truth,  # MV always right: a one-point interval
            }
        )
        (run / f"fold-{k}").mkdir(parents=True)
        frame.to_csv(run / f"fold-{k}" / "video_predictions.csv", index=False)
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(fake.folds[k]))
    (run / "summary.json").write_text(json.dumps(fake.summary))
    (tmp_path / "other").mkdir()
    shutil.copytree(run, tmp_path / "other" / "ravdess-attentive")
    (tmp_path / "other" / "ravdess-attentive" / "fold-2" / "video_predictions.csv").unlink()

    build_report([runs], tmp_path / "out")
    table2 = pd.read_csv(tmp_path / "out" / "table2.csv").set_index("Voting")
    pbv = table2.loc["PBV"]
    assert pbv["UAR low"] < pbv["Pooled UAR"] < pbv["UAR high"]
    assert pbv["WAR low"] < pbv["Pooled WAR"] < pbv["WAR high"]
    assert pbv["Macro precision low"] < pbv["Macro precision high"]
    assert table2.loc["MV", "UAR low"] == table2.loc["MV", "UAR high"] == 100.0
    # the same draws as the metric itself, by actor
    both = pd.concat(pd.read_csv(run / f"fold-{k}" / "video_predictions.csv") for k in (1, 2))
    low, high = bootstrap_interval(
        both["label"], both["pbv"], both["actor"], "war", resamples=1000, seed=0
    )
    assert (pbv["WAR low"], pbv["WAR high"]) == pytest.approx((100 * low, 100 * high))
    md = (tmp_path / "out" / "table2.md").read_text()
    assert f"[{pbv['UAR low']:.1f}, {pbv['UAR high']:.1f}]" in md
    assert "1000 resamples, seed 0" in md and "by actor: RAVDESS" in md
    record = json.loads((tmp_path / "out" / "bootstrap.json").read_text())
    assert record["resamples"] == 1000 and record["seed"] == 0
    assert record["unit"] == {"ravdess": "actor"}
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("Method")
    ours = table3.loc["vjfer, attentive probe, PBV"]
    assert ours["RAVDESS UAR low"] == pbv["UAR low"]
    assert (
        table3.drop(index=[m for m in table3.index if m.startswith("vjfer")])["RAVDESS UAR low"]
        .isna()
        .all()
    )
    first = (tmp_path / "out" / "table2.csv").read_bytes()
    build_report([runs], tmp_path / "again")
    assert (tmp_path / "again" / "table2.csv").read_bytes() == first

    build_report([tmp_path / "other"], tmp_path / "none")
    table2 = pd.read_csv(tmp_path / "none" / "table2.csv")
    assert table2["UAR low"].isna().all() and "[" not in table2.to_string()


def test_resample_unit_per_dataset():
    assert report.resample_unit("ravdess") == report.resample_unit("crema-d") == "actor"
    assert {report.resample_unit(d) for d in ("dfew", "ferv39k", "mafw")} == {"video"}
    assert report.resample_unit("ravdess", has_groups=False) == "video"


def test_table_iv_intervals_from_each_probe_s_kept_videos(tmp_path):
    """A cross run's probes score the same target videos: the interval pools every probe's kept
    rows, drawn by the target's actors; dropped rows are not scored."""
    s = cross_summary()
    cross = tmp_path / "cross"
    rng = np.random.default_rng(1)
    names = np.array(["angry", "happy", "sad"])
    for f in s["folds"]:
        truth = rng.integers(0, 3, 40)
        pred = np.where(rng.random(40) < 0.7, truth, (truth + 1) % 3)
        kept = rng.random(40) < 0.9
        frame = pd.DataFrame(
            {
                "video_id": [f"v{i}" for i in range(40)],
                "actor": np.repeat(np.arange(8), 5),
                "label_as": np.where(kept, names[truth], ""),
                **{f"{v}_as": names[pred] for v in ("pbv", "mv")},
                **{f"{v}_kept": kept for v in ("pbv", "mv")},
            }
        )
        (cross / f"fold-{f['fold']}").mkdir(parents=True, exist_ok=True)
        frame.to_csv(cross / f"fold-{f['fold']}" / "video_predictions.csv", index=False)
    table = table_iv([CrossRun(cross, s)])
    row = table.frame.iloc[0]
    assert 0.0 < row["UAR low"] < row["UAR high"] < 100.0
    assert any("the videos each fold probe scored, pooled" in n for n in table.notes)
    missing = table_iv([CrossRun(tmp_path / "nowhere", s)]).frame
    assert missing["UAR low"].isna().all()


def test_seed_spread_over_the_reported_point_s_seeds(tmp_path):
    """A grid of 2 lr x 3 seeds: Table II gains Seeds UAR / WAR, the mean ± std over the seeds
    of the reported lr of each seed's fold mean; the other lr is not counted."""
    run = tmp_path / "runs" / "crema-d-attentive"
    fake = probe_run("crema-d", tmp_path)
    fake.summary["head"] = "lr0.001-wd0.05-seed0"
    rows = []
    for lr in ("0.001", "0.01"):
        for seed in (0, 1, 2):
            for k in fake.summary["folds"]:
                uar = 0.5 + 0.1 * seed + 0.01 * k + (0.3 if lr == "0.01" else 0.0)
                rows.append(
                    {
                        "fold": k,
                        "head": f"lr{lr}-wd0.05-seed{seed}",
                        **{f"{v}_{m}": uar for v in ("pbv", "mv") for m in report.METRIC_COLUMNS},
                    }
                )
    run.mkdir(parents=True)
    with open(run / report.GRID_RESULTS, "w") as f:
        f.write("# test-fold scores\n")
        pd.DataFrame(rows).to_csv(f, index=False)
    for k, fold in fake.folds.items():
        (run / f"fold-{k}").mkdir()
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(fold))
    (run / "summary.json").write_text(json.dumps(fake.summary))
    table = table_ii(find_runs([tmp_path / "runs"])[0])
    row = table.frame.iloc[0]
    assert row["Seeds"] == 3
    assert row["Seeds UAR"] == pytest.approx(100 * (0.5 + 0.1 + 0.03))
    assert row["Seeds UAR std"] == pytest.approx(10.0)
    assert any("Seeds UAR / WAR" in n for n in table.notes)
    assert "Seeds" not in table_ii([probe_run("crema-d", tmp_path)]).frame.columns


def test_markdown_cells_and_headers_are_text_not_markup():
    """Issue 32: a list file's class label `<script>…` reached report.md and recall.md raw."""
    frame = pd.DataFrame({"<script>x</script>": ["a|b<i>"], "UAR": [50.0]})
    text = render_markdown(Table("t", "T", frame))
    assert "<script>" not in text and "<i>" not in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "a\\|b&lt;i&gt;" in text


@pytest.mark.slow
def test_a_run_of_three_probe_families_has_a_row_per_family(cache_dir, tmp_path):
    """`probe --probe attentive,linear,knn`: Tables II and III show each family's reported head
    (its own scores and pooled figures, from fold-K/heads/<head>/), the encoder's family beside;
    a one-family run's rows are as before but for the Family column."""
    from vjfer.probe.config import TrainConfig
    from vjfer.probe.run import ProbeRequest, run_request

    config = TrainConfig(epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu")
    request = ProbeRequest(
        cache=cache_dir,
        runs=tmp_path / "runs",
        config=config,
        folds=(1,),
        probes=("attentive", "linear", "knn"),
        progress=False,
    )
    run = run_request(request)
    build_report([run], tmp_path / "out", caches=[cache_dir])
    table2 = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert list(table2["Probe"]) == ["attentive"] * 2 + ["linear"] * 2 + ["knn"] * 2
    assert set(table2["Family"]) == {"other"}  # PROBE_SETTINGS' synthetic encoder
    summary = json.loads((run / "summary.json").read_text())
    for entry, (_, row) in zip(summary["families"], table2[::2].iterrows(), strict=True):
        assert row["UAR"] == pytest.approx(100 * entry["mean"]["pbv"]["uar"]["mean"])
        # one fold: pooled = the fold's figure, when read from this family's own predictions
        assert row["Pooled UAR"] == pytest.approx(row["UAR"])
    assert table2["UAR"].nunique() > 1  # the families do differ
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("Method")
    assert table3.loc["vjfer, knn probe, MV", "Family"] == "other"
    assert "rows per family" in (tmp_path / "out" / "table2.md").read_text()

    single = run_request(replace(request, probes=("attentive",), runs=tmp_path / "one"))
    build_report([single], tmp_path / "one-out", caches=[cache_dir])
    one = pd.read_csv(tmp_path / "one-out" / "table2.csv")
    assert list(one.columns[:4]) == ["Dataset", "Run", "Family", "Probe"]
    assert list(one["Probe"]) == ["attentive"] * 2
    assert "rows per family" not in (tmp_path / "one-out" / "table2.md").read_text()


def test_a_few_shot_run_gets_its_curve_and_a_run_without_none(tmp_path):
    """A run whose summary.json holds `few_shot` gets a table and a figure (UAR against shots) in
    their own section; the same run without it writes exactly what it wrote before."""
    fake = probe_run("ravdess", tmp_path)
    run = tmp_path / "runs" / "ravdess-attentive"
    for k, metrics in fake.folds.items():
        (run / f"fold-{k}").mkdir(parents=True)
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(metrics))
    (run / "summary.json").write_text(json.dumps(fake.summary))
    before = {p.name for p in build_report([tmp_path / "runs"], tmp_path / "plain")}
    curve = [
        {
            "probe": probe,
            "shots": shots,
            "seeds": [0, 1],
            "folds": [1, 2, 3, 4, 5],
            "per_fold": [],
            "mean": {v: {"uar": _agg(uar, 0.02), "war": _agg(uar + 0.05, 0.02)} for v in VOTES},
        }
        for probe, shots, uar in (
            ("attentive", 4, 0.3),
            ("attentive", 16, 0.45),
            ("knn", 4, 0.25),
            ("knn", 16, 0.35),
        )
    ]
    (run / "summary.json").write_text(json.dumps({**fake.summary, "few_shot": curve}))
    written = {p.name for p in build_report([tmp_path / "runs"], tmp_path / "out")}
    assert written - before == {"few_shot.md", "few_shot.csv", "few-shot-ravdess-attentive.png"}
    assert_png(tmp_path / "out" / "few-shot-ravdess-attentive.png")
    table = pd.read_csv(tmp_path / "out" / "few_shot.csv")
    assert len(table) == 4 * 2  # each family and setting, per voting rule
    row = table[(table["Probe"] == "knn") & (table["Setting"] == "16 shots")].iloc[0]
    assert (row["UAR"], row["Draws"], row["Folds"]) == (35.0, 2, 5)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Few-shot: UAR against training videos" in page
    assert "Few-shot" not in (tmp_path / "plain" / "report.html").read_text()


VOTES = ("pbv", "mv")
