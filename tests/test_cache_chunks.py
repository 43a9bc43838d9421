"""The one clip reader (`vjfer.cache.chunks`): every read path refuses a corrupt clip, and names
it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_tiny_cache

from vjfer.cache import open_cache, verify_cache
from vjfer.errors import CacheError
from vjfer.probe.reader import ClipReader

ROW = 2  # the video (row of cache.videos) whose clip is corrupted
CLIP = 1  # its clip


def _flip(directory, offset: int) -> None:
    with open(directory, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """An int8 cache (per-token float16 scales) with one scale of one clip flipped by one bit:
    (directory, video_id, shard row of the clip)."""
    directory = write_tiny_cache(tmp_path_factory.mktemp("int8") / "c", actors=[1], store="int8")
    cache = open_cache(directory)
    vid, shard = cache.videos["video_id"][ROW], cache.videos["shard"][ROW]
    row = int(cache.videos["first_clip"][ROW]) + CLIP
    chunks = cache.chunks(shard)
    assert chunks.scales is not None and chunks.scale_bytes > 0
    _flip(directory / shard, int(chunks.scales[row]) + 1)  # a scale's high byte: still finite
    return directory, vid, row


def _named(vid: str, row: int) -> str:
    return rf"clip {row} \({vid}, clip {CLIP}\) does not match its checksum"


def test_cache_tokens_and_raw_tokens_refuse_a_corrupt_scale(scaled):
    directory, vid, row = scaled
    cache = open_cache(directory)
    for read in (cache.tokens, cache.raw_tokens):
        with pytest.raises(CacheError, match=_named(vid, row)):
            read(vid)
    for other in cache.videos["video_id"]:  # exactly that video: every other one reads
        if other != vid:
            assert cache.raw_tokens(other).shape[0] == len(cache.clip_frames(other))
    assert cache.tokens(vid, verify=False).shape[0] == len(cache.clip_frames(vid))


def test_stage2_reader_refuses_a_corrupt_scale(scaled):
    directory, vid, row = scaled
    cache = open_cache(directory)
    reader = ClipReader(cache, threads=0)
    others = [
        (v, np.arange(n))
        for v, n in zip(cache.videos["video_id"], cache.videos["n_clips"], strict=True)
        if v != vid
    ]
    assert len(list(reader.stream(others))) == len(others)
    assert len(list(reader.stream([(vid, np.array([0]))]))) == 1  # the clip before it is sound
    with pytest.raises(CacheError, match=_named(vid, row)):
        list(reader.stream([(vid, np.array([CLIP]))]))
    reader.close()


def test_verify_names_exactly_the_corrupt_clip(scaled):
    directory, vid, row = scaled
    report = verify_cache(directory)
    assert report.problems == [
        f"shard-00000.h5: clip {row} ({vid}) does not match its checksum: corrupt; "
        "re-extract this shard (delete it, rerun vjfer extract)"
    ]
