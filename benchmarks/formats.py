"""Store formats on the demo's generated data: size, token error and probe UAR (5 folds) per format.

Generates the demo's RAVDESS-like dataset (`vjfer.synthetic.demo_datasets`), extracts it once in
fp16 with the seeded `tiny` encoder (grid (8, 4, 4) at resolution 64, D 64), converts it to each
format with `vjfer.convert` and trains the demo's probe (`vjfer.demo.DemoConfig`: 20 epochs, lr
3e-3, 4 heads) on all five folds of each, once per `--seeds` seed (the demo's test folds hold 16
videos each, so one seed's UAR moves by 6 points per video). `pca:K` is leak-free per fold: one
conversion per test fold (`--pca-fold k`, basis fitted on the other four folds), each probed on its
own fold only, and the five fold results are averaged like any other run's.

    .venv/bin/python benchmarks/formats.py --out /tmp/vjfer-formats --json formats.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vjfer.convert import ConvertConfig, convert
from vjfer.demo import DemoConfig
from vjfer.extract import ExtractConfig, extract
from vjfer.probe.config import TrainConfig
from vjfer.probe.run import run_probe
from vjfer.synthetic import demo_datasets

FORMATS = ("fp16", "int8", "fp8", "pool2", "pool2+int8", "pca:32")


def fold_uars(run_dir: Path) -> dict[int, float]:
    """PBV UAR of each fold of a probe run."""
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        k: json.loads((run_dir / f"fold-{k}" / "metrics.json").read_text())["pbv"]["uar"]
        for k in summary["folds"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--seeds", default="0", help="probe seeds, comma-separated; UAR averaged")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    logging.basicConfig(level=logging.WARNING)
    demo = DemoConfig()
    data = demo_datasets(args.out / "data", seed=demo.seed)
    src = extract(
        ExtractConfig(
            dataset="ravdess",
            root=data["ravdess"],
            encoder=demo.encoder,
            cache_root=args.out / "cache",
            hop=demo.hop,
            batch_size=demo.batch_size,
            workers=demo.workers,
            device="cpu",
        ),
        progress=False,
    ).cache_dir
    train = TrainConfig(
        epochs=demo.epochs,
        lr=demo.lr,
        num_heads=demo.num_heads,
        batch_size=demo.probe_batch_size,
        seed=demo.seed,
        device="cpu",
        num_workers=0,
    )
    rows = []
    for fmt in args.formats.split(","):
        start = time.perf_counter()
        pca = fmt.startswith("pca") or "+pca" in fmt
        per_fold = [k for k in range(1, 6)] if pca else [None]
        uars, costs = {}, []
        for k in per_fold:
            tag = fmt.replace(":", "").replace("+", "-") + (f"-fold{k}" if k else "")
            cache = src
            if fmt != "fp16":
                summary = convert(ConvertConfig(src, fmt, out=args.out / "cache" / tag, pca_fold=k))
                cache, cost = summary.directory, summary.cost
                costs.append(cost)
            for seed in seeds:
                run = run_probe(
                    cache,
                    k if k else "all",
                    replace(train, seed=seed),
                    args.out / "runs" / f"{tag}-seed{seed}",
                    progress=False,
                    mode="force",
                )
                for fold, uar in fold_uars(run).items():
                    uars.setdefault(fold, []).append(uar)
        uars = {fold: float(np.mean(u)) for fold, u in uars.items()}  # mean over seeds
        row = {
            "format": fmt,
            "folds": len(uars),
            "seeds": seeds,
            "uar_mean": float(np.mean(list(uars.values()))),
            "uar_std": float(np.std(list(uars.values()), ddof=1)),
            "uar_per_fold": {str(k): v for k, v in sorted(uars.items())},
            "size_ratio": float(np.mean([c["size_ratio"] for c in costs])) if costs else 1.0,
            "clip_size_ratio": costs[0]["clip_size_ratio"] if costs else 1.0,
            "relative_l2": float(np.mean([c["relative_l2"] for c in costs])) if costs else 0.0,
            "cosine_mean": float(np.mean([c["cosine_mean"] for c in costs])) if costs else 1.0,
            "cosine_p1": float(np.mean([c["cosine_p1"] for c in costs])) if costs else 1.0,
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "| format | size (cache files) | size (token bytes) | token rel. L2 | cosine mean / p1 | "
        f"UAR PBV (5 folds, mean of {len(seeds)} seeds) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['format']} | {r['size_ratio']:.3f} | {r['clip_size_ratio']:.3f} | "
            f"{r['relative_l2']:.4f} | {r['cosine_mean']:.4f} / {r['cosine_p1']:.4f} | "
            f"{100 * r['uar_mean']:.2f} ± {100 * r['uar_std']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
