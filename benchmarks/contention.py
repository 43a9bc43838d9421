"""Where the demo's probe stage loses time beside a busy process: one head's optimizer step at the
demo's shape, per variant, alone and beside one CPU-bound process, measured in one run.

The demo's probe (`vjfer.demo.DemoConfig`: the tiny encoder's D = 64 and 8 x 4 x 4 = 128 tokens per
clip, 8 clips a sample, batch 4, 4 attention heads) is stepped by `Head.feed` on random fp16 samples
(what the pass feeds it). Variants: torch threads (1, 2) x AdamW's implementation (single-tensor,
torch's CPU default, vs `foreach=True`) x a busy loop (`python -c "while True: pass"`) beside it or
not. The machine is shared, so no figure is an idle one: the variants are interleaved round by
round (each round times every variant once, in a fresh order) and the medians compared, with the
load average printed beside each round. `--profile` prints the top operators of one variant's
steps (torch.profiler, self CPU time).

`--demo` instead times the whole `vjfer demo` (a fresh folder each time), idle and then beside
the busy loop, once per `--demo-threads` setting ("default": torch's own thread count).

    .venv/bin/python benchmarks/contention.py --rounds 5 --steps 20 --json contention.json
    .venv/bin/python benchmarks/contention.py --demo --demo-threads 1 --json demo-contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.clips import plan_clips
from vjfer.demo import DemoConfig
from vjfer.probe.config import TrainConfig
from vjfer.probe.head import Head, param_groups

D, GRID = 64, (8, 4, 4)  # the tiny encoder at 64 px: 128 tokens per clip


def tiny_cache(directory: Path) -> Path:
    """A cache of 8 videos, one per class, of the tiny encoder's token shape (random tokens)."""
    rng = np.random.default_rng(0)
    entries = []
    for label in range(8):
        frames = plan_clips(100, "windows", hop=8)
        tokens = rng.normal(size=(len(frames), 1, int(np.prod(GRID)), D)).astype(np.float16)
        entries.append(
            VideoEntry(
                video_id=f"v{label}",
                label=label,
                actor=1,
                fold=5,
                n_frames=100,
                fps=30.0,
                frames=frames,
                tokens=tokens,
            )
        )
    return build_cache(directory, {"encoder": "tiny-shaped"}, entries, dataset="ravdess", grid=GRID)


def step_seconds(cache, config: TrainConfig, foreach: bool, threads: int, steps: int) -> float:
    """Median seconds of one optimizer step (4 `Head.feed` calls) after one warm-up step."""
    torch.set_num_threads(threads)
    head = Head(
        "bench",
        replace(config, epochs=steps + 1),
        np.arange(len(cache.videos)),
        cache,
        torch.device("cpu"),
    )
    head.optimizer = torch.optim.AdamW(
        param_groups(head.probe),
        lr=config.lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        foreach=foreach,
    )
    g = torch.Generator().manual_seed(0)
    samples = [torch.randn(8, int(np.prod(GRID)), D, generator=g).half() for _ in range(4)]
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        for i, sample in enumerate(samples):
            head.feed(sample, i)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def profile(cache, config: TrainConfig, foreach: bool, threads: int) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step_seconds(cache, config, foreach, threads, steps=10)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)


def demo_seconds(out: Path, threads: str, busy: bool) -> dict:
    """Wall seconds of one `vjfer demo` into a fresh `out`, and the load average after it."""
    args = [sys.executable, "-m", "vjfer", "demo", "--out", str(out)]
    args += ["--threads", "0" if threads == "default" else threads]  # 0: torch's own count
    other = busy_loop() if busy else None
    try:
        start = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return {"threads": threads, "busy": busy, "seconds": seconds, "load_average": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vjfer-contention"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--demo-threads", default="1", help="comma-separated: default, 1, 2, ...")
    args = parser.parse_args(argv)
    if args.demo:
        rows = []
        for threads in args.demo_threads.split(","):
            for busy in (False, True):
                rows.append(demo_seconds(args.dir / f"demo-{threads}-{busy}", threads, busy))
                print(json.dumps(rows[-1]), flush=True)
            rows[-1]["busy_vs_idle"] = rows[-1]["seconds"] / rows[-2]["seconds"]
            print(f"threads {threads}: beside a busy loop {rows[-1]['busy_vs_idle']:.2f}x idle")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
        return 0
    demo = DemoConfig()
    config = TrainConfig(
        lr=demo.lr,
        num_heads=demo.num_heads,
        batch_size=demo.probe_batch_size,
        device="cpu",
        num_workers=0,
    )
    path = args.dir / "cache"
    cache = open_cache(path if (path / "manifest.json").is_file() else tiny_cache(path))
    if args.profile:
        for foreach in (False, True):
            print(f"foreach={foreach}, 2 threads:\n{profile(cache, config, foreach, 2)}")
    variants = [(t, f, b) for t in (1, 2) for f in (False, True) for b in (False, True)]
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    loads = []
    for r in range(args.rounds):
        random.Random(r).shuffle(variants)
        for threads, foreach, busy in variants:
            other = busy_loop() if busy else None
            try:
                time.sleep(0.2 if busy else 0)  # the busy loop is running before the steps are
                times[(threads, foreach, busy)].append(
                    step_seconds(cache, config, foreach, threads, args.steps)
                )
            finally:
                if other is not None:
                    other.kill()
                    other.wait()
        loads.append(os.getloadavg())
        print(f"round {r + 1}: load average {loads[-1][0]:.2f} {loads[-1][1]:.2f}", flush=True)
    rows = []
    for (threads, foreach, busy), seconds in sorted(times.items()):
        rows.append(
            {
                "threads": threads,
                "foreach": foreach,
                "busy": busy,
                "step_ms": 1e3 * statistics.median(seconds),
            }
        )
    alone = {(r["threads"], r["foreach"]): r["step_ms"] for r in rows if not r["busy"]}
    for r in rows:
        r["vs_alone"] = r["step_ms"] / alone[(r["threads"], r["foreach"])]
        r["vs_1thread_single_alone"] = r["step_ms"] / alone[(1, False)]
        print(json.dumps(r), flush=True)
    out = {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "steps": args.steps,
        "load_average_per_round": loads,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
