"""vjfer.extract: end to end on tiny generated videos with the tiny encoder (CPU).

Covers bad inputs among good ones, a video shorter than a clip, resume after SIGKILL mid-shard
(byte-identical), two ranks against one process, a read-only cache directory, a disk that fills.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch
import xxhash
from conftest import one_frame_video

import vjfer
from vjfer import video as video_module
from vjfer.cache import cache_info, format_cache_info, open_cache, verify_cache
from vjfer.cache.format import FAILURES, MANIFEST, read_shard_header
from vjfer.cache.writer import ShardWriter
from vjfer.clips import CLIP_SPAN, gather_clips, plan_clips
from vjfer.datasets import index_dataset
from vjfer.decode import decode_video
from vjfer.encoders import load_encoder
from vjfer.errors import CacheError, ConfigError
from vjfer.extract import (
    ExtractConfig,
    extract,
    format_extract_summary,
    format_plan,
    plan_extraction,
)
from vjfer.extract.plan import TYPICAL_FRAMES, cache_lock, decode_workers
from vjfer.prepare import normalize_clips
from vjfer.synthetic import make_crema_d, make_ravdess

REPO = Path(__file__).resolve().parents[1]
BAD = {  # RAVDESS stem -> words of the failure reason; among the synthetic good videos
    "02-01-02-01-01-01-01": "truncated",  # the first third of a good file
    "02-01-04-01-01-01-02": "not a readable video",  # text
    "01-01-06-01-01-01-02": "no video stream",  # AAC only
}
EMPTY = "02-01-07-01-01-01-01"  # 0 bytes: excluded by the dataset index, never reaches extraction


def write_audio_only(path: Path) -> None:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def actor_dir(root: Path, stem: str) -> Path:
    return root / f"Actor_{int(stem[-2:]):02d}"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """8 synthetic videos (2 actors x 2 emotions x modalities 01, 02; 2 shorter than a clip),
    three bad files with valid names, and one empty file: 11 indexed videos."""
    root = tmp_path_factory.mktemp("ravdess")
    good = make_ravdess(
        root, emotions=(1, 8), vocal_channels=(1,), modalities=(1, 2), short_every=3
    )
    assert len(good) == 8
    bad = list(BAD)
    (actor_dir(root, bad[0]) / f"{bad[0]}.mp4").write_bytes(good[0].read_bytes()[:3000])
    (actor_dir(root, bad[1]) / f"{bad[1]}.mp4").write_bytes(b"this is not a video\n" * 50)
    write_audio_only(actor_dir(root, bad[2]) / f"{bad[2]}.mp4")
    (actor_dir(root, EMPTY) / f"{EMPTY}.mp4").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def encoder():
    return load_encoder("tiny")


def config_for(root: Path, cache_root: Path, **options) -> ExtractConfig:
    # dedup off: the pairs of identical streams (01/02) stay separate videos, as before issue 14;
    # test_identical_streams_are_encoded_once covers the default
    defaults = dict(encoder="tiny", shard_size=3, batch_size=4, workers=0, dedup=False)
    return ExtractConfig(
        dataset="ravdess", root=root, cache_root=cache_root, **{**defaults, **options}
    )


def run(config: ExtractConfig, encoder, **options):
    return extract(config, progress=False, plan=plan_extraction(config, encoder=encoder, **options))


@pytest.fixture(scope="module")
def clean(root, encoder, tmp_path_factory):
    """One uninterrupted single-process run: the reference the other runs must equal."""
    return run(config_for(root, tmp_path_factory.mktemp("clean")), encoder)


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("shard-*")}


def manifest_without_paths(directory: Path) -> dict:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["config"].pop("cache_root")
    return manifest


def test_clean_run(root, encoder, clean):
    summary = clean
    assert (summary.videos_done, summary.failed, summary.shards_written) == (8, 3, 4)
    assert summary.complete and summary.clips > 8 and summary.bytes > 0
    reasons = {f["video_id"]: f["reason"] for f in summary.failures}
    assert sorted(reasons) == sorted(BAD)
    for stem, words in BAD.items():
        assert words in reasons[stem], reasons[stem]
    assert "3 failed" in format_extract_summary(summary)
    c = open_cache(summary.cache_dir)
    records = index_dataset("ravdess", root)
    assert len(records) == 11 and EMPTY not in {r.video_id for r in records}
    good = [r for r in records if r.video_id not in BAD]
    assert c.dataset == "ravdess" and list(c.videos["video_id"]) == [r.video_id for r in good]
    assert sorted(f["video_id"] for f in c.failures) == sorted(BAD)
    lines = [json.loads(line) for line in (summary.cache_dir / FAILURES).open()]
    assert sorted((d["stage"], d["video_id"]) for d in lines) == sorted(
        [("index", EMPTY)] + [("decode", stem) for stem in BAD]
    )
    assert (
        next(d["reason"] for d in lines if d["stage"] == "index") == "empty file (0 bytes): 0 bytes"
    )
    assert summary.cache_dir.parent.name == "ravdess"
    assert summary.cache_dir.name == f"tiny-64-{c.fingerprint[:8]}"
    c.check(views="center", plan="windows", hop=8, encoder="tiny", resolution=64)
    with pytest.raises(CacheError, match="made with views='center', asked for '3crop'"):
        c.check(views="3crop")
    for r, row in zip(good, c.videos.itertuples(), strict=True):
        assert row.label == r.label and row.actor == r.actor and row.fold == r.fold
        assert row.fps == pytest.approx(30000 / 1001)
        np.testing.assert_array_equal(
            c.clip_frames(r.video_id), plan_clips(row.n_frames, "windows", 8)
        )
        assert c.tokens(r.video_id).shape == (row.n_clips, 1, 128, 64)
    short = c.videos[c.videos.n_frames < CLIP_SPAN]
    assert len(short) >= 1 and (short.n_clips == 1).all()
    frames = c.clip_frames(short.video_id.iloc[0])[0]
    assert frames[-1] == frames[-2] == short.n_frames.iloc[0] - 1  # padded with the last frame
    assert verify_cache(summary.cache_dir, records).ok
    # the cached tokens are what the encoder gives for the same clips
    video = decode_video(good[1].path, 64, "center")
    clips = gather_clips(video.frames, plan_clips(video.n_frames))[:, 0]  # [C, 16, R, R, 3]
    want = encoder.encode(normalize_clips(torch.from_numpy(clips))).numpy()
    got = c.tokens(good[1].video_id)[:, 0].astype(np.float32)
    np.testing.assert_allclose(got, want, atol=2e-2, rtol=1e-2)


def test_crema_d_flv(encoder, tmp_path):
    root = tmp_path / "crema"
    videos = make_crema_d(root, actors=(1001,), sentences=("TIE",))
    (root / "VideoFlash" / "1064_TIE_SAD_XX.flv").write_bytes(b"")  # empty in the real release too
    config = ExtractConfig(
        dataset="crema-d",
        root=root,
        cache_root=tmp_path / "cache",
        encoder="tiny",
        workers=0,
        batch_size=4,
        shard_size=4,
    )
    summary = run(config, encoder)
    assert (summary.videos_done, summary.failed, summary.shards_written) == (6, 0, 2)
    c = open_cache(summary.cache_dir)
    assert summary.cache_dir.parent.name == "crema-d" and len(c.class_names) == 6
    assert list(c.videos.video_id) == sorted(p.stem for p in videos)
    assert set(c.videos.actor) == {1001} and c.videos.fps.iloc[0] == pytest.approx(30)


def test_plan_estimate_and_settings(root, encoder, clean, tmp_path):
    config = config_for(root, clean.cache_dir.parents[1])
    plan = plan_extraction(config, encoder=encoder)
    assert plan.directory == clean.cache_dir and plan.done == [0, 1, 2, 3]
    assert plan.pending_videos == 0 and plan.videos == 11
    actual = open_cache(clean.cache_dir).num_clips
    # every video is sampled; mp4 metadata gives exact counts; the 3 bad files count as typical
    assert plan.estimated_clips == actual + 3 * len(plan_clips(TYPICAL_FRAMES["ravdess"]))
    text = format_plan(plan)
    assert "11 in 4 shards" in text and "(4 already complete)" in text and "GB free" in text
    for change in ({"hop": 4}, {"views": "3crop"}, {"plan": "reference-train"}):
        assert (
            plan_extraction(replace(config, **change), encoder=encoder).directory != plan.directory
        )
    assert (
        plan_extraction(replace(config, batch_size=2), encoder=encoder).directory == plan.directory
    )
    limited = plan_extraction(replace(config, limit=5), encoder=encoder)
    assert limited.directory != plan.directory and limited.videos == 5 and len(limited.shards) == 2
    with pytest.raises(ConfigError, match="views must be one of"):
        replace(config, views="5crop")


def test_rerun_skips_complete_shards(root, encoder, clean):
    def times() -> dict[str, int]:  # the lock file is rewritten by every run that holds it
        return {
            p.name: p.stat().st_mtime_ns for p in clean.cache_dir.iterdir() if p.suffix != ".lock"
        }

    before = times()
    summary = run(config_for(root, clean.cache_dir.parents[1]), encoder)
    assert (summary.shards_skipped, summary.videos_done, summary.videos_cached) == (4, 0, 8)
    assert summary.failed == 3 and summary.complete
    assert times() == before


def test_force_with_workers_gives_the_same_bytes(root, encoder, clean, tmp_path):
    copy = shutil.copytree(clean.cache_dir, tmp_path / "ravdess" / clean.cache_dir.name)
    for stale in ("shard-00004.h5", "shard-00009.h5.partial"):  # from a dataset with more videos
        (copy / stale).write_bytes(b"stale")
    summary = run(config_for(root, tmp_path, force=True, workers=2), encoder)
    assert summary.shards_written == 4 and summary.videos_done == 8
    assert digests(summary.cache_dir) == digests(clean.cache_dir)


KILLER = """
import os, signal, sys
from pathlib import Path
from vjfer import extract
from vjfer.cache.writer import ShardWriter
original, seen = ShardWriter.append, []
def append(self, entry):  # die (SIGKILL) after the first video written to shard 1
    original(self, entry)
    seen.append(self.path.name)
    if seen.count("shard-00001.h5") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
