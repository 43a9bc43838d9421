"""Issue 11's smoke test and costs: the reference's augmentation from the cache, on generated data.

Generates the demo's RAVDESS-like dataset, extracts it with the tiny encoder twice (plan
`reference`; without augmented copies and with `--augment 2`), times both and measures their size,
then trains and evaluates all 5 folds three ways: plain (the reference's exact 8 training clips),
`--train-view augmented` (one stored copy per clip and epoch) and `--token-augment`. Prints one
table. The generated faces are a weak test of augmentation: the UARs are a smoke test, not a
verdict.

    python benchmarks/fidelity.py --out /tmp/fidelity [--epochs 20] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from vjfer.demo import DemoConfig
from vjfer.env import available_cpus
from vjfer.extract import ExtractConfig, extract
from vjfer.probe.config import TrainConfig
from vjfer.probe.run import run_probe
from vjfer.synthetic import demo_datasets


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("shard-*.h5"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--workers", type=int, default=DemoConfig.workers)
    args = parser.parse_args()
    demo = DemoConfig()
    data = demo_datasets(args.out / "data", seed=demo.seed)["ravdess"]
    base = ExtractConfig(
        dataset="ravdess",
        root=data,
        encoder=demo.encoder,
        cache_root=args.out / "cache",
        plan="reference",
        hop=demo.hop,
        batch_size=demo.batch_size,
        workers=args.workers,
        device="cpu",
    )
    caches, costs = {}, {}
    for name, config in (("plain", base), ("augment 2", replace(base, augment=2))):
        start = time.perf_counter()
        summary = extract(config, progress=False)
        costs[name] = (time.perf_counter() - start, _size(summary.cache_dir), summary.clips)
        caches[name] = summary.cache_dir
    train = TrainConfig(
        epochs=args.epochs,
        lr=demo.lr,
        num_heads=demo.num_heads,
        batch_size=demo.probe_batch_size,
        device="cpu",
        num_workers=0,
    )
    runs = {
        "plain (exact training clips)": (caches["plain"], train),
        "--augment 2 --train-view augmented": (
            caches["augment 2"],
            replace(train, train_view="augmented"),
        ),
        "--token-augment": (caches["plain"], replace(train, token_augment=True)),
    }
    results = {}
    for name, (cache, config) in runs.items():
        start = time.perf_counter()
        run_dir = args.out / "runs" / name.replace(" ", "_").replace("-", "")
        run_probe(cache, "all", config, run_dir, progress=False, mode="force")
        summary = json.loads((run_dir / "summary.json").read_text())
        results[name] = (summary, time.perf_counter() - start)
    print(
        f"machine: {platform.processor() or platform.machine()}, {available_cpus()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )
    print("| cache | extraction s | clips | shard bytes |")
    print("|---|---|---|---|")
    for name, (seconds, size, clips) in costs.items():
        print(f"| {name} | {seconds:.1f} | {clips} | {size / 1e6:.2f} MB |")
    print()
    print("| training | PBV UAR | MV UAR | MV ties | seconds |")
    print("|---|---|---|---|---|")
    for name, (summary, seconds) in results.items():
        pbv, mv = summary["mean"]["pbv"]["uar"], summary["mean"]["mv"]["uar"]
        ties = [f["mv_tie_fraction"] for f in summary["per_fold"]]
        print(
            f"| {name} | {100 * pbv['mean']:.1f} ± {100 * pbv['std']:.1f} | "
            f"{100 * mv['mean']:.1f} ± {100 * mv['std']:.1f} | "
            f"{100 * sum(ties) / len(ties):.1f} % | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
