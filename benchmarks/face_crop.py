"""Seconds per video of `--face-crop haar` against whole frames, on a RAVDESS-sized file.

A 111-frame 1280×720 H.264 file (29.97 fps) shows scikit-image's astronaut photograph (scaled to
600 px) sliding across a flat wall. Timed, one decoder thread, best of `--repeats`:

- `decode_video(..., 384)`: whole frames, the default (`--face-crop none`);
- `FaceCropper(haar).locate`: the Haar pass (decodes the file, detects on every 8th frame);
- `decode_video(..., 384, crop=box)`: frames cut to the face box, then resized and cropped.

    .venv/bin/python benchmarks/face_crop.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from vjfer.decode import decode_video
from vjfer.face import FaceCropConfig, FaceCropper
from vjfer.synthetic import write_video

FRAMES, WIDTH, HEIGHT, FACE = 111, 1280, 720, 600  # RAVDESS: ~111 frames at 1280×720


def make_video(path: Path) -> None:
    photo = cv2.resize(skimage.data.astronaut(), (FACE, FACE), interpolation=cv2.INTER_AREA)
    frames = np.empty((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(FRAMES):
        frames[i] = (90, 100, 120)
        x = 200 + 4 * i  # slides right by 440 px over the video
        frames[i, 60 : 60 + FACE, x : x + FACE] = photo
    write_video(path, frames, Fraction(30000, 1001), "mp4")


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "face.mp4"
        make_video(video)
        whole, _ = best(lambda: decode_video(video, 384, threads=1), args.repeats)
        cropper = FaceCropper(FaceCropConfig("haar"))
        locate, face = best(lambda: cropper.locate(video, "face"), args.repeats)
        box = (face.box.x, face.box.y, face.box.w, face.box.h)
        cropped, _ = best(lambda: decode_video(video, 384, threads=1, crop=box), args.repeats)
    print(f"{FRAMES} frames {WIDTH}x{HEIGHT}, R=384, 1 thread, best of {args.repeats}:")
    print(f"  whole-frame decode + prepare  {whole:.2f} s")
    print(f"  haar pass (locate)            {locate:.2f} s  -> box {face.box}")
    print(f"  cropped decode + prepare      {cropped:.2f} s")


if __name__ == "__main__":
    main()
