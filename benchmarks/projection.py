"""Projected wall time of Table II's stage 2 (`vjfer probe --fold all`) against the reference's
re-encoding, for RAVDESS and CREMA-D with ViT-H/16 at 384.

Stage 2 in one pass reads, per epoch, each video's distinct reference training clips once (all
five folds' probes share the read), and once at the end every cached clip for evaluation. Its time
is max(read, probe compute); compute is counted from the factorised probe's per-token work and the
GPU's memory bandwidth (the probe streams its float32 batch ~`PROBE_PASSES` times, forward and
backward). The reference re-encodes every training clip in every epoch and every stride-1 window
at evaluation, with a 9.3 TFLOP forward per clip at `--mfu` of the bf16 peak.

Videos are modelled at their dataset's typical frame count (RAVDESS ~111, CREMA-D ~78 frames); the
clip counts come from vjfer's own clip plans.

    .venv/bin/python benchmarks/projection.py --read-gb-s 2.7       # e.g. 0.9 × a 3 GB/s NVMe
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from vjfer.clips import plan_clips
from vjfer.encoders.vjepa import PRESETS, forward_flops
from vjfer.probe.samples import reference_clips

DATASETS = {"RAVDESS": (2880, 111), "CREMA-D": (7441, 78)}  # videos, typical frames
# Clips each dataset's default cache holds (the `windows` plan, hop 8, one `center` view): RAVDESS
# and CREMA-D from their typical frame counts (`dataset_clips`), DFEW, FERV39k and MAFW from the
# real per-clip frame counts of their annotation files (`benchmarks/protocol_costs.py`, RESULTS.md)
FIELD_CLIPS = {"DFEW": 43_853, "FERV39k": 38_935, "MAFW": 62_501}


def dataset_clips(hop: int = 8) -> dict[str, int]:
    """Dataset -> clips its default cache encodes (see FIELD_CLIPS)."""
    ours = {n: v * len(plan_clips(f, "windows", hop=hop)) for n, (v, f) in DATASETS.items()}
    return {**ours, **FIELD_CLIPS}


FOLDS, EPOCHS, CLIPS_PER_SAMPLE = 5, 20, 8
CLIP_BYTES = 4608 * 1280 * 2  # one 384 clip, fp16
PROBE_PASSES = 12  # reads of the float32 batch per step (LayerNorm, scores, pooling; fwd + bwd)


def project(videos: int, frames: int, args) -> dict:
    windows = plan_clips(frames, "windows", hop=args.hop)
    distinct = len(np.unique(reference_clips(windows[:, 0], frames)))  # read per video and epoch
    read_bytes = videos * (EPOCHS * distinct + len(windows)) * CLIP_BYTES
    read_s = read_bytes / (args.read_gb_s * 1e9)
    samples = EPOCHS * videos * (FOLDS - 1) * args.heads_per_fold  # head-samples trained
    probe_bytes = samples * CLIPS_PER_SAMPLE * CLIP_BYTES * 2 * PROBE_PASSES  # float32 batches
    probe_s = probe_bytes / (args.hbm_tb_s * 1e12)
    clip_flops = forward_flops(PRESETS["vjepa-h16-384"])
    train_clips = EPOCHS * videos * (FOLDS - 1) * CLIPS_PER_SAMPLE  # every fold re-encodes
    eval_clips = videos * len(plan_clips(frames, "reference-eval"))
    reference_s = (train_clips + eval_clips) * clip_flops / (args.mfu * args.peak_tflops * 1e12)
    stage2_s = max(read_s, probe_s)
    return {
        "distinct": distinct,
        "windows": len(windows),
        "read_tb": read_bytes / 1e12,
        "read_min": read_s / 60,
        "probe_min": probe_s / 60,
        "stage2_min": stage2_s / 60,
        "reference_h": reference_s / 3600,
        "fraction": stage2_s / reference_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--read-gb-s", type=float, default=2.7, help="stage-2 reader rate")
    parser.add_argument("--hop", type=int, default=8)
    parser.add_argument("--heads-per-fold", type=int, default=1, help="grid points (x2 if inner)")
    parser.add_argument("--hbm-tb-s", type=float, default=4.8, help="GPU memory bandwidth")
    parser.add_argument("--mfu", type=float, default=0.5, help="reference encoder's bf16 MFU")
    parser.add_argument("--peak-tflops", type=float, default=989.4)
    args = parser.parse_args()
    print(
        f"reader {args.read_gb_s} GB/s, hop {args.hop}, {args.heads_per_fold} head(s) per fold, "
        f"HBM {args.hbm_tb_s} TB/s; reference at {args.mfu:.0%} of {args.peak_tflops} TFLOP/s\n"
    )
    print(
        "| dataset | clips read per video·epoch | read (TB) | read (min) | probe compute (min) "
        "| stage 2 (min) | reference (GPU-h) | stage 2 / reference |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, (videos, frames) in DATASETS.items():
        p = project(videos, frames, args)
        print(
            f"| {name} | {p['distinct']} of {p['windows']} | {p['read_tb']:.2f} | "
            f"{p['read_min']:.0f} | {p['probe_min']:.1f} | {p['stage2_min']:.0f} | "
            f"{p['reference_h']:.1f} | 1/{1 / p['fraction']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
