"""Prepared frames per second of `vjfer.decode.decode_video` against a decode-only baseline.

Two generated files stand in for the datasets: a RAVDESS-like 1280×720 H.264 mp4 (29.97 fps,
about 10 Mbit/s) and a CREMA-D-like 480×360 FLV (codec flv1, 30 fps), both with a textured
background, moving shapes and grain, so they are not trivially compressible. Each is decoded with
1 and 2 threads by

- `ffmpeg -threads N -i FILE -f null -` (decode only; when ffmpeg is on PATH; one process per file,
  so its start-up is part of the figure, as it would be per video),
- PyAV's own decode-only loop (no conversion, no resize; the same per-file open as vjfer),
- vjfer: decode + RGB + resize + crop of every frame (`decode_video`),
- and, for the centre view, ffmpeg doing that same work (`-vf scale=...,crop=...,format=rgb24`),
  the floor FFmpeg itself sets for decode + prepare.

Two rates per method: wall clock (frames / elapsed) and CPU (frames / CPU seconds of the process,
its threads and its children). On a shared machine the CPU rate is the stable one: it is what a
frame costs, whatever else runs. Each is the best of `--repeats` interleaved measurements of at
least `--min-seconds`. The figure of merit is vjfer's rate over the decode-only rate (target 0.8).

    .venv/bin/python benchmarks/decode.py [--frames 150] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vjfer.decode import decode_video
from vjfer.prepare import ViewGeometry, view_geometry


def synthetic_frames(width: int, height: int, count: int, seed: int = 0):
    """RGB frames: a fixed textured background, moving shapes and a little per-frame grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = rng.integers(40, 200, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    background = np.kron(background, np.ones((8, 8, 1), np.uint8))[:height, :width]
    background = (
        background // 2
        + (127 * (np.sin(xx / 17.0) * np.cos(yy / 23.0)) + 64)[..., None].astype(np.uint8) // 2
    )
    for i in range(count):
        frame = background.copy()
        for k in range(4):  # discs and boxes moving on different paths
            cx = int(width * (0.5 + 0.35 * np.sin(0.05 * i + k)))
            cy = int(height * (0.5 + 0.35 * np.cos(0.07 * i + 2 * k)))
            r = height // (6 + k)
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            frame[disc] = (60 * k + 30, 255 - 50 * k, (i * 5 + 70 * k) % 256)
        grain = rng.integers(-6, 7, frame.shape, dtype=np.int16)
        yield np.clip(frame.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def write_video(
    path: Path, codec: str, fmt: str, width: int, height: int, rate, count: int, **opts
):
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {k: str(v) for k, v in opts.items()}
        if codec == "flv":
            stream.bit_rate = 1_000_000  # CREMA-D: ~300 kB per ~2.5 s file
        for image in synthetic_frames(width, height, count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def cpu_seconds() -> float:
    """User + system CPU time of this process, its threads and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def measure(run, *args, min_seconds: float) -> tuple[float, float, int]:
    """(wall s, CPU s, frames) of calling run(*args) -> frames until `min_seconds` have passed."""
    frames, start, cpu = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - start < min_seconds or frames == 0:
        frames += run(*args)
    return time.perf_counter() - start, cpu_seconds() - cpu, frames


def pyav_decode_only(path: Path, threads: int) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def vjfer_decode(path: Path, resolution: int, views: str, threads: int) -> int:
    return decode_video(path, resolution, views, threads).n_frames


def ffmpeg_decode_only(path: Path, threads: int, frames: int) -> int:
    command = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        str(threads),
        "-i",
        str(path),
        "-f",
        "null",
        "-",
    ]
    subprocess.run(command, check=True)
    return frames


def ffmpeg_version() -> str | None:
    if not shutil.which("ffmpeg"):
        return None
    return subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split(
        "\n"
    )[0]


def ffmpeg_prepare(path: Path, threads: int, frames: int, geometry: ViewGeometry) -> int:
    """ffmpeg doing vjfer's work for one centre view: bilinear resize, crop, RGB."""
    (top, left), R = geometry.offsets[0], geometry.resolution
    scale = f"scale={geometry.width}:{geometry.height}:flags=bilinear"
    graph = f"{scale},crop={R}:{R}:{left}:{top},format=rgb24"
    command = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        str(threads),
        "-i",
        str(path),
        "-vf",
        graph,
        "-f",
        "null",
        "-",
    ]
    subprocess.run(command, check=True)
    return frames


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per generated video")
    parser.add_argument(
        "--repeats", type=int, default=5, help="measurements per method (best kept)"
    )
    parser.add_argument("--min-seconds", type=float, default=1.0, help="length of one measurement")
    parser.add_argument("--resolution", type=int, default=224, help="crop size R")
    parser.add_argument("--views", default="center", choices=("center", "3crop"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workdir", type=Path, default=None, help="keep generated videos here")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser


def main(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vjfer-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    videos = {  # name: (file, codec, container, width, height, rate, encoder options)
        "ravdess-like 1280x720 h264 mp4": (
            "ravdess_like.mp4",
            "libx264",
            "mp4",
            1280,
            720,
            Fraction(30000, 1001),
            {"preset": "medium", "crf": 16},
        ),
        "crema-d-like 480x360 flv1 flv": ("crema_d_like.flv", "flv", "flv", 480, 360, 30, {}),
    }
    methods = {"pyav_decode": pyav_decode_only, "vjfer": vjfer_decode}
    if shutil.which("ffmpeg"):
        methods["ffmpeg_decode"] = ffmpeg_decode_only
        if args.views == "center":
            methods["ffmpeg_prepare"] = ffmpeg_prepare
    results = []
    for name, (file, codec, fmt, w, h, rate, opts) in videos.items():
        path = workdir / file
        if not path.exists():
            write_video(path, codec, fmt, w, h, rate, args.frames, **opts)
        frames = pyav_decode_only(path, 1)
        mbps = path.stat().st_size * 8 / (frames / float(rate)) / 1e6
        for threads in args.threads:
            calls = {
                "pyav_decode": (path, threads),
                "vjfer": (path, args.resolution, args.views, threads),
                "ffmpeg_decode": (path, threads, frames),
                "ffmpeg_prepare": (path, threads, frames, view_geometry(w, h, args.resolution)),
            }
            row = {"video": name, "threads": threads, "frames": frames, "mbit_s": round(mbps, 2)}
            for _ in range(args.repeats):  # interleaved, so load changes hit every method alike
                for method, run in methods.items():
                    wall, cpu, n = measure(run, *calls[method], min_seconds=args.min_seconds)
                    row[f"{method}_fps"] = max(row.get(f"{method}_fps", 0.0), n / wall)
                    row[f"{method}_cpu_fps"] = max(row.get(f"{method}_cpu_fps", 0.0), n / cpu)
            for base in ("pyav_decode", "ffmpeg_decode", "ffmpeg_prepare"):
                if base in methods:
                    row[f"ratio_vs_{base}"] = row["vjfer_fps"] / row[f"{base}_fps"]
                    row[f"cpu_ratio_vs_{base}"] = row["vjfer_cpu_fps"] / row[f"{base}_cpu_fps"]
            results.append(row)
            print(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
    info = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pyav": av.__version__,
        "libavcodec": av.library_versions["libavcodec"],
        "ffmpeg": ffmpeg_version(),
        "resolution": args.resolution,
        "views": args.views,
        "frames": args.frames,
        "repeats": args.repeats,
        "load_avg_1min": os.getloadavg()[0],
    }
    print(json.dumps(info))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
