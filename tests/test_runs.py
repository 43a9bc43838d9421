"""Cross-dataset checks (`runs.token_mismatch`): two caches made with `vjfer extract` settings that
change a clip's tokens are refused, naming the setting; settings that only choose clips pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjfer.extract import ExtractConfig
from vjfer.extract.config import cache_settings
from vjfer.runs import token_mismatch


@pytest.fixture(scope="module")
def encoder():
    from vjfer.encoders import load_encoder

    return load_encoder("tiny")


@pytest.fixture
def settings(encoder, tmp_path):
    """dataset, options -> the fingerprint inputs `vjfer extract` records for them."""

    def make(dataset: str, **options) -> dict:
        return cache_settings(
            ExtractConfig(dataset, tmp_path, **{"encoder": "tiny", **options}), encoder
        )

    return make


def _boxes(tmp_path: Path, name: str, row: str) -> str:
    path = tmp_path / name
    path.write_text(f"video_id,x,y,w,h\n{row}\n", encoding="utf-8")
    return f"boxes:{path}"


def test_settings_that_only_choose_clips_may_differ(settings):
    probe = settings("ravdess", plan="reference", hop=4, augment=2, limit=5, shard_size=3)
    target = settings("crema-d", views="3crop", max_lost_frames=0.5, dedup=False)
    assert token_mismatch(probe, target) is None


def test_each_dataset_brings_its_own_face_boxes(settings, tmp_path):
    probe = settings("ravdess", face_crop=_boxes(tmp_path, "a.csv", "01-01,1,2,3,4"))
    target = settings("crema-d", face_crop=_boxes(tmp_path, "b.csv", "1001_DFA_ANG_XX,5,6,7,8"))
    assert token_mismatch(probe, target) is None


@pytest.mark.parametrize(
    ("probe", "target", "named", "need"),
    [
        ({"face_crop": "boxes"}, {}, "face_crop", "frames cropped the same way"),
        (
            {"face_crop": "boxes", "face_margin": 0.4},
            {"face_crop": "boxes"},
            "field 'face_crop.margin'",
            "--face-crop",
        ),
        (
            {"face_crop": "boxes", "face_fallback": "full"},
            {"face_crop": "boxes"},
            "field 'face_crop.fallback'",
            "--face-crop",
        ),
        ({"store": "int8"}, {}, "store_format", "stored in the same format"),
        ({"store": "int8"}, {"store": "fp8"}, "store_format", "vjfer cache convert"),
        ({}, {"encoder": "vjepa-l16"}, "field 'encoder'", "made by the same encoder"),
    ],
)
def test_a_setting_that_changes_tokens_is_named(settings, tmp_path, probe, target, named, need):
    for options in (probe, target):
        if options.get("face_crop") == "boxes":
            options["face_crop"] = _boxes(tmp_path, f"{len(options)}.csv", "x,1,2,3,4")
    mismatch = token_mismatch(settings("ravdess", **probe), settings("crema-d", **target))
    assert mismatch is not None and named in mismatch and need in mismatch, mismatch
    assert "same encoder" not in mismatch or "encoder" in named


def test_a_fingerprint_input_added_later_is_compared(settings):
    """The check lists what may differ, so a new token setting is compared without an edit."""
    probe = settings("ravdess")
    mismatch = token_mismatch({**probe, "new_token_setting": 1}, settings("crema-d"))
    assert mismatch is not None and "new_token_setting" in mismatch
