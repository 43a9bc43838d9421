"""Inspecting a cache: `cache_info` / `format_cache_info` (what `vjfer cache info` prints) and
`verify_cache` (every shard against the manifest, every clip against its checksum, NaN/Inf).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vjfer.cache.chunks import read_clip, shard_chunks
from vjfer.cache.format import (
    MANIFEST,
    SHARD_PATTERN,
    SHORTEST_UNPADDED,
    TOKEN_DTYPE,
    canonical_json,
    read_shard_header,
    refill_hint,
    shard_mismatch,
    size_ratio,
    store_of,
)
from vjfer.cache.reader import read_manifest, refuse_unfinished
from vjfer.cache.writer import manifest_from_shards, write_manifest
from vjfer.errors import FACE_FAILURE_PREFIX, CacheError
from vjfer.store import StoreFormat


def cache_info(path: str | Path, rebuild: bool = True) -> dict:
    """Settings, counts, size and failures of a cache directory.

    When manifest.json is missing or lists shards as incomplete that now exist (a multi-rank run
    whose rank 0 stopped early), the manifest is rebuilt from the shards and written (`rebuild`).
    """
    directory = Path(path)
    directory = directory.parent if directory.name == MANIFEST else directory
    rebuilt = False
    old: dict | None = None  # manifest.json; None when missing (then rebuilt from the shards)
    try:
        old = read_manifest(directory)
    except CacheError:
        if not rebuild or (directory / MANIFEST).exists():
            raise
    stale = old is None or any(
        not s["complete"] and (directory / s["name"]).exists() for s in old["shards"]
    )
    if old is not None and not (stale and rebuild):
        manifest = old
    else:
        kept = ("config", "excluded")  # what the shards do not carry
        extra = {k: old[k] for k in kept if k in old} if old else None
        manifest = manifest_from_shards(directory, extra)
        write_manifest(directory, manifest)
        rebuilt = True
    ok = [v for v in manifest["videos"] if v["status"] == "ok"]
    failed = [v for v in manifest["videos"] if v["status"] == "failed"]
    files = [directory / s["name"] for s in manifest["shards"]]
    return {
        "path": str(directory),
        "dataset": manifest["dataset"],
        "fingerprint": manifest["fingerprint"],
        "settings": manifest["settings"],
        "layout": manifest["layout"],
        "complete": manifest["complete"],
        "rebuilt": rebuilt,
        "shards": len(manifest["shards"]),
        "shards_complete": sum(s["complete"] for s in manifest["shards"]),
        "videos": len(ok),
        "failed": len(failed),
        "clips": sum(v["n_clips"] for v in ok if not v["alias_of"]),
        "shared": sum(bool(v["alias_of"]) for v in ok),
        "bytes": sum(p.stat().st_size for p in files if p.exists()),
        "failures": [{k: v[k] for k in ("video_id", "path", "reason")} for v in failed],
        "face": _face_counts(manifest["settings"], ok, failed),
        "excluded": manifest["excluded"],
        "partial": [
            {k: v[k] for k in ("video_id", "n_frames", "lost_frames", "container_frames")}
            for v in ok
            if v["lost_frames"] > 0
        ],
        "store": str(store_of(manifest["layout"])),
        "size_ratio": size_ratio(manifest["layout"]),
        "lineage": manifest.get("lineage"),
        "one_frame": sum(v["n_frames"] == 1 for v in ok),
        "shorter_than_clip": sum(v["n_frames"] < SHORTEST_UNPADDED for v in ok),
        # frame folders whose frames differ in size: each such frame resized on its own
        "odd_size": [(v["video_id"], v["odd_size_frames"]) for v in ok if v.get("odd_size_frames")],
    }


def _face_counts(settings: dict, ok: list[dict], failed: list[dict]) -> dict | None:
    """Videos cropped, fallen back to the whole frame, and failed for want of a face."""
    if "face_crop" not in settings:
        return None
    return {
        "method": settings["face_crop"]["method"],
        "cropped": sum(v["face_status"] == "cropped" for v in ok),
        "fallback": sum(v["face_status"] == "fallback" for v in ok),
        "failed": sum(v["reason"].startswith(FACE_FAILURE_PREFIX) for v in failed),
    }


def format_cache_info(info: dict) -> str:
    """`cache_info`'s dict as the lines `vjfer cache info` prints."""
    lay = info["layout"]
    state = "complete" if info["complete"] else "INCOMPLETE"
    lines = [
        f"cache       {info['path']}"
        + ("  (manifest rebuilt from shards)" if info["rebuilt"] else ""),
        f"dataset     {info['dataset']}",
        f"fingerprint {info['fingerprint']}",
        f"state       {state}: {info['shards_complete']}/{info['shards']} shards",
        f"videos      {info['videos']} cached, {info['failed']} failed, "
        f"{len(info['excluded'])} excluded when indexing",
        f"shared      {info['shared']} videos share the identical video stream of another "
        f"(stored once)",
        f"short       {info['one_frame']} of 1 frame, {info['shorter_than_clip']} shorter than a "
        f"clip ({SHORTEST_UNPADDED} frames; one window each, padded as the reference pads)",
        f"partial     {len(info['partial'])} kept with lost frames (below --max-lost-frames)",
        f"clips       {info['clips']}  tokens per clip [V={lay['num_views']}, N={lay['num_tokens']}"
        f", D={lay['embed_dim']}] {lay['dtype']}, grid {tuple(lay['grid'])}",
        f"size        {info['bytes'] / 1e9:.3f} GB",
    ]
    if blocks := lay.get("layers"):
        lines.append(
            f"layers      {len(blocks)} encoder blocks per clip ({', '.join(map(str, blocks))}, "
            f"0-based, layer-major along N): ~{info['bytes'] / len(blocks) / 1e9:.3f} GB per layer"
        )
    ratio = f"{info['size_ratio']:.3f}"
    lines.append(f"store       {info['store']}: a clip takes {ratio} of its fp16 bytes")
    if lin := info.get("lineage"):
        source = f"{lin['source_fingerprint']} ({lin['source_store']})"
        lines.append(f"lineage     converted from cache {source}")
    if odd := info.get("odd_size"):
        lines.append(
            f"odd sizes   {len(odd)} frame folders hold frames of another size than their first "
            f"({sum(n for _, n in odd)} frames, each resized on its own)"
        )
    if face := info.get("face"):
        lines.append(
            f"face crop   {face['method']}: {face['cropped']} cropped, {face['fallback']} fell "
            f"back to the whole frame, {face['failed']} failed (no face)"
        )
    lines.append("settings:")
    lines += [f"  {k}: {canonical_json(v)}" for k, v in sorted(info["settings"].items())]
    if info["partial"]:
        lines.append("partial decodes kept:")
        lines += [
            f"  {p['video_id']}: {p['n_frames']} frames decoded, {p['lost_frames']} lost "
            f"(container lists {p['container_frames']})"
            for p in info["partial"]
        ]
    if info["failures"]:
        lines.append("failures:")
        lines += [f"  {f['video_id']}: {f['reason']}" for f in info["failures"]]
    if info["excluded"]:
        lines.append("excluded when indexing:")
        lines += [f"  {e['path']}: {e['reason']}" for e in info["excluded"]]
    return "\n".join(lines)


