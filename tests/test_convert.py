"""vjfer.convert and compact caches: lineage and fingerprint, the source left untouched, PCA fitted
outside the test fold, resume after SIGKILL to identical bytes, and a converted cache through
extract, probe, cross, report and predict on the command line."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import GRID, make_entries, run_cli, write_tiny_cache

from vjfer.cache import build_cache, cache_info, open_cache, verify_cache
from vjfer.cache.format import MANIFEST
from vjfer.convert import COST_FILE, ConvertConfig, convert, fit_pca
from vjfer.errors import CacheError, ConfigError
from vjfer.probe.config import TrainConfig
from vjfer.probe.reader import ClipReader, HeldTokens, clip_bytes
from vjfer.probe.run import train_folds
from vjfer.runs import one_cache
from vjfer.store import check_store_folds, decode_raw
from vjfer.synthetic import make_crema_d, make_ravdess

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"encoder": "fake", "resolution": 16}


def digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.name.startswith("shard-") or p.name == MANIFEST
    }


@pytest.fixture(scope="module")
def source(tiny_cache) -> Path:
    # actors 1..10: folds 1..5 all present
    return tiny_cache(settings=SETTINGS, actors=range(1, 11), views=2, shard_size=16)


@pytest.fixture(scope="module")
def int8(source, tmp_path_factory) -> Path:
    return convert(
        ConvertConfig(source, "int8", out=tmp_path_factory.mktemp("c") / "int8")
    ).directory


def test_convert_leaves_the_source_byte_identical(source, tmp_path):
    before = digests(source)
    convert(ConvertConfig(source, "pool2+int8", out=tmp_path / "a"))
    assert digests(source) == before and len(before) == 6  # 5 shards + manifest


def test_lineage_fingerprint_and_info(source, int8):
    src, dst = open_cache(source), open_cache(int8)
    assert dst.settings == {**src.settings, "store_format": "int8"}
    assert dst.fingerprint != src.fingerprint
    manifest = json.loads((int8 / MANIFEST).read_text())
    assert manifest["lineage"] == {"source_fingerprint": src.fingerprint, "source_store": "fp16"}
    assert manifest["layout"]["dtype"] == "int8" and manifest["layout"]["store"]["format"] == "int8"
    assert "store" not in json.loads((source / MANIFEST).read_text())["layout"]  # fp16: as before
    info = cache_info(int8)
    assert info["store"] == "int8" and info["size_ratio"] == pytest.approx((32 + 2) / 64)
    assert verify_cache(int8).ok
    cost = json.loads((int8 / COST_FILE).read_text())
    assert cost["source"]["fingerprint"] == src.fingerprint
    assert cost["relative_l2"] < 0.01 and cost["cosine_p1"] > 0.999
    assert 0.5 < cost["size_ratio"] < 0.75  # the shards' tables are not compressed


def test_converted_tokens_and_the_reader_deliver_stored_bytes(source, int8):
    src, dst = open_cache(source), open_cache(int8)
    vid = src.videos["video_id"][3]
    x, y = src.tokens(vid).astype(np.float32), dst.tokens(vid)
    assert y.dtype == np.float16 and y.shape == x.shape
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < 0.01
    reader = ClipReader(dst, threads=2)
    clips = np.array([0, 2])
    (raw,) = [r.clone() for r in reader.stream([(vid, clips)])]
    assert raw.dtype == torch.uint8 and raw.shape == (
        2,
        2 * 8 * (32 + 2),
    )  # V N (D + 2 scale bytes)
    np.testing.assert_array_equal(decode_raw(raw, dst.store, dst.shape).numpy(), y[clips])
    assert reader.stats.bytes == 2 * clip_bytes(dst) == 2 * 544
    held = HeldTokens(reader, {vid: np.arange(3)}, torch.device("cpu"))
    assert held.nbytes == 3 * 544  # held as stored: int8 + scales


def test_corrupt_scale_bytes_are_caught(source, tmp_path):
    import h5py

    out = convert(ConvertConfig(source, "int8", out=tmp_path / "c")).directory
    with h5py.File(out / "shard-00000.h5", "r+") as f:
        scales = f["token_scales"][0]
        scales[0, 0] += 1
        f["token_scales"][0] = scales
    report = verify_cache(out)
    assert not report.ok and re.search(
        r"shard-00000.h5: clip 0 .* does not match", report.problems[0]
    )


def test_pca_basis_never_sees_the_test_fold(source, tmp_path):
    cache = open_cache(source)
    folds = dict(zip(cache.videos["video_id"], cache.videos["fold"], strict=True))
    basis, mean, used = fit_pca(cache, 4, test_fold=3, clips=10_000)
    assert basis.shape == (32, 4) and mean.shape == (32,)
    assert used and all(folds[v] != 3 for v in used)
    assert {folds[v] for v in used} == {1, 2, 4, 5}
    # changing every fold-3 token leaves the basis as it was
    entries = make_entries(actors=range(1, 11), views=2)
    for e in entries:
        if e.fold == 3:
            e.tokens = (e.tokens * 7 + 3).astype(np.float16)
    other = open_cache(
        build_cache(tmp_path / "o", SETTINGS, entries, dataset="ravdess", grid=GRID, shard_size=16)
    )
    basis2, mean2, _ = fit_pca(other, 4, test_fold=3, clips=10_000)
    np.testing.assert_array_equal(basis, basis2)
    np.testing.assert_array_equal(mean, mean2)
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-5)


def test_pca_cache_probes_only_its_test_fold(source, tmp_path):
    with pytest.raises(ConfigError, match="needs --pca-fold K"):
        convert(ConvertConfig(source, "pca:4", out=tmp_path / "x"))
    out = convert(ConvertConfig(source, "pool2+pca:4+int8", out=tmp_path / "p", pca_fold=2))
    cache = open_cache(out.directory)
    assert cache.shape == (2, 2, 4) and cache.settings["store_pca"]["test_fold"] == 2
    check_store_folds(cache, [2])
    with pytest.raises(ConfigError, match=r"outside fold 2: testing fold\(s\) \[1, 3\].*--fold 2"):
        check_store_folds(cache, [1, 2, 3])
    config = TrainConfig(epochs=1, device="cpu", num_workers=0, in_memory="no", num_heads=4)
    train_folds(cache, [2], config, tmp_path / "run", progress=False)
    ckpt = torch.load(tmp_path / "run" / "fold-2" / "probe.pt", weights_only=True)
    basis, _ = cache.pca_basis()
    np.testing.assert_array_equal(ckpt["store_pca_basis"]["basis"].numpy(), basis)
    assert ckpt["embed_dim"] == 4


def test_extraction_settings_per_format():
    """fp16 adds nothing to the fingerprint inputs or the manifest's config (today's caches keep
    their fingerprint and bytes); another format is a fingerprint input; pca waits for convert."""
    from vjfer.encoders import load_encoder
    from vjfer.extract import ExtractConfig
    from vjfer.extract.config import cache_settings, config_record

    encoder = load_encoder("tiny")
    config = ExtractConfig(dataset="ravdess", root=Path("data"), encoder="tiny")
    assert "store_format" not in cache_settings(config, encoder)
    assert "store" not in config_record(config)
    packed = ExtractConfig(dataset="ravdess", root=Path("data"), encoder="tiny", store="int8+pool2")
    assert cache_settings(packed, encoder)["store_format"] == "pool2+int8"
    assert config_record(packed)["store"] == "int8+pool2"
    with pytest.raises(ConfigError, match=r"extract with --store fp16.*vjfer cache convert"):
        ExtractConfig(dataset="ravdess", root=Path("data"), encoder="tiny", store="pca:32")


KILLER = """
import os, signal, sys
from pathlib import Path
from vjfer import convert
from vjfer.cache.writer import ShardWriter
original, seen = ShardWriter.append, []
def append(self, entry):  # die (SIGKILL) after the first video written to shard 2
    original(self, entry)
    seen.append(self.path.name)
    if seen.count("shard-00002.h5") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
