"""vjfer.cache: shard format, manifest, fingerprint, reader, info and verify (random arrays
only)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import xxhash

from vjfer.cache import (
    VideoEntry,
    build_cache,
    cache_info,
    find_caches,
    format_cache_info,
    open_cache,
    verify_cache,
)
from vjfer.cache.format import (
    FAILURES,
    FORMAT_VERSION,
    MANIFEST,
    assign_shards,
    clip_checksum,
    fingerprint,
    shard_name,
)
from vjfer.cache.writer import ShardWriter, manifest_from_shards, shard_header, write_manifest
from vjfer.errors import CacheError
from vjfer.prepare import SourceIdentity

GRID = (2, 2, 2)  # N = 8 tokens
SETTINGS = {"encoder": "tiny", "views": "center", "mean": [0.485, 0.456, 0.406], "hop": 8}


def make_entry(i: int, clips: int, views: int = 1, dim: int = 4, seed: int = 0) -> VideoEntry:
    rng = np.random.default_rng(seed * 1000 + i)
    tokens = rng.standard_normal((clips, views, 8, dim)).astype(np.float16)
    frames = np.arange(clips * 16, dtype=np.int64).reshape(clips, 16) + i
    return VideoEntry(
        f"vid-{i:03d}",
        label=i % 8,
        actor=1 + i // 3,
        fold=1 + i % 5,
        n_frames=60 + i,
        fps=29.97,
        frames=frames,
        tokens=tokens,
    )


ENTRIES = [make_entry(i, clips=1 + i % 3) for i in range(7)]
FAILED = [{"video_id": "vid-003b", "path": "/data/vid-003b.mp4", "reason": "no video stream"}]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return build_cache(
        tmp_path / "c",
        SETTINGS,
        reversed(ENTRIES),
        dataset="ravdess",
        grid=GRID,
        shard_size=3,
        failures=FAILED,
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_assign_shards_sorted_and_chunked():
    assert assign_shards(["c", "a", "e", "b", "d"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(CacheError, match="'a' appears twice"):
        assign_shards(["a", "b", "a"], 2)
    with pytest.raises(CacheError, match="shard_size"):
        assign_shards(["a"], 0)


def test_fingerprint_is_canonical():
    a = fingerprint({"x": 1, "y": [1, 2], "z": {"b": 1, "a": 2}})
    assert a == fingerprint({"z": {"a": 2, "b": 1}, "y": (1, 2), "x": 1})
    assert a != fingerprint({"x": 1, "y": [1, 2], "z": {"b": 1, "a": 3}})
    assert len(a) == 64


def test_round_trip(cache_dir: Path):
    cache = open_cache(cache_dir)
    assert list(cache.videos.columns) == [
        "video_id",
        "label",
        "actor",
        "fold",
        "n_frames",
        "fps",
        "first_clip",
        "n_clips",
        "shard",
        "lost_frames",
        "container_frames",
        "alias_of",
    ]
    assert list(cache.videos["video_id"]) == [e.video_id for e in ENTRIES]
    assert (cache.grid, cache.num_tokens, cache.embed_dim, cache.num_views) == (GRID, 8, 4, 1)
    assert cache.class_names[0] == "neutral" and len(cache.class_names) == 8
    assert cache.failures == FAILED and cache.excluded == []
    assert str(cache.coverage()) == "results on 7 of 8 videos, 1 failed / excluded"
    assert cache.num_clips == sum(len(e.frames) for e in ENTRIES)
    assert cache.fingerprint == fingerprint(SETTINGS) and cache.settings == SETTINGS
    for e in ENTRIES:
        assert cache.tokens(e.video_id).dtype == np.float16
        np.testing.assert_array_equal(cache.tokens(e.video_id), e.tokens)
        np.testing.assert_array_equal(cache.clip_frames(e.video_id), e.frames)
    row = cache.videos.set_index("video_id").loc["vid-004"]
    assert (row.label, row.actor, row.fold, row.n_frames, row.n_clips) == (4, 2, 5, 64, 2)
    # shard 1 holds vid-003, vid-003b (failed) and vid-004: vid-004 is its second cached video
    assert (row.shard, row.first_clip) == ("shard-00001.h5", 1)
    with pytest.raises(CacheError, match="'nope' is not in cache"):
        cache.tokens("nope")
    assert (cache_dir / FAILURES).read_text().count("\n") == 1
    cache.close()


def _read_in_child(cache, queue):
    queue.put(cache.tokens("vid-005").tolist())


def test_pickles_without_handles_and_survives_fork(cache_dir: Path):
    cache = open_cache(cache_dir)
    cache.tokens("vid-001")  # opens a handle
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._handles == {}
    np.testing.assert_array_equal(clone.tokens("vid-002"), ENTRIES[2].tokens)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(cache, queue))
    child.start()
    got = np.array(queue.get(timeout=30), dtype=np.float16)
    child.join(30)
    np.testing.assert_array_equal(got, ENTRIES[5].tokens)


def test_check_names_the_differing_field(cache_dir: Path):
    cache = open_cache(cache_dir)
    cache.check(views="center", encoder="tiny", mean=(0.485, 0.456, 0.406), grid=GRID)
    with pytest.raises(CacheError, match=r"was made with views='center', asked for '3crop'"):
        cache.check(encoder="tiny", views="3crop", hop=4)
    with pytest.raises(CacheError, match=r"hop=8, asked for 4"):
        cache.check(hop=4, views="3crop")
    with pytest.raises(CacheError, match="has no setting 'colour'"):
        cache.check(colour="red")
    with pytest.raises(CacheError, match="fingerprint="):
        cache.check(fingerprint="0" * 64)


def test_deterministic_bytes(tmp_path: Path, cache_dir: Path):
    other = build_cache(
        tmp_path / "again",
        SETTINGS,
        ENTRIES,
        dataset="ravdess",
        grid=GRID,
        shard_size=3,
        failures=FAILED,
    )
    for i in range(3):
        assert sha(other / shard_name(i)) == sha(cache_dir / shard_name(i))
    assert (other / MANIFEST).read_text() == (cache_dir / MANIFEST).read_text()


def test_open_refuses_missing_incomplete_and_foreign(tmp_path: Path, cache_dir: Path):
    with pytest.raises(CacheError, match="manifest.json is missing"):
        open_cache(tmp_path / "nothing")
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    manifest["format_version"] = 99
    (cache_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=r"manifest.json: format 'vjfer-cache' v99"):
        open_cache(cache_dir)
    (cache_dir / shard_name(1)).unlink()
    (cache_dir / MANIFEST).unlink()
    manifest = manifest_from_shards(cache_dir)
    assert not manifest["complete"] and not manifest["shards"][1]["complete"]
    (cache_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=r"incomplete .*manifest.json.*shard-00001.h5"):
        open_cache(cache_dir)


def test_info_rebuilds_missing_manifest(cache_dir: Path):
    before = (cache_dir / MANIFEST).read_text()
    (cache_dir / MANIFEST).unlink()
    info = cache_info(cache_dir)
    assert info["rebuilt"] and info["complete"]
    assert (cache_dir / MANIFEST).read_text() == before
    assert (info["videos"], info["failed"], info["clips"], info["shards"]) == (7, 1, 13, 3)
    text = format_cache_info(info)
    assert "7 cached, 1 failed" in text and 'views: "center"' in text and "vid-003b" in text
    assert not cache_info(cache_dir)["rebuilt"]


def test_writer_abort_and_validation(tmp_path: Path):
    header = shard_header(
        dataset="ravdess",
        fp="f" * 64,
        settings=SETTINGS,
        grid=GRID,
        embed_dim=4,
        num_views=1,
        index=0,
        num_shards=1,
        shard_size=2,
        video_ids=["vid-000", "vid-001"],
    )
    writer = ShardWriter(tmp_path / shard_name(0), header, num_views=1, num_tokens=8, embed_dim=4)
    writer.append(ENTRIES[1])
    with pytest.raises(CacheError, match="sorted video-id order"):
        writer.append(ENTRIES[0])
    bad = make_entry(2, clips=2)
    bad.tokens = bad.tokens.astype(np.float32)
    with pytest.raises(CacheError, match=r"vid-002: tokens must be float16 \[C>=1, 1, 8, 4\]"):
        writer.append(bad)
    bad = make_entry(2, clips=2)
    bad.frames = bad.frames[:1]
    with pytest.raises(CacheError, match=r"frames must be \[2, 16\]"):
        writer.append(bad)
    assert writer.tmp.exists() and not writer.path.exists()
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_verify(tmp_path: Path, cache_dir: Path):
    records = [SimpleNamespace(video_id=e.video_id) for e in ENTRIES] + [
        SimpleNamespace(video_id="vid-003b")
    ]
    report = verify_cache(cache_dir, records)
    assert report.ok, str(report)
    assert (report.shards, report.videos, report.clips, report.failed) == (3, 7, 13, 1)
    report = verify_cache(cache_dir, [*records, SimpleNamespace(video_id="vid-999")])
    assert not report.ok and "first 'vid-999'" in str(report)

    bad = make_entry(5, clips=3)
    bad.tokens[2, 0, 3, 1] = np.nan
    broken = build_cache(
        tmp_path / "nan",
        SETTINGS,
        [*ENTRIES[:5], bad, ENTRIES[6]],
        dataset="ravdess",
        grid=GRID,
        shard_size=3,
    )
    report = verify_cache(broken)
    assert report.problems == ["shard-00001.h5: NaN/Inf in tokens of clip 5 (vid-005)"]
    (broken / shard_name(2)).write_bytes(b"not hdf5")
    report = verify_cache(broken)
    assert any("cannot read shard" in p and "shard-00002.h5" in p for p in report.problems)
    (broken / shard_name(0)).unlink()
    assert "shard-00000.h5: missing" in str(verify_cache(broken))


def test_find_caches(tmp_path: Path, cache_dir: Path):
    other = build_cache(
        tmp_path / "deep" / "ravdess" / "x", SETTINGS, ENTRIES[:2], dataset="ravdess", grid=GRID
    )
    (tmp_path / "README.md").write_text("not a cache")
    assert find_caches(tmp_path) == [cache_dir, other]
    assert find_caches(cache_dir / MANIFEST) == [cache_dir]
    (other / MANIFEST).unlink()  # shards only: still a cache (info rebuilds its manifest)
    assert find_caches(tmp_path) == [cache_dir, other]
    assert find_caches(tmp_path, complete=True) == [cache_dir]
    assert find_caches(tmp_path / "deep" / "nothing-here") == []


def _token_offset(path: Path, clip: int) -> int:
    """Byte offset of a clip's chunk in a shard file."""
    with h5py.File(path, "r") as f:
        return f["tokens"].id.get_chunk_info_by_coord((clip, 0, 0, 0)).byte_offset


