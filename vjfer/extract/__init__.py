"""Stage 1: decode every video once, encode every clip once, write resumable HDF5 shards.

Decoding workers send the frames a video's clips use; the main process batches clips across videos
(never across shards, so a shard's bytes depend on its videos alone, whatever resumes or ranks),
encodes them, casts to fp16 and hands finished videos to a writer thread. Failed videos are recorded
(`failures.jsonl`), never substituted. A kept shard's sources must still be the ones encoded (their
xxh3-128; size and mtime with `trust_size_mtime`). Under torchrun rank r writes the shards with
index % world == r and rank 0 the manifest (docs/design.md, "The cache").

One job per module: `config` (options, fingerprint inputs), `sources` (source identity, identical
streams), `lock` (one lock per rank), `plan` (what a run will do, estimates), `pipeline` (decoding
workers, batcher, writer thread), `run` (`extract()` and its summary). The names below are the
Python API (`from vjfer.extract import extract, ExtractConfig`).
"""

from vjfer.extract.config import ExtractConfig
from vjfer.extract.plan import ExtractPlan, format_plan, plan_extraction
from vjfer.extract.run import ExtractSummary, extract, format_extract_summary

__all__ = [
    "ExtractConfig",
    "ExtractPlan",
    "ExtractSummary",
    "extract",
    "format_extract_summary",
    "format_plan",
    "plan_extraction",
]
