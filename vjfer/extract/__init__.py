"""Stage 1: decode every video once, encode every clip once, write resumable HDF5 shards.

Worker processes (a torch DataLoader, one video per task) decode a video and prepare its views at
the encoder's resolution; they send only the frames its clips use. The main process gathers clips
on the encoder's device, batches them across video boundaries (never across shard boundaries, so a
shard's tokens depend on its videos alone: a resumed run, or a rank of a multi-GPU run, writes the
same bytes), normalises, encodes, casts to fp16 and hands finished videos to a writer thread, so
the GPU does not wait on HDF5. Videos that cannot be decoded are recorded (`failures.jsonl`) and
skipped; nothing is substituted. Under torchrun, rank r writes the shards with index % world == r
and rank 0 writes the manifest once every shard exists (docs/design.md, "The cache").

A shard counts as done only if every video's source file is still the one encoded (size and mtime,
else its sha256): files changed since are re-encoded, or refused with `no_reencode`. A lock file
per rank keeps a second extraction off a cache being written; `extract.json` records the options
and the environment of the last run.

One job per module: `config` (options, fingerprint inputs), `sources` (source identity, identical
streams), `lock` (one lock per rank), `plan` (what a run will do, estimates), `pipeline` (decoding
workers, batcher, writer thread), `run` (`extract()` and its summary). Every name is re-exported
here: `from vjfer.extract import X` is the way to import them.
"""

from vjfer.extract.config import (
    HOP_PLANS,
    TOKENS_VERSION,
    ExtractConfig,
    cache_settings,
    command_words,
    config_record,
    option_name,
    stored_blocks,
)
from vjfer.extract.lock import CacheLock, check_lock
from vjfer.extract.pipeline import WRITE_QUEUE, lost_fraction
from vjfer.extract.plan import (
    ASSUMED_GPU,
    ASSUMED_MFU,
    ASSUMED_PEAK_TFLOPS,
    DISK_MARGIN,
    EXPECTED_EXCLUSIONS,
    MAX_AUTO_WORKERS,
    PROBE_SAMPLE,
    TYPICAL_FRAMES,
    ExtractPlan,
    decode_workers,
    distributed_env,
    estimate_clips,
    format_encoder_estimate,
    format_plan,
    plan_extraction,
    probe_frame_count,
    projected_clip_rate,
)
from vjfer.extract.run import ExtractSummary, extract, format_extract_summary
from vjfer.extract.sources import (
    STREAMS_MEMO,
    changed_sources,
    duplicate_streams,
    relative_source,
    source_changed,
    stream_digests,
)

__all__ = [
    "ASSUMED_GPU", "ASSUMED_MFU", "ASSUMED_PEAK_TFLOPS", "DISK_MARGIN", "EXPECTED_EXCLUSIONS", "HOP_PLANS", "MAX_AUTO_WORKERS", "PROBE_SAMPLE",
    "STREAMS_MEMO", "TOKENS_VERSION", "TYPICAL_FRAMES", "WRITE_QUEUE",
    "CacheLock", "ExtractConfig", "ExtractPlan", "ExtractSummary",
    "cache_settings", "changed_sources", "check_lock", "command_words", "config_record", "decode_workers",
    "distributed_env", "duplicate_streams", "estimate_clips", "extract", "format_extract_summary",
    "format_encoder_estimate", "format_plan", "lost_fraction", "option_name", "plan_extraction",
    "probe_frame_count", "projected_clip_rate", "relative_source",
    "source_changed", "stored_blocks", "stream_digests",
]  # fmt: skip
