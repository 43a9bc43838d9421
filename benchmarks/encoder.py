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

`--cpu-table` times one clip, fp32, on the CPU for every registered preset and every public
Hugging Face checkpoint of the families sized by their config (`vjfer.encoders.hf_presets`), in
each family's own module with random weights, built with its first `--blocks` transformer blocks
only and scaled by FLOPs (the blocks are alike; a whole ViT-g would take minutes a clip here),
plus one whole encoder as a check of that scaling; and projects each dataset's extraction time
from FLOPs at `--sustained-tflops` (`projection.dataset_clips`):

    PYTHONPATH=. .venv/bin/python benchmarks/encoder.py --cpu-table --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from vjfer.encoders import ENCODERS, load_encoder
from vjfer.encoders.hf import VJEPA2Backbone
from vjfer.encoders.hf_presets import IMAGE, VIDEO, HfPreset, preset_image_spec, video_vit
from vjfer.encoders.image import FAMILIES, FrameEncoder
from vjfer.encoders.registry import family_of
from vjfer.encoders.videomae2 import random_config, random_mae
from vjfer.encoders.vjepa import ViTConfig, forward_flops, random_vit

sys.path.insert(0, str(Path(__file__).parent))
from projection import dataset_clips  # noqa: E402  (a sibling benchmark script)

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


# --- --cpu-table: every preset's CPU time a clip and projected GPU time a dataset

Truncated = tuple[nn.Module, int, int, int]  # module, side R, FLOPs a clip whole, truncated


def _registered(name: str, blocks: int) -> Truncated:
    """A registered fixed-size encoder (V-JEPA 1, VideoMAE V2, MARLIN) with `blocks` blocks."""
    vit = ENCODERS[name].vit
    assert vit is not None
    cut = replace(vit, depth=min(blocks, vit.depth))
    if name.startswith(("videomae2", "marlin")):
        module = random_mae(random_config(cut, name.split("-")[0]), 0)
    else:
        module = random_vit(cut, 0)
    return module, vit.img_size, forward_flops(vit), forward_flops(cut)


def _vjepa2(preset: HfPreset, blocks: int) -> Truncated:
    """transformers' VJEPA2Model of a hub checkpoint's config, `blocks` blocks (its predictor,
    which extraction skips, cut to one block: it is built, not run)."""
    import transformers

    c, vit = preset.config, video_vit(preset)
    config = transformers.VJEPA2Config(
        hidden_size=c["hidden_size"],
        num_hidden_layers=blocks,
        num_attention_heads=c["num_attention_heads"],
        mlp_ratio=vit.mlp_ratio,
        crop_size=preset.side,
        patch_size=c["patch_size"],
        frames_per_clip=16,
        pred_num_hidden_layers=1,
    )
    module = VJEPA2Backbone(transformers.VJEPA2Model(config))
    return module, preset.side, forward_flops(vit), forward_flops(replace(vit, depth=blocks))


def _image(family: str, preset: HfPreset, blocks: int) -> Truncated:
    """transformers' image model of a hub checkpoint's config, `blocks` blocks, per frame."""
    import transformers

    from vjfer.encoders.hf_presets import _CONFIG_CLASS

    config = getattr(transformers, _CONFIG_CLASS[family])(
        **{**preset.config, "num_hidden_layers": blocks}
    )
    model = getattr(transformers, FAMILIES[family].model_class)(config)
    spec = preset_image_spec(family, "patch", preset)
    cut = replace(spec, depth=blocks)
    return FrameEncoder(model, cut), spec.resolution, spec.flops, cut.flops


def table_entries() -> list[tuple[str, str, object]]:
    """(encoder, checkpoint, builder(blocks)) for every preset: the fixed-size registered ones
    (not tiny), then each Hugging Face family's public checkpoints (VideoMAE's are the same
    networks as videomae2-b/l/h, so not timed twice; -cls/-both compute what their base does)."""
    entries: list[tuple[str, str, object]] = [
        (n, "random init", lambda b, n=n: _registered(n, b))
        for n, spec in ENCODERS.items()
        if spec.vit is not None and n != "tiny"
    ]
    entries += [("vjepa2", p.repo, lambda b, p=p: _vjepa2(p, b)) for p in VIDEO["vjepa2"]]
    entries += [
        (family, p.repo, lambda b, f=family, p=p: _image(f, p, b))
        for family, presets in IMAGE.items()
        for p in presets
    ]
    return entries


