"""What comparing every source's content costs a resume (issue 20), against decoding the same bytes.

A real 1280x720 H.264 file (`--frames` frames of block noise, RAVDESS's size, rate and bytes) is
written once and copied until the tree holds `--gb` GB, like RAVDESS's ~11 GB of mp4. Then:

1. `source_identity(path, sha256=False)`: the resume's check (xxh3-128 in one sequential read of
   8 MiB blocks), with the page cache cold (`sync; echo 3 > /proc/sys/vm/drop_caches`; needs root,
   else skipped) and warm (a second pass);
2. `source_identity(path)`: xxh3-128 and sha256 in the same read (what a failed video records),
   warm;
3. `decode_video(path, 224)`: decoding `--decode-files` of the copies (centre view), as extraction
   does: the cost the hash is compared with, in the same bytes per second.

    .venv/bin/python benchmarks/source_hash.py --dir /tmp/hash-tree --gb 3 --json hash.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from vjfer.decode import decode_video, source_identity
from vjfer.synthetic import write_video


def make_tree(directory: Path, gb: float, frames: int) -> list[Path]:
    """One real 720p H.264 file and copies of it up to `gb` GB (reused when already there)."""
    directory.mkdir(parents=True, exist_ok=True)
    first = directory / "video-0000.mp4"
    if not first.exists():
        rng = np.random.default_rng(0)  # fresh 32-px noise per frame: ~3.6 MB at 110 frames,
        block = np.ones((32, 32, 1), np.uint8)  # about a RAVDESS file (11 GB / 2880 = 3.8 MB)
        video = np.stack(
            [
                np.kron(rng.integers(0, 256, (720 // 32, 1280 // 32, 3), np.uint8), block)
                for _ in range(frames)
            ]
        )
        write_video(first, video, Fraction(30000, 1001), "mp4")
    count = max(1, round(gb * 1e9 / first.stat().st_size))
    paths = [directory / f"video-{i:04d}.mp4" for i in range(count)]
    for path in paths[1:]:
        if not path.exists():
            shutil.copyfile(first, path)
    return paths


def drop_page_cache() -> bool:
    """Evict the page cache (root only); False where it cannot."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def timed(paths: list[Path], fn) -> dict:
    start = time.perf_counter()
    for path in paths:
        fn(path)
    seconds = time.perf_counter() - start
    nbytes = sum(p.stat().st_size for p in paths)
    return {
        "files": len(paths),
        "bytes": nbytes,
        "seconds": round(seconds, 3),
        "gb_per_s": round(nbytes / seconds / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="Folder for the generated tree.")
    parser.add_argument("--gb", type=float, default=3.0, help="Size of the tree.")
    parser.add_argument("--frames", type=int, default=110, help="Frames (RAVDESS ~111).")
    parser.add_argument("--decode-files", type=int, default=4, help="Copies decoded.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    paths = make_tree(args.dir, args.gb, args.frames)
    xxh3 = lambda p: source_identity(p, sha256=False)  # noqa: E731
    out = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "file_bytes": paths[0].stat().st_size,
    }
    if drop_page_cache():
        out["xxh3_cold"] = timed(paths, xxh3)
    out["xxh3_warm"] = timed(paths, xxh3)
    out["xxh3_and_sha256_warm"] = timed(paths, source_identity)
    out["decode_224"] = timed(paths[: args.decode_files], lambda p: decode_video(p, 224))
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
