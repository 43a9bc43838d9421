"""`vjfer compare`: paired per-fold differences from run directories (hand-written in the layout
`train_folds` writes, so the expected numbers are known), refusals, and two real runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vjfer.cli import cli
from vjfer.compare import compare_runs, read_run
from vjfer.errors import ConfigError
from vjfer.probe.config import TrainConfig
from vjfer.probe.run import config_dict
from vjfer.synthetic import make_ravdess

SETTINGS = {
    "encoder": "tiny",
    "resolution": 64,
    "dtype": "float16",
    "encoder_fingerprint": {"name": "tiny", "checkpoint_sha256": None, "seed": 0},
}


def write_run(
    directory, uar: list[float], *, dataset="ravdess", train=None, settings=None, n_test=10
):
    """A run directory as `vjfer.probe.run.train_folds` writes it (config.json, summary.json,
    fold-K/metrics.json: `vjfer report` reads them, so compare does too)."""
    directory.mkdir(parents=True)
    train = config_dict(train or TrainConfig())
    per_fold = [
        {
            "fold": k,
            "n_test_videos": n_test,
            **{
                v: {"uar": u, "war": u + 0.1, "macro_precision": u - 0.1, "macro_f1": u}
                for v in ("pbv", "mv", "clip")
            },
        }
        for k, u in enumerate(uar, start=1)
    ]
    cache = {
        "path": "cache/x",
        "dataset": dataset,
        "fingerprint": "ab" * 32,
        "settings": settings or SETTINGS,
    }
    config = {"train": train, "folds": [f["fold"] for f in per_fold], "cache": cache}
    summary = {
        "dataset": dataset,
        "probe": train["probe"],
        "folds": config["folds"],
        "per_fold": per_fold,
        "mean": {},
    }
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "summary.json").write_text(json.dumps(summary))
    for fold in per_fold:
        (directory / f"fold-{fold['fold']}").mkdir()
        (directory / f"fold-{fold['fold']}" / "metrics.json").write_text(json.dumps(fold))
    return directory


def test_paired_differences_against_the_first_run(tmp_path):
    a = write_run(tmp_path / "a", [0.50, 0.60, 0.70])
    face = {**SETTINGS, "face_crop": {"method": "haar", "margin": 0.25}, "store_format": "int8"}
    b = write_run(tmp_path / "b", [0.55, 0.70, 0.72], train=TrainConfig(lr=3e-4), settings=face)
    frame = compare_runs([a, b]).frame
    assert frame["Voting"].tolist() == ["PBV", "MV", "PBV", "MV"]
    first, second = frame.iloc[0], frame.iloc[2]
    assert first["UAR"] == pytest.approx(60.0) and first["UAR std"] == pytest.approx(10.0)
    assert np.isnan(first["Δ UAR"])  # the baseline has no difference to itself
    diffs = [5.0, 10.0, 2.0]  # per fold, percent points
    assert second["Δ UAR"] == pytest.approx(np.mean(diffs))
    assert second["Δ UAR std"] == pytest.approx(np.std(diffs, ddof=1))
    assert second["Δ WAR"] == pytest.approx(np.mean(diffs))  # WAR = UAR + 10 in both runs
    assert (first["Face crop"], first["Store"], first["Head"]) == ("none", "fp16", "default")
    assert (second["Face crop"], second["Store"], second["Head"]) == ("haar", "int8", "lr=0.0003")
    assert first["Encoder"] == "tiny (seed 0)" and first["Resolution"] == 64
    assert first["Family"] == "random (tests, demo)"  # latent prediction, MAE, image, ...


def test_refuses_other_datasets_and_folds(tmp_path):
    a = write_run(tmp_path / "a", [0.5, 0.6, 0.7])
    crema = write_run(tmp_path / "c", [0.5, 0.6, 0.7], dataset="crema-d")
    with pytest.raises(ConfigError, match="c is a crema-d run, .* different datasets"):
        compare_runs([a, crema])
    two = write_run(tmp_path / "two", [0.5, 0.6])
    with pytest.raises(ConfigError, match=r"has folds \[1, 2\], .* has \[1, 2, 3\]"):
        compare_runs([a, two])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty is not a `vjfer probe` run: summary.json"):
        read_run(tmp_path / "empty")


def test_notes_folds_with_other_test_counts(tmp_path):
    a = write_run(tmp_path / "a", [0.5, 0.6])
    b = write_run(tmp_path / "b", [0.5, 0.6], n_test=9)
    notes = compare_runs([a, b]).notes
    assert any("b: test-video counts differ" in n and "[1, 2]" in n for n in notes)


def run(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_compare_two_real_heads(tmp_path):
    """Two probe runs of one tiny cache with different heads: the CLI's table matches their
    summaries, fold by fold."""
    root, cache, runs = tmp_path / "RAVDESS", tmp_path / "cache", tmp_path / "runs"
    make_ravdess(root, actors=(2, 3, 10, 8, 1), emotions=(1, 3), modalities=(2,), seed=4)
    run(
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
        "--no-progress",
    )
    base = [
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        cache,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    run(*base, "--out", runs / "a")
    run(*base, "--out", runs / "b", "--lr", "0.01", "--seed", "1")
    (a,), (b,) = list((runs / "a").iterdir()), list((runs / "b").iterdir())
    out = run("compare", a, b, "--out", tmp_path / "cmp")
    assert "Δ UAR" in out
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table["Head"].tolist() == ["epochs=1"] * 2 + ["epochs=1 lr=0.01 seed=1"] * 2
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    diffs = [
        100 * (fb["pbv"]["uar"] - fa["pbv"]["uar"])
        for fa, fb in zip(sa["per_fold"], sb["per_fold"], strict=True)
    ]
    assert table.loc[2, "Δ UAR"] == pytest.approx(np.mean(diffs))
    assert table.loc[0, "UAR"] == pytest.approx(100 * sa["mean"]["pbv"]["uar"]["mean"])
    assert (tmp_path / "cmp" / "compare.md").read_text().startswith("## Probe runs compared")
