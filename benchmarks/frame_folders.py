"""Frame folders: `decode_video` on a folder of JPG / PNG frames (decode + the same preparation as
a video file) against plain decoding of the same files with PIL (`np.asarray(Image.open(f)
.convert("RGB"))`), on one core, at 224 and 384, centre view (`--views whole`: the whole frame
resized to R×R, the field's view; `--resolutions 224` for the peers' size).

The frames are the drawn faces of `vjfer.synthetic` at 224×224 (the size of DFEW's clip_224x224;
`--size 256` for MAE-DFER's jpg_256), written as JPG (quality 90) and PNG. Rates are frames per
CPU second of this process (the stable figure on a shared machine); each is the best of
`--repeats` interleaved runs. Figure of merit: vjfer's rate over plain decoding's (target ≥ 0.8).
A second ratio compares vjfer with the best a reader could do that also resizes: plain decoding +
OpenCV's bilinear resize to the same int(R·256/224) short side and the centre crop (whole: to
R×R) (`cv2.resize`, INTER_LINEAR; other pixels than swscale's, so a bound, not an alternative);
`prepare_share` is that resize's cost over the decode's.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/frame_folders.py [--frames 120] [--json out.json]
        [--views whole] [--size 256] [--resolutions 224]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vjfer.decode import decode_video
from vjfer.synthetic import STYLES, actor_nuisance, render_face, seeded_rng
from vjfer.synthetic_frames import write_frames


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def plain(folder: Path) -> None:
    for path in sorted(folder.iterdir()):
        np.asarray(Image.open(path).convert("RGB"))


def resized(folder: Path, resolution: int, views: str = "center") -> None:
    """Plain decoding + the view's resize (and crop) with OpenCV (the cheapest we know)."""
    import cv2

    side = int(resolution * 256 / 224) if views == "center" else resolution  # whole: R×R
    top = int(round((side - resolution) / 2.0))
    for path in sorted(folder.iterdir()):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        scaled = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_LINEAR)  # square frames
        np.ascontiguousarray(scaled[top : top + resolution, top : top + resolution])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--views", choices=("center", "whole"), default="center")
    parser.add_argument("--size", type=int, default=224, help="frame side, pixels")
    parser.add_argument("--resolutions", default="224,384")
    args = parser.parse_args()
    resolutions, v = [int(r) for r in args.resolutions.split(",")], args.views
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    frames = render_face(
        STYLES["happy"],
        actor_nuisance(0, "dfew", 1),
        (args.size, args.size),
        args.frames,
        25.0,
        seeded_rng(0, "bench"),
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("jpg", "png"):
            folder = Path(tmp) / ext
            write_frames(folder, frames, "{i}." + ext)
            for resolution in resolutions:
                base, ours, bound = [], [], []
                for _ in range(args.repeats):  # interleaved: drift hits all alike
                    base.append(_cpu(lambda f=folder: plain(f)))
                    ours.append(
                        _cpu(lambda f=folder, r=resolution: decode_video(f, r, v, threads=1))
                    )
                    bound.append(_cpu(lambda f=folder, r=resolution: resized(f, r, v)))
                rate_plain, rate_vjfer = args.frames / min(base), args.frames / min(ours)
                rate_bound = args.frames / min(bound)
                # the default run keeps its keys; another view or frame size names itself
                tag = "" if (v, args.size) == ("center", 224) else f"{v}-{args.size}px-"
                results[f"{tag}{ext}-{resolution}"] = {
                    "plain_fps": round(rate_plain, 1),
                    "vjfer_fps": round(rate_vjfer, 1),
                    "ratio": round(rate_vjfer / rate_plain, 3),
                    "decode_cv2_resize_fps": round(rate_bound, 1),
                    "ratio_vs_decode_cv2_resize": round(rate_vjfer / rate_bound, 3),
                    "prepare_share": round(rate_plain / rate_bound - 1, 3),
                }
                print(
                    f"{tag}{ext} R={resolution}: plain {rate_plain:7.1f} fps, vjfer "
                    f"{rate_vjfer:7.1f} fps, ratio {rate_vjfer / rate_plain:.2f}; decode + cv2 "
                    f"resize {rate_bound:7.1f} fps, ratio {rate_vjfer / rate_bound:.2f}"
                )
    print(f"load average {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
