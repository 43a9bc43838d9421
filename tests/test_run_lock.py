"""One writer per stage-2 output (`vjfer.probe.resume.staged_run`): a second probe, a `--force`
and a `--resume` of a live run are refused naming the holder and never told to `--resume`; a run
stopped by an error is reported as failed with its reason, not as interrupted; and every
`torch.load` refuses a code-running pickle in one line without torch's advice to load unsafely."""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from vjfer.cache import open_cache
from vjfer.convert import ConvertConfig, convert
from vjfer.errors import CacheError, CheckpointError, ConfigError, TrainingError
from vjfer.probe.config import TrainConfig
from vjfer.probe.model import load_probe
from vjfer.probe.resume import PassCheckpoint
from vjfer.probe.run import run_name, train_folds

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

SMALL = TrainConfig(epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu")
HOLDER = "pid 4242 on host elsewhere since 2026-01-01 00:00:00 UTC"
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def held(run: Path):
    """`run`'s lock (RUN.lock beside it) held as another vjfer process holds it: flock on an open
    file description of its own (flock locks are per open file description), naming its holder."""
    with open(run.with_name(run.name + ".lock"), "w", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(HOLDER + "\n")
        f.flush()
        yield


def _live(run: Path) -> Path:
    """A live run's staging folder, as the holder has written it so far."""
    partial = run.with_name(run.name + ".partial")
    partial.mkdir(parents=True)
    (partial / "config.json").write_text('{"live": true}', encoding="utf-8")
    return partial


@pytest.mark.parametrize("mode", ["new", "force", "resume"])
def test_a_live_run_is_refused_naming_its_holder(mode, cache_dir, tmp_path):
    run = tmp_path / "run"
    partial = _live(run)
    with held(run), pytest.raises(ConfigError) as info:
        train_folds(open_cache(cache_dir), [1], SMALL, run, progress=False, mode=mode)
    text = str(info.value)
    assert text == (
        f"run {run} is being written by another vjfer process ({HOLDER}); wait for it to "
        "finish, or stop that process first"
    )
    assert "--resume" not in text  # following that advice made two processes train one run
    assert sorted(p.name for p in partial.iterdir()) == ["config.json"]  # never deleted
    assert (partial / "config.json").read_text(encoding="utf-8") == '{"live": true}'
    assert not run.exists()


def test_force_against_a_live_run_is_one_line_through_the_cli(cache_dir, tmp_path):
    runs = tmp_path / "runs"
    partial = _live(runs / run_name("ravdess", cache_dir, "attentive", [1]))
    run = partial.with_name(partial.name.removesuffix(".partial"))
    args = ["probe", "--cache", cache_dir, "--fold", "1", "--device", "cpu", "--out", runs]
    with held(run):
        out = run_cli(*args, "--force", ok=False)
    assert out.strip() == (
        f"error: run {run} is being written by another vjfer process ({HOLDER}); wait for it "
        "to finish, or stop that process first"
    )
    assert (partial / "config.json").read_text(encoding="utf-8") == '{"live": true}'


HOLD = """
import sys
from pathlib import Path
from vjfer.errors import ConfigError
from vjfer.lock import FileLock
FileLock(Path(sys.argv[1]), ConfigError, since=True, remove=True).acquire()  # as run_lock does
print("held", flush=True)
sys.stdin.read()
"""


def test_the_holder_is_named_by_pid_host_and_since_and_dies_with_it(cache_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "run.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        who = rf"pid {proc.pid} on host {re.escape(socket.gethostname())} since 20\d\d-\d\d-\d\d "
        with pytest.raises(
            ConfigError, match=rf"is being written by another vjfer process \({who}"
        ):
            train_folds(open_cache(cache_dir), [1], SMALL, run, progress=False)
    finally:
        proc.kill()  # SIGKILL: the kernel drops its lock, no stale lock is left
        proc.wait()
    train_folds(open_cache(cache_dir), [1], SMALL, run, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the lock file went with it


def test_a_failed_run_says_failed_with_its_reason_and_resumes(cache_dir, tmp_path, monkeypatch):
    cache, run = open_cache(cache_dir), tmp_path / "run"
    with pytest.raises(TrainingError):
        train_folds(cache, [1], replace(SMALL, lr=1e30), run, progress=False)
    reason = "head fold1/lr1e+30-wd0.01-seed0 (lr 1e+30, wd 0.01, seed 0): loss nan at epoch 1"
    with pytest.raises(ConfigError) as info:
        train_folds(cache, [1], SMALL, run, progress=False)
    assert str(info.value).startswith(f"a failed run is at {run}.partial: {reason}")
    assert str(info.value).endswith(
        "; --force replaces it, --resume continues it from its last checkpoint"
    )
    assert "interrupted" not in str(info.value)

    # a corrupt clip refused after the last checkpoint: --resume continues from it, and publishes
    # a run without the failed mark
    def refused(*args):
        raise CacheError("shard-00000.h5: clip 3 of video 01-0-0: checksum mismatch")

    monkeypatch.setattr("vjfer.probe.run.write_fold", refused)
    with pytest.raises(CacheError):
        train_folds(cache, [1], SMALL, run, progress=False, mode="force")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=r"failed run is at .*: shard-00000\.h5: clip 3 of"):
        train_folds(cache, [1], SMALL, run, progress=False)
    train_folds(cache, [1], SMALL, run, progress=False, mode="resume")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert not (run / "failed.json").exists() and (run / "fold-1" / "metrics.json").is_file()


class _RunsCode:
    """Unpickling this runs a shell command (`touch marker`)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["probe.pt", "checkpoint.pt"])
def test_a_code_running_pickle_is_refused_in_one_line(name, tmp_path):
    path, marker = tmp_path / name, tmp_path / "code-ran"
    torch.save({"format": "vjfer-probe", "identity": {}, "x": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as info:
        if name == "probe.pt":
            load_probe(path)
        else:
            PassCheckpoint(path, identity={}).restore([])
    text = str(info.value)
    assert text.startswith(f"{path}: not a tensor file vjfer wrote, or unsafe: refused")
    assert "\n" not in text and "weights_only" not in text  # never torch's advice
    assert not marker.exists()  # and nothing ran


def test_a_second_convert_to_the_same_out_is_refused_naming_the_first(cache_dir, tmp_path):
    out = tmp_path / "int8"
    with held(out), pytest.raises(CacheError) as info:
        convert(ConvertConfig(cache_dir, "int8", out=out))
    assert str(info.value) == (
        f"{out} is being written by another vjfer cache convert ({HOLDER}); wait for it to "
        "finish or stop it, then rerun (it resumes from the finished shards)"
    )
    assert not out.exists()  # nothing written
