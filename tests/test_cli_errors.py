"""Every bad value is one line (issue 20): each case of the issue through the real CLI (click's
in-process runner) exits non-zero with exactly one `error:` line naming the option or file, and
no traceback. One row per case; the fixture builds the few caches and runs they need (tiny shapes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import make_entries, run_cli, write_tiny_cache

from vjfer.cache.format import MANIFEST, shard_name
from vjfer.cli import cli
from vjfer.convert import ConvertConfig, convert
from vjfer.synthetic import make_ravdess

SETTINGS = {"encoder": "fake", "resolution": 16}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


def _read_only_folder(path: Path) -> Path | None:
    """A folder no one here may write into (root ignores permissions: a read-only tmpfs)."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True
    )
    return path if mounted.returncode == 0 else None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Paths the cases name: a good cache, one holding another cache's shard, a trained run and
    broken copies of it, an interrupted convert, a non-UTF-8 boxes file, a read-only folder."""
    tmp = tmp_path_factory.mktemp("errors")
    entries = make_entries(actors=range(1, 11))  # every RAVDESS fold has test actors
    good = write_tiny_cache(
        tmp / "good" / "ravdess" / "c", entries=entries, settings=SETTINGS, shard_size=16
    )
    other = [
        e if i else type(e)(**{**e.__dict__, "fold": e.fold % 5 + 1}) for i, e in enumerate(entries)
    ]
    theirs = write_tiny_cache(tmp / "theirs", entries=other, settings=SETTINGS, shard_size=16)
    foreign = Path(shutil.copytree(good, tmp / "foreign" / "ravdess" / "c"))
    (foreign / shard_name(0)).write_bytes((theirs / shard_name(0)).read_bytes())
    runs = tmp / "runs"
    run_cli(
        "probe",
        "--cache",
        good,
        "--out",
        runs,
        "--epochs",
        "1",
        "--fold",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    )
    (trained,) = runs.iterdir()
    bad_config = Path(shutil.copytree(trained, tmp / "bad-config" / "run"))
    (bad_config / "config.json").write_text("[]")
    no_metrics = Path(shutil.copytree(trained, tmp / "no-metrics" / "run"))
    (no_metrics / "fold-1" / "metrics.json").unlink()
    unreadable = tmp / "unreadable" / "run"
    unreadable.mkdir(parents=True)
    (unreadable / "summary.json").write_text("[1, 2]")
    listed = Path(shutil.copytree(good, tmp / "listed" / "c"))
    (listed / MANIFEST).write_text("[]")
    unfinished = Path(shutil.copytree(good, tmp / "unfinished" / "c"))
    (unfinished / MANIFEST).unlink()
    converted = convert(ConvertConfig(good, "int8", out=tmp / "int8" / "ravdess" / "c")).directory
    (converted / MANIFEST).unlink()  # a convert killed before its manifest
    root = tmp / "RAVDESS"
    make_ravdess(root, actors=(1,), emotions=(1,), vocal_channels=(1,), modalities=(2,))
    boxes = tmp / "boxes.csv"
    boxes.write_bytes("video_id,x,y,w,h\nvidéo,1,2,3,4\n".encode("latin-1"))
    read_only = _read_only_folder(tmp / "ro")
    (tmp / "latin.csv").write_bytes("path,label\na.mp4,tristesse é\n".encode("latin-1"))
    (tmp / "empty.csv").write_text("path,label\n \n")
    (tmp / "one.csv").write_text("path,label\na.mp4,sad\n")
    hostile = Path(shutil.copytree(good, tmp / "hostile" / "c"))
    manifest = json.loads((hostile / MANIFEST).read_text())
    (hostile / MANIFEST).write_text(json.dumps({**manifest, "class_names": "angry"}))
    yield {
        "good": good,
        "foreign": foreign.parent.parent,
        "run": trained,
        "runs": runs,
        "bad_config": bad_config,
        "no_metrics": no_metrics,
        "unreadable": unreadable.parent,
        "listed": listed,
        "unfinished": unfinished,
        "converted": converted.parent.parent,
        "root": root,
        "boxes": boxes,
        "hostile": hostile,
        "ro": read_only,
        "tmp": tmp,
    }
    if read_only is not None and os.geteuid() == 0:
        subprocess.run(["umount", str(read_only)], check=True)


PROBE = ("probe", "--cache", "{good}", "--out", "{tmp}/out", "--device", "cpu", "--epochs", "1")
LIST = ("index", "--dataset", "list", "--root", "{tmp}", "--list")
CASES = {  # case -> (arguments, the words its one line must hold)
    # issue 32: text as people write it, a manifest of the wrong shape, a writer's target
    "list not UTF-8": ((*LIST, "{tmp}/latin.csv"), r"latin.csv: not UTF-8 text \(byte 27"),
    "list of no rows": ((*LIST, "{tmp}/empty.csv"), r"empty.csv: no rows after the header"),
    "list of one class": ((*LIST, "{tmp}/one.csv"), r"one.csv: one class \('sad'\)"),
    "manifest class_names a string": (
        ("cache", "info", "{hostile}"),
        r"manifest.json: Expected `array`, got `str` - at `\$\.class_names`",
    ),
    "convert over another cache": (
        ("cache", "convert", "{good}", "--store", "fp8", "--out", "{run}"),
        r"--out .* holds files that are not this convert's",
    ),
    "report of no runs": (
        ("report", "{root}", "--out", "{tmp}/report-none", "--cache", "{tmp}/none"),
        r"no probe or cross run at or under .*: a report would hold the published rows only",
    ),
    "seed negative": (
        (*PROBE, "--seed", "-1"),
        r"seed must be in 0\.\.9223372036854775807, got -1",
    ),
    "seed huge": (
        (*PROBE, "--seed", "99999999999999999999"),
        r"seed must be in 0\.\.\d+, got 9{20}",
    ),
    "order seed negative": (
        (*PROBE, "--order-seed", "-5"),
        r"order_seed must be in 0\.\.\d+, got -5",
    ),
    "lr negative": (
        (*PROBE, "--lr", "-1"),
        r"'--lr': -1.0 in '-1': each value must be finite and > 0",
    ),
    "lr nan": ((*PROBE, "--lr", "nan"), r"'--lr': nan in 'nan'.*finite"),
    "lr inf": ((*PROBE, "--lr", "inf"), r"'--lr': inf in 'inf'.*finite"),
    "lr zero": ((*PROBE, "--lr", "0"), r"'--lr': 0.0 in '0'.*> 0"),
    "shots zero": ((*PROBE, "--shots", "4,0"), r"'--shots': 0: give whole videos per class, >= 1"),
    "shots not whole": ((*PROBE, "--shots", "2.5"), r"'--shots': '2.5': give whole videos"),
    "fraction over 1": (
        (*PROBE, "--train-fraction", "0.5,1.5"),
        r"'--train-fraction': 1.5: give a fraction in \(0, 1\]",
    ),
    "fraction zero": ((*PROBE, "--train-fraction", "0"), r"'--train-fraction': 0.0: .*\(0, 1\]"),
    "shots and fraction": (
        (*PROBE, "--shots", "4", "--train-fraction", "0.5"),
        r"--shots: give --shots or --train-fraction, not both",
    ),
    "wd negative": ((*PROBE, "--wd", "-0.5"), r"'--wd': -0.5 in '-0.5'.*finite and >= 0"),
    "lr empty entry": (
        (*PROBE, "--lr", "1e-3,,2"),
        r"'--lr': '1e-3,,2' has an empty entry \(position 2\)",
    ),
    "fold not a number": ((*PROBE, "--fold", "x"), r"'--fold': 'x': give all, or fold numbers"),
    "fold list with an unknown fold": (
        (*PROBE, "--fold", "1,9"),
        r"fold\(s\) \[9\] not in cache .*holds folds \[1, 2, 3, 4, 5\]",
    ),
    "fold empty entry": ((*PROBE, "--fold", "1,,2"), r"'--fold': '1,,2' has an empty entry"),
    "predict folds not numbers": (
        ("predict", "{tmp}/v.mp4", "--run", "{run}", "--folds", "1,x"),
        r"'--folds': '1,x': give all, or fold numbers",
    ),
    "device tpu": (
        (*PROBE[:-4], "--device", "tpu"),
        r"'--device': device 'tpu' is not one vjfer runs on",
    ),
    "device cuda without CUDA": (
        (*PROBE[:-4], "--device", "cuda"),
        r"'--device': device 'cuda': this machine has no usable CUDA GPU",
    ),
    "in-memory gpu without a GPU": (
        (*PROBE, "--in-memory", "gpu"),
        r"--in-memory: --in-memory gpu .*the CPU.*--in-memory yes",
    ),
    "read-only --out": (
        ("probe", "--cache", "{good}", "--out", "{ro}/runs"),
        r"--out: .*ro/runs: not writable \(Read-only file system\)",
    ),
    "foreign shard": (
        ("probe", "--cache", "{foreign}", "--out", "{tmp}/out"),
        r"shard-00000.h5: video \S+: fold \d, the manifest has \d",
    ),
    "interrupted convert": (
        ("probe", "--cache", "{converted}", "--out", "{tmp}/out"),
        r"a `vjfer cache convert` was interrupted.*resume it with `vjfer cache convert",
    ),
    "config.json a list": (
        ("report", "{bad_config}", "--out", "{tmp}/report", "--cache", "{tmp}/none"),
        r"config.json: expected a JSON object, got list",
    ),
    "every run unreadable": (
        ("report", "{unreadable}", "--out", "{tmp}/report2", "--cache", "{tmp}/none"),
        r"no readable run at or under .*summary.json could not be read",
    ),
    "compare a run report refuses": (
        ("compare", "{run}", "{no_metrics}", "--out", "{tmp}/cmp"),
        r"fold-1/metrics.json is missing",
    ),
    "manifest.json a list": (
        ("cache", "verify", "{listed}"),
        r"manifest.json: expected a JSON object, got list; damaged.*vjfer cache info",
    ),
    "verify an unfinished extraction": (
        ("cache", "verify", "{unfinished}"),
        r"is incomplete \(5 of 5 shards complete, no finished manifest\): an extraction was "
        r"interrupted",
    ),
    "boxes not UTF-8": (
        (
            "extract",
            "--dataset",
            "ravdess",
            "--root",
            "{root}",
            "--encoder",
            "tiny",
            "--cache",
            "{tmp}/cache",
            "--workers",
            "0",
            "--no-progress",
            "--face-crop",
            "boxes:{boxes}",
        ),
        r"boxes.csv: not UTF-8 text \(byte \d+: invalid",
    ),
}
NEEDS = {"device cuda without CUDA": NO_CUDA, "in-memory gpu without a GPU": NO_CUDA}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=NEEDS.get(c, ())) for c in CASES], ids=list(CASES)
)
def test_every_bad_value_is_one_line(world, case):
    args, words = CASES[case]
    if "{ro}" in "".join(args) and world["ro"] is None:
        pytest.skip("no read-only folder here (root, and no tmpfs mount)")
    result = CliRunner().invoke(cli, [a.format(**world) for a in args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code not in (0, None) and isinstance(result.exception, SystemExit), (
        result.output
    )
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert re.search(words, lines[0]), lines[0]


def test_a_fold_list_of_known_folds_trains_those_folds(world, tmp_path, caplog):
    """`--fold 1,2` is a list of folds, not an error (issue 20 named its traceback); the log says
    which clips the probe checks and that `vjfer cache verify` checks them all."""
    caplog.set_level("INFO", logger="vjfer.probe.run")
    run_cli(
        *[a.format(**world) for a in PROBE[:3]],
        "--out",
        tmp_path,
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--fold",
        "1,2",
        "--num-workers",
        "0",
        "--no-progress",
    )
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.endswith("-fold1-2")
    assert json.loads((run_dir / "summary.json").read_text())["folds"] == [1, 2]
    assert re.search(
        r"every shard's structure and per-video table match the manifest; each clip "
        r"this run reads is checked .*`vjfer cache verify \S+` checks every clip",
        caplog.text,
    )
