"""report.html: tables parse back to the CSV values, figures are embedded, nothing is fetched.

The page of a real pipeline run is checked in headless Chromium in tests/test_cli.py.
"""

from __future__ import annotations

import base64
import io
import json
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from page_tools import assert_tables_equal_csvs, read_html_tables
from test_report import probe_run

from vjfer import report
from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.report import build_report
from vjfer.report_html import PageFigure, Section, page_html, png_data_uri
from vjfer.run_protocol import ASPECTS, peer_aspects
from vjfer.tables import Table, get_renderer, render_csv, render_html

TABLE = Table(
    "demo",
    "A <demo> table",
    pd.DataFrame(
        {
            "Method": ["ours & co", "paper"],
            "UAR": [71.23456789, 76.4],
            "UAR std": [2.5, float("nan")],
            "Videos": [60, 61],
            "Δ": [2.5, float("nan")],
        }
    ),
    ["a note"],
)


def test_html_table_parses_back_to_the_csv(tmp_path):
    assert get_renderer("html") is render_html
    (tmp_path / "demo.csv").write_text(render_csv(TABLE))
    (tmp_path / "page.html").write_text(render_html(TABLE))
    assert assert_tables_equal_csvs(tmp_path / "page.html") == ["demo"]
    rows = read_html_tables(render_html(TABLE))["demo"]["rows"]
    text, attrs = rows[0][1]
    assert text == "71.23 ± 2.50" and attrs["data-value"] == "71.23456789"
    assert rows[0][0][0] == "ours & co" and rows[1][1][0] == "76.40"  # escaped, then unescaped
    assert rows[1][3] == ("—", {"class": "na"})  # NaN: a dash, no number invented
    assert rows[0][3][0] == "+2.50"  # a difference shows its sign
    assert "&lt;demo&gt;" in render_html(TABLE)


def test_empty_table_says_none():
    empty = Table("failures", "Videos the caches could not use: 0", pd.DataFrame(columns=["Video"]))
    text = render_html(empty)
    assert "<table" not in text and "None." in text


def test_png_data_uri_embeds_png_only(tmp_path):
    png = tmp_path / "a.png"
    matplotlib.image.imsave(png, np.zeros((4, 5, 3)))
    uri = png_data_uri(png)
    assert base64.b64decode(uri.split(",", 1)[1]) == png.read_bytes()
    (tmp_path / "b.png").write_text("not a png")
    with pytest.raises(ValueError, match=r"b\.png is not a PNG"):
        png_data_uri(tmp_path / "b.png")


def test_page_has_sections_and_the_reading_note(tmp_path):
    png = tmp_path / "a.png"
    matplotlib.image.imsave(png, np.ones((3, 3, 3)))
    sections = [
        Section(
            "one",
            "First",
            ["para <1>"],
            [render_html(TABLE)],
            [PageFigure("fig", png)],
            items=["x"],
        )
    ]
    text = page_html("T", "lead", sections, "foot")
    assert text.startswith("<!DOCTYPE html>") and '<section id="one">' in text
    assert 'href="#one"' in text and "para &lt;1&gt;" in text
    assert "How to read this" in text and "macro precision" in text


def _write_probe_run(root, dataset, tmp_path):
    """A probe run's files (summary.json, fold-K/metrics.json) as `train_folds` writes them."""
    fake = probe_run(dataset, tmp_path)
    run = root / f"{dataset}-attentive"
    n = len(fake.folds[1]["pbv"]["confusion"])
    for k, metrics in fake.folds.items():
        # Fold k: 10 videos of each class but the last (none). Neutral's are all right; of each
        # other class k are right and 10 - k are called neutral.
        confusion = np.zeros((n, n), dtype=int)
        confusion[0, 0] = 10
        confusion[np.arange(1, n - 1), np.arange(1, n - 1)] = k
        confusion[1 : n - 1, 0] = 10 - k
        for voting in ("pbv", "mv"):
            metrics[voting]["confusion"] = confusion.tolist()
        (run / f"fold-{k}").mkdir(parents=True)
        (run / f"fold-{k}" / "metrics.json").write_text(json.dumps(metrics))
    fake.summary["per_fold"] = [
        {
            "fold": k,
            "n_test_videos": 10 + k,
            **{v: {"uar": 0.5, "war": 0.01 * k, "macro_precision": 0.4} for v in ("pbv", "mv")},
        }
        for k in range(1, 6)
    ]
    (run / "summary.json").write_text(json.dumps(fake.summary))
    return run


