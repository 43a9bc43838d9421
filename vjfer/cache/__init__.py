"""The feature cache: HDF5 shards of encoder tokens, a manifest, a fingerprint, a reader and checks.

Layout (docs/design.md, "The cache"): `<cache_root>/<dataset>/<encoder>-<resolution>-<fp[:8]>/`
holds `manifest.json`, `shard-NNNNN.h5` and `failures.jsonl`. Videos go to shards by sorted video id
in groups of `shard_size`, so every run, rank and resume agrees on which shard holds which video. A
shard is written as `shard-NNNNN.h5.partial`, fsynced and renamed: a file named `shard-NNNNN.h5` is
complete. Shards are self-describing (settings, fingerprint, assignment and failures in their
attributes), so the manifest can be rebuilt from them. Writes are deterministic (no timestamps,
fixed order), so an interrupted-then-resumed shard has the same bytes as one written in a single go.

What a shard proves about itself (format v2): per video, the identity of the source file (path
relative to the dataset root, size, mtime, sha256 of the bytes decoded) and the decode record
(`lost_frames`, `container_frames`); per clip, `clip_checksum`, the xxh3-64 of exactly the bytes of
that clip's HDF5 chunk. `open_cache` checks every shard's header against the manifest (cheap);
`verify_cache` and `Cache.tokens` check the checksums.

One job per module: `format` (constants, records, fingerprint, names, checksums, format checks),
`chunks` (the one clip reader: chunk offsets, `read_clip`), `writer` (shards, manifest,
`build_cache`), `reader` (`open_cache`, `Cache`), `checks` (info and verify). Every name is re-exported here: `from vjfer.cache import X` is the way to import them.
"""

from vjfer.cache.checks import VerifyReport, cache_info, format_cache_info, verify_cache
from vjfer.cache.chunks import ShardChunks, read_clip, shard_chunks
from vjfer.cache.format import (
    CHECKSUM,
    CONVERT_RECORD,
    DECODE_COLUMNS,
    FACE_COLUMNS,
    FAILURES,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PARTIAL_SUFFIX,
    SHARD_PATTERN,
    SHORTEST_UNPADDED,
    SOURCE_COLUMNS,
    TOKEN_DTYPE,
    VIDEO_COLUMNS,
    Coverage,
    VideoEntry,
    _plain,
    assign_shards,
    cache_dir_name,
    canonical_json,
    clip_checksum,
    corrupt_clip,
    fingerprint,
    layer_blocks,
    read_shard_header,
    refill_hint,
    shard_mismatch,
    shard_name,
    size_ratio,
    store_of,
    stored_checksum,
)
from vjfer.cache.reader import (
    EXTRACT_RECORD,
    Cache,
    find_caches,
    incomplete_message,
    open_cache,
    read_manifest,
    refuse_unfinished,
    resume_command,
)
from vjfer.cache.writer import (
    ShardWriter,
    atomic_write_text,
    build_cache,
    failure_lines,
    manifest_from_shards,
    shard_header,
    write_manifest,
)

__all__ = [
    "CHECKSUM", "CONVERT_RECORD", "DECODE_COLUMNS", "EXTRACT_RECORD", "FACE_COLUMNS",
    "FAILURES", "FORMAT", "FORMAT_VERSION", "MANIFEST", "PARTIAL_SUFFIX", "SHARD_PATTERN",
    "SHORTEST_UNPADDED", "SOURCE_COLUMNS", "TOKEN_DTYPE", "VIDEO_COLUMNS",
    "Cache", "Coverage", "ShardChunks", "ShardWriter", "VerifyReport", "VideoEntry",
    "_plain",  # a shard's numpy scalar as a Python value (vjfer.convert, vjfer.extract)
    "assign_shards", "atomic_write_text", "build_cache", "cache_dir_name", "cache_info",
    "canonical_json", "clip_checksum", "corrupt_clip", "failure_lines", "find_caches",
    "fingerprint", "format_cache_info", "incomplete_message", "manifest_from_shards",
    "open_cache", "read_clip", "read_manifest", "read_shard_header", "refill_hint", "refuse_unfinished",
    "resume_command", "shard_chunks", "layer_blocks", "shard_header", "shard_mismatch",
    "shard_name", "size_ratio", "store_of", "stored_checksum", "verify_cache", "write_manifest",
]  # fmt: skip