@dataclass
class VerifyReport:
    """What `verify_cache` found; `ok` when `problems` is empty."""

    path: Path
    shards: int = 0
    videos: int = 0
    clips: int = 0
    failed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = (
            f"{self.path}: {self.shards} shards, {self.videos} videos, {self.clips} clips, "
            f"{self.failed} failed: " + ("OK" if self.ok else f"{len(self.problems)} problem(s)")
        )
        return "\n".join([head, *(f"  {p}" for p in self.problems)])


def _verify_clips(
    path: Path,
    fmt: StoreFormat,
    shape: tuple[int, int, int],
    video_of: Callable[[int], str],
    problems: list[str],
) -> None:
    """Every clip of shard `path` through the one clip reader: checksum, then NaN/Inf."""
    try:
        chunks = shard_chunks(path, fmt, shape)
    except CacheError as err:  # a chunk that cannot be read raw (compressed, other size)
        problems.append(str(err))
        return
    # what the NaN scan reads: float16 tokens, or the float16 scales behind int8 / fp8 values
    floats = slice(chunks.value_bytes, None) if fmt.scaled else slice(None)
    buffer = np.empty(chunks.clip_bytes, dtype=np.uint8)
    nonfinite = None
    fd = os.open(path, os.O_RDONLY)
    try:
        for c in range(len(chunks.checksums)):  # through the one clip reader, as every reader
            if not read_clip(fd, chunks, c, buffer.data, verify=True):
                bad = f"clip {c} ({video_of(c)}) does not match its checksum"
                problems.append(
                    f"{path.name}: {bad}: corrupt; {refill_hint(path.parent, 'this shard')}"
                )
                continue
            if nonfinite is None and not np.isfinite(buffer[floats].view(TOKEN_DTYPE)).all():
                nonfinite = c
    finally:
        os.close(fd)
    if nonfinite is not None:
        problems.append(
            f"{path.name}: NaN/Inf in tokens of clip {nonfinite} ({video_of(nonfinite)})"
        )


