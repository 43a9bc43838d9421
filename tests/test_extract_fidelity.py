"""Extraction with the reference's clips and augmentation: the `reference` plan's roles,
`--augment K` copies (deterministic, recorded), `--augment 0` unchanged, the plan printout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from vjfer.cache import open_cache
from vjfer.cache.format import MANIFEST
from vjfer.clips import ROLE_AUGMENTED, ROLE_EVAL, ROLE_TRAIN, clip_roles, plan_clips
from vjfer.encoders import load_encoder
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig, extract, format_plan, plan_extraction
from vjfer.synthetic import make_ravdess

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    make_ravdess(root, emotions=(1, 8), vocal_channels=(1,), modalities=(2,), short_every=0)
    return root


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("tiny")


def _config(root: Path, cache_root: Path, **options) -> ExtractConfig:
    defaults = dict(encoder="tiny", shard_size=2, batch_size=4, workers=0)
    return ExtractConfig(
        dataset="ravdess", root=root, cache_root=cache_root, **{**defaults, **options}
    )


def _run(config: ExtractConfig, encoder):
    plan = plan_extraction(config, encoder=encoder)
    return plan, extract(config, progress=False, plan=plan)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("shard-*")}


def test_augment_zero_stores_what_a_run_without_the_option_stores(root, encoder, tmp_path):
    _, plain = _run(_config(root, tmp_path / "a", limit=2), encoder)
    _, zero = _run(_config(root, tmp_path / "b", augment=0, limit=2), encoder)
    assert plain.cache_dir.name == zero.cache_dir.name
    assert _digests(plain.cache_dir) == _digests(zero.cache_dir)
    settings = json.loads((plain.cache_dir / MANIFEST).read_text())["settings"]
    assert "augment" not in settings and settings["windows_version"] == 2
    for shard in plain.cache_dir.glob("shard-*.h5"):
        with h5py.File(shard) as f:
            assert "clip_role" not in f  # an all-evaluation cache keeps the v2 layout


def test_reference_plan_with_augmented_copies(root, encoder, tmp_path):
    config = _config(root, tmp_path / "a", plan="reference", augment=2, augment_seed=3, limit=2)
    plan, summary = _run(config, encoder)
    text = format_plan(plan)
    line = next(x for x in text.splitlines() if x.startswith("augmented"))
    assert "2 × 8 = 16 extra clips a video" in line and f"~{16 * plan.videos} in all" in line
    assert "% more encoder (GPU) time" in line
    cache = open_cache(summary.cache_dir)
    settings = cache.settings
    assert settings["augment"]["copies"] == 2 and settings["augment"]["seed"] == 3
    assert settings["plan"] == "reference" and settings["hop"] == 8
    for vid, n in zip(cache.videos["video_id"], cache.videos["n_frames"], strict=True):
        roles, frames = cache.clip_roles(vid), cache.clip_frames(vid)
        plain = clip_roles(n, "reference")
        assert roles.tolist() == plain.tolist() + [2] * 8 + [3] * 8
        train = plan_clips(n, "reference-train")
        np.testing.assert_array_equal(frames[roles == ROLE_TRAIN], train)
        np.testing.assert_array_equal(frames[roles == ROLE_AUGMENTED + 1], train)
        np.testing.assert_array_equal(frames[roles == ROLE_EVAL], plan_clips(n, "windows"))
        tokens = cache.tokens(vid)
        a, b, t = (tokens[roles == r].astype(np.float32) for r in (2, 3, ROLE_TRAIN))
        assert not np.array_equal(a, t) and not np.array_equal(a, b)
    # deterministic per (seed, video, copy): another run writes the same bytes
    _, again = _run(replace(config, cache_root=tmp_path / "b"), encoder)
    assert _digests(again.cache_dir) == _digests(summary.cache_dir)
    # and recorded in the fingerprint: another seed or count is another cache
    for change in ({"augment_seed": 4}, {"augment": 1}, {"augment": 0}):
        other = plan_extraction(replace(config, **change), encoder=encoder)
        assert other.directory != plan.directory, change


def test_augmented_copies_fill_every_view_slot_of_a_3crop_cache(root, encoder, tmp_path):
    # the reference's protocol: augmented single-view training, 3-view evaluation
    _, summary = _run(_config(root, tmp_path, augment=1, views="3crop", limit=1), encoder)
    cache = open_cache(summary.cache_dir)
    vid = cache.videos["video_id"][0]
    roles, tokens = cache.clip_roles(vid), cache.tokens(vid)  # [C, 3, N, D]
    copies = tokens[roles == ROLE_AUGMENTED]
    assert len(copies) == 8 and (copies == copies[:, :1]).all()
    plain = tokens[roles == ROLE_EVAL]
    assert not (plain == plain[:, :1]).all()  # the three crops of a plain clip differ


def test_augment_checks_its_count(root, tmp_path):
    with pytest.raises(ConfigError, match="augment must be >= 0 copies, got -1"):
        _config(root, tmp_path, augment=-1)