ShardWriter.append = append
config = extract.ExtractConfig(dataset="ravdess", root=Path(sys.argv[1]), encoder="tiny",
    cache_root=Path(sys.argv[2]), shard_size=3, batch_size=4, workers=0, dedup=False)
extract.extract(config, progress=False)
"""


def test_resume_after_sigkill_is_byte_identical(root, encoder, clean, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(root), str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr
    directory = tmp_path / "ravdess" / clean.cache_dir.name
    names = sorted(p.name for p in directory.iterdir())
    assert names == [
        ".extract-rank0.lock",
        "extract.json",
        "shard-00000.h5",
        "shard-00001.h5.partial",
    ]
    resume = (
        rf"cache .*{directory.name} is incomplete \(1 of 4 shards complete, no finished "
        rf"manifest\).*resume it with `vjfer extract --dataset ravdess --root {root} "
        rf"--encoder tiny --cache {tmp_path} .*--shard-size 3"
    )
    with pytest.raises(CacheError, match=resume):
        open_cache(directory)
    summary = run(config_for(root, tmp_path), encoder)
    assert (summary.shards_skipped, summary.shards_written) == (1, 3)
    assert digests(directory) == digests(clean.cache_dir)
    assert manifest_without_paths(directory) == manifest_without_paths(clean.cache_dir)


RANK = """
import sys
from pathlib import Path
from vjfer.extract import ExtractConfig, extract
config = ExtractConfig(dataset="ravdess", root=Path(sys.argv[1]), encoder="tiny",
    cache_root=Path(sys.argv[2]), shard_size=3, batch_size=4, workers=0, dedup=False)
