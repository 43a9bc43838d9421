"""The feature cache: HDF5 shards of encoder tokens, a manifest, a fingerprint, a reader and checks.

Layout (docs/design.md, "The cache"): `<cache_root>/<dataset>/<encoder>-<resolution>-<fp[:8]>/`
holds `manifest.json`, `shard-NNNNN.h5` and `failures.jsonl`. Videos go to shards by sorted video id
in groups of `shard_size`, so every run, rank and resume agrees on which shard holds which video. A
shard is written as `shard-NNNNN.h5.partial`, fsynced and renamed: a file named `shard-NNNNN.h5` is
complete. Shards are self-describing (settings, fingerprint, assignment and failures in their
attributes), so the manifest can be rebuilt from them. Writes are deterministic (no timestamps,
fixed order), so an interrupted-then-resumed shard has the same bytes as one written in a single go.

What a shard proves about itself (format v2): per video, the identity of the source file (path
relative to the dataset root, size, mtime, xxh3-128 and sha256 of the bytes decoded) and the decode
record (`lost_frames`, `container_frames`); per clip, `clip_checksum`, the xxh3-64 of exactly the
bytes of that clip's HDF5 chunk. `open_cache` checks every shard's header against the manifest
(cheap); `verify_cache` and `Cache.tokens` check the checksums.

One job per module: `format` (constants, records, fingerprint, names, checksums, format checks),
`chunks` (the one clip reader: chunk offsets, `read_clip`), `writer` (shards, manifest,
`build_cache`), `reader` (`open_cache`, `Cache`), `checks` (info and verify). The names below are
the Python API (`from vjfer.cache import open_cache`); everything else is imported from the module
that defines it (`from vjfer.cache.format import MANIFEST`).
"""

from vjfer.cache.checks import cache_info, format_cache_info, verify_cache
from vjfer.cache.format import VideoEntry
from vjfer.cache.reader import Cache, find_caches, open_cache, read_manifest
from vjfer.cache.writer import build_cache

__all__ = [
    "Cache",
    "VideoEntry",
    "build_cache",
    "cache_info",
    "find_caches",
    "format_cache_info",
    "open_cache",
    "read_manifest",
    "verify_cache",
]
