"""Clips and disk of DFEW, FERV39k and MAFW under each `--protocol`, from the real frame counts.

python benchmarks/protocol_costs.py --annotations DFER-CLIP/annotation   # prints a Markdown table

The frame count of every single-label clip comes from DFER-CLIP's public annotation files
(`<path> <frames> <label>` per line; DFEW and MAFW: set 1 train + test, every clip once; FERV39k:
train + test). Each count is put through `vjfer.clips.plan_clips` (evaluation clips) and, for the
loaders' plans, `vjfer.clips.train_draws` (the cached training draws, identical draws stored once)
with the preset's frame step, so the figures are what `vjfer extract` would store. Sizes at
ViT-H/16-384 (N = 4608, D = 1280, fp16, one view) via `vjfer.store.StoreFormat.clip_nbytes`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vjfer.clips import DRAW_PLANS, plan_clips, train_draws
from vjfer.protocols import PROTOCOLS
from vjfer.store import StoreFormat

FILES = {  # dataset -> annotation files holding every clip once
    "dfew": ("DFEW_set_1_train.txt", "DFEW_set_1_test.txt"),
    "ferv39k": ("FERV39K_train.txt", "FERV39K_test.txt"),
    "mafw": ("MAFW_set_1_train.txt", "MAFW_set_1_test.txt"),
}
TOKENS, DIM = 4608, 1280  # ViT-H/16 at 384: 8 x 24 x 24 tokens of 1280


def frame_counts(folder: Path, dataset: str) -> dict[str, int]:
    """Clip path -> frame count, from the dataset's annotation files."""
    counts = {}
    for name in FILES[dataset]:
        for line in (folder / name).read_text().splitlines():
            if line.strip():
                path, frames, _ = line.split()
                counts[path] = int(frames)
    return counts


def clips_of(counts: dict[str, int], dataset: str, protocol: str, draws: int) -> tuple[int, int]:
    """(evaluation clips, training draws) the preset stores for these videos."""
    preset = PROTOCOLS[protocol]
    step = preset.frame_step(dataset) if preset.plan == "stride" else None
    evaluation = training = 0
    for video_id, n in counts.items():
        evaluation += len(plan_clips(n, preset.plan, 8, step))
        if preset.plan in DRAW_PLANS:
            training += len(train_draws(n, preset.plan, step, draws, 0, video_id))
    return evaluation, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, required=True, help="DFER-CLIP annotation/")
    parser.add_argument("--draws", type=int, default=8, help="--train-draws (default 8)")
    args = parser.parse_args()
    values, scales = StoreFormat.parse("fp16").clip_nbytes(1, TOKENS, DIM)
    per_clip = values + scales
    print(
        "| dataset | videos | protocol | evaluation clips | per video | training draws "
        "| total clips | fp16 TB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for dataset in FILES:
        counts = frame_counts(args.annotations, dataset)
        for protocol in PROTOCOLS:
            evaluation, training = clips_of(counts, dataset, protocol, args.draws)
            total = evaluation + training
            print(
                f"| {dataset} | {len(counts):,} | {protocol} | {evaluation:,} "
                f"| {evaluation / len(counts):.2f} | {training:,} | {total:,} "
                f"| {total * per_clip / 1e12:.2f} |"
            )


if __name__ == "__main__":
    main()