summary = extract(config, progress=False, stall_timeout=60)
print("RANK-SUMMARY", summary.shards_written, summary.complete)
"""


@pytest.mark.slow
def test_two_ranks_equal_one_process(root, clean, tmp_path):
    """Two processes with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), as
    `torchrun --nproc-per-node 2 -m vjfer extract ...` starts them."""
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(RANK))
    cache_root = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(cache_root)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "RANK": str(r),
                "LOCAL_RANK": str(r),
                "WORLD_SIZE": "2",
                "OMP_NUM_THREADS": "1",
            },
        )
        for r in (0, 1)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert [out.split("RANK-SUMMARY")[1] for out, _ in outputs] == [" 2 True\n", " 2 False\n"]
    directory = cache_root / "ravdess" / clean.cache_dir.name
    assert digests(directory) == digests(clean.cache_dir)
    assert manifest_without_paths(directory) == manifest_without_paths(clean.cache_dir)


def test_rank_zero_gives_up_then_info_rebuilds_the_manifest(root, encoder, clean, tmp_path):
    config = config_for(root, tmp_path)
    plan = plan_extraction(config, encoder=encoder, rank=0, world_size=2)
    assert plan.mine == [0, 2]
    with pytest.raises(
        CacheError, match=r"no progress on 2 shard\(s\) of other ranks .*shard-00001.h5"
    ):
        extract(config, progress=False, plan=plan, stall_timeout=0.5)
    directory = plan.directory
    assert not (directory / MANIFEST).exists()
    rank1 = extract(
        config, progress=False, plan=plan_extraction(config, encoder=encoder, rank=1, world_size=2)
    )
    assert rank1.shards_written == 2 and not rank1.complete
    info = cache_info(directory)
    assert info["rebuilt"] and info["complete"] and info["videos"] == 8
    assert digests(directory) == digests(clean.cache_dir)
    assert open_cache(directory).num_clips == open_cache(clean.cache_dir).num_clips


def test_disk_full_leaves_nothing_that_looks_complete(root, encoder, clean, tmp_path, monkeypatch):
    original, calls = ShardWriter.append, []

    def append(self, entry):
        calls.append(self.path.name)
        if self.path.name == "shard-00002.h5":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(self, entry)

    monkeypatch.setattr(ShardWriter, "append", append)
    with pytest.raises(CacheError, match="No space left on device"):
        run(config_for(root, tmp_path), encoder)
    directory = tmp_path / "ravdess" / clean.cache_dir.name
    assert sorted(p.name for p in directory.glob("*.h5*")) == ["shard-00000.h5", "shard-00001.h5"]
    monkeypatch.setattr(ShardWriter, "append", original)
    summary = run(config_for(root, tmp_path), encoder)
    assert summary.shards_skipped == 2 and digests(directory) == digests(clean.cache_dir)


def _bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]


def test_real_full_disk(root, encoder, clean, tmpfs):
    with pytest.raises(CacheError, match="need about .*--allow-low-disk") as refused:
        plan_extraction(config_for(root, tmpfs, shard_size=1), encoder=encoder)
    # in units that say something (issue 20: not "need 0.0 GB, have 0.0 GB")
    sizes = re.search(r"need about (\d\S* k?M?B) .* has (\d\S* k?B) free", str(refused.value))
    assert sizes, str(refused.value)
    need, have = map(_bytes, sizes.groups())
    assert 0 < have <= 205e3 < need  # the 200 KiB tmpfs
    with pytest.raises(CacheError, match="No space left on device|writing a shard failed"):
        run(config_for(root, tmpfs, allow_low_disk=True), encoder)
    directory = tmpfs / "ravdess" / clean.cache_dir.name
    left = sorted(p.name for p in directory.iterdir())
    assert MANIFEST not in left and not [n for n in left if n.endswith(".partial")]
    for name in [n for n in left if n.startswith("shard-")]:
        assert read_shard_header(directory / name)  # what is there is complete
        assert digests(directory)[name] == digests(clean.cache_dir)[name]


def test_read_only_cache_directory(root, encoder, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:  # root ignores permissions: use a read-only mount
        if subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)], capture_output=True
        ).returncode:
            pytest.skip("root ignores directory permissions and cannot mount here")
    else:
        target.chmod(0o555)
    try:
        with pytest.raises(
            CacheError, match=r"cache directory .*ro/ravdess/tiny-64-\w+: not writable"
        ):
            plan_extraction(config_for(root, target), encoder=encoder)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(target)], check=True)
        else:
            target.chmod(0o755)


# ---- source identity (issue 14, item 1) ------------------------------------------------------


def copy_root(root: Path, target: Path) -> Path:
    """A copy of the dataset with new mtimes (shutil.copy), as a second download would have."""
    return Path(shutil.copytree(root, target, copy_function=shutil.copy))


def test_other_files_under_the_same_names_are_re_encoded(root, encoder, clean, tmp_path):
    cache_dir = Path(
        shutil.copytree(clean.cache_dir, tmp_path / "c" / "ravdess" / clean.cache_dir.name)
    )
    other = copy_root(root, tmp_path / "B")
    c = open_cache(clean.cache_dir)
    first, second = c.videos.video_id[0], c.videos.video_id[4]  # in shards 0 and 1
    replaced = actor_dir(other, first) / f"{first}.mp4"
    replaced.write_bytes((actor_dir(root, second) / f"{second}.mp4").read_bytes())
    with pytest.raises(
        CacheError,
        match=rf"(?s)1 cached video\(s\) in shard-00000.h5 .*came from other "
        rf"files.*\n  {replaced}: xxh3-128 .*encoded from Actor_0\d/"
        rf"{first}.mp4.*--no-reencode",
    ):
        plan_extraction(config_for(other, tmp_path / "c", no_reencode=True), encoder=encoder)
    summary = run(config_for(other, tmp_path / "c"), encoder)
    assert (summary.shards_written, summary.shards_skipped) == (1, 3)
    assert digests(cache_dir)["shard-00001.h5"] == digests(clean.cache_dir)["shard-00001.h5"]
    new = open_cache(cache_dir)
    np.testing.assert_array_equal(new.tokens(first), c.tokens(second))  # the new file's tokens
    row = {v["video_id"]: v for v in json.loads((cache_dir / MANIFEST).read_text())["videos"]}
    assert row[first]["source"]["sha256"] == hashlib.sha256(replaced.read_bytes()).hexdigest()
    assert row[first]["source"]["path"] == f"{replaced.parent.name}/{replaced.name}"
    assert json.loads((cache_dir / MANIFEST).read_text())["config"]["root"] == str(other)


def test_the_same_files_elsewhere_reuse_every_shard_and_keep_the_manifest(
    root, encoder, clean, tmp_path
):
    cache_dir = Path(
        shutil.copytree(clean.cache_dir, tmp_path / "c" / "ravdess" / clean.cache_dir.name)
    )
    before = (cache_dir / MANIFEST).read_text()
    summary = run(
        config_for(copy_root(root, tmp_path / "B"), tmp_path / "c", no_reencode=True), encoder
    )
    assert (summary.shards_written, summary.videos_done, summary.videos_cached) == (0, 0, 8)
    assert (cache_dir / MANIFEST).read_text() == before  # the root changes only with its shards
    assert json.loads(before)["config"]["root"] == str(root)


def test_other_bytes_with_the_same_size_and_mtime_are_re_encoded_unless_trusted(
    root, encoder, clean, tmp_path, caplog
):
    """Issue 20, item 1: a file rewritten in place (same size, same mtime_ns) is found by its
    content hash; --trust-size-mtime keeps its old tokens, and the log says so."""
    cache_dir = Path(
        shutil.copytree(clean.cache_dir, tmp_path / "c" / "ravdess" / clean.cache_dir.name)
    )
    other = Path(shutil.copytree(root, tmp_path / "B"))  # copy2: the same mtime_ns
    first = open_cache(clean.cache_dir).videos.video_id[0]  # in shard 0
    path = actor_dir(other, first) / f"{first}.mp4"
    st, data = path.stat(), bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the video stream
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    (cache_dir / "shard-00003.h5").unlink()  # an interrupted run: one shard to write
    with caplog.at_level("INFO", logger="vjfer.extract.plan"):
        trusted = run(config_for(other, tmp_path / "c", trust_size_mtime=True), encoder)
    assert (trusted.shards_written, trusted.shards_skipped) == (1, 3)
    assert re.search(r"--trust-size-mtime: kept 3 complete shard\(s\) \(9 videos\)", caplog.text)
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    assert manifest["config"]["trust_size_mtime"] is True  # recorded with the shards it kept
    assert digests(cache_dir) == digests(clean.cache_dir)  # shard 0: the old file's tokens
    caplog.clear()
    with caplog.at_level("INFO", logger="vjfer.extract.plan"):
        summary = run(config_for(other, tmp_path / "c"), encoder)
    assert (summary.shards_written, summary.shards_skipped) == (1, 3)
    assert "trust_size_mtime" not in json.loads((cache_dir / MANIFEST).read_text())["config"]
    assert re.search(
        rf"re-encoding shard-00000.h5: 1 source file.*{first}.mp4: xxh3-128 ", caplog.text
    )
    assert "kept 3 complete shard(s): the content (xxh3-128) of their 8 source files" in caplog.text
    rows = json.loads((cache_dir / MANIFEST).read_text())["videos"]
    source = next(v for v in rows if v["video_id"] == first)["source"]
    assert source["xxh3"] == xxhash.xxh3_128_hexdigest(bytes(data))
    assert source["sha256"] == hashlib.sha256(bytes(data)).hexdigest()


# ---- partial decodes (item 2) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def partial_root(tmp_path_factory, truncated_mp4) -> Path:
    """Two good videos, a truncated one (14 of 76 frames decode) and a one-frame video."""
    root = tmp_path_factory.mktemp("partial")
    make_ravdess(
        root, actors=(1,), emotions=(1,), vocal_channels=(1,), modalities=(1, 2), short_every=0
    )
    truncated_mp4(root / "Actor_01" / "01-01-03-01-01-01-01.mp4")
    (root / "Actor_01" / "01-01-04-01-01-01-01.mp4").write_bytes(one_frame_video("mp4"))
    return root


def test_a_video_that_lost_too_many_frames_is_a_failure(partial_root, encoder, tmp_path):
    summary = run(config_for(partial_root, tmp_path, workers=1), encoder)
    assert [f["video_id"] for f in summary.failures] == ["01-01-03-01-01-01-01"]
    assert summary.failures[0]["reason"].startswith(
        "lost 62 of 76 frames (82 %), more than --max-lost-frames 0.1"
    )
    info = cache_info(summary.cache_dir)
    assert (info["videos"], info["failed"], info["one_frame"], info["shorter_than_clip"]) == (
        3,
        1,
        1,
        1,
    )


def test_a_partial_decode_below_the_threshold_is_kept_and_listed(partial_root, encoder, tmp_path):
    summary = run(config_for(partial_root, tmp_path, max_lost_frames=0.9), encoder)
    c = open_cache(summary.cache_dir)
    row = c.videos.set_index("video_id").loc["01-01-03-01-01-01-01"]
    assert (row.n_frames, row.lost_frames, row.container_frames) == (14, 62, 76)
    text = format_cache_info(cache_info(summary.cache_dir))
    short = re.search(r"short\s+(\d+) of 1 frame, (\d+) shorter than a clip", text)
    assert short and (int(short[1]), int(short[2])) == (1, 2)
    assert re.search(r"partial\s+1 kept with lost frames", text)
    assert "01-01-03-01-01-01-01: 14 frames decoded, 62 lost (container lists 76)" in text
    with pytest.raises(ConfigError, match=r"max_lost_frames is a fraction in 0..1, got 1.5"):
        config_for(partial_root, tmp_path, max_lost_frames=1.5)


def test_decoding_does_not_depend_on_the_workers(partial_root, encoder, tmp_path):
    one = run(config_for(partial_root, tmp_path / "a", workers=0, max_lost_frames=0.9), encoder)
    two = run(config_for(partial_root, tmp_path / "b", workers=2, max_lost_frames=0.9), encoder)
    assert digests(one.cache_dir) == digests(two.cache_dir)


# ---- locks, hangs, out-of-memory, threads, environment (items 5-7) -----------------------------


def test_a_second_extraction_refuses_at_once_naming_the_first(root, encoder, tmp_path):
    config = config_for(root, tmp_path)
    directory = plan_extraction(config, encoder=encoder).directory
    holder = cache_lock(directory).acquire()  # another open file description: as another process
    try:
        who = rf"pid {os.getpid()} on host {re.escape(socket.gethostname())}"
        with pytest.raises(
            CacheError, match=rf"{directory} is being written by another vjfer extract \({who}\)"
        ):
            plan_extraction(config, encoder=encoder)
    finally:
        holder.release()
    assert run(config, encoder).shards_written == 4


class _SmallGPU:
    """The tiny encoder behind a fake device that runs out of memory above 2 clips per call."""

    def __init__(self, encoder):
        self._encoder, self.calls = encoder, []

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode(self, x):
        self.calls.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return self._encoder.encode(x)


def test_out_of_memory_halves_the_batch_and_records_it(root, encoder, clean, tmp_path, caplog):
    small = _SmallGPU(encoder)
    summary = run(config_for(root, tmp_path, batch_size=8), small)
    assert summary.videos_done == 8 and max(small.calls[-5:]) == 2
    assert "encoding 4 clips per call" in caplog.text and "encoding 2 clips per call" in caplog.text
    for shard in sorted(summary.cache_dir.glob("shard-*.h5")):
        with h5py.File(shard, "r") as f:
            assert f.attrs["encode_batch_size"] == 2
    ours, theirs = open_cache(summary.cache_dir), open_cache(clean.cache_dir)
    for video_id in theirs.videos.video_id:  # batch 2 vs batch 4: equal to fp16 rounding
        np.testing.assert_allclose(
            ours.tokens(video_id).astype(np.float32),
            theirs.tokens(video_id).astype(np.float32),
            atol=2e-3,
            rtol=2e-3,
        )


def test_a_hanging_decode_becomes_a_failure(root, encoder, tmp_path, monkeypatch):
    slow_stem = sorted(
        p.stem for p in root.rglob("0*.mp4") if p.stem not in BAD and p.stem != EMPTY
    )[0]
    original = video_module._clean_frames

    def stalling(path, *args, **kwargs):
        for frame in original(path, *args, **kwargs):
            if path.stem == slow_stem:
                time.sleep(0.3)  # a stream that stalls FFmpeg
            yield frame

    monkeypatch.setattr(video_module, "_clean_frames", stalling)
    summary = run(config_for(root, tmp_path, decode_timeout=0.5), encoder)
    reasons = {f["video_id"]: f["reason"] for f in summary.failures}
    assert reasons[slow_stem] == "decoding timed out after 0.5 s (--decode-timeout)"
    assert summary.videos_done == 7


def test_workers_never_exceed_the_cores_and_runs_record_their_environment(
    root, encoder, clean, tmp_path, recwarn
):
    assert decode_workers(None, 2) == 1 and decode_workers(None, 64) == 8
    assert decode_workers(4, 2) == 2 and decode_workers(0, 2) == 0
    summary = run(config_for(root, tmp_path, workers=16), encoder)
    assert digests(summary.cache_dir) == digests(clean.cache_dir)
    assert not [w for w in recwarn if "worker" in str(w.message)]  # no DataLoader warning
    record = json.loads((summary.cache_dir / "extract.json").read_text())
    env = record["environment"]
    assert env["torch"] == torch.__version__ and env["python"] == platform.python_version()
    assert env["vjfer"] == vjfer.__version__ and env["cpus"] >= 1 and "platform" in env
    assert record["config"]["workers"] == 16


# ---- identical video streams (item 8) ---------------------------------------------------------


def test_identical_streams_are_encoded_once(root, encoder, clean, tmp_path):
    """The synthetic RAVDESS, like the real one, has each trial as video-only (02) and the same
    video packets plus audio (01): each pair is decoded and encoded once, stored once."""
    summary = run(config_for(root, tmp_path, dedup=True), encoder)
    assert (summary.videos_done, summary.videos_shared, summary.failed) == (8, 4, 3)
    assert "(4 of them share an identical video stream: stored once)" in format_extract_summary(
        summary
    )
    c, full = open_cache(summary.cache_dir), open_cache(clean.cache_dir)
    assert list(c.videos.video_id) == list(full.videos.video_id)  # every id, labels per file
    assert list(c.videos.label) == list(full.videos.label) and list(c.videos.fold) == list(
        full.videos.fold
    )
    shared = c.videos[c.videos.alias_of != ""]
    assert sorted(shared.video_id) == sorted(v for v in c.videos.video_id if v.startswith("02-"))
    for row in shared.itertuples():
        assert row.alias_of == "01" + row.video_id[2:]  # its audio-video twin
        np.testing.assert_array_equal(c.tokens(row.video_id), c.tokens(row.alias_of))
        np.testing.assert_allclose(
            c.tokens(row.video_id).astype(np.float32),
            full.tokens(row.video_id).astype(np.float32),
            atol=2e-2,
        )
    assert c.num_clips * 2 == full.num_clips  # half the tokens
    info = cache_info(summary.cache_dir)
    assert info["shared"] == 4 and verify_cache(summary.cache_dir).ok
    again = run(config_for(root, tmp_path, dedup=True), encoder)  # digests from streams.json
    assert (again.shards_written, again.videos_cached) == (0, 8)


def test_the_streams_memo_is_reused_only_for_the_same_content(root, encoder, tmp_path):
    """With dedup (the default) streams.json spares the demuxing on reruns: keyed by size and
    mtime it kept a rewritten file's old stream digest and identity; now its xxh3-128 decides."""
    other = Path(shutil.copytree(root, tmp_path / "B"))  # copy2: the same mtime_ns
    first = run(config_for(other, tmp_path / "c", dedup=True), encoder)
    vid = "01-01-01-01-01-01-01"  # stored; its video-only twin 02-... shares its tokens
    path = actor_dir(other, vid) / f"{vid}.mp4"
    st, data = path.stat(), bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    trusted = run(config_for(other, tmp_path / "c", dedup=True, trust_size_mtime=True), encoder)
    assert trusted.shards_written == 0  # the memo and the shard trusted on size and mtime
    again = run(config_for(other, tmp_path / "c", dedup=True), encoder)
    assert again.shards_written >= 1
    memo = json.loads((first.cache_dir / "streams.json").read_text())
    assert memo[f"{path.parent.name}/{path.name}"]["xxh3"] == xxhash.xxh3_128_hexdigest(data)
    rows = {
        v["video_id"]: v for v in json.loads((first.cache_dir / MANIFEST).read_text())["videos"]
    }
    assert rows[vid]["source"]["xxh3"] == xxhash.xxh3_128_hexdigest(data)


# TOKENS_VERSION -> sha256 of the tiny encoder's fp16 tokens of tests/data/pinned.mp4
PINNED_TOKENS = {
    1: "65bf1ca7a75bf35268598648b2474791e1ae363e1ed357bae640f4e26a9b00a3",
}


def test_tokens_version_is_pinned_to_the_tokens():
    """A change to decoding, frame preparation, clip plans or the ViT changes these tokens; then
    TOKENS_VERSION must be bumped (and the new digest added), or old caches would be reused."""
    from vjfer.extract.config import TOKENS_VERSION

    video = decode_video(Path(__file__).parent / "data" / "pinned.mp4", 64)
    clips = gather_clips(video.frames, plan_clips(video.n_frames, "windows", 8))[:, 0]
    tokens = load_encoder("tiny").encode(normalize_clips(torch.from_numpy(clips))).half().numpy()
    digest = hashlib.sha256(tokens.tobytes()).hexdigest()
    assert digest == PINNED_TOKENS[TOKENS_VERSION], (
        f"the tokens of tests/data/pinned.mp4 changed (sha256 {digest}): bump "
        "vjfer.extract.config.TOKENS_VERSION and add the new digest to PINNED_TOKENS"
    )
