"""`vjfer extract --layers`: several encoder blocks in one cache, layer-major along each clip's
token axis. Without the option (or with `--layers -1`) the cache is today's, byte for byte and
fingerprint for fingerprint; each stored layer equals a cache of that block alone; every store
format works per layer; `cache info` and the printed plan show the size per layer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vjfer.cache import cache_info, format_cache_info, open_cache
from vjfer.cache.format import MANIFEST
from vjfer.encoders import load_encoder
from vjfer.encoders.vjepa import ViTConfig
from vjfer.extract import ExtractConfig, extract, format_plan, plan_extraction
from vjfer.synthetic import make_ravdess

pytestmark = pytest.mark.usefixtures("one_thread")

# The fingerprint of `_config(root, ...)`'s cache as main computed it before `--layers` existed
# (tiny encoder, seed 0): the default must keep it.
PINNED_FINGERPRINT = "adf7e94449cd2592e85bcc62e5eb0ba7dad5d69efe4940a6412be055cebd3c5e"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    make_ravdess(
        root, actors=(1,), emotions=(1, 8), vocal_channels=(1,), modalities=(2,), short_every=0
    )
    return root


@pytest.fixture(scope="module")
def tiny3():
    """The tiny encoder with 3 blocks (the 2-block registry spec would leave one intermediate)."""
    from vjfer.encoders import registry

    spec = registry.ENCODERS["tiny"]
    three = ViTConfig(embed_dim=32, depth=3, num_heads=2, img_size=64)
    registry.ENCODERS["tiny"] = type(spec)("tiny", spec.factory, spec.weights_source, three)
    try:
        yield load_encoder("tiny")
    finally:
        registry.ENCODERS["tiny"] = spec


def _config(root: Path, cache_root: Path, **options) -> ExtractConfig:
    defaults = dict(encoder="tiny", shard_size=2, batch_size=4, workers=0)
    return ExtractConfig(
        dataset="ravdess", root=root, cache_root=cache_root, **{**defaults, **options}
    )


def _run(config: ExtractConfig, encoder):
    plan = plan_extraction(config, encoder=encoder)
    return plan, extract(config, progress=False, plan=plan).cache_dir


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("shard-*")}


def test_no_layers_and_layers_minus_one_are_todays_cache(root, tmp_path):
    encoder = load_encoder("tiny")
    _, plain = _run(_config(root, tmp_path / "a"), encoder)
    _, last = _run(_config(root, tmp_path / "b", layers=(-1,)), encoder)
    manifest = json.loads((plain / MANIFEST).read_text())
    assert manifest["fingerprint"] == PINNED_FINGERPRINT
    assert "layers" not in manifest["settings"] and "layers" not in manifest["layout"]
    assert plain.name == last.name and _digests(plain) == _digests(last)
    other = json.loads((last / MANIFEST).read_text())
    assert other["settings"] == manifest["settings"] and other["layout"] == manifest["layout"]
    assert "layers" not in other["config"]  # the record too: `-1` is the default, not an option


def test_each_stored_layer_equals_a_cache_of_that_block(root, tmp_path, tiny3):
    plan, multi = _run(_config(root, tmp_path / "m", layers=(0, -2, -1)), tiny3)
    cache = open_cache(multi)
    assert cache.layers == (0, 1, 2) and cache.settings["layers"]["norm"] == "final"
    N = cache.layer_tokens
    assert (N, cache.num_tokens) == (tiny3.num_tokens, 3 * tiny3.num_tokens)
    singles = {
        k: open_cache(_run(_config(root, tmp_path / f"s{k}", layers=(k,)), tiny3)[1])
        for k in (0, 1)
    }
    singles[2] = open_cache(_run(_config(root, tmp_path / "s2"), tiny3)[1])  # the default
    assert len({c.fingerprint for c in (cache, *singles.values())}) == 4
    for vid in cache.videos["video_id"]:
        tokens = cache.tokens(vid)  # [C, V, 3·N, D], layer-major
        for k, single in singles.items():
            np.testing.assert_array_equal(tokens[:, :, k * N : (k + 1) * N], single.tokens(vid))
        assert not np.array_equal(tokens[:, :, :N], tokens[:, :, 2 * N :])
    # the printout and `cache info` give the size per layer
    line = next(x for x in format_plan(plan).splitlines() if x.startswith("layers"))
    assert "3 blocks (0, 1, 2 of 3, 0-based, through the final norm)" in line
    info = cache_info(multi)
    per_layer = next(x for x in format_cache_info(info).splitlines() if x.startswith("layers"))
    assert f"~{info['bytes'] / 3 / 1e9:.3f} GB per layer" in per_layer


@pytest.mark.parametrize("store", ["int8", "fp8", "pool2"])
def test_store_formats_work_per_layer(root, tmp_path, tiny3, store):
    from vjfer import store as stores

    fp16 = open_cache(_run(_config(root, tmp_path / "f", layers=(0, 2)), tiny3)[1])
    packed = open_cache(_run(_config(root, tmp_path / "p", layers=(0, 2), store=store), tiny3)[1])
    fmt = stores.StoreFormat.parse(store)
    vid = fp16.videos["video_id"][0]
    tokens = fp16.tokens(vid)
    N = fp16.layer_tokens
    for k in range(2):  # each layer stored as that layer alone would be
        import torch

        alone = stores.transform(
            torch.from_numpy(tokens[:, :, k * N : (k + 1) * N]), fmt, fp16.grid
        ).numpy()
        n = packed.layer_tokens
        np.testing.assert_array_equal(packed.tokens(vid)[:, :, k * n : (k + 1) * n], alone)
    assert packed.layers == (0, 2) and packed.num_tokens == 2 * packed.layer_tokens