def _verify_shard(
    path: Path, expect: dict, videos: list[dict], failed: list[str], report: VerifyReport
) -> None:
    """Check one shard against its manifest entry and rows; append problems to the report."""
    problems = report.problems
    try:
        h = read_shard_header(path)
    except CacheError as err:
        problems.append(str(err))
        return
    lay = expect["layout"]
    clips = sum(v["n_clips"] for v in videos if not v["alias_of"])
    want = [clips, lay["num_views"], lay["num_tokens"], lay["embed_dim"]]
    if h["fingerprint"] != expect["fingerprint"]:
        problems.append(
            f"{path.name}: fingerprint {h['fingerprint'][:8]}, manifest {expect['fingerprint'][:8]}"
        )
    named = SHARD_PATTERN.match(path.name)
    if named is None or h["index"] != int(named[1]):
        problems.append(f"{path.name}: its header says shard {h['index']} (a copy of another?)")
    if h["tokens_shape"] != want or h["clips_in_table"] != want[0]:
        problems.append(f"{path.name}: tokens {h['tokens_shape']}, manifest implies {want}")
    if (mismatch := shard_mismatch(h, videos, failed)) is not None:
        problems.append(
            f"{path.name}: {mismatch}: not this cache's shard; {refill_hint(path.parent)}"
        )
        if not mismatch.startswith("video "):  # other videos: the clips cannot be attributed
            return
    if h["checksums"] != h["tokens_shape"][0]:
        problems.append(f"{path.name}: {h['checksums']} checksums for {h['tokens_shape'][0]} clips")
        return

    def video_of(clip: int) -> str:
        return next(
            v["video_id"]
            for v in videos
            if v["first_clip"] <= clip < v["first_clip"] + v["n_clips"]
        )

    _verify_clips(path, store_of(lay), (want[1], want[2], want[3]), video_of, problems)


def verify_cache(path: str | Path, records: Sequence | None = None) -> VerifyReport:
    """Open every shard, check headers, shapes and counts against the manifest, every clip's
    checksum, scan tokens for NaN/Inf, and (given the dataset's `records`, anything with
    `.video_id`) check every video is cached or failed."""
    directory = Path(path)
    directory = directory.parent if directory.name == MANIFEST else directory
    refuse_unfinished(directory)
    manifest = read_manifest(directory)
    report = VerifyReport(path=directory)
    by_shard: dict[str, list[dict]] = {}
    failed: dict[str, list[str]] = {}
    for v in manifest["videos"]:
        if v["status"] == "ok":
            by_shard.setdefault(v["shard"], []).append(v)
        else:
            failed.setdefault(v["shard"], []).append(v["video_id"])
    report.failed = sum(v["status"] == "failed" for v in manifest["videos"])
    for s in manifest["shards"]:
        file = directory / s["name"]
        if not s["complete"] or not file.exists():
            state = "missing" if s["complete"] else "incomplete"
            report.problems.append(f"{s['name']}: {state}")
            continue
        videos = by_shard.get(s["name"], [])
        _verify_shard(file, manifest, videos, failed.get(s["name"], []), report)
        report.shards += 1
        report.videos += len(videos)
        report.clips += sum(v["n_clips"] for v in videos if not v["alias_of"])
    if records is not None:
        listed = {v["video_id"] for v in manifest["videos"]}
        missing = sorted({r.video_id for r in records} - listed)
        if missing:
            report.problems.append(
                f"{len(missing)} dataset video(s) neither cached nor listed as "
                f"failed, first {missing[0]!r}"
            )
    return report