def test_report_page_from_runs_without_caches(tmp_path):
    """Tables II-III, settings, per fold and per class: each on the page equals its CSV; the
    confusion PNGs are embedded; no address outside the file; missing inputs are listed."""
    runs = tmp_path / "runs"
    _write_probe_run(runs, "ravdess", tmp_path)
    written = build_report([runs], tmp_path / "out")
    page = tmp_path / "out" / "report.html"
    assert written[-1] == page
    names = assert_tables_equal_csvs(page)
    assert names == ["folds", "protocols", "recall", "settings", "table2", "table3"]
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["'](?!#|data:image/png;base64,)""", text)
    assert "http://" not in text and "https://" not in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 2  # PBV and MV confusion; no cache: no PCA, no timelines
    for data in images:
        image = matplotlib.image.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert image.shape[0] > 200
    assert "PCA figure for" in text
    assert "Videos the caches could not use: 0 (read from 0 of 1 runs&#x27; caches" in text

    table2 = pd.read_csv(tmp_path / "out" / "table2.csv")
    row = table2.iloc[0]  # RAVDESS PBV: 55 % macro precision beside the paper's 76.40 "UAR"
    assert row["Δ macro precision"] == pytest.approx(55.0 - 76.40)
    assert row["Δ WAR"] == pytest.approx(60.0 - 72.93)
    cols = list(table2.columns)
    assert cols.index(report.PAPER_UAR) == cols.index("Macro precision high") + 1
    recall = pd.read_csv(tmp_path / "out" / "recall.csv")
    calm = recall[recall["Class"] == "calm"].iloc[0]
    assert calm["PBV recall"] == pytest.approx(30.0)  # k of 10 right in fold k: 10, ..., 50 %
    assert calm["MV recall std"] == pytest.approx(np.std([10, 20, 30, 40, 50], ddof=1))
    assert calm["Videos"] == 5 * 10
    neutral = recall[recall["Class"] == "neutral"].iloc[0]
    assert neutral["PBV recall"] == 100.0 and neutral["PBV recall std"] == 0.0
    assert neutral["Videos"] == 5 * 10
    assert np.isnan(recall[recall["Class"] == "surprised"].iloc[0]["PBV recall"])  # no videos
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert folds["Test videos"].tolist() == [11, 12, 13, 14, 15]
    assert folds["MV WAR"].tolist() == pytest.approx([1, 2, 3, 4, 5])
    settings = pd.read_csv(tmp_path / "out" / "settings.csv")
    assert settings.columns.tolist() == ["Setting", "ravdess-attentive"]
    assert "Checkpoint sha256" in settings["Setting"].tolist()
    assert (settings["ravdess-attentive"] == "not recorded").all()  # the run has no config.json


def test_report_page_lists_the_cache_failures(tmp_path):
    """A run whose training cache lists failed videos: the page counts and lists each one with
    its reason (no link), as failures.csv does; what could not be drawn is listed as missing."""
    rng = np.random.default_rng(0)
    entries = [
        VideoEntry(
            f"01-01-0{1 + i % 8}-01-01-01-02",
            i % 8,
            2,
            1,
            70,
            30.0,
            np.zeros((1, 16), int),
            rng.normal(size=(1, 1, 8, 4)).astype(np.float16),
        )
        for i in range(3)
    ]
    failures = [
        {
            "video_id": "01-01-05-01-01-01-03",
            "path": "Actor_03/x.mp4",
            "reason": "decode error: <moov atom not found>",
        }
    ]
    cache = open_cache(
        build_cache(
            tmp_path / "cache",
            {"encoder": "x"},
            entries,
            dataset="ravdess",
            grid=(2, 2, 2),
            failures=failures,
        )
    )
    run = _write_probe_run(tmp_path / "runs", "ravdess", tmp_path)
    config = {
        "train": {"probe": "attentive", "seed": 3},
        "folds": [1, 2, 3, 4, 5],
        "cache": {"path": str(cache.path), "fingerprint": cache.fingerprint},
    }
    (run / "config.json").write_text(json.dumps(config))
    build_report([tmp_path / "runs"], tmp_path / "out", caches=[cache.path])
    page = tmp_path / "out" / "report.html"
    assert "failures" in assert_tables_equal_csvs(page)
    (row,) = read_html_tables(page.read_text(encoding="utf-8"))["failures"]["rows"]
    assert [text for text, _ in row] == [
        "RAVDESS",
        "cache",
        "01-01-05-01-01-01-03",
        "decode error: <moov atom not found>",
    ]
    text = page.read_text(encoding="utf-8")
    assert (
        "Videos the caches could not use: 1</h3>" in text and "<a " not in text.split("</nav>")[1]
    )
    assert "timelines for" in text  # the fake run wrote no predictions to draw
    settings = pd.read_csv(tmp_path / "out" / "settings.csv").set_index("Setting")
    assert settings.loc["Seeds", "ravdess-attentive"] == "probe 3, encoder —"