@pytest.mark.parametrize("damage", ["one bit", "64 bytes", "zero 4 KiB"])
def test_flipped_token_bytes_are_caught_by_verify_and_reads(tmp_path: Path, damage: str):
    entries = [make_entry(i, clips=2, dim=512) for i in range(4)]  # 8 KiB per clip
    directory = build_cache(
        tmp_path / "c", SETTINGS, entries, dataset="ravdess", grid=GRID, shard_size=2
    )
    shard = directory / shard_name(1)
    offset = _token_offset(shard, 1) + 2048  # the middle of vid-002's second clip
    data = bytearray(shard.read_bytes())
    if damage == "one bit":
        data[offset] ^= 0x10
    elif damage == "64 bytes":
        data[offset : offset + 64] = bytes(b ^ 0xFF for b in data[offset : offset + 64])
    else:
        data[offset - 2048 : offset + 2048] = bytes(4096)
    shard.write_bytes(bytes(data))
    report = verify_cache(directory)
    assert report.problems == [
        "shard-00001.h5: clip 1 (vid-002) does not match its checksum: corrupt; re-extract this "
        "shard (delete it, rerun vjfer extract)"
    ]
    cache = open_cache(directory)  # the structure is intact: opening is fine
    np.testing.assert_array_equal(cache.tokens("vid-003"), entries[3].tokens)
    with pytest.raises(
        CacheError, match=r"shard-00001.h5: clip 1 \(vid-002, clip 1\) does not match"
    ):
        cache.tokens("vid-002")
    assert cache.tokens("vid-002", verify=False).shape == (2, 1, 8, 512)


