"""Stage 2 survives a kill and never overwrites a run (`vjfer.probe.resume`), and a head whose loss
is not finite stops the pass (or, asked to, is skipped and never selected)."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GRID, make_entries, run_cli

from vjfer.cache import build_cache, open_cache
from vjfer.errors import CheckpointError, ConfigError, TrainingError
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import make_grid
from vjfer.probe.resume import save_atomic
from vjfer.probe.run import tokens_digest, train_folds, videos_digest
from vjfer.probe.train import plan_pass

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

SMALL = TrainConfig(epochs=2, batch_size=4, num_heads=4, num_workers=0, device="cpu")
TIMING = ("seconds", "pass_seconds_share", "pass_read_gb_s", "read_gb_s")  # differ run to run


def test_a_run_is_refused_replaced_only_by_force_and_never_mixed(cache_dir, tmp_path, caplog):
    cache, run = open_cache(cache_dir), tmp_path / "run"
    train_folds(cache, [1], replace(SMALL, epochs=1), run, progress=False)
    first = (run / "fold-1" / "metrics.json").read_bytes()
    # what a kill between a publish's renames and its clean-up leaves: removed by the next command
    (run / "checkpoint.pt").write_bytes(b"left by a kill")
    (tmp_path / "run.old").mkdir()
    with pytest.raises(ConfigError, match=f"run {re.escape(str(run))} exists: --force"):
        train_folds(cache, [1], SMALL, run, progress=False)
    assert not (run / "checkpoint.pt").exists() and not (tmp_path / "run.old").exists()
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_folds(cache, [1], SMALL, run, progress=False, mode="resume")
    assert (run / "fold-1" / "metrics.json").read_bytes() == first  # untouched by the refusals
    with caplog.at_level(logging.WARNING, logger="vjfer.probe.resume"):  # nothing to resume
        train_folds(cache, [1], replace(SMALL, epochs=1), tmp_path / "fresh", mode="resume")
    assert "--resume: no interrupted run at" in caplog.text and "from the start" in caplog.text
    shutil.rmtree(tmp_path / "fresh")
    (tmp_path / "other.partial").mkdir()  # an interrupted run
    with pytest.raises(ConfigError, match=r"interrupted run is at .*other\.partial: --resume"):
        train_folds(cache, [2], SMALL, tmp_path / "other", progress=False)
    (tmp_path / "other.partial").rmdir()
    train_folds(cache, [2], SMALL, run, progress=False, mode="force")
    # the old run is replaced as a whole: its fold-1 is gone, the config says 2 epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in run.glob("fold-*")) == ["fold-2"]
    assert json.loads((run / "config.json").read_text())["train"]["epochs"] == 2
    assert not (run / "checkpoint.pt").exists()  # deleted once the run is complete


def test_a_non_finite_loss_stops_the_run_naming_head_and_epoch(cache_dir, tmp_path):
    config = replace(SMALL, lr=1e30)  # weights overflow within the first epoch
    with pytest.raises(
        TrainingError,
        match=re.escape(
            "head fold1/lr1e+30-wd0.01-seed0 (lr 1e+30, wd 0.01, seed 0): loss nan at epoch 1"
        ),
    ):
        train_folds(open_cache(cache_dir), [1], config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing that looks like a run


def test_skip_marks_a_diverged_grid_point_failed_and_never_selects_it(cache_dir, tmp_path):
    config = replace(SMALL, on_nonfinite="skip")
    grid = make_grid([1e-3, 1e30], [0.01], [0])
    summary = train_folds(
        open_cache(cache_dir), [1], config, tmp_path / "run", progress=False, grid=grid
    )
    failed = {f["head"]: f for f in summary["failed_heads"]}
    assert sorted(failed) == ["fold1/inner2/lr1e+30-wd0.01-seed0", "fold1/lr1e+30-wd0.01-seed0"]
    assert all(f["epoch"] == 1 and f["loss"] == "nan" for f in failed.values())
    selection = pd.read_csv(tmp_path / "run" / "selection.csv")
    bad = selection[selection["head"] == "lr1e+30-wd0.01-seed0"].iloc[0]
    assert not bad["selected"] and "loss nan at epoch 1" in bad["failed"]
    assert summary["selected"]["selection"] == {"1": "lr0.001-wd0.01-seed0"}
    assert "Failed heads" in (tmp_path / "run" / "summary.md").read_text()
    # the reported (default) head may not be skipped: the fold would have no result
    with pytest.raises(TrainingError, match="reported head"):
        train_folds(
            open_cache(cache_dir), [1], replace(config, lr=1e30), tmp_path / "r2", progress=False
        )


def test_resume_refuses_other_settings_naming_them(cache_dir, tmp_path):
    cache, run = open_cache(cache_dir), tmp_path / "run"
    partial = tmp_path / "run.partial"
    partial.mkdir()
    saved = {"identity": {"train": {"epochs": 5}}, "epoch": 1, "records": [], "heads": {}}
    torch.save(saved, partial / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"another pass \(.*: checkpoint .*, now"):
        train_folds(cache, [1], SMALL, run, progress=False, mode="resume")


def test_the_plan_states_the_checkpoint_size():
    """40 heads of the ViT-H probe (19,688,968 parameters): weights and AdamW's two moments."""
    plan = plan_pass(
        TrainConfig(),
        heads=40,
        probe_params=40 * 19_688_968,
        reads=[8],
        clip_bytes=1,
        sample_bytes=1,
        held="disk",
        held_bytes=0,
    )
    assert plan.checkpoint_bytes == 40 * 19_688_968 * 3 * 4
    assert "checkpoint 9.45 GB (236.3 MB per head)" in plan.describe()
    off = plan_pass(
        TrainConfig(checkpoint_every=0),
        heads=1,
        probe_params=1,
        reads=[8],
        clip_bytes=1,
        sample_bytes=1,
        held="disk",
        held_bytes=0,
    )
    assert off.checkpoint_bytes == 0


