"""Stage 2 at the real clip shape: the reader against raw reads, and one pass against fold by fold.

1. **Reader vs raw.** A cache of random fp16 tokens at ViT-H/16-384's clip shape (N 4608, D 1280,
   11.8 MB a clip; `--videos 88` × 8 clips = 8.3 GB) is written once (kept in `--dir` for reruns).
   Raw = reading every shard file's bytes sequentially with plain reads (16 MB blocks). Reader =
   one training epoch's requests (every video's reference clips, in the epoch's shuffled order)
   through `ClipReader.stream`, no probe. Both cold (shards evicted from the page cache with
   posix_fadvise DONTNEED before the run) and warm (read once just before). Raw is also measured
   with `--threads` files in flight (`raw_parallel`): virtual disks often need parallel reads. The
   reader is measured with its per-clip checksum check (the default) and without it.
2. **One pass vs fold by fold.** One epoch training the five folds' heads together
   (`train_heads` with 5 heads) against five single-head epochs, one per fold, with the shards
   evicted before every epoch (at real scale the cache does not fit in RAM, so every epoch is
   cold). Bytes read and wall time. `--probe linear` makes the probe cheap, so the figure is about
   reading; `--probe attentive` adds the real probe's compute (on a CPU that dominates). The same
   comparison with the reader alone (`reads_only`) isolates what the pass saves in reading.
3. **Epoch vs read** (`--epoch-vs-read`): one training epoch of `--probe` over every video against
   the reader alone on the same requests, cold and warm (on a GPU the target is about 1).
4. **Store formats** (`--store int8,pool2+int8`): the fp16 cache converted to each format with
   `vjfer.convert` (conversion time against a cold raw read of the source), then the reader's GB/s
   and clips/s per format, cold and warm, and the time to decode what was read on `--device`
   (`vjfer.store.decode_raw`, the step the trainer runs after the copy). clips/s is the figure that
   matters: an int8 clip is about half an fp16 clip's bytes.

    .venv/bin/python benchmarks/stage2.py --dir /tmp/vjfer-bench --json stage2.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from vjfer.cache import VideoEntry, build_cache, find_caches, open_cache
from vjfer.clips import plan_clips
from vjfer.datasets.folds import load_folds
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import split_rows
from vjfer.probe.head import Head
from vjfer.probe.reader import ClipReader
from vjfer.probe.samples import epoch_order, fixed_clips
from vjfer.probe.train import train_heads
from vjfer.store import decode_raw

BLOCK = 16 << 20  # raw reads: 16 MB at a time


def make_cache(directory: Path, videos: int, N: int, D: int, grid: tuple[int, int, int]) -> Path:
    """`videos` RAVDESS-named videos of 117 frames (8 windows at hop 8) of random fp16 tokens."""
    found = find_caches(directory, complete=True)
    if found:
        cache = open_cache(found[0])
        if len(cache) == videos and cache.num_tokens == N and cache.embed_dim == D:
            return found[0]
    rng = np.random.default_rng(0)
    folds = load_folds("ravdess")
    n_frames = 61 + 7 * 8  # windows start 0, 8, ..., 56: exactly 8 clips
    frames = plan_clips(n_frames, "windows", hop=8)
    block = rng.standard_normal((len(frames), 1, N, D), dtype=np.float32).astype(np.float16)

    def entries():
        for i in range(videos):
            actor = 1 + i % 24
            tokens = block + np.float16(i % 7)  # distinct bytes per video; the values do not matter
            yield VideoEntry(
                f"{actor:02d}-{i:04d}", i % 8, actor, folds[actor], n_frames, 30.0, frames, tokens
            )

    settings = {"encoder": "benchmark", "resolution": 384, "plan": "windows", "hop": 8}
    return build_cache(
        directory / "cache", settings, entries(), dataset="ravdess", grid=grid, shard_size=8
    )


def evict(directory: Path) -> None:
    """Drop the cache's shard files from the page cache."""
    for path in directory.glob("shard-*.h5"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(directory: Path) -> None:
    raw_read(directory)


def raw_read(directory: Path) -> tuple[int, float]:
    """Bytes and seconds of reading every shard file sequentially with plain reads."""
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    total, start = 0, time.perf_counter()
    for path in sorted(directory.glob("shard-*.h5")):
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(view):
                total += n
    return total, time.perf_counter() - start


def raw_read_parallel(directory: Path, threads: int) -> tuple[int, float]:
    """Bytes and seconds of reading the shard files with `threads` files in flight (each file
    sequentially, plain reads): the disk's parallel rate, which some disks need to reach full
    speed."""
    files = sorted(directory.glob("shard-*.h5"))

    def one(path: Path) -> int:
        buf = memoryview(bytearray(BLOCK))
        total = 0
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
        return total

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(one, files))
    return total, time.perf_counter() - start


