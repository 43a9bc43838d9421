"""vjfer.protocols: each preset sets what its source's loader does, per dataset; `extract
--protocol` applies it, refuses a contradicting option and records it; `paper` is today's cache."""

from __future__ import annotations

import pytest

from vjfer.encoders import load_encoder
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig
from vjfer.extract.config import cache_settings, config_record
from vjfer.protocols import PROTOCOLS, get_protocol


@pytest.mark.parametrize(
    "protocol, dataset, plan, step, views",
    [
        ("mae-dfer", "dfew", "stride", 4, "whole"),
        ("mae-dfer", "mafw", "stride", 4, "whole"),
        ("mae-dfer", "ferv39k", "stride", 1, "whole"),  # MAE-DFER's FERV39k script: sr=1
        ("dfer-clip", "dfew", "segments", None, "whole"),
        ("paper", "ravdess", "windows", None, "center"),
    ],
)
def test_a_preset_sets_its_loader_s_plan_step_and_view(
    tmp_path, protocol, dataset, plan, step, views
):
    config = ExtractConfig(dataset=dataset, root=tmp_path, protocol=protocol)
    assert (config.plan, config.frame_step, config.views) == (plan, step, views)


def test_an_option_that_contradicts_the_preset_is_one_line(tmp_path):
    words = r"--protocol mae-dfer sets --views whole; you gave --views 3crop: drop one"
    with pytest.raises(ConfigError, match=words):
        ExtractConfig(dataset="dfew", root=tmp_path, protocol="mae-dfer", views="3crop")
    # the preset's own value given again is no contradiction
    ExtractConfig(dataset="dfew", root=tmp_path, protocol="mae-dfer", views="whole", frame_step=4)
    with pytest.raises(
        ConfigError, match=r"unknown --protocol 'svfap'; use one of paper, mae-dfer"
    ):
        get_protocol("svfap")


def test_paper_is_today_s_cache_and_others_are_recorded(tmp_path):
    encoder = load_encoder("tiny")
    default = ExtractConfig(dataset="ravdess", root=tmp_path)
    paper = ExtractConfig(dataset="ravdess", root=tmp_path, protocol="paper")
    assert cache_settings(paper, encoder) == cache_settings(default, encoder)
    assert "protocol" not in config_record(default) and config_record(paper)["protocol"] == "paper"
    clip = ExtractConfig(dataset="dfew", root=tmp_path, protocol="dfer-clip")
    assert cache_settings(clip, encoder)["protocol"] == "dfer-clip"


def test_the_plan_line_names_the_source_and_a_dataset_it_was_not_defined_for():
    line = PROTOCOLS["mae-dfer"].plan_line("crema-d")
    assert "not defined for crema-d (defined for dfew, ferv39k, mafw, ravdess)" in line
    assert "--plan stride, --views whole, --frame-step 4" in line and "Still differs" in line
    assert "defined for dfew" in PROTOCOLS["dfer-clip"].plan_line("dfew")
