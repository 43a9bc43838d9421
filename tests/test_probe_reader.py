"""The stage-2 reader: raw chunk reads equal h5py's, counts bytes, refuses chunks it cannot read
raw."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from conftest import GRID, make_entries

from vjfer.cache import build_cache, open_cache
from vjfer.errors import CacheError
from vjfer.probe.reader import ClipReader, HeldTokens, clip_bytes


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return open_cache(tiny_cache(actors=range(1, 5), views=3, shard_size=7))


def _requests(cache, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for vid, n in zip(cache.videos["video_id"], cache.videos["n_clips"], strict=True):
        clips = np.unique(rng.integers(0, n, size=rng.integers(1, n + 1)))
        out.append((vid, clips))
    return list(rng.permutation(np.array(out, dtype=object)))


@pytest.mark.parametrize("threads, prefetch", [(0, 1), (1, 1), (2, 3)])
def test_reader_delivers_the_cached_tokens_in_request_order(cache, threads, prefetch):
    requests = _requests(cache)
    reader = ClipReader(cache, threads=threads, prefetch=prefetch)
    got = [tokens.clone() for tokens in reader.stream(requests)]  # pooled buffers: copy to keep
    assert len(got) == len(requests)
    for (vid, clips), tokens in zip(requests, got, strict=True):
        assert tokens.dtype == torch.float16
        np.testing.assert_array_equal(tokens.numpy(), cache.tokens(vid)[clips])
    clips_read = sum(len(c) for _, c in requests)
    assert reader.stats.clips == clips_read
    assert reader.stats.bytes == clips_read * clip_bytes(cache) == clips_read * 3 * 8 * 32 * 2
    reader.close()


def test_held_tokens_serve_the_same_tokens(cache):
    requests = _requests(cache, seed=1)
    wanted = {
        vid: np.arange(n)
        for vid, n in zip(cache.videos["video_id"], cache.videos["n_clips"], strict=True)
    }
    held = HeldTokens(ClipReader(cache, threads=2), wanted, torch.device("cpu"))
    assert held.nbytes == cache.num_clips * clip_bytes(cache)
    for (vid, clips), tokens in zip(requests, held.stream(requests), strict=True):
        np.testing.assert_array_equal(tokens.numpy(), cache.tokens(vid)[clips])


def test_reader_refuses_clips_outside_the_video(cache):
    reader = ClipReader(cache, threads=0)
    vid, n = cache.videos["video_id"][0], int(cache.videos["n_clips"][0])
    with pytest.raises(CacheError, match=rf"{vid}: clips \[{n}\] outside 0..{n - 1}"):
        list(reader.stream([(vid, np.array([n]))]))


def test_chunk_index_refuses_compressed_tokens(cache, tmp_path):
    """A chunk that is not the raw fp16 clip (here gzip-compressed) is an error naming the shard."""
    copy = tmp_path / "copy"
    build_cache(copy, {"e": "x"}, make_entries(actors=[1]), dataset="ravdess", grid=GRID)
    shard = copy / "shard-00000.h5"
    with h5py.File(shard, "r+") as f:
        tokens = f["tokens"][()]
        del f["tokens"]
        f.create_dataset("tokens", data=tokens, chunks=(1, *tokens.shape[1:]), compression="gzip")
    with pytest.raises(
        CacheError, match=r"shard-00000.h5: chunk 0: \d+ bytes, filter mask \d+; expected 512"
    ):
        ClipReader(open_cache(copy))


def test_reader_refuses_a_flipped_bit_naming_the_clip(tmp_path):
    """A bit flipped inside a token chunk (finite values, so no NaN check sees it) stops the
    read."""
    directory = build_cache(
        tmp_path / "c", {"e": "x"}, make_entries(actors=[1]), dataset="ravdess", grid=GRID
    )
    cache = open_cache(directory)
    vid = cache.videos["video_id"][2]
    chunks = cache.chunks(cache.videos["shard"][2])
    shard, first = cache.videos["shard"][2], int(cache.videos["first_clip"][2])
    offset = int(chunks.values[first + 1]) + 100  # inside the video's second clip
    with open(directory / shard, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x01]))
    reader = ClipReader(open_cache(directory), threads=2)
    with pytest.raises(
        CacheError, match=rf"clip {first + 1} \({vid}, clip 1\) does not match its checksum"
    ):
        for _ in reader.stream([(vid, np.array([0, 1]))]):
            pass
    unchecked = ClipReader(open_cache(directory), threads=0, verify=False)
    tokens = next(iter(unchecked.stream([(vid, np.array([1]))])))
    assert not np.array_equal(tokens.numpy(), make_entries(actors=[1])[2].tokens[[1]])
