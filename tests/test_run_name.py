"""Run naming (`vjfer.probe.run.run_name`): every run setting `vjfer probe` can vary gets its own
directory, and the plain five-fold run keeps the short name."""

from __future__ import annotations

from pathlib import Path

from vjfer.probe.run import run_name

CACHE = Path("cache/ravdess/tiny-64-0123abcd")


def test_the_plain_run_has_the_short_name():
    assert run_name("ravdess", CACHE, "attentive", "all") == "ravdess-tiny-64-0123abcd-attentive"


def test_each_setting_adds_its_part():
    assert run_name("ravdess", CACHE, "linear", 3, grid_size=4, seed=2) == (
        "ravdess-tiny-64-0123abcd-linear-fold3-grid4-seed2"
    )


def test_no_two_settings_share_a_directory():
    settings = [
        (probe, folds, grid, seed)
        for probe in ("attentive", "linear")
        for folds in ("all", 1, 5)
        for grid in (1, 6)
        for seed in (0, 1)
    ]
    names = {run_name("crema-d", CACHE, *s) for s in settings}
    assert len(names) == len(settings)