ShardWriter.append = append
convert.convert(convert.ConvertConfig(Path(sys.argv[1]), "pool2+int8", out=Path(sys.argv[2])))
"""


def test_killed_convert_resumes_to_identical_bytes(source, tmp_path):
    clean = convert(ConvertConfig(source, "pool2+int8", out=tmp_path / "clean")).directory
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(source), str(killed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    names = sorted(p.name for p in killed.iterdir())
    assert names == ["convert.json", "shard-00000.h5", "shard-00001.h5", "shard-00002.h5.partial"]
    summary = convert(ConvertConfig(source, "pool2+int8", out=killed))
    assert (summary.shards_skipped, summary.shards_written) == (2, 3)
    assert digests(killed) == digests(clean)


# ---------------------------------------------------------------------------------------------
# End to end on the command line: generated videos, the tiny encoder (grid (8, 4, 4) at 64).


run = run_cli  # `vjfer ARGS...` in-process; asserts exit 0 unless ok=False


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("e2e")
    roots = {"ravdess": tmp / "R", "crema-d": tmp / "C"}
    make_ravdess(
        roots["ravdess"], actors=(2, 3, 10, 8, 1), emotions=(1, 3, 5), seed=1, modalities=(2,)
    )
    make_crema_d(
        roots["crema-d"], actors=(1002, 1004, 1005, 1007, 1001), sentences=("TIE",), seed=1
    )
    cache, runs = tmp / "cache", tmp / "runs"
    common = [
        "--encoder",
        "tiny",
        "--cache",
        cache,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    ]
    run("extract", "--dataset", "ravdess", "--root", roots["ravdess"], *common)
    # CREMA-D extracted straight into the format; RAVDESS converted from fp16
    run(
        "extract",
        "--dataset",
        "crema-d",
        "--root",
        roots["crema-d"],
        "--store",
        "pool2+int8",
        *common,
    )
    (src,) = (cache / "ravdess").iterdir()
    converted = run("cache", "convert", src, "--store", "pool2+int8")
    (dst,) = [p for p in (cache / "ravdess").iterdir() if p != src]
    probe = [
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
        "--out",
        runs,
    ]
    run("probe", "--dataset", "ravdess", "--cache", dst, *probe)
    (crema,) = (cache / "crema-d").iterdir()
    run("probe", "--dataset", "crema-d", "--cache", crema, *probe)
    run(
        "cross",
        "--train",
        "ravdess",
        "--test",
        "crema-d",
        "--runs",
        runs,
        "--cache",
        cache,
        "--device",
        "cpu",
    )
    return {
        "tmp": tmp,
        "roots": roots,
        "cache": cache,
        "runs": runs,
        "src": src,
        "dst": dst,
        "crema": crema,
        "converted": converted,
    }


def test_convert_prints_its_cost(pipeline):
    out = pipeline["converted"]
    assert re.search(r"\(pool2\+int8; 1 shard\(s\) written, 0 already complete\)", out)
    ratio = float(re.search(r"GB = ([\d.]+) of the source's", out)[1])
    cost = json.loads((pipeline["dst"] / COST_FILE).read_text())
    assert ratio == pytest.approx(cost["size_ratio"], abs=5e-4) and ratio < 0.5
    info = run("cache", "info", pipeline["dst"])
    assert re.search(
        r"store\s+pool2\+int8: a clip takes 0\.129 of its fp16 bytes", info
    )  # 66 / 128 / 4
    assert re.search(
        r"clips\s+\d+\s+tokens per clip \[V=1, N=32, D=64\] int8, grid \(8, 2, 2\)", info
    )
    assert f"converted from cache {open_cache(pipeline['src']).fingerprint}" in info


def test_extract_in_a_format_equals_convert(pipeline, tmp_path):
    """`extract --store` and `cache convert` store the same tokens under the same fingerprint."""
    run(
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        pipeline["roots"]["ravdess"],
        "--encoder",
        "tiny",
        "--cache",
        tmp_path,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
        "--store",
        "pool2+int8",
    )
    (direct,) = (tmp_path / "ravdess").iterdir()
    a, b = open_cache(direct), open_cache(pipeline["dst"])
    assert a.fingerprint == b.fingerprint and direct.name == pipeline["dst"].name
    for vid in a.videos["video_id"]:
        np.testing.assert_array_equal(a.raw_tokens(vid), b.raw_tokens(vid))


def test_converted_caches_probe_and_cross(pipeline):
    (run_dir,) = pipeline["runs"].glob("ravdess-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["folds"] == [1, 2, 3, 4, 5]
    config = json.loads((run_dir / "fold-1" / "config.json").read_text())
    assert config["cache"]["settings"]["store_format"] == "pool2+int8"
    assert config["cache"]["grid"] == [8, 2, 2]
    cross = json.loads(
        (run_dir / "cross" / "cross-ravdess-to-crema-d-drop" / "summary.json").read_text()
    )
    assert Path(cross["target_cache"]) == pipeline["crema"]
    for fold in cross["folds"]:
        assert fold["pbv"]["n_total"] == 5 * 6  # 5 actors x 6 emotions x 1 sentence


@pytest.mark.slow
def test_converted_run_reports_and_predicts(pipeline):
    (run_dir,) = pipeline["runs"].glob("ravdess-*")
    out = pipeline["tmp"] / "report"
    run("report", pipeline["runs"], "--out", out, "--cache", pipeline["cache"])
    assert (out / "report.html").is_file() and (out / "table2.csv").is_file()
    settings = pd.read_csv(out / "settings.csv", index_col=0)
    store = settings.loc["Store format", run_dir.name]
    assert store.startswith("pool2+int8 tokens [clips, views, 8×2×2 tokens, D = 64]")
    expected = pd.read_csv(run_dir / "fold-1" / "video_predictions.csv").iloc[0]
    (video,) = pipeline["roots"]["ravdess"].rglob(f"{expected['video_id']}.mp4")
    got = json.loads(
        run("predict", video, "--run", run_dir, "--fold", "1", "--json", "--device", "cpu")
    )["videos"][0]
    n = expected["n_clips"]
    for name in ("neutral", "happy", "angry"):  # the same pooled, quantized tokens
        assert got[f"prob_{name}"] == pytest.approx(expected[f"prob_{name}"] / n, abs=1e-4)


def test_compare_command(pipeline):
    (run_dir,) = pipeline["runs"].glob("ravdess-*")
    refused = run("cache", "compare", pipeline["src"], pipeline["dst"], "--run", run_dir, ok=False)
    assert re.search(r"--run .*fold-1/probe.pt was trained on cache \w{8}, not the source", refused)
    cost = json.loads(run("cache", "compare", pipeline["src"], pipeline["dst"], "--clips", "8"))
    assert cost["sample_clips"] == 8 and cost["converted"]["store"] == "pool2+int8"
    assert 0 < cost["relative_l2"] < 1 and -1 <= cost["cosine_p1"] <= cost["cosine_mean"] <= 1


def test_convert_keeps_clip_roles(tmp_path):
    """A `reference`-plan cache's training clips and augmented copies keep their roles in int8."""
    entries = make_entries(actors=[1, 2])
    for e in entries:
        e.clip_role = (np.arange(len(e.frames)) % 2).astype(np.uint8)  # every other clip: training
    src = build_cache(tmp_path / "src", {"e": "x"}, entries, dataset="ravdess", grid=GRID)
    convert(ConvertConfig(source=src, store="int8", out=tmp_path / "int8"))
    a, b = open_cache(src), open_cache(tmp_path / "int8")
    for vid in a.videos["video_id"]:
        np.testing.assert_array_equal(a.clip_roles(vid), b.clip_roles(vid))
    assert b.clip_roles(a.videos["video_id"][0]).any()


