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

3. **Batched** (`batched`, `--batched 1,5,10,40`): one optimizer step of H heads of one grid (lr
   spread, one seed, the same samples) per shape in `--batched-shapes` (TOKENSxDIM[@BATCHxCLIPS],
   default the tiny shape 256x64 and the real one 4608x1280 at batch 1 × 2 clips, so a CPU runs
   it; there at most `--real-heads-max` heads: 40 real-shape heads hold ~13 GB of AdamW state):
   `--batch-heads`' one `HeadGroup` step against the H heads stepped one by one as without it
   (`separate`, up to `--separate-max` heads); `vs_one_head` is H heads' step over one head's
   (the goal: <= 3 at 40 heads).
4. **Families** (`families`, per shape of `--batched-shapes`): epochs of one pass of an attentive
   head, then with a linear head beside it, then with a k-NN head too (`--family-epochs`, the
   k-NN head banks in the first only); `added` is the pass's time over the attentive pass's, - 1
   (the goal: <= 0.10), the median of `--repeat` interleaved rounds.

Every section records `/proc/loadavg` beside its figures (the machine may be shared).

The cache is `stage2.make_cache`'s (random fp16 tokens of the given shape, kept in `--dir` and
shared with benchmarks/stage2.py when the shape and video count agree).

    .venv/bin/python benchmarks/heads.py --dir /tmp/heads --device cuda --json heads.json
    .venv/bin/python benchmarks/heads.py --dir /tmp/heads --device cpu --tokens 256 --dim 64 \
        --videos 8 --heads 1,5,20,40 --sources held --stores fp16 --json heads-cpu.json
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/heads.py --dir /tmp/heads --device cpu \
        --threads 1 --tokens 256 --dim 64 --videos 8 --heads '' --batched 1,5,10,40 --json b.json
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
from vjfer.probe.batched import group_heads
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


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages (`/proc/loadavg`), or os.getloadavg's."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_shape(spec: str, batch: int, clips: int) -> dict:
    """ "4608x1280@1x2" -> tokens 4608, dim 1280, batch 1, clips 2 (`batch`, `clips` when no @)."""
    size, _, step = spec.partition("@")
    tokens, dim = (int(v) for v in size.split("x"))
    if step:
        batch, clips = (int(v) for v in step.split("x"))
    return {"tokens": tokens, "dim": dim, "batch": batch, "clips": clips}


def shape_config(base: TrainConfig, shape: dict) -> TrainConfig:
    """`base` at the shape's batch and clips (clips other than the reference's 8: random draws)."""
    choice = "reference" if shape["clips"] == 8 else "random"
    return replace(
        base, batch_size=shape["batch"], clips_per_video=shape["clips"], clip_choice=choice
    )


def group_step_seconds(cache, config: TrainConfig, heads: int, steps: int, batched: bool):
    """Seconds of each of `steps` optimizer steps of `heads` heads of one lr grid fed the same
    random fp16 samples: as one batched `HeadGroup` (one head: today's `Head`), or one by one."""
    device = torch.device(config.device)
    config = replace(config, epochs=steps + 1, batch_heads=batched)
    rows = np.arange(len(cache))
    members = [
        Head(f"h{h}", replace(config, lr=config.lr * (1 + h / heads)), rows, cache, device)
        for h in range(heads)
    ]
    units = group_heads(members) if batched else members
    K, N, D = config.clips_per_video, cache.num_tokens, cache.embed_dim
    g = torch.Generator(device=device).manual_seed(0)
    samples = [
        torch.randn(K, N, D, device=device, generator=g).half() for _ in range(config.batch_size)
    ]
    times = []
    for _ in range(steps + 1):  # the first is a warm-up
        sync(device)
        start = time.perf_counter()
        for i, sample in enumerate(samples):
            for unit in units:
                unit.feed(sample, i % len(cache.class_names))
        sync(device)
        times.append(time.perf_counter() - start)
    return times[1:]


def batched(cache, config: TrainConfig, heads: list[int], steps: int, separate_max: int):
    """One row per H: the median step of H heads batched and (H <= separate_max) one by one."""
    rows, one = [], None
    for h in heads:
        row = {"heads": h, "load_average": load_average()}
        row["batched_step_ms"] = 1e3 * statistics.median(
            group_step_seconds(cache, config, h, steps, batched=True)
        )
        if h <= separate_max:
            row["separate_step_ms"] = 1e3 * statistics.median(
                group_step_seconds(cache, config, h, steps, batched=False)
            )
        one = row["batched_step_ms"] if one is None else one  # H = 1: today's step
        row["vs_one_head"] = row["batched_step_ms"] / one
        rows.append(row)
        print("batched", json.dumps(row), flush=True)
    return rows