STRIDE_4 = {"encoder": "synthetic", "resolution": 64, "plan": "stride", "frame_step": 4}


def test_every_row_has_a_protocol_on_the_page_and_in_the_csvs(tiny_cache, tmp_path):
    """A run whose cache is found reads its protocol from the manifest (a stride-4 cache, the
    run recording no settings); a run whose cache is gone from what its config.json recorded (a
    cache made before the sampling settings: today's plan). Every Table III cell group with a
    number has a protocol, a peer's is its peers.csv cell, and report.html shows them."""
    settings = {**STRIDE_4, "hop": None, "views": "center"}
    cache = open_cache(tiny_cache(settings=settings, actors=range(1, 3)))
    runs = tmp_path / "runs"
    found = _write_probe_run(runs, "ravdess", tmp_path)
    record = {"path": str(cache.path), "fingerprint": cache.fingerprint}
    folds = [1, 2, 3, 4, 5]
    (found / "config.json").write_text(json.dumps({"cache": record, "folds": folds}))
    gone = _write_probe_run(runs, "crema-d", tmp_path)
    today = {
        "encoder": "synthetic",
        "plan": "windows",
        "hop": 8,
        "views": "center",
        "resolution": 384,
    }  # one encoder: one row
    record = {"path": str(tmp_path / "gone"), "fingerprint": "0" * 64, "settings": today}
    (gone / "config.json").write_text(json.dumps({"cache": record, "folds": folds}))
    build_report([runs], tmp_path / "out", caches=[cache.path])

    out = tmp_path / "out"
    protocols = pd.read_csv(out / "protocols.csv").set_index("Code")
    table3 = pd.read_csv(out / "table3.csv")
    for _, row in table3.iterrows():
        for title in ("RAVDESS", "CREMA-D"):
            numbers = row[[f"{title} UAR", f"{title} WAR"]].notna().any()
            assert not numbers or row[f"{title} protocol"] in protocols.index, row["Method"]
    ours = table3.set_index("Method").loc["vjfer, attentive probe, PBV"]
    stride = protocols.loc[ours["RAVDESS protocol"]]
    assert stride["Sampling"].startswith("stride 4: frames 0, 4, 8, ...")
    assert stride["Test views"].startswith("2 views") and stride["Voting"].startswith("PBV")
    windows = protocols.loc[ours["CREMA-D protocol"]]
    assert windows["Sampling"] == "16 frames over 64 (V-JEPA linspace)"
    assert windows["Spatial"] == "short side to 438, centre 384×384"
    peers = report.load_peers().set_index(["method", "dataset", "modality"])
    cell = peers.loc[("MAE-DFER", "ravdess", "video"), "protocol"]
    mae = table3.set_index(["Method", "Modality"]).loc[("MAE-DFER", "video"), "RAVDESS protocol"]
    expect = peer_aspects(cell)
    assert protocols.loc[mae].tolist() == [expect[a] for a in ASPECTS]
    assert expect["folds"].startswith("6-fold by actor")

    page = out / "report.html"
    assert {"table2", "table3", "protocols"} <= set(assert_tables_equal_csvs(page))
    text = page.read_text(encoding="utf-8")
    assert "stride 4: frames 0, 4, 8, ..." in text and "RAVDESS protocol" in text
