"""The "resume it with …" command: for every option of `vjfer extract`, the printed command, parsed
back through the real CLI, makes the same `ExtractConfig` and so the same cache fingerprint; it
points `--cache` at where the cache is now and says when the recorded `--root` is gone."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from vjfer.cache.format import fingerprint
from vjfer.cache.reader import EXTRACT_RECORD, resume_command
from vjfer.cli import cli
from vjfer.cli.executor import CLUSTER_PARAMS
from vjfer.cli.extract import extract_config
from vjfer.extract import ExtractConfig
from vjfer.extract.config import cache_settings, command_words, config_record, option_name

# A value other than the default for every ExtractConfig field the test varies. A new field fails
# test_every_option_has_a_case until it gets one here, so it is covered automatically.
NON_DEFAULT = {
    "encoder": "vjepa-l16",
    "checkpoint": Path("weights/vitl16.pth.tar"),
    "weights": "encoder",
    "hop": 4,
    "plan": "reference",
    "frame_step": 1,  # with --plan stride, the only plan that takes one
    "train_draws": 3,  # likewise
    "views": "3crop",
    "batch_size": 3,
    "workers": 0,
    "device": "cpu",
    "limit": 2,
    "shard_size": 5,
    "allow_low_disk": True,
    "face_crop": "boxes:{tmp}/faces.csv",
    "face_fallback": "full",
    "face_margin": 0.3,
    "max_lost_frames": 0.25,
    "no_reencode": True,
    "decode_timeout": 30.0,
    "max_frame_pixels": 1_000_000,
    "dedup": False,
    "store": "int8",
    "dtype": "fp16",
    "augment": 2,
    "augment_seed": 7,
    "trust_size_mtime": True,
    "layers": (0, -1),
    "modality": 2,  # RAVDESS, the dataset of every case but list_file
    "protocol": "dfer-clip",  # its plan, views and the rest re-created with it
    "list_file": "{tmp}/list.csv",  # with --dataset list, the only dataset that takes one
}
FIXED = ("dataset", "root", "cache_root", "force")  # given to every case / never resumed
CASES = [f.name for f in dataclasses.fields(ExtractConfig) if f.name not in FIXED]


def _cache_dir(tmp_path: Path, config: ExtractConfig, at: Path) -> Path:
    """A cache directory at `at/<dataset>/<name>` holding the extract.json that `config` writes."""
    directory = at / config.dataset / "tiny-16-00000000"
    directory.mkdir(parents=True)
    record = {"config": config_record(config), "command": command_words(config)}
    (directory / EXTRACT_RECORD).write_text(json.dumps(record), encoding="utf-8")
    return directory


def _parse(command: str) -> ExtractConfig:
    """The ExtractConfig the real `vjfer extract` makes of a printed (backquoted) command."""
    words = shlex.split(command.split("`")[1])
    assert words[:2] == ["vjfer", "extract"]
    extract = cli.commands["extract"]
    with extract.make_context("extract", words[2:]) as ctx:
        options = dict(ctx.params)
        options.pop("no_progress")
        for name in CLUSTER_PARAMS:  # how it is submitted, not what it makes
            options.pop(name)
        return extract_config(options.pop("dataset"), options.pop("root"), options)


@pytest.fixture(scope="module")
def encoder():
    from vjfer.encoders import load_encoder

    return load_encoder("tiny")


def test_every_option_has_a_case():
    assert sorted(CASES) == sorted(NON_DEFAULT), "give each new ExtractConfig field a value here"


def test_the_cli_declares_each_fields_option():
    """command_words names options by `option_name`: the CLI must declare exactly those."""
    skip = ("no_progress", *CLUSTER_PARAMS)
    declared = {p.name: p for p in cli.commands["extract"].params if p.name not in skip}
    assert sorted(declared) == sorted(f.name for f in dataclasses.fields(ExtractConfig))
    for name, param in declared.items():
        flags = [*param.opts, *param.secondary_opts]
        assert option_name(name) in flags or option_name(f"no_{name}") in flags, (name, flags)


@pytest.mark.parametrize("field", CASES)
def test_the_resume_command_recreates_the_cache(field, encoder, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "faces.csv").write_text("video_id,x,y,w,h\n", encoding="utf-8")
    (tmp_path / "list.csv").write_text("path,label\na.mp4,happy\n", encoding="utf-8")
    value = NON_DEFAULT[field]
    cases = {field: value.format(tmp=tmp_path) if isinstance(value, str) else value}
    dataset = "list" if field == "list_file" else "ravdess"
    if field == "list_file":
        cases[field] = Path(cases[field])
    if field in ("frame_step", "train_draws"):
        cases["plan"] = "stride"
    if field.startswith("face_") and field != "face_crop":  # they matter with a crop only
        cases["face_crop"] = f"boxes:{tmp_path}/faces.csv"
    if field == "checkpoint":
        cases["encoder"] = "vjepa-h16-384"  # the tiny encoder takes no checkpoint
    elif field != "encoder":
        cases["encoder"] = "tiny"
    config = ExtractConfig(dataset=dataset, root=root, cache_root=tmp_path / "cache", **cases)
    assert getattr(config, field) != getattr(ExtractConfig("ravdess", root), field)
    directory = _cache_dir(tmp_path, config, tmp_path / "cache")
    parsed = _parse(resume_command(directory))
    assert parsed == config
    assert fingerprint(cache_settings(parsed, encoder)) == fingerprint(
        cache_settings(config, encoder)
    )


def test_a_moved_cache_resumes_where_it_is_now(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    config = ExtractConfig(
        dataset="ravdess", root=root, encoder="tiny", dtype="fp16", cache_root=tmp_path / "old"
    )
    directory = _cache_dir(tmp_path, config, tmp_path / "new")
    command = resume_command(directory)
    assert _parse(command) == dataclasses.replace(config, cache_root=tmp_path / "new")
    assert "no longer exists" not in command
    root.rmdir()
    command = resume_command(directory)
    assert f"the recorded --root {root} no longer exists" in command


def test_a_cache_without_a_recorded_command_points_at_its_record(tmp_path):
    directory = tmp_path / "cache" / "ravdess" / "tiny-16-00000000"
    directory.mkdir(parents=True)
    assert str(directory / EXTRACT_RECORD) in resume_command(directory)