FAMILY_PASSES = {
    "attentive": ("attentive",),
    "attentive+linear": ("attentive", "linear"),
    "attentive+linear+knn": ("attentive", "linear", "knn"),
}


def family_seconds(cache, config: TrainConfig, probes: tuple[str, ...]) -> float:
    """Seconds of one pass (`config.epochs` epochs, tokens held) of one head per family."""
    device = torch.device(config.device)
    rows = np.arange(len(cache))
    heads = [Head(p, replace(config, probe=p), rows, cache, device) for p in probes]
    sync(device)
    start = time.perf_counter()
    train_heads(cache, heads, config, progress=False)
    sync(device)
    return time.perf_counter() - start


def families(cache, config: TrainConfig, repeat: int) -> dict:
    """Median pass seconds per FAMILY_PASSES entry over `repeat` interleaved rounds, and what
    the linear and k-NN heads add to the attentive pass."""
    held = "gpu" if config.device.startswith("cuda") else "yes"
    config = replace(config, in_memory=held)
    runs: dict[str, list[float]] = {name: [] for name in FAMILY_PASSES}
    for _ in range(repeat):
        for name, probes in FAMILY_PASSES.items():
            runs[name].append(family_seconds(cache, config, probes))
    seconds = {name: statistics.median(r) for name, r in runs.items()}
    out = {
        "load_average": load_average(),
        "epochs": config.epochs,
        "videos": len(cache),
        "pass_s": seconds,
        "added": {n: s / seconds["attentive"] - 1 for n, s in seconds.items() if n != "attentive"},
    }
    print("families", json.dumps(out), flush=True)
    return out


def batching(args, base: TrainConfig, main: Path) -> list[dict]:
    """The batched and families sections, per shape of `--batched-shapes` (the cache at `main`
    where the shape is the main one's, else a cache of `--batched-videos` videos)."""
    out = []
    heads = [int(h) for h in args.batched.split(",") if h]
    for spec in [s for s in args.batched_shapes.split(",") if s]:
        shape = parse_shape(spec, args.batch, base.clips_per_video)
        grid = grid_of(shape["tokens"])
        where = args.dir / f"batched-{shape['tokens']}x{shape['dim']}"
        if shape_of(shape) == (args.tokens, args.dim):
            cache = open_cache(main)
        else:
            cache = open_cache(make_cache(where, args.batched_videos, *shape_of(shape), grid))
        config = shape_config(base, shape)
        real = shape["tokens"] * shape["dim"] >= 1e6
        steps = args.real_steps if real else args.steps
        section = {"shape": shape, "steps": steps}
        sizes = [h for h in heads if h <= args.real_heads_max] if real else heads
        section["batched"] = batched(cache, config, sizes, steps, args.separate_max)
        fam = replace(config, epochs=args.family_epochs)
        section["families"] = families(cache, fam, args.repeat) if args.repeat else None
        out.append(section)
    return out


def shape_of(shape: dict) -> tuple[int, int]:
    return shape["tokens"], shape["dim"]


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


def add_batching_options(parser: argparse.ArgumentParser) -> None:
    """The options of the batched and families sections."""
    parser.add_argument("--batched", default="1,5,10,40", help="heads per batched step ('': none)")
    parser.add_argument(
        "--batched-shapes",
        default="256x64,4608x1280@1x2",
        help="TOKENSxDIM[@BATCHxCLIPS] shapes of the batched and families figures",
    )
    parser.add_argument("--batched-videos", type=int, default=8, help="videos of their caches")
    parser.add_argument("--real-steps", type=int, default=2, help="timed steps at >= 1M tokens·D")
    parser.add_argument(
        "--real-heads-max", type=int, default=40, help="most heads a step at >= 1M tokens·D"
    )
    parser.add_argument("--separate-max", type=int, default=40, help="most heads one by one")
    parser.add_argument("--family-epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the families figure")


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
    add_batching_options(parser)
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
    out["load_average_at_start"] = load_average()
    out["epochs"] = epochs(
        caches,
        config,
        [int(h) for h in args.heads.split(",") if h],
        [s for s in args.sources.split(",") if s],
    )
    out["batching"] = batching(args, config, path)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