def test_a_shard_replaced_by_a_copy_of_another_is_refused_at_open(cache_dir: Path):
    (cache_dir / shard_name(1)).write_bytes((cache_dir / shard_name(0)).read_bytes())
    with pytest.raises(
        CacheError,
        match=r"shard-00001.h5: index 0, the manifest expects 1: this "
        r"shard is not the one the manifest lists",
    ):
        open_cache(cache_dir)
    problems = verify_cache(cache_dir).problems
    assert "shard-00001.h5: its header says shard 0 (a copy of another?)" in problems


def test_an_older_format_asks_for_a_re_extraction(cache_dir: Path):
    with h5py.File(cache_dir / shard_name(0), "r+") as f:
        f.attrs["format_version"] = FORMAT_VERSION - 1
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION - 1
    (cache_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(
        CacheError,
        match=rf"manifest.json: a cache of format v{FORMAT_VERSION - 1}, "
        r"made by an older vjfer.*re-extract it",
    ):
        open_cache(cache_dir)
    with pytest.raises(CacheError, match=r"shard-00000.h5: a cache of format v1.*--force"):
        manifest_from_shards(cache_dir)


def test_clip_checksum_is_xxh3_of_the_chunk_bytes(cache_dir: Path):
    tokens = ENTRIES[2].tokens
    assert clip_checksum(tokens[0]) == clip_checksum(tokens[0].tobytes())
    assert clip_checksum(tokens[0]) == xxhash.xxh3_64_intdigest(tokens[0].tobytes())
    with h5py.File(cache_dir / shard_name(0), "r") as f:
        _, raw = f["tokens"].id.read_direct_chunk((1, 0, 0, 0))  # vid-001's first clip
        assert f.attrs["checksum"] == "xxh3_64" and f["clip_checksum"].dtype == np.uint64
        assert clip_checksum(raw) == int(f["clip_checksum"][1])


def test_manifest_write_on_a_full_disk_names_the_file(cache_dir: Path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    with pytest.raises(
        CacheError, match=r"writing .*failures.jsonl failed \(No space left on device\)"
    ):
        write_manifest(cache_dir, manifest)
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".partial")]


