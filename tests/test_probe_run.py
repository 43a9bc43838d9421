"""`vjfer probe` as one library function (`vjfer.probe.run.run_request`): the cache opened once, the
request's values checked as the command line checks them, a grid on one train/test split with its
seeded held-out part, resume against another cache, `--force` surviving a failed rename, a clip
listed twice, and an OSError through the command group."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from conftest import GRID, make_entries, run_cli

from vjfer.cache import Cache, build_cache, open_cache
from vjfer.datasets.folds import TRAIN_ONLY
from vjfer.errors import CheckpointError, ConfigError, SplitError
from vjfer.probe import resume
from vjfer.probe.config import OptionError, TrainConfig
from vjfer.probe.evaluate import score_videos, vote_videos
from vjfer.probe.folds import HELD_OUT, GridPoint, _grid_heads, carve_held_out, make_grid
from vjfer.probe.model import build_probe
from vjfer.probe.run import ProbeRequest, run_probe, run_request, train_folds
from vjfer.probe.samples import rows_of

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

SMALL = TrainConfig(epochs=1, batch_size=4, num_heads=4, num_workers=0, device="cpu")
SETTINGS = {"encoder": "synthetic", "resolution": 64, "plan": "windows", "hop": 8}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return build_cache(
        tmp_path_factory.mktemp("cache") / "ravdess" / "c",
        SETTINGS,
        make_entries(actors=range(1, 11)),
        dataset="ravdess",
        grid=GRID,
        shard_size=40,
    )


def test_probe_fold_all_opens_the_cache_once(cache_dir, tmp_path, monkeypatch):
    """`vjfer probe --fold all` with a 2x1 grid opens the cache (reads its shard headers and
    checks them against the manifest) exactly once."""
    opened = []
    init = Cache.__init__

    def counting(self, *args, **kwargs):
        opened.append(args[0])
        init(self, *args, **kwargs)

    monkeypatch.setattr(Cache, "__init__", counting)
    run_cli(
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        cache_dir.parent.parent,
        "--fold",
        "all",
        "--lr",
        "1e-3,5e-4",
        "--wd",
        "0.01",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        tmp_path,
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    )
    assert len(opened) == 1
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["folds"] == [1, 2, 3, 4, 5]


def test_the_python_api_refuses_what_the_command_line_refuses(cache_dir, tmp_path):
    with pytest.raises(OptionError, match=r"--lr: -1.0: each value must be finite and > 0"):
        ProbeRequest(cache=cache_dir, lrs=(1e-3, -1.0))
    with pytest.raises(OptionError, match=r"--wd: nan: each value must be finite and >= 0"):
        ProbeRequest(cache=cache_dir, wds=(float("nan"),))
    with pytest.raises(OptionError, match=r"--layer: 'top': give a block number, concat or all"):
        ProbeRequest(cache=cache_dir, layers=("top",))
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        ProbeRequest(cache=cache_dir, config=dataclasses.replace(SMALL, epochs=0))
    with pytest.raises(ConfigError, match=r"fold\(s\) \[9\] not in cache"):
        run_request(ProbeRequest(cache=cache_dir, runs=tmp_path, config=SMALL, folds=(1, 9)))
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="--in-memory gpu holds the training tokens on a GPU"):
            run_request(
                ProbeRequest(
                    cache=cache_dir,
                    runs=tmp_path,
                    config=dataclasses.replace(SMALL, in_memory="gpu"),
                )
            )
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ---------------------------------------------------------------- a grid on one train/test split


def _one_split(tmp_path: Path, kind: str) -> Path:
    """A cache of one train/test split: FERV39k's (every clip its own group, 7 classes) or a
    list file's `split` column with a `group` column (actors 1-8 train, 9-10 test)."""
    entries = [e for e in make_entries(actors=range(1, 11), videos_per_class=2) if e.label < 7]
    fold = {a: TRAIN_ONLY for a in range(1, 9)} | {9: 1, 10: 1}
    if kind == "ferv39k":
        entries = [
            dataclasses.replace(e, actor=i + 1, fold=fold[e.actor]) for i, e in enumerate(entries)
        ]
        return build_cache(tmp_path / kind, SETTINGS, entries, dataset="ferv39k", grid=GRID)
    entries = [dataclasses.replace(e, fold=fold[e.actor]) for e in entries]
    classes = [f"c{k}" for k in range(7)]
    settings = {**SETTINGS, "list": {"splits": "file", "classes": classes, "sha256": "0" * 64}}
    return build_cache(tmp_path / kind, settings, entries, dataset="list", grid=GRID)


