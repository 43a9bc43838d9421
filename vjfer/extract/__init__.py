"""Stage 1: decode every video once, encode every clip once, write resumable HDF5 shards.

Worker processes (a torch DataLoader, one video per task) decode a video and prepare its views at
the encoder's resolution; they send only the frames its clips use. The main process gathers clips
on the encoder's device, batches them across video boundaries (never across shard boundaries, so a
shard's tokens depend on its videos alone: a resumed run, or a rank of a multi-GPU run, writes the
same bytes), normalises, encodes, casts to fp16 and hands finished videos to a writer thread, so
the GPU does not wait on HDF5. Videos that cannot be decoded are recorded (`failures.jsonl`) and
skipped; nothing is substituted. Under torchrun, rank r writes the shards with index % world == r
and rank 0 writes the manifest once every shard exists (docs/design.md, "The cache").

A shard counts as done only if every video's source file is still the one encoded (its content
hash, xxh3-128; size and mtime only with `trust_size_mtime`): files changed since are re-encoded,
or refused with `no_reencode`. A lock file
per rank keeps a second extraction off a cache being written; `extract.json` records the options
and the environment of the last run.

One job per module: `config` (options, fingerprint inputs), `sources` (source identity, identical
streams), `lock` (one lock per rank), `plan` (what a run will do, estimates), `pipeline` (decoding
workers, batcher, writer thread), `run` (`extract()` and its summary). The names below are the
Python API (`from vjfer.extract import extract, ExtractConfig`); everything else is imported from
the module that defines it.
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