def test_a_reader_without_per_read_checks_can_check_a_sample(tmp_path: Path):
    entries = [make_entry(i, clips=2, dim=512) for i in range(4)]
    directory = build_cache(
        tmp_path / "c", SETTINGS, entries, dataset="ravdess", grid=GRID, shard_size=2
    )
    shard = directory / shard_name(0)
    data = bytearray(shard.read_bytes())
    data[_token_offset(shard, 3) + 100] ^= 1  # vid-001, clip 1
    shard.write_bytes(bytes(data))
    cache = open_cache(directory, verify=False)
    assert cache.tokens("vid-001").shape == (2, 1, 8, 512)  # not checked
    with pytest.raises(CacheError, match=r"clip 3 \(vid-001, clip 1\) does not match its checksum"):
        cache.verify_sample(clips=100)


def test_a_video_sharing_another_stream_reads_its_tokens_stored_once(tmp_path: Path):
    entries = [make_entry(i, clips=1 + i % 3) for i in range(4)]
    twin = dataclasses.replace(
        make_entry(2, clips=1), video_id="vid-002-twin", label=5, alias_of="vid-002"
    )
    directory = build_cache(
        tmp_path / "c", SETTINGS, [*entries, twin], dataset="ravdess", grid=GRID, shard_size=2
    )
    cache = open_cache(directory)
    row = cache.videos.set_index("video_id").loc["vid-002-twin"]
    assert (row.label, row.alias_of, row.shard) == (5, "vid-002", "shard-00001.h5")
    np.testing.assert_array_equal(cache.tokens("vid-002-twin"), entries[2].tokens)
    assert cache.num_clips == sum(len(e.frames) for e in entries)  # stored once
    with h5py.File(directory / shard_name(1), "r") as f:
        assert f["tokens"].shape[0] == 3 + 1  # vid-002 (3 clips) and vid-003 (1): no twin copy
        assert json.loads(f.attrs["aliases"]) == {"vid-002-twin": "vid-002"}
    assert verify_cache(directory).ok, str(verify_cache(directory))
    info = cache_info(directory)
    assert (info["videos"], info["shared"], info["clips"]) == (5, 1, cache.num_clips)
    assert re.search(r"shared\s+1 videos share the identical video stream", format_cache_info(info))