def time_clip(module: nn.Module, side: int) -> float:
    """Seconds of one forward of one random clip [1, 3, 16, side, side], fp32."""
    clip = torch.randn(1, 3, 16, side, side, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.inference_mode():
        start = time.perf_counter()
        module(clip)
        return time.perf_counter() - start


def cpu_table(blocks: int, sustained_tflops: float, check: str) -> list[dict]:
    """One row per preset (printed as it is timed): CPU seconds a clip scaled from `blocks`
    blocks by FLOPs, and minutes per dataset at `sustained_tflops`; then `check` timed whole."""
    clips = dataset_clips()
    time_clip(random_vit(ViTConfig(64, 2, 4, img_size=64), 0), 64)  # thread pool, allocator
    rows = []
    for encoder, checkpoint, build in table_entries():
        module, side, whole, cut = build(blocks)  # type: ignore[operator]
        seconds = time_clip(module, side) * whole / cut
        del module
        minutes = {d: n * whole / (sustained_tflops * 1e12) / 60 for d, n in clips.items()}
        rows.append(
            {
                "encoder": encoder,
                "checkpoint": checkpoint,
                "family": family_of(encoder),
                "side": side,
                "tflop": whole / 1e12,
                "cpu_s": seconds,
                "gflop_s": whole / seconds / 1e9,
                **{f"{d}_min": m for d, m in minutes.items()},
            }
        )
        _print_row(rows[-1], clips)
    rows.append(check_scaling(check, blocks))
    return rows


def check_scaling(name: str, blocks: int, rounds: int = 3) -> dict:
    """`name` whole against its `blocks`-block build scaled by FLOPs, interleaved `rounds`
    times (the load changes between rows of the table; here both see the same)."""
    (whole_module, side, whole, _), (cut_module, _, _, cut) = (
        _registered(name, 10**6),
        _registered(name, blocks),
    )
    times = [
        (time_clip(cut_module, side) * whole / cut, time_clip(whole_module, side))
        for _ in range(rounds)
    ]
    scaled, measured = (sorted(t)[rounds // 2] for t in zip(*times, strict=True))
    print(
        f"check: {name} whole {measured:.1f} s a clip, {blocks} blocks scaled {scaled:.1f} s "
        f"(medians of {rounds} interleaved rounds)",
        flush=True,
    )
    return {"encoder": name, "checkpoint": "check", "cpu_s": measured, "scaled_s": scaled}


def _print_row(r: dict, clips: dict[str, int]) -> None:
    minutes = " | ".join(f"{r[f'{d}_min']:.1f}" for d in clips)
    print(
        f"| {r['encoder']} | {r['checkpoint']} | {r['side']} | {r['tflop']:.2f} | "
        f"{r['cpu_s']:.1f} | {r['gflop_s']:.0f} | {minutes} |",
        flush=True,
    )


def main_table(args) -> int:
    torch.set_num_threads(args.threads)
    clips = dataset_clips()
    print(
        f"CPU {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, fp32, one clip; {args.blocks} blocks scaled by FLOPs; "
        f"GPU at {args.sustained_tflops} TFLOP/s sustained; clips {clips}; loadavg "
        f"{Path('/proc/loadavg').read_text().split()[:3]}",
        flush=True,
    )
    heads = " | ".join(f"{d} (min)" for d in clips)
    print(f"| encoder | checkpoint | R | TFLOP / clip | CPU s / clip | GFLOP/s | {heads} |")
    print("|---" * (6 + len(clips)) + "|")
    rows = cpu_table(args.blocks, args.sustained_tflops, args.check)
    print(f"loadavg after: {Path('/proc/loadavg').read_text().split()[:3]}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


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
    parser.add_argument("--cpu-table", action="store_true", help="every preset on the CPU")
    parser.add_argument("--blocks", type=int, default=2, help="--cpu-table: blocks built")
    parser.add_argument("--threads", type=int, default=2, help="--cpu-table: torch threads")
    parser.add_argument("--check", default="videomae2-s", help="--cpu-table: timed whole")
    # H100/H200 SXM dense bf16 peak 989.4 TFLOP/s at 50 % MFU (projection.py's --mfu default)
    parser.add_argument("--sustained-tflops", type=float, default=495.0)
    args = parser.parse_args(argv)
    if args.cpu_table:
        return main_table(args)

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
