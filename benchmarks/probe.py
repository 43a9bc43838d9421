"""Probe training throughput: factorised vs straightforward pooling, and epoch time vs token reading.

1. Pooling: training steps (forward, backward, AdamW) of `AttentiveProbe` with the factorised
   pooling (the default) and with the straightforward K/V form (`factorised=False`), same weights,
   same inputs, same run: clips/s of each and their ratio. A sample is `--clips` clips of N tokens
   concatenated (joint pooling); defaults D = 1280, N = 4608 (ViT-H at 384), 16 heads, 8 classes.
2. Epoch vs read: a cache of random fp16 tokens is written to disk; one training epoch of
   `train_probe` (DataLoader over the cache, `in_memory="no"`) is timed against iterating the same
   epoch's samples with the same DataLoader and no probe. Both are measured with the shard files
   evicted from the page cache (posix_fadvise DONTNEED, "cold") and again with them cached ("warm").
   The target is epoch / read <= 1.5: the probe is bound by reading tokens.

CPU figures need small shapes (the K/V form costs ~2·D·2D multiply-adds per token):

    .venv/bin/python benchmarks/probe.py --device cpu --batch 1 --clips 1 --steps 3 \
        --videos 8 --json out.json
    .venv/bin/python benchmarks/probe.py --device cuda      # GPU defaults: batch 4, 8 clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.datasets import load_folds
from vjfer.probe.model import AttentiveProbe
from vjfer.probe.train import (
    EpochTokens,
    TrainConfig,
    epoch_loader,
    epoch_plan,
    reference_clips,
    train_probe,
)
from vjfer.video import plan_clips


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pooling(D: int, N: int, clips: int, batch: int, heads: int, classes: int, steps: int,
                  device: torch.device) -> dict:  # fmt: skip
    """Training clips/s of the factorised and the straightforward pooling on one input."""
    torch.manual_seed(0)
    tokens = torch.randn(batch, clips * N, D, device=device)  # [B, K·N, D]
    labels = torch.randint(0, classes, (batch,), device=device)
    base = AttentiveProbe(D, classes, heads).state_dict()
    out = {}
    for factorised in (True, False):
        probe = AttentiveProbe(D, classes, heads, factorised=factorised).to(device)
        probe.load_state_dict(base)
        opt = torch.optim.AdamW(probe.parameters(), lr=1e-3)
        passes, updates = [], []  # forward + backward; AdamW step
        for _ in range(steps + 1):  # the first step warms up
            _sync(device)
            start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = probe(tokens)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            _sync(device)
            middle = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            passes.append(middle - start)
            updates.append(time.perf_counter() - middle)
        fb, step = float(np.median(passes[1:])), float(np.median(np.add(passes, updates)[1:]))
        name = "factorised" if factorised else "straightforward"
        out[name] = {"fwd_bwd_s": fb, "step_s": step, "clips_per_s": batch * clips / step,
                     "fwd_bwd_clips_per_s": batch * clips / fb}  # fmt: skip
        del probe, opt
    fac, ref = out["factorised"], out["straightforward"]
    out["ratio"] = fac["clips_per_s"] / ref["clips_per_s"]  # whole training steps
    out["fwd_bwd_ratio"] = fac["fwd_bwd_clips_per_s"] / ref["fwd_bwd_clips_per_s"]
    return out


def make_cache(directory: Path, videos: int, N: int, D: int, grid: tuple[int, int, int]) -> Path:
    """`videos` RAVDESS-named videos of 117 frames (8 windows at hop 8), random fp16 tokens."""
    rng = np.random.default_rng(0)
    folds = load_folds("ravdess")
    n_frames = 61 + 7 * 8  # windows start 0, 8, ..., 56: exactly 8 clips
    frames = plan_clips(n_frames, "windows", hop=8)

    def entries():
        for i in range(videos):
            actor = 1 + i % 24
            tokens = rng.standard_normal((len(frames), 1, N, D), dtype=np.float32).astype(
                np.float16
            )
            yield VideoEntry(f"{actor:02d}-{i:04d}", i % 8, actor, folds[actor], n_frames, 30.0,
                             frames, tokens)  # fmt: skip

    settings = {"encoder": "benchmark", "resolution": 0, "plan": "windows", "hop": 8}
    return build_cache(directory, settings, entries(), dataset="ravdess", grid=grid, shard_size=8)


def evict(directory: Path) -> None:
    """Drop the cache's shard files from the page cache (no root needed for one's own files)."""
    for path in directory.glob("shard-*.h5"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_epoch(cache, config: TrainConfig) -> float:
    """Seconds to iterate one epoch's samples through the training DataLoader, no probe."""
    train = cache.videos
    fixed = np.stack([reference_clips(cache.clip_frames(v)[:, 0], n)
                      for v, n in zip(train["video_id"], train["n_frames"], strict=True)])  # fmt: skip
    order, clips, views = epoch_plan(
        train["n_clips"].to_numpy(), fixed, cache.num_views, config, 0, 0
    )
    dataset = EpochTokens(cache, train["video_id"], train["label"], clips, views)
    loader = epoch_loader(
        dataset, order, config.batch_size, config.num_workers, torch.device("cpu")
    )
    start = time.perf_counter()
    for tokens, _ in loader:
        tokens.float()  # the conversion the training loop does too
    return time.perf_counter() - start


def bench_epoch(args, device: torch.device) -> dict:
    grid = (8, 24, 24) if args.tokens == 4608 else (args.tokens, 1, 1)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        start = time.perf_counter()
        directory = make_cache(Path(tmp) / "cache", args.videos, args.tokens, args.dim, grid)
        written = time.perf_counter() - start
        cache = open_cache(directory)
        config = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), in_memory="no",
                             num_workers=args.workers, num_heads=16)  # fmt: skip
        gb = sum(p.stat().st_size for p in directory.glob("shard-*.h5")) / 1e9
        out = {"videos": args.videos, "clips_per_video": 8, "cache_gb": gb, "write_s": written}
        for state in ("cold", "warm"):
            if state == "cold":
                evict(directory)
            read = read_epoch(cache, config)
            if state == "cold":
                evict(directory)
            cache.close()
            _, history = train_probe(cache, cache.videos, config, progress=False)
            epoch = history[0]["seconds"]
            out[state] = {"read_s": read, "epoch_s": epoch, "ratio": epoch / read,
                          "read_gb_per_s": gb / read}  # fmt: skip
        cache.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--tokens", type=int, default=4608, help="N per clip")
    parser.add_argument("--clips", type=int, default=8, help="clips per sample (pooling part)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--videos", type=int, default=64, help="videos in the on-disk cache")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--tmp", default=None, help="folder for the temporary cache")
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {"D": args.dim, "N": args.tokens, "clips": args.clips, "batch": args.batch},
    }  # fmt: skip
    result["pooling"] = bench_pooling(args.dim, args.tokens, args.clips, args.batch, 16, 8,
                                      args.steps, device)  # fmt: skip
    print(json.dumps(result["pooling"], indent=1), flush=True)
    if not args.skip_epoch:
        result["epoch"] = bench_epoch(args, device)
        print(json.dumps(result["epoch"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