# ---- a shard proves it belongs to its manifest (issue 20, item 2) ------------------------------


def _with_source(entry: VideoEntry, content: bytes) -> VideoEntry:
    """The entry with the identity of a source file holding `content`."""
    source = SourceIdentity(
        f"Actor_01/{entry.video_id}.mp4",
        len(content),
        1,
        hashlib.sha256(content).hexdigest(),
        xxhash.xxh3_128_hexdigest(content),
    )
    return dataclasses.replace(entry, source=source)


FOREIGN = {  # how the other cache's vid-001 differs -> the words that name it
    "another file of the same frame count": (
        lambda e: _with_source(dataclasses.replace(e, tokens=-e.tokens), b"other bytes"),
        r"source path|source sha256 '[0-9a-f]{16}', the manifest has",
    ),
    "fold": (
        lambda e: dataclasses.replace(e, fold=e.fold % 5 + 1),
        r"fold \d, the manifest has \d",
    ),
    "label": (lambda e: dataclasses.replace(e, label=7 - e.label), r"label 6, the manifest has 1"),
}


@pytest.mark.parametrize("differs", list(FOREIGN))
def test_a_shard_of_another_cache_with_the_same_fingerprint_is_refused(tmp_path: Path, differs):
    mine = [_with_source(e, f"bytes of {e.video_id}".encode()) for e in ENTRIES]
    change, words = FOREIGN[differs]
    theirs = [change(e) if e.video_id == "vid-001" else e for e in mine]
    a, b = (
        build_cache(
            tmp_path / name,
            SETTINGS,
            entries,
            dataset="ravdess",
            grid=GRID,
            shard_size=3,
            failures=FAILED,
        )
        for name, entries in (("a", mine), ("b", theirs))
    )
    assert open_cache(a).fingerprint == open_cache(b).fingerprint
    (a / shard_name(0)).write_bytes((b / shard_name(0)).read_bytes())
    named = rf"{re.escape(str(a / shard_name(0)))}: video vid-001: ({words})"
    with pytest.raises(CacheError, match=named + r".*not the one the manifest lists.*re-extract"):
        open_cache(a)  # what `vjfer probe` opens: it refuses to train on it
    problems = verify_cache(a).problems
    assert len(problems) == 1, problems
    assert re.match(
        rf"shard-00000.h5: video vid-001: ({words}).*not this cache's shard", problems[0]
    )


def test_verify_names_an_extraction_interrupted_before_its_manifest(cache_dir: Path):
    (cache_dir / MANIFEST).unlink()
    (cache_dir / shard_name(2)).unlink()
    with pytest.raises(
        CacheError,
        match=r"is incomplete \(2 of 3 shards complete, no finished "
        r"manifest\): an extraction was interrupted.*resume it",
    ):
        verify_cache(cache_dir)


def test_a_shard_failing_other_videos_of_the_same_count_is_refused(cache_dir: Path):
    shard = cache_dir / shard_name(1)  # holds vid-003, the failed vid-003b and vid-004
    with h5py.File(shard, "r+") as f:
        failures = json.loads(f.attrs["failures"])
        assert [x["video_id"] for x in failures] == ["vid-003b"]
        f.attrs["failures"] = json.dumps([{**failures[0], "video_id": "vid-003c"}])
    words = r"failed videos \['vid-003c'\], the manifest lists \['vid-003b'\]"
    with pytest.raises(CacheError, match=rf"{re.escape(str(shard))}: {words}"):
        open_cache(cache_dir)
    problems = verify_cache(cache_dir).problems
    assert len(problems) == 1 and re.match(rf"shard-00001.h5: {words}", problems[0]), problems


def test_a_cache_reached_through_a_folder_link_is_found(tiny_cache, tmp_path):
    """Issue 32: a cache kept on another disk and linked under --cache is found; a link loop
    ends the walk instead of hanging it."""
    root = tmp_path / "cache" / "ravdess"
    root.mkdir(parents=True)
    (root / "linked").symlink_to(tiny_cache(), target_is_directory=True)
    (root / "loop").symlink_to(tmp_path / "cache", target_is_directory=True)
    assert find_caches(tmp_path / "cache") == [root / "linked"]
    assert find_caches(tmp_path / "cache", complete=True) == [root / "linked"]
