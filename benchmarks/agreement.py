"""Token agreement of the encoder's reduced-precision runs against float32 on the same clips.

Encodes clips of generated 720p videos (decoded and prepared as extraction does) with the encoder in
float32, under bf16 autocast (vjfer's CUDA default) and under fp16 autocast (the reference code's),
and reports, per reduced precision, the relative L2 error of the token array and the cosine
similarity of each token with its float32 counterpart (mean and 1st percentile). Also the tokens'
fp16 storage rounding against float32, as a floor to compare with.

Random weights by default (the architecture decides the arithmetic, but activation outliers of
pretrained weights can differ): pass --checkpoint for a real jepa checkpoint.

    .venv/bin/python benchmarks/agreement.py --device cuda [--encoder vjepa-h16-384] [--clips 8]
    # a quick check of the script
    .venv/bin/python benchmarks/agreement.py --device cpu --encoder tiny
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vjfer.clips import gather_clips, plan_clips
from vjfer.decode import decode_video
from vjfer.encoders import load_encoder
from vjfer.prepare import normalize_clips

sys.path.insert(0, str(Path(__file__).parent))
from extract import make_videos  # noqa: E402  (a sibling benchmark script)


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Relative L2 error and per-token cosine similarity of `other` against
    `reference` [B, N, D]."""
    ref, oth = reference.double(), other.double()
    rel = float((oth - ref).norm() / ref.norm())
    cos = torch.nn.functional.cosine_similarity(oth, ref, dim=-1).flatten().cpu().numpy()
    return {
        "relative_l2": rel,
        "cosine_mean": float(cos.mean()),
        "cosine_p1": float(np.percentile(cos, 1)),
        "cosine_min": float(cos.min()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="vjepa-h16-384")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    encoder = load_encoder(
        args.encoder,
        args.checkpoint,
        device=device,
        random_weights=args.checkpoint is None and args.encoder != "tiny",
    )
    with tempfile.TemporaryDirectory() as tmp:
        make_videos(Path(tmp), 2, 96, 1280, 720)
        clips = []
        for path in sorted(Path(tmp).rglob("*.mp4")):
            video = decode_video(path, encoder.resolution)
            clips.append(gather_clips(video.frames, plan_clips(video.n_frames, "windows", hop=8)))
    clips = np.concatenate(clips)[: args.clips, 0]  # [C, 16, R, R, 3], centre view
    x = normalize_clips(torch.from_numpy(clips))
    runs: dict[str, list[torch.Tensor]] = {"float32": [], "bfloat16": [], "float16": []}
    with torch.inference_mode():
        for start in range(0, len(x), args.batch_size):
            batch = x[start : start + args.batch_size].to(device)
            for name in runs:
                dtype = getattr(torch, name)
                with torch.autocast(device.type, dtype=dtype, enabled=name != "float32"):
                    runs[name].append(encoder.module(batch).float().cpu())
    tokens = {name: torch.cat(t) for name, t in runs.items()}
    out = {
        "encoder": args.encoder,
        "weights": args.checkpoint or "random",
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "clips": len(x),
        "tokens_per_clip": encoder.num_tokens,
        "embed_dim": encoder.embed_dim,
        "bf16_autocast": compare(tokens["float32"], tokens["bfloat16"]),
        "fp16_autocast": compare(tokens["float32"], tokens["float16"]),
        "fp16_storage_of_fp32": compare(tokens["float32"], tokens["float32"].half()),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