def _numbers(value, path=""):
    """Every number of a metrics.json, by its path, timing fields aside."""
    if isinstance(value, dict):
        return {
            k: v
            for key, item in value.items()
            if key not in TIMING
            for k, v in _numbers(item, f"{path}/{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}/{i}").items()
        }
    return {path: value} if isinstance(value, (int, float)) else {}


def _assert_same_run(a: Path, b: Path) -> None:
    folds = sorted(p.name for p in a.glob("fold-*"))
    assert folds == sorted(p.name for p in b.glob("fold-*")) and len(folds) == 5
    for fold in folds:
        ours, theirs = (json.loads((r / fold / "metrics.json").read_text()) for r in (a, b))
        assert _numbers(ours) == _numbers(theirs) and len(_numbers(ours)) > 50
        assert (a / fold / "clip_predictions.csv").read_bytes() == (
            b / fold / "clip_predictions.csv"
        ).read_bytes()
        state_a, state_b = (
            torch.load(r / fold / "probe.pt", weights_only=True)["state_dict"] for r in (a, b)
        )
        assert state_a.keys() == state_b.keys()
        for name, tensor in state_a.items():
            assert torch.equal(tensor, state_b[name]), f"{fold} {name}"


@pytest.mark.slow
def test_a_probe_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """A real `vjfer probe --fold all` killed with SIGKILL after its first checkpoint, then rerun
    with --resume, equals an uninterrupted run: metrics, clip predictions, probe tensors."""
    two_per_fold = [2, 5, 3, 6, 10, 11, 8, 17, 1, 4]  # actors: two of each RAVDESS fold
    settings = {"encoder": "synthetic", "resolution": 64, "plan": "windows", "hop": 8}
    cache_dir = build_cache(
        tmp_path / "cache",
        settings,
        make_entries(actors=two_per_fold),
        dataset="ravdess",
        grid=GRID,
        shard_size=20,
    )
    epochs = 4
    args = [
        "probe",
        "--cache",
        str(cache_dir),
        "--fold",
        "all",
        "--epochs",
        str(epochs),
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    run_cli(*args, "--out", tmp_path / "whole")
    (whole,) = (tmp_path / "whole").iterdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vjfer", *args, "--out", str(tmp_path / "cut")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    checkpoint = tmp_path / "cut" / f"{whole.name}.partial" / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(checkpoint, weights_only=True)
    assert 1 <= saved["epoch"] < epochs, "killed after the first checkpoint, before the last epoch"
    assert not (tmp_path / "cut" / whole.name).exists()  # no half run under the run's name
    assert "--resume continues it" in run_cli(*args, "--out", tmp_path / "cut", ok=False)
    run_cli(*args, "--out", tmp_path / "cut", "--resume")
    _assert_same_run(whole, tmp_path / "cut" / whole.name)


def test_checkpoint_every_2_resumes_bit_identical_after_a_kill_in_epoch_3(tmp_path, monkeypatch):
    """`--checkpoint-every 2`: a pass stopped in its third epoch saved after epoch 2 (not 1, not
    3), and the resumed run equals an uninterrupted one: metrics, clip predictions, probe
    tensors."""
    import vjfer.probe.train as train

    one_per_fold = [2, 3, 10, 8, 1]  # actors: one of each RAVDESS fold
    settings = {"encoder": "synthetic", "resolution": 64, "plan": "windows", "hop": 8}
    cache = open_cache(
        build_cache(
            tmp_path / "cache",
            settings,
            make_entries(actors=one_per_fold),
            dataset="ravdess",
            grid=GRID,
            shard_size=20,
        )
    )
    config = replace(SMALL, epochs=3, batch_size=2, checkpoint_every=2)  # epoch 3: the last
    folds = [1, 2, 3, 4, 5]
    train_folds(cache, folds, config, tmp_path / "whole", progress=False)
    run_epoch = train._run_epoch

    def killed_in_epoch_3(*args):
        if args[6] == 2:  # epoch, 0-based
            raise KeyboardInterrupt
        return run_epoch(*args)

    monkeypatch.setattr(train, "_run_epoch", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_folds(cache, folds, config, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    saved = torch.load(tmp_path / "cut.partial" / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 2 and len(saved["records"]) == 2
    train_folds(cache, folds, config, tmp_path / "cut", progress=False, mode="resume")
    _assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_tmp(tmpfs):
    """Issue 32: torch's `enforce fail at inline_container.cc` became one CheckpointError naming
    the file and the bytes it needs; the temporary file is removed."""
    state = {"heads": [{"w": torch.zeros(200_000)}]}  # 0.8 MB on a 200 KB disk
    with pytest.raises(CheckpointError) as refused:
        save_atomic(state, tmpfs / "checkpoint.pt")
    message = str(refused.value)
    assert message.startswith(f"{tmpfs / 'checkpoint.pt'}: cannot be written")
    assert "needs about 0.8 MB" in message and "--resume" in message and "\n" not in message
    assert list(tmpfs.iterdir()) == []


def test_a_resume_sees_tokens_re_extracted_under_the_same_fingerprint(tiny_cache, tmp_path):
    """Issue 32: a re-extraction that changed a clip's tokens (a source replaced) keeps the
    fingerprint and the per-video table; the pass identity's tokens digest tells them apart, so
    `--resume` refuses instead of continuing silently on other tokens."""
    copy = tmp_path / "c"
    shutil.copytree(tiny_cache(), copy)
    before = open_cache(copy)
    identity = (before.fingerprint, videos_digest(before), tokens_digest(before))
    before.close()
    with h5py.File(copy / "shard-00000.h5", "r+") as f:
        f["clip_checksum"][0] = f["clip_checksum"][0] ^ np.uint64(1)  # as a re-encoded clip
    after = open_cache(copy, verify=False)
    assert (after.fingerprint, videos_digest(after)) == identity[:2]
    assert tokens_digest(after) != identity[2]
