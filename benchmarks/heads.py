"""Stage 2: what one attentive head's training step costs, and how it scales with heads per pass.

1. **Step** (`step`): one head's optimizer step (`Head.feed` of `--batch` samples of `--clips`
   clips × N × D fp16 tokens already on the device: forward, backward, clip, AdamW), timed
   over `--steps` steps after one warm-up step. At the real shape (4 videos × 8 clips × 4608 ×
   1280) this is the unit every figure below multiplies.
2. **Epochs** (`epochs`): one training epoch of `train_heads` with H heads sharing the pass (the
   grid's heads: every head trains on every video), per H in `--heads`, per token source in
   `--sources` (`disk`: read by the stage-2 reader each epoch, the shards evicted from the page
   cache first; `held`: `--in-memory gpu` on CUDA, RAM on the CPU), per store in `--stores`
   (fp16, and int8 converted from it with `vjfer.convert`). Reported per epoch and per
   head-step (epoch ÷ (H × steps)); `per_head_step_vs_1` is the ratio to the pass with one head, so
   a value near 1 says the heads cost what they would alone and batching them into one kernel (or
   a CUDA graph) has little to win; far above 1 says dispatch, not arithmetic, dominates.

The cache is `stage2.make_cache`'s (random fp16 tokens of the given shape, kept in `--dir` and
shared with benchmarks/stage2.py when the shape and video count agree).

    .venv/bin/python benchmarks/heads.py --dir /tmp/heads --device cuda --json heads.json
    .venv/bin/python benchmarks/heads.py --dir /tmp/heads --device cpu --tokens 256 --dim 64 \
        --videos 8 --heads 1,5,20,40 --sources held --stores fp16 --json heads-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vjfer.cache import open_cache
from vjfer.probe.config import TrainConfig
from vjfer.probe.head import Head
from vjfer.probe.train import train_heads

sys.path.insert(0, str(Path(__file__).parent))
from stage2 import evict, make_cache  # noqa: E402  (a sibling benchmark script)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grid_of(tokens: int) -> tuple[int, int, int]:
    """ViT-H/16-384's (8, 24, 24) at 4608 tokens, else 8 temporal steps of a square-ish grid."""
    if tokens == 4608:
        return (8, 24, 24)
    return (8, tokens // 64, 8) if tokens % 64 == 0 else (1, 1, tokens)


def step_seconds(cache, config: TrainConfig, steps: int) -> list[float]:
    """Seconds of each of `steps` optimizer steps of one head fed random fp16 samples."""
    device = torch.device(config.device)
    # epochs: enough scheduled steps for the timed ones (the schedule refuses steps past its end)
    head = Head("step", replace(config, epochs=steps + 1), np.arange(len(cache)), cache, device)
    K, N, D = config.clips_per_video, cache.num_tokens, cache.embed_dim
    g = torch.Generator(device=device).manual_seed(0)
    samples = [
        torch.randn(K, N, D, device=device, generator=g).half() for _ in range(config.batch_size)
    ]
    times = []
    for _ in range(steps + 1):  # the first is a warm-up (allocations, kernel selection)
        sync(device)
        start = time.perf_counter()
        for i, sample in enumerate(samples):
            head.feed(sample, i % len(cache.class_names))
        sync(device)
        times.append(time.perf_counter() - start)
    return times[1:]


def epoch_seconds(cache, config: TrainConfig, heads: int, source: str) -> float:
    """Seconds of one epoch of `heads` heads in one pass, tokens from `source` (disk | held)."""
    device = torch.device(config.device)
    pass_heads = [
        Head(f"h{s}", replace(config, seed=s), np.arange(len(cache)), cache, device)
        for s in range(heads)
    ]
    if source == "disk":
        evict(cache.path)
    sync(device)
    start = time.perf_counter()
    train_heads(cache, pass_heads, config, progress=False)
    sync(device)
    return time.perf_counter() - start


def int8_cache(source: Path, directory: Path) -> Path:
    """The fp16 cache at `source` stored as int8 (converted once, kept in `directory`)."""
    from vjfer.convert import ConvertConfig, convert

    target = directory / "store-int8"
    return convert(ConvertConfig(source, "int8", out=target, cost_clips=4)).directory


def epochs(caches: dict, base: TrainConfig, heads: list[int], sources: list[str]) -> list[dict]:
    """One row per (store, source, heads): epoch seconds, per head-step ms, ratio to one head."""
    rows = []
    for store, cache in caches.items():
        steps = -(-len(cache) // base.batch_size)  # optimizer steps per head and epoch
        for source in sources:
            held = "gpu" if base.device.startswith("cuda") else "yes"
            config = replace(base, in_memory="no" if source == "disk" else held)
            one = None
            for h in heads:
                seconds = epoch_seconds(cache, config, h, source)
                per = seconds / (h * steps)
                one = per if one is None else one
                rows.append(
                    {
                        "store": store,
                        "source": source,
                        "heads": h,
                        "steps": steps,
                        "epoch_s": seconds,
                        "per_head_step_ms": 1e3 * per,
                        "per_head_step_vs_1": per / one,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the benchmark caches live")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--videos", type=int, default=16, help="videos in the cache (8 clips each)")
    parser.add_argument("--tokens", type=int, default=4608)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--batch", type=int, default=TrainConfig.batch_size, help="videos a step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps of the step figure")
    parser.add_argument("--heads", default="1,5,40", help="heads per pass, comma-separated")
    parser.add_argument("--sources", default="disk,held", help="disk and/or held")
    parser.add_argument("--stores", default="fp16,int8", help="fp16 and/or int8")
    parser.add_argument(
        "--autocast", default=TrainConfig.autocast, choices=("bf16", "fp16", "fp32")
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    path = make_cache(args.dir, args.videos, args.tokens, args.dim, grid_of(args.tokens))
    caches = {"fp16": open_cache(path)}
    stores = [s for s in args.stores.split(",") if s]
    if "int8" in stores:
        caches["int8"] = open_cache(int8_cache(path, args.dir))
    caches = {k: v for k, v in caches.items() if k in stores}
    config = TrainConfig(
        probe="attentive",
        epochs=1,
        batch_size=args.batch,
        device=args.device,
        autocast=args.autocast,
        in_memory="no",
    )
    times = step_seconds(caches[stores[0]], config, args.steps)
    out = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(args.device)
        if args.device.startswith("cuda")
        else "cpu",
        "load_average": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "shape": {
            "batch": args.batch,
            "clips": config.clips_per_video,
            "tokens": args.tokens,
            "dim": args.dim,
        },
        "autocast": args.autocast,
        "step": {"median_s": statistics.median(times), "runs_s": times},
    }
    print("step", json.dumps(out["step"]), flush=True)
    out["epochs"] = epochs(
        caches,
        config,
        [int(h) for h in args.heads.split(",")],
        [s for s in args.sources.split(",") if s],
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