def test_a_converted_cache_names_vjfer_cache_convert_as_the_fix(source, tmp_path):
    """Issue 20, weaker spots: a corrupt clip of a converted cache, and a convert interrupted
    before its manifest, name `vjfer cache convert` (the fix), not `vjfer extract`."""
    out = convert(ConvertConfig(source, "int8", out=tmp_path / "c")).directory
    command = f"`vjfer cache convert {source} --store int8 --out {out}`"
    with h5py.File(out / "shard-00001.h5", "r+") as f:
        f["tokens"][0] = f["tokens"][0] ^ np.uint8(1)  # one bit of every value of clip 0
    vid = open_cache(out).manifest["shards"][1]["video_ids"][0]
    with pytest.raises(
        CacheError,
        match=rf"does not match its checksum.*rewrite that shard from "
        rf"the source cache \(delete it, rerun {re.escape(command)}",
    ):
        open_cache(out).tokens(vid)
    report = verify_cache(out)  # `cache verify` names the same fix, not a re-extraction
    assert any("rewrite this shard from the source cache" in p for p in report.problems)
    (out / MANIFEST).unlink()  # killed before its manifest
    for opener in (open_cache, verify_cache):
        with pytest.raises(
            CacheError,
            match=r"no finished manifest\): a `vjfer cache convert` was "
            rf"interrupted or is running; resume it with {re.escape(command)}",
        ):
            opener(out)
    # `probe` on the folder of such a convert (anywhere, not under <cache>/<dataset>/) names it
    with pytest.raises(CacheError, match=r"a `vjfer cache convert` was interrupted"):
        one_cache(out.parent, "ravdess")


