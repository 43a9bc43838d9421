"""Extraction throughput: end to end against the encoder alone, and the shard writer against plain
writes.

    .venv/bin/python benchmarks/extract.py                      # CPU: tiny encoder, 1280x720 videos
    .venv/bin/python benchmarks/extract.py --encoder vjepa-h16-384 --random-weights --device cuda

1. end to end: `vjfer.extract.extract` over generated RAVDESS-named H.264 videos (decode in worker
   processes, batch, encode, write shards), clips per second of wall time;
2. encoder only: `Encoder.encode` on pre-made normalised tensors, same encoder, batch and device
   (with the fp16 cast and the copy to the host that extraction also does);
3. writer: `ShardWriter` (tokens of the chosen encoder's shape, one clip per chunk, fsync) against a
   plain sequential `write` + fsync of the same bytes.
Prints a Markdown block for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from vjfer.cache import VideoEntry
from vjfer.cache.writer import ShardWriter, shard_header
from vjfer.encoders import load_encoder
from vjfer.extract import ExtractConfig, extract, plan_extraction


def make_videos(root: Path, count: int, frames: int, width: int, height: int) -> None:
    """RAVDESS-named H.264 (High profile, CABAC, B-frames: x264 veryfast) videos with motion."""
    rng = np.random.default_rng(0)
    for i in range(count):
        actor, emotion = 1 + i % 24, 1 + (i // 24) % 8
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"01-01-{emotion:02d}-01-01-{1 + i // 192:02d}-{actor:02d}.mp4"
        small = rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8)
        base = np.kron(small, np.ones((16, 16, 1), np.uint8))  # blocky but smooth-ish texture
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=30, options={"preset": "veryfast"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                image = np.roll(base, (3 * t, 5 * t), axis=(0, 1))
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(stream.encode())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_only(encoder, clips: int, batch: int) -> float:
    """Clips/s of encode + fp16 cast + copy to host on one pre-made normalised batch."""
    R = encoder.resolution
    x = torch.randn(batch, 3, 16, R, R, device=encoder.device)
    encoder.encode(x).to(torch.float16).cpu()  # warm-up
    sync(encoder.device)
    start, done = time.perf_counter(), 0
    while done < clips:
        encoder.encode(x).to(torch.float16).cpu()
        done += batch
    sync(encoder.device)
    return done / (time.perf_counter() - start)


def writer_vs_plain(
    directory: Path, clip_shape: tuple[int, int, int], total_mb: int
) -> tuple[float, float]:
    """MB/s of ShardWriter and of a plain sequential write (+ fsync) of the same bytes."""
    clip = np.random.default_rng(0).standard_normal((1, *clip_shape)).astype(np.float16)
    clips_per_video = 7
    videos = max(1, round(total_mb * 1e6 / (clip.nbytes * clips_per_video)))
    tokens = np.repeat(clip, clips_per_video, axis=0)
    frames = np.zeros((clips_per_video, 16), np.int64)
    ids = [f"v{i:05d}" for i in range(videos)]
    header = shard_header(
        dataset="ravdess",
        fp="0" * 64,
        settings={},
        grid=(1, 1, clip_shape[1]),
        embed_dim=clip_shape[2],
        num_views=clip_shape[0],
        index=0,
        num_shards=1,
        shard_size=videos,
        video_ids=ids,
    )
    nbytes = tokens.nbytes * videos

    def h5_write() -> None:
        writer = ShardWriter(directory / "shard-00000.h5", header, *clip_shape)
        for vid in ids:
            writer.append(VideoEntry(vid, 0, 1, 1, 100, 30.0, frames, tokens))
        writer.close()

    def plain_write() -> None:
        with open(directory / "plain.bin", "wb") as f:
            for _ in ids:
                for c in tokens:  # one write per clip, as the shard writer's chunks
                    f.write(c)
            f.flush()
            os.fsync(f.fileno())

    def timed(write) -> float:
        for old in directory.iterdir():
            old.unlink()
        os.sync()  # start each from a clean page cache state
        start = time.perf_counter()
        write()
        return nbytes / (time.perf_counter() - start) / 1e6

    return timed(h5_write), timed(plain_write)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line
        )
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores (load {load:.1f}), {gpu}, torch {torch.__version__}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", default="tiny")
    p.add_argument(
        "--random-weights", action="store_true", help="V-JEPA 1 sizes with random weights"
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--frames", type=int, default=110, help="frames per video (RAVDESS: ~111)")
    p.add_argument("--size", default="1280x720", help="video width x height")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--write-mb", type=int, default=512, help="bytes for the writer comparison")
    p.add_argument(
        "--write-shape", default="", help="V,N,D of the writer test (default: the encoder's)"
    )
    p.add_argument("--repeat", type=int, default=3, help="runs of each measurement (median)")
    p.add_argument(
        "--work", type=Path, default=None, help="scratch directory (default: a temp dir)"
    )
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="vjfer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    encoder = load_encoder(args.encoder, device=device, random_weights=args.random_weights)

    root = work / "videos"
    if not root.exists():
        t = time.perf_counter()
        make_videos(root, args.videos, args.frames, width, height)
        print(f"made {args.videos} videos in {time.perf_counter() - t:.1f} s")
    config = ExtractConfig(
        dataset="ravdess",
        root=root,
        encoder=args.encoder,
        cache_root=work / "cache",
        batch_size=args.batch_size,
        workers=args.workers,
        device=str(device),
        force=True,
        shard_size=8,
    )
    e2e, alone = [], []
    for _ in range(args.repeat):  # alternate, so both see the same machine load
        summary = extract(config, progress=False, plan=plan_extraction(config, encoder=encoder))
        e2e.append(summary.clips_per_s)
        alone.append(
            encoder_only(encoder, max(summary.clips, 4 * args.batch_size), args.batch_size)
        )
    e2e, alone = float(np.median(e2e)), float(np.median(alone))
    shape = (
        tuple(map(int, args.write_shape.split(",")))
        if args.write_shape
        else (1, encoder.num_tokens, encoder.embed_dim)
    )
    bench_dir = work / "write"
    bench_dir.mkdir(exist_ok=True)
    rates = [writer_vs_plain(bench_dir, shape, args.write_mb) for _ in range(args.repeat)]
    h5, plain = (float(np.median(r)) for r in zip(*rates, strict=True))
    shutil.rmtree(bench_dir)
    if args.json:
        figures = {
            "machine": machine(),
            "encoder": args.encoder,
            "device": str(device),
            "videos": summary.videos_done,
            "clips": summary.clips,
            "size": args.size,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "end_to_end_clips_s": e2e,
            "encoder_only_clips_s": alone,
            "end_to_end_vs_encoder": e2e / alone,
            "writer_mb_s": h5,
            "plain_mb_s": plain,
            "writer_vs_plain": h5 / plain,
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")

    e2e_setup = f"end to end ({args.workers} decoding workers, batch {args.batch_size}, {device})"
    print(f"""
machine: {machine()}
command: .venv/bin/python benchmarks/extract.py {" ".join(sys.argv[1:])}

| measure (median of {args.repeat}) | value |
|---|---|
| videos {width}x{height}, {args.frames} frames; clips | {summary.videos_done}; {summary.clips} |
| {e2e_setup} | {e2e:.1f} clips/s |
| encoder only ({args.encoder}, same batch and device) | {alone:.1f} clips/s |
| end to end / encoder only | {100 * e2e / alone:.0f} % |
| ShardWriter, tokens {list(shape)} fp16 per clip, {args.write_mb} MB incl. fsync | {h5:.0f} MB/s |
| plain sequential write + fsync, same bytes | {plain:.0f} MB/s |
| writer / plain | {100 * h5 / plain:.0f} % |
""")


if __name__ == "__main__":
    main()
