"""Per-clip checksums: which hash, and what checking every clip costs the cache reader.

1. Hashes of one real clip (ViT-H at 384: 4608 tokens x 1280, fp16 = 11.8 MB): zlib.crc32,
   xxhash xxh3_64 (vjfer's choice, `vjfer.cache.clip_checksum`), xxh64 and google-crc32c (when
   installed), with a memcpy of the same buffer as a yardstick. GB/s, median of `--repeat` runs.
2. Reader: a cache of `--videos` videos x `--clips` clips at the real shape is written to disk,
   then every video is read with `Cache.tokens(video_id, verify=False)` and with `verify=True`
   (the default: every clip checked against its stored xxh3-64), alternating, with the shard files
   evicted from the page cache before each pass (posix_fadvise DONTNEED, "cold") and cached
   ("warm"). Reported: GB/s of each and the checksum's cost as a share of the plain read time.

    .venv/bin/python benchmarks/checksum.py --videos 8 --clips 4 --json checksum.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import xxhash

from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.cache.format import clip_checksum


def _median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hash_speeds(tokens: int, dim: int, repeat: int) -> dict[str, float]:
    """GB/s of each hash over one clip [tokens, dim] fp16."""
    clip = np.random.default_rng(0).standard_normal((tokens, dim)).astype(np.float16)
    view = memoryview(clip).cast("B")
    candidates = {
        "memcpy (yardstick)": lambda: np.copy(clip),
        "zlib.crc32": lambda: zlib.crc32(view),
        "xxh3_64 (vjfer)": lambda: clip_checksum(clip),
        "xxh64": lambda: xxhash.xxh64_intdigest(view),
    }
    try:
        import google_crc32c

        data = clip.tobytes()
        candidates[f"google-crc32c ({google_crc32c.implementation})"] = lambda: google_crc32c.value(
            data
        )
    except ImportError:
        pass
    return {
        name: clip.nbytes / _median_seconds(fn, repeat) / 1e9 for name, fn in candidates.items()
    }


def _evict(directory: Path) -> None:
    for path in directory.glob("shard-*.h5"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def reader_speeds(directory: Path, passes: int) -> dict[str, dict[str, float]]:
    """GB/s of reading every video's tokens, checksums off vs on, cold and warm page cache."""
    cache = open_cache(directory)
    ids = list(cache.videos["video_id"])
    nbytes = sum(cache.tokens(v, verify=False).nbytes for v in ids)
    out: dict[str, dict[str, list[float]]] = {"cold": {}, "warm": {}}
    for state in ("cold", "warm"):
        for _ in range(passes):
            for verify in (False, True):
                if state == "cold":
                    _evict(directory)
                start = time.perf_counter()
                for video_id in ids:
                    cache.tokens(video_id, verify=verify)
                seconds = time.perf_counter() - start
                out[state].setdefault("on" if verify else "off", []).append(nbytes / seconds / 1e9)
    cache.close()
    return {s: {k: statistics.median(v) for k, v in d.items()} for s, d in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4608, help="N (ViT-H/16 at 384: 4608)")
    parser.add_argument("--dim", type=int, default=1280, help="D (ViT-H: 1280)")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--clips", type=int, default=4, help="clips per video")
    parser.add_argument("--repeat", type=int, default=20, help="hash timings per function")
    parser.add_argument("--passes", type=int, default=3, help="reader passes per setting")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the cache")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    hashes = hash_speeds(args.tokens, args.dim, args.repeat)
    rng = np.random.default_rng(0)
    clip_shape = (args.clips, 1, args.tokens, args.dim)
    grid = (8, args.tokens // 64, 8) if args.tokens % 64 == 0 else (1, 1, args.tokens)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        entries = [
            VideoEntry(
                f"v{i:03d}",
                0,
                1,
                1,
                100,
                30.0,
                np.zeros((args.clips, 16), np.int64),
                rng.standard_normal(clip_shape, dtype=np.float32).astype(np.float16),
            )
            for i in range(args.videos)
        ]
        directory = build_cache(
            Path(tmp) / "c", {"bench": 1}, entries, dataset="ravdess", grid=grid, shard_size=4
        )
        del entries
        reader = reader_speeds(directory, args.passes)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.platform()}",
        "clip_mb": args.tokens * args.dim * 2 / 1e6,
        "hash_gb_s": hashes,
        "reader_gb_s": reader,
        "checksum_cost": {s: 1 - r["on"] / r["off"] for s, r in reader.items()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
