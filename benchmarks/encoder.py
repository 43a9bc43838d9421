"""Clips per second and model FLOP utilisation (MFU) of a vjfer V-JEPA 1 encoder.

The default is the paper's backbone, `vjepa-h16-384`, with random (NOT pretrained) weights, since
throughput does not depend on the weights, run through `Encoder.encode` as extraction runs it:
bf16 autocast on CUDA, float32 on CPU. FLOPs per clip are counted analytically
(`vjfer.encoders.vjepa.forward_flops`: every matmul at 2 FLOPs per multiply-add, norms and softmax
left out; ≈ 9.30 TFLOP per 16-frame 384 px clip). MFU is the achieved FLOP/s over the device's
dense bf16 peak, looked up by GPU name in PEAK_BF16_TFLOPS or given with --peak-tflops.

    .venv/bin/python benchmarks/encoder.py [--encoder vjepa-h16-384] [--batch-size 8]
        [--iters 10] [--warmup 3] [--device cuda] [--peak-tflops 989.4] [--json out.json]
    .venv/bin/python benchmarks/encoder.py --device cpu --encoder tiny   # a quick CPU check
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch

from vjfer.encoders import ENCODERS, load_encoder
from vjfer.encoders.vjepa import forward_flops

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, matched in order as
# substrings of torch.cuda.get_device_name() (so "H100 PCIe" before "H100", "L40S" before "L4").
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.4),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("H200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("L4", 121.0),
)
BENCHMARKABLE = tuple(name for name, spec in ENCODERS.items() if spec.vit is not None)


def device_peak_tflops(device: torch.device) -> float | None:
    """The table's bf16 peak for a CUDA device, None if unknown (or not CUDA)."""
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in gpu), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(
    name: str, device: torch.device, batch_size: int, iters: int, warmup: int, compile: bool
) -> dict:
    """Time `iters` calls of encode on one batch already on `device`; returns the figures."""
    start = time.perf_counter()
    encoder = load_encoder(name, device=device, random_weights=name != "tiny")
    build_s = time.perf_counter() - start
    spec = ENCODERS[name]
    if compile:
        encoder.module = torch.compile(encoder.module)
    dtypes = []  # the dtype the first block's qkv matmul really produced
    hook = spec_block_hook(encoder.module, dtypes)
    g = torch.Generator(device=device).manual_seed(0)
    R = encoder.resolution
    clips = torch.randn(batch_size, 3, encoder.frames, R, R, device=device, generator=g)
    for _ in range(warmup):
        encoder.encode(clips)
    if hook is not None:
        hook.remove()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        encoder.encode(clips)
    synchronize(device)
    seconds = time.perf_counter() - start
    clip_flops = forward_flops(spec.vit)
    clips_per_s = batch_size * iters / seconds
    return {
        "encoder": name,
        "weights": encoder.fingerprint["weights"],
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "compute_dtype": encoder.compute_dtype,
        "qkv_output_dtype": str(dtypes[0]) if dtypes else None,
        "compile": compile,
        "batch_size": batch_size,
        "iters": iters,
        "seconds": seconds,
        "build_seconds": build_s,
        "tokens_per_clip": encoder.num_tokens,
        "tflop_per_clip": clip_flops / 1e12,
        "clips_per_s": clips_per_s,
        "achieved_tflops": clips_per_s * clip_flops / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else None,
    }


def spec_block_hook(module: torch.nn.Module, sink: list):
    """Record the output dtype of blocks[0].attn.qkv (None if the module has no such layer)."""
    blocks = getattr(getattr(module, "_orig_mod", module), "blocks", None)
    if blocks is None:
        return None
    return blocks[0].attn.qkv.register_forward_hook(lambda m, i, out: sink.append(out.dtype))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="vjepa-h16-384", choices=BENCHMARKABLE)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per encode call")
    parser.add_argument("--iters", type=int, default=10, help="timed encode calls")
    parser.add_argument("--warmup", type=int, default=3, help="untimed encode calls first")
    parser.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: table)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    result = benchmark(args.encoder, device, args.batch_size, args.iters, args.warmup, args.compile)
    peak = args.peak_tflops or device_peak_tflops(device)
    result["peak_tflops"] = peak
    result["mfu"] = result["achieved_tflops"] / peak if peak else None
    mfu = f"{result['mfu']:.1%}" if peak else "n/a (no peak for this device; --peak-tflops)"
    print(
        f"{result['encoder']} ({result['weights']}) on {result['device']}, "
        f"{result['compute_dtype']} (qkv out {result['qkv_output_dtype']}), batch "
        f"{args.batch_size}: {result['clips_per_s']:.3f} clips/s, {result['tflop_per_clip']:.4g} "
        f"TFLOP/clip, {result['achieved_tflops']:.4g} TFLOP/s, MFU {mfu}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