@pytest.mark.parametrize("kind", ["ferv39k", "list"])
def test_a_grid_on_one_split_holds_out_a_seeded_group_disjoint_part(tmp_path, caplog, kind):
    cache = open_cache(_one_split(tmp_path, kind))
    videos = cache.videos
    groups = sorted(set(videos.loc[videos["fold"] == TRAIN_ONLY, "actor"]))
    grid = make_grid([1e-3, 5e-4], [0.01], [3])
    config = grid[0].apply(SMALL)
    heads, evaluates, inner_of = _grid_heads(cache, [1], config, grid, torch.device("cpu"))
    assert inner_of == {1: HELD_OUT}
    actors = videos["actor"].to_numpy()
    inner = next(h for h in heads if h.name == f"fold1/inner{HELD_OUT}/{grid[0].name}")
    held = set(actors[evaluates[inner.name]])
    assert held and not held & set(actors[inner.rows])  # group- (clip-) disjoint
    assert len(held) == round(0.2 * len(groups))  # a fifth of the training groups, stated
    assert not held & set(actors[videos["fold"] == 1])  # the test set takes no part
    again = carve_held_out(videos["fold"].to_numpy(), actors, 3)
    assert set(actors[again == HELD_OUT]) == held  # seeded: the same part again
    other = carve_held_out(videos["fold"].to_numpy(), actors, 4)
    assert set(actors[other == HELD_OUT]) != held  # ... and the seed is the config's
    caplog.set_level("INFO", logger="vjfer.probe.folds")
    train_folds(cache, [1], config, tmp_path / "run", progress=False, grid=grid)
    said = f"inner validation: {len(held)} of {len(groups)} training groups held out (seed 3)"
    assert said in caplog.text
    selection = pd.read_csv(tmp_path / "run" / "selection.csv")
    assert set(selection["inner_fold"]) == {HELD_OUT}
    assert set(selection["n_inner_val_videos"]) == {int(np.isin(actors, list(held)).sum())}


# -------------------------------------------------------------------- resume, force and staging


def test_resume_against_another_cache_is_refused_through_the_api(cache_dir, tmp_path, monkeypatch):
    """A pass interrupted after its last checkpoint (before the run was published) resumes only
    on the cache it was trained on: another cache is refused, naming the fingerprints."""
    other = build_cache(
        tmp_path / "other",
        {**SETTINGS, "resolution": 32},
        make_entries(actors=range(1, 11), seed=1),
        dataset="ravdess",
        grid=GRID,
    )
    run = tmp_path / "run"

    def killed(partial, out):
        raise KeyboardInterrupt  # a kill between the last checkpoint and the rename

    monkeypatch.setattr("vjfer.probe.run.publish_run", killed)
    with pytest.raises(KeyboardInterrupt):
        run_probe(cache_dir, [1], SMALL, run, progress=False)
    monkeypatch.undo()
    assert (tmp_path / "run.partial" / "checkpoint.pt").is_file()
    with pytest.raises(CheckpointError, match=r"was trained on another cache: .*fingerprint"):
        run_probe(other, [1], SMALL, run, progress=False, mode="resume")
    assert not run.exists()
    same = build_cache(
        tmp_path / "same",
        SETTINGS,
        make_entries(actors=range(1, 11), seed=1),
        dataset="ravdess",
        grid=GRID,
    )  # the fingerprint of cache_dir, other videos
    assert open_cache(same).fingerprint == open_cache(cache_dir).fingerprint
    with pytest.raises(CheckpointError, match=r"saved by another pass \(cache_videos: "):
        run_probe(same, [1], SMALL, run, progress=False, mode="resume")
    run_probe(cache_dir, [1], SMALL, run, progress=False, mode="resume")  # its own cache: resumes
    assert (run / "fold-1" / "metrics.json").is_file()


