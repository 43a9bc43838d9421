"""The feature cache: HDF5 shards of encoder tokens, a manifest, a fingerprint, a reader and checks.

Layout and attributes: docs/cache.md. Shards are assigned by sorted video id, written as `.partial`,
fsynced and renamed, self-describing (the manifest can be rebuilt from them) and deterministic (a
resumed shard has the bytes of one written in one go). Each records its videos' source identity and
decode record, and each clip's xxh3-64 `clip_checksum`; `open_cache` checks the headers against the
manifest, `verify_cache` and `Cache.tokens` the checksums.

One job per module: `format` (constants, records, fingerprint, names, checksums, format checks),
`chunks` (the one clip reader: chunk offsets, `read_clip`), `writer` (shards, manifest,
`build_cache`), `reader` (`open_cache`, `Cache`), `checks` (info and verify). The names below are
the Python API (`from vjfer.cache import open_cache`).
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