def test_out_never_overwrites_what_another_cache_or_folder_holds(source, int8, tmp_path):
    """Issue 32: `--out` naming another cache, the folder holding the source, or a folder inside
    a cache is refused before anything is written; the other cache stays byte-identical; a
    finished convert rerun into its own folder is accepted (it resumes)."""
    before = digests(int8)
    with pytest.raises(ConfigError, match=r"holds a cache of another fingerprint"):
        convert(ConvertConfig(source, "pool2+int8", out=int8))
    assert digests(int8) == before
    with pytest.raises(ConfigError, match=r"holds files that are not this convert's"):
        convert(ConvertConfig(source, "fp8", out=source.parent))
    with pytest.raises(ConfigError, match=r"lies inside cache"):
        convert(ConvertConfig(source, "fp8", out=int8 / "sub"))
    assert not (int8 / "sub").exists()
    assert convert(ConvertConfig(source, "int8", out=int8)).shards_written == 0  # its own: resumes


def test_pool2_of_a_multi_layer_cache_is_refused_before_writing(tmp_path):
    """Issue 32: it wrote shards and a manifest, then died comparing; now nothing is written."""
    entries = [
        replace(e, tokens=np.concatenate([e.tokens, e.tokens], axis=2))
        for e in make_entries(actors=(1, 2))
    ]
    layers = {"blocks": [0, 1], "depth": 2, "norm": "final"}
    layered = write_tiny_cache(
        tmp_path / "l", entries=entries, settings={**SETTINGS, "layers": layers}
    )
    with pytest.raises(ConfigError, match=r"stacks 2 encoder layers per clip, which pooled grids"):
        convert(ConvertConfig(layered, "pool2", out=tmp_path / "p"))
    assert not (tmp_path / "p").exists()