def test_force_keeps_the_old_run_whole_when_the_new_one_cannot_be_renamed(tmp_path, monkeypatch):
    out, partial = tmp_path / "run", tmp_path / "run.partial"
    for folder, text in ((out, "old"), (partial, "new")):
        (folder / "fold-1").mkdir(parents=True)
        (folder / "fold-1" / "metrics.json").write_text(text)
    rename = Path.rename

    def failing(self, target):
        if self == partial:
            raise OSError(28, "No space left on device", str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError):
        resume.publish_run(partial, out)
    monkeypatch.undo()
    assert (out / "fold-1" / "metrics.json").read_text() == "old"  # the old run, whole, in place
    assert (partial / "fold-1" / "metrics.json").read_text() == "new"  # the new one, kept
    resume.publish_run(partial, out)
    assert (out / "fold-1" / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ------------------------------------------------------------------------------ a test set's clips


def _clips(probe, cache, video_ids):
    """One row per cached evaluation window of `video_ids` (in cache order), scored by `probe`."""
    return score_videos(cache, {"probe": (probe, rows_of(cache, video_ids))})["probe"]


def _videos(probe, cache, video_ids):
    """Whole-video predictions (PBV and MV) of `video_ids` from the cache."""
    return vote_videos(_clips(probe, cache, video_ids), cache.class_names)


def test_a_clip_listed_twice_in_one_test_set_is_named(cache_dir):
    cache = open_cache(cache_dir)
    probe = build_probe("linear", cache.embed_dim, len(cache.class_names))
    ids = cache.videos["video_id"].tolist()
    assert len(_videos(probe, cache, ids[:3])) == 3
    with pytest.raises(SplitError, match=f"video {re.escape(repr(ids[1]))} is listed twice"):
        _videos(probe, cache, [ids[0], ids[1], ids[2], ids[1]])


# --------------------------------------------------------------------------------- the CLI group


def test_an_oserror_inside_a_command_is_one_line(monkeypatch):
    from vjfer.cli import cli

    def unreadable():
        raise PermissionError(13, "Permission denied", "/weights/registry.json")

    monkeypatch.setattr("vjfer.encoders.list_encoders", unreadable)
    result = CliRunner().invoke(cli, ["encoders"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert lines == [
        "error: /weights/registry.json: Permission denied: check that it exists and "
        "that this user may read (or write) it, or give another path"
    ]


def test_grid_point_names_are_unchanged():
    """Run and head names are on disk: a grid point's name stays what runs were written with."""
    assert GridPoint(1e-3, 0.01, 0).name == "lr0.001-wd0.01-seed0"
    assert GridPoint(5e-4, 0.05, 2, 1).name == "lr0.0005-wd0.05-seed2-layer1"


def test_a_full_disk_that_names_no_file_names_the_output_folder(monkeypatch, tmp_path):
    """Issue 32: "error: a file: No space left" named nothing; the folder the command writes to
    (its --out) is named, with the fix for a full disk."""
    import errno

    from vjfer.cli import cli

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("vjfer.report.build_report", full)
    result = CliRunner().invoke(cli, ["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 1 and result.output == (
        f"error: a file under {tmp_path / 'rep'}: No space left on device: free space there and "
        "rerun: the command resumes from what it finished\n"
    )
