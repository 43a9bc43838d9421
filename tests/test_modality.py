"""RAVDESS `--modality` on `extract` and `probe`: the peers' 6 folds hold the video-only (02) files
only. One cache of both modalities, probed with `--modality 2`, trains and tests on 02 files only;
without it, `--splits mae-dfer` warns; `extract --modality 2` is another cache, default caches
record nothing new (the tiny encoder, 1 epoch)."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd
import pytest

from tests.conftest import run_cli
from vjfer.cache import open_cache
from vjfer.cache.format import MANIFEST
from vjfer.datasets.folds import mae_dfer_folds
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig
from vjfer.probe.folds import split_fold
from vjfer.probe.run import open_run_cache
from vjfer.synthetic import make_ravdess

EXTRACT = ("--encoder", "tiny", "--workers", "0", "--device", "cpu", "--no-progress")
PROBE = ("--epochs", "1", "--device", "cpu", "--num-workers", "0", "--no-progress")
ACTORS = (1, 5, 9)  # mae-dfer folds 1, 2 and 3


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict:
    """A RAVDESS tree of modalities 01 and 02 and the default cache (both) of it."""
    tmp = tmp_path_factory.mktemp("modality")
    root = tmp / "RAVDESS"
    make_ravdess(
        root,
        actors=ACTORS,
        emotions=(1, 3),
        modalities=(1, 2),
        vocal_channels=(1,),
        short_every=0,
        frames=24,
    )
    cache = tmp / "cache"
    run_cli("extract", "--dataset", "ravdess", "--root", root, "--cache", cache, *EXTRACT)
    (path,) = (cache / "ravdess").iterdir()
    return {"tmp": tmp, "root": root, "cache": cache, "path": path}


def test_probe_modality_2_trains_and_tests_on_02_files_only(both):
    with open_cache(both["path"]) as cache:
        assert {v[:2] for v in cache.videos["video_id"]} == {"01", "02"}  # the cache holds both
    runs = both["tmp"] / "runs"
    args = ("probe", "--dataset", "ravdess", "--cache", both["cache"], "--out", runs)
    run_cli(*args, "--splits", "mae-dfer", "--modality", "2", *PROBE)
    (run,) = runs.glob("ravdess-*-mae-dfer-modality2")
    assert json.loads((run / "config.json").read_text())["modality"] == 2
    folds = mae_dfer_folds()
    for k in (1, 2, 3):
        tested = pd.read_csv(run / f"fold-{k}" / "video_predictions.csv")["video_id"]
        expected = sorted(
            p.stem for p in both["root"].rglob("02-*.mp4") if folds[int(p.stem[-2:])] == k
        )
        assert sorted(tested) == expected and len(expected) == 2  # 2 emotions of 1 actor
    cache, _ = open_run_cache(both["path"], splits="mae-dfer", modality=2)
    for k in (1, 2, 3):
        train, test = split_fold(cache.videos, k)
        assert len(train) == 4 and len(test) == 2
        assert {v[:2] for v in (*train["video_id"], *test["video_id"])} == {"02"}


def test_mae_dfer_splits_on_both_modalities_warn(both, caplog):
    with caplog.at_level(logging.WARNING, logger="vjfer.probe.folds"):
        open_run_cache(both["path"], splits="mae-dfer")
    (warning,) = [r.getMessage() for r in caplog.records if "--modality 2" in r.getMessage()]
    assert "holds modalities 01 and 02 (6 and 6 videos)" in warning
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vjfer.probe.folds"):
        open_run_cache(both["path"])  # the paper's folds: both modalities, as the paper
        open_run_cache(both["path"], splits="mae-dfer", modality=2)
    assert not [r for r in caplog.records if "--modality" in r.getMessage()]
    with pytest.raises(ConfigError, match="holds no modality 01 video"):
        open_run_cache(extract_02(both), modality=1)


def extract_02(both) -> object:
    """The `extract --modality 2` cache of the same tree (made once)."""
    cache = both["tmp"] / "cache-02"
    if not cache.exists():
        run_cli(
            "extract",
            "--dataset",
            "ravdess",
            "--root",
            both["root"],
            "--cache",
            cache,
            "--modality",
            "2",
            *EXTRACT,
        )
    (path,) = (cache / "ravdess").iterdir()
    return path


def test_extract_modality_is_another_cache_and_default_caches_record_nothing(both):
    default = json.loads((both["path"] / MANIFEST).read_text())
    assert "modality" not in default["settings"] and "modality" not in default["config"]
    path = extract_02(both)
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["settings"]["modality"] == 2 and manifest["config"]["modality"] == 2
    assert path.name != both["path"].name  # another fingerprint
    assert {v["video_id"][:2] for v in manifest["videos"]} == {"02"}
    assert len(manifest["videos"]) == 6


def test_modality_on_a_dataset_without_modalities_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="--dataset dfew has no modalities: drop --modality"):
        ExtractConfig(dataset="dfew", root=tmp_path, modality=2)
    out = run_cli(
        "extract", "--dataset", "dfew", "--root", tmp_path, "--modality", "2", *EXTRACT, ok=False
    )
    assert "has no modalities: drop --modality" in out


def test_protocol_mae_dfer_on_ravdess_is_the_02_files_in_the_6_folds(both):
    """`extract --protocol mae-dfer` keeps the 02 files (whole frames, stride 4); the probe's
    default folds are then MAE-DFER's 6: each fold tests exactly the 02 files of its actors."""
    out = run_cli("index", "--dataset", "ravdess", "--root", both["root"], "--protocol", "mae-dfer")
    assert out.splitlines()[0].startswith(
        "protocol mae-dfer (sunlicai/MAE-DFER kinetics.py VideoClsDatasetFrame"
    )
    assert (
        "--plan stride, --views whole, --frame-step 4, --modality 2; probe --splits mae-dfer" in out
    )
    assert re.search(r"^6 videos, 3 actors", out, re.M)  # the 02 files only
    cache = both["tmp"] / "cache-protocol"
    args = ("--dataset", "ravdess", "--root", both["root"], "--cache", cache)
    out = run_cli("extract", *args, "--protocol", "mae-dfer", *EXTRACT)
    assert "protocol   protocol mae-dfer" in out
    (path,) = (cache / "ravdess").iterdir()
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["settings"]["protocol"] == "mae-dfer"
    assert (manifest["settings"]["plan"], manifest["settings"]["views"]) == ("stride", "whole")
    assert {v["video_id"][:2] for v in manifest["videos"]} == {"02"}
    runs = both["tmp"] / "runs-protocol"
    run_cli("probe", "--dataset", "ravdess", "--cache", cache, "--out", runs, *PROBE)
    (run,) = runs.iterdir()
    folds = mae_dfer_folds()
    assert json.loads((run / "config.json").read_text())["splits"] == "mae-dfer"
    for k in (1, 2, 3):
        tested = pd.read_csv(run / f"fold-{k}" / "video_predictions.csv")["video_id"]
        expected = sorted(
            p.stem for p in both["root"].rglob("02-*.mp4") if folds[int(p.stem[-2:])] == k
        )
        assert sorted(tested) == expected
