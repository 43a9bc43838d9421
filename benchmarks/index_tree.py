"""Indexing a DFEW-sized tree: 16,372 clip folders of empty placeholder frame files (~1.2 M in all;
indexing lists folders and never opens a frame) with the official split files' shape: 11,697
single-labelled clips in five test sets of 2341, 2341, 2340, 2339, 2336 (the train files hold the
other four sets), the remaining 4,675 folders listed by no split (DFEW's multi-label clips).

Frames per folder are drawn from 11..847 around DFEW's median of 71 (seeded). The tree is built
under a temporary folder (or --dir) and deleted afterwards. Wall clock of `scan_dataset("dfew")`,
after a first, untimed scan warms the page cache (a second figure: the cold one, when --cold and
root can drop caches, is not attempted here).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/index_tree.py [--dir /tmp] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vjfer.datasets import scan_dataset

CLIPS, SINGLE = 16_372, 11_697
TEST_SIZES = (2341, 2341, 2340, 2339, 2336)


def build(root: Path, seed: int = 0) -> int:
    """Write the tree; returns the number of frame files."""
    rng = np.random.default_rng(seed)
    counts = np.clip(np.round(rng.lognormal(np.log(71), 0.45, CLIPS)), 11, 847).astype(int)
    base = root / "Clip" / "clip_224x224"
    for n, count in enumerate(counts, start=1):
        folder = base / f"{n:05d}"
        folder.mkdir(parents=True)
        for i in range(1, count + 1):
            os.close(os.open(folder / f"{n:05d}_{i:05d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    order = rng.permutation(CLIPS)[:SINGLE] + 1
    fold = np.repeat(np.arange(1, 6), TEST_SIZES)
    labels = rng.integers(1, 8, SINGLE)
    for k in range(1, 6):
        for part, rows in (("test", fold == k), ("train", fold != k)):
            path = root / "EmoLabel_DataSplit" / f"{part}(single-labeled)" / f"set_{k}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "video_name,label\n"
                + "".join(f"{v},{lab}\n" for v, lab in zip(order[rows], labels[rows], strict=True))
            )
    return int(counts.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vjfer-dfew-", dir=args.dir))
    try:
        start = time.perf_counter()
        files = build(tmp)
        built = time.perf_counter() - start
        scan_dataset("dfew", tmp)  # warm: the figure is for listing, not for the first disk read
        start, cpu = time.perf_counter(), time.process_time()
        index = scan_dataset("dfew", tmp)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        shutil.rmtree(tmp)
    result = {
        "folders": CLIPS,
        "frame_files": files,
        "records": len(index.records),
        "excluded": len(index.excluded),
        "build_s": round(built, 1),
        "index_wall_s": round(wall, 2),
        "index_cpu_s": round(cpu, 2),
        "load_average": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
