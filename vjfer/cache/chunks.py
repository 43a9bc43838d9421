"""The one clip reader: where each clip's stored bytes sit in a shard file, and reading them.

`shard_chunks` looks up each clip's `tokens` chunk (and, for int8 / fp8, its `token_scales` chunk)
byte offset once, checking it is unfiltered and of the store format's size, with the stored
checksums; `read_clip` reads a clip's token bytes and then its scale bytes with one or two
`os.preadv` into the caller's buffer and checks them against the checksum, hashed exactly as
`format.stored_checksum` hashes them when the shard is written. Every reader of clip bytes
(`Cache.tokens` / `Cache.raw_tokens`, `vjfer.probe.reader.ClipReader`, `verify_cache`) goes here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from vjfer.cache.format import clip_checksum
from vjfer.errors import CacheError
from vjfer.store import SCALES, StoreFormat


@dataclass(frozen=True)
class ShardChunks:
    """Byte offsets of one shard file's clip chunks and the clips' stored checksums."""

    path: Path
    values: np.ndarray  # int64 [clips]: byte offset of each clip's token chunk
    scales: np.ndarray | None  # int64 [clips]: of each clip's scale chunk (int8 / fp8), else None
    checksums: np.ndarray  # uint64 [clips]: the stored xxh3-64 of each clip's bytes
    value_bytes: int  # bytes of one token chunk
    scale_bytes: int  # bytes of one scale chunk (0 without scales)

    @property
    def clip_bytes(self) -> int:
        return self.value_bytes + self.scale_bytes


def _chunk_offsets(path: Path, dataset: h5py.Dataset, size: int) -> np.ndarray:
    """Byte offset of each chunk of a one-clip-per-chunk dataset of `size`-byte chunks."""
    offsets = np.full(dataset.shape[0], -1, dtype=np.int64)
    bad: list[str] = []

    def visit(info) -> None:
        if info.filter_mask != 0 or info.size != size:
            bad.append(
                f"chunk {info.chunk_offset[0]}: {info.size} bytes, filter mask {info.filter_mask}"
            )
        offsets[info.chunk_offset[0]] = info.byte_offset

    dataset.id.chunk_iter(visit)
    if bad:
        what = "" if dataset.name == "/tokens" else f"{dataset.name.lstrip('/')} "
        raise CacheError(f"{path}: {what}{bad[0]}; expected {size} unfiltered bytes")
    if (offsets < 0).any():
        raise CacheError(f"{path}: clip {int(np.argmax(offsets < 0))} has no stored chunk")
    return offsets


def shard_chunks(path: Path, store: StoreFormat, shape: tuple[int, int, int]) -> ShardChunks:
    """The chunk offsets and checksums of shard `path` whose clips are [V, N, D] in `store`;
    CacheError naming the shard when a chunk cannot be read raw (compressed, other dtype or
    size)."""
    V, N, D = shape
    want = (1, V, N, D)
    value_bytes, scale_bytes = store.clip_nbytes(V, N, D)
    try:
        with h5py.File(path, "r") as f:
            tokens = f["tokens"]
            if tokens.dtype != store.dtype or tokens.chunks != want:
                raise CacheError(
                    f"{path}: tokens {tokens.dtype} in chunks {tokens.chunks}; reading clips raw "
                    f"needs {store.dtype} chunks {want} (one clip each, store {store})"
                )
            values = _chunk_offsets(path, tokens, value_bytes)
            scales = _chunk_offsets(path, f[SCALES], scale_bytes) if scale_bytes else None
            checksums = f["clip_checksum"][()]
    except (OSError, KeyError) as err:
        raise CacheError(f"cannot read shard {path}: {err}") from err
    return ShardChunks(Path(path), values, scales, checksums, value_bytes, scale_bytes)


def _pread_into(fd: int, view: memoryview, offset: int) -> None:
    """Fill `view` from `fd` at `offset` (os.preadv may return short counts)."""
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise CacheError(f"unexpected end of file at byte {offset + done}")
        done += n


def read_clip(fd: int, chunks: ShardChunks, row: int, out: memoryview, verify: bool) -> bool:
    """Read clip `row` of the shard open as `fd` into `out` (a byte view of `chunks.clip_bytes`):
    its token chunk, then its scale chunk. Returns False when `verify` and the bytes do not match
    the stored checksum (the caller names the clip), else True."""
    values = chunks.value_bytes
    _pread_into(fd, out[:values], int(chunks.values[row]))
    if chunks.scales is not None:  # the clip's scales, right behind its values
        _pread_into(fd, out[values:], int(chunks.scales[row]))
    return not verify or clip_checksum(out) == int(chunks.checksums[row])
