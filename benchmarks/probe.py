"""Probe training throughput: factorised vs straightforward pooling.

Training steps (forward, backward, AdamW) of `AttentiveProbe` with the factorised
   pooling (the default) and with the straightforward K/V form (`factorised=False`), same weights,
   same inputs, same run: clips/s of each and their ratio. A sample is `--clips` clips of N tokens
   concatenated (joint pooling); defaults D = 1280, N = 4608 (ViT-H at 384), 16 heads, 8 classes.
Epoch time against token reading is `benchmarks/stage2.py`.

CPU figures need small shapes (the K/V form costs ~2·D·2D multiply-adds per token):

    .venv/bin/python benchmarks/probe.py --device cpu --batch 1 --clips 1 --steps 3 --json out.json
    .venv/bin/python benchmarks/probe.py --device cuda      # GPU defaults: batch 4, 8 clips
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vjfer.probe.model import AttentiveProbe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_pooling(
    D: int,
    N: int,
    clips: int,
    batch: int,
    heads: int,
    classes: int,
    steps: int,
    device: torch.device,
) -> dict:
    """Training clips/s of the factorised and the straightforward pooling on one input."""
    torch.manual_seed(0)
    tokens = torch.randn(batch, clips * N, D, device=device)  # [B, K·N, D]
    labels = torch.randint(0, classes, (batch,), device=device)
    base = AttentiveProbe(D, classes, heads).state_dict()
    out = {}
    for factorised in (True, False):
        probe = AttentiveProbe(D, classes, heads, factorised=factorised).to(device)
        probe.load_state_dict(base)
        opt = torch.optim.AdamW(probe.parameters(), lr=1e-3)
        passes, updates = [], []  # forward + backward; AdamW step
        for _ in range(steps + 1):  # the first step warms up
            _sync(device)
            start = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = probe(tokens)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
            _sync(device)
            middle = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(device)
            passes.append(middle - start)
            updates.append(time.perf_counter() - middle)
        fb, step = float(np.median(passes[1:])), float(np.median(np.add(passes, updates)[1:]))
        name = "factorised" if factorised else "straightforward"
        out[name] = {
            "fwd_bwd_s": fb,
            "step_s": step,
            "clips_per_s": batch * clips / step,
            "fwd_bwd_clips_per_s": batch * clips / fb,
        }
        del probe, opt
    fac, ref = out["factorised"], out["straightforward"]
    out["ratio"] = fac["clips_per_s"] / ref["clips_per_s"]  # whole training steps
    out["fwd_bwd_ratio"] = fac["fwd_bwd_clips_per_s"] / ref["fwd_bwd_clips_per_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--tokens", type=int, default=4608, help="N per clip")
    parser.add_argument("--clips", type=int, default=8, help="clips per sample (pooling part)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {"D": args.dim, "N": args.tokens, "clips": args.clips, "batch": args.batch},
    }
    result["pooling"] = bench_pooling(
        args.dim, args.tokens, args.clips, args.batch, 16, 8, args.steps, device
    )
    print(json.dumps(result["pooling"], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