def reader_epoch(
    cache, config: TrainConfig, rows: np.ndarray | None = None, verify: bool = True
) -> tuple[int, float]:
    """Bytes and seconds of one training epoch's requests (of the videos at `rows`, default all)
    through the stage-2 reader, no probe; `verify`: check every clip's checksum (the default)."""
    rows = np.arange(len(cache)) if rows is None else rows
    fixed = fixed_clips(cache, rows)
    ids = cache.videos["video_id"].tolist()
    order = [i for i in epoch_order(len(cache), 0, 0) if i in set(rows.tolist())]
    requests = [(ids[i], np.unique(fixed[i])) for i in order]
    reader = ClipReader(cache, threads=config.num_workers, prefetch=config.prefetch, verify=verify)
    start = time.perf_counter()
    for _ in reader.stream(requests):
        pass
    seconds = time.perf_counter() - start
    reader.close()
    return reader.stats.bytes, seconds


def pass_epoch(
    cache, config: TrainConfig, folds: list[int] | None, cold: bool = True
) -> tuple[int, float]:
    """Bytes and seconds of one epoch training one head per fold in `folds` (None: one head on
    every video), with the shards evicted first when `cold`."""
    fold_of = cache.videos["fold"].to_numpy()
    device = torch.device(config.device)
    if folds is None:
        heads = [Head("all", config, np.arange(len(cache)), cache, device)]
    else:
        heads = [Head(f"fold{k}", config, split_rows(fold_of, k)[0], cache, device) for k in folds]
    evict(cache.path) if cold else warm(cache.path)
    start = time.perf_counter()
    train_heads(cache, heads, config, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return heads[0].history[0]["pass_bytes_read"], time.perf_counter() - start


def reader_rate(cache, config: TrainConfig, device: torch.device) -> dict:
    """One epoch's requests through the reader: GB/s and clips/s, and seconds to copy what was read
    to `device` and decode it there (timed apart, after the read, so the figures do not mix)."""
    bytes_read, seconds = reader_epoch(cache, config)
    clips = cache.num_clips
    ids = cache.videos["video_id"].tolist()[:8]
    raw = [torch.from_numpy(np.ascontiguousarray(cache.raw_tokens(v))) for v in ids]
    raw = [r if cache.store.scaled else r.view(torch.float16).view(-1, *cache.shape) for r in raw]
    start = time.perf_counter()
    for r in raw:
        decode_raw(r.to(device), cache.store, cache.shape).float()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_clip = (time.perf_counter() - start) / sum(len(r) for r in raw)
    return {
        "gb_s": bytes_read / 1e9 / seconds,
        "clips_s": clips / seconds,
        "decode_ms_per_clip": 1e3 * per_clip,
    }


def store_formats(cache, config: TrainConfig, args, formats: list[str]) -> dict:
    """Convert the fp16 cache to each format (kept in --dir for reruns), then time each reader."""
    from vjfer.convert import ConvertConfig, convert

    device = torch.device(args.device)
    caches = {"fp16": cache}
    out: dict = {}
    for fmt in formats:
        target = Path(args.dir) / ("store-" + fmt.replace(":", "").replace("+", "-"))
        evict(cache.path)
        raw_bytes, raw_s = raw_read(cache.path)
        evict(cache.path)
        start = time.perf_counter()
        done = convert(ConvertConfig(cache.path, fmt, out=target, cost_clips=16))
        seconds = time.perf_counter() - start
        caches[fmt] = open_cache(done.directory)
        out[fmt] = {
            "convert": {
                "seconds": seconds,
                "source_gb_s": raw_bytes / 1e9 / seconds,
                "raw_read_cold_gb_s": raw_bytes / 1e9 / raw_s,
                "shards_written": done.shards_written,
                "relative_l2": done.cost["relative_l2"],
            }
        }
    for fmt, c in caches.items():
        size = sum(p.stat().st_size for p in c.path.glob("shard-*.h5"))
        row = out.setdefault(fmt, {})
        row["size_gb"] = size / 1e9
        for state in ("cold", "warm"):
            figures = []
            for _ in range(args.repeat):
                evict(c.path) if state == "cold" else warm(c.path)
                figures.append(reader_rate(c, config, device))
            row[state] = {k: float(np.median([f[k] for f in figures])) for k in figures[0]}
        print("store", fmt, json.dumps(row), flush=True)
    for fmt in out:
        for state in ("cold", "warm"):
            out[fmt][state]["clips_s_vs_fp16"] = (
                out[fmt][state]["clips_s"] / out["fp16"][state]["clips_s"]
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the benchmark cache lives")
    parser.add_argument("--videos", type=int, default=88)
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument(
        "--threads",
        type=int,
        default=TrainConfig.num_workers,
        help="reader threads (capped at the cores)",
    )
    parser.add_argument("--prefetch", type=int, default=TrainConfig.prefetch)
    parser.add_argument("--probe", default="linear", choices=("linear", "attentive"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-passes", action="store_true", help="no one-pass vs fold-by-fold")
    parser.add_argument(
        "--epoch-vs-read",
        action="store_true",
        help="also time one epoch of --probe on every video against its read",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each read figure (median)")
    parser.add_argument("--store", default="", help="store formats to compare with fp16, e.g. int8")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    if args.tokens == 4608:  # ViT-H/16 at 384: (8, 24, 24)
        grid = (8, 24, 24)
    else:
        grid = (8, args.tokens // 64, 8) if args.tokens % 64 == 0 else (1, 1, args.tokens)
    start = time.perf_counter()
    path = make_cache(args.dir, args.videos, args.tokens, args.dim, grid)
    cache = open_cache(path)
    made = time.perf_counter() - start
    size = sum(p.stat().st_size for p in path.glob("shard-*.h5"))
    print(
        f"cache {path}: {len(cache)} videos, {cache.num_clips} clips, {size / 1e9:.2f} GB "
        f"(ready in {made:.0f} s)",
        flush=True,
    )
    config = TrainConfig(
        probe=args.probe,
        epochs=1,
        num_heads=16,
        device=args.device,
        in_memory="no",
        num_workers=args.threads,
        prefetch=args.prefetch,
    )
    out = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cache_gb": size / 1e9,
        "videos": len(cache),
        "clip_shape": [cache.num_views, cache.num_tokens, cache.embed_dim],
        "threads": args.threads,
        "prefetch": args.prefetch,
    }
    for state in ("cold", "warm"):
        runs = []
        for _ in range(args.repeat):
            row = {}
            for name, measure in (
                ("raw", lambda: raw_read(path)),
                ("raw_parallel", lambda: raw_read_parallel(path, args.threads)),
                ("reader", lambda: reader_epoch(cache, config)),
                ("reader_unchecked", lambda: reader_epoch(cache, config, verify=False)),
            ):
                evict(path) if state == "cold" else warm(path)
                n, seconds = measure()
                row[f"{name}_gb_s"] = n / 1e9 / seconds
            runs.append(row)
        out[state] = {key: float(np.median([r[key] for r in runs])) for key in runs[0]}
        out[state]["reader_vs_raw"] = out[state]["reader_gb_s"] / out[state]["raw_gb_s"]
        out[state]["checksum_cost"] = (
            1 - out[state]["reader_gb_s"] / out[state]["reader_unchecked_gb_s"]
        )
        out[state]["reader_vs_raw_parallel"] = (
            out[state]["reader_gb_s"] / out[state]["raw_parallel_gb_s"]
        )
        out[state]["runs"] = runs
        print(state, json.dumps(out[state]), flush=True)
    if args.epoch_vs_read:  # the stage-2 target: an epoch of the real probe costs about its read
        out["epoch_vs_read"] = {}
        for state in ("cold", "warm"):
            evict(path) if state == "cold" else warm(path)
            read_bytes, read_s = reader_epoch(cache, config)
            _, epoch_s = pass_epoch(cache, config, None, cold=state == "cold")
            out["epoch_vs_read"][state] = {
                "probe": args.probe,
                "read_s": read_s,
                "epoch_s": epoch_s,
                "epoch_over_read": epoch_s / read_s,
                "read_gb_s": read_bytes / 1e9 / read_s,
            }
        print("epoch_vs_read", json.dumps(out["epoch_vs_read"]), flush=True)
    if args.store:
        out["stores"] = store_formats(cache, config, args, [s for s in args.store.split(",") if s])
    if not args.skip_passes:
        folds = [1, 2, 3, 4, 5]
        one_bytes, one_s = pass_epoch(cache, config, folds)
        each = [pass_epoch(cache, config, [k]) for k in folds]
        seq_bytes, seq_s = sum(b for b, _ in each), sum(s for _, s in each)
        fold_of = cache.videos["fold"].to_numpy()
        evict(path)
        read_one = reader_epoch(cache, config)
        read_each = []
        for k in folds:
            evict(path)
            read_each.append(reader_epoch(cache, config, split_rows(fold_of, k)[0]))
        out["reads_only"] = {
            "one_pass_gb": read_one[0] / 1e9,
            "one_pass_s": read_one[1],
            "fold_by_fold_gb": sum(b for b, _ in read_each) / 1e9,
            "fold_by_fold_s": sum(s for _, s in read_each),
            "wall_ratio": read_one[1] / sum(s for _, s in read_each),
        }
        print("reads_only", json.dumps(out["reads_only"]), flush=True)
        out["passes"] = {
            "probe": args.probe,
            "one_pass_gb": one_bytes / 1e9,
            "one_pass_s": one_s,
            "fold_by_fold_gb": seq_bytes / 1e9,
            "fold_by_fold_s": seq_s,
            "bytes_ratio": one_bytes / seq_bytes,
            "wall_ratio": one_s / seq_s,
        }
        print("passes", json.dumps(out["passes"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
