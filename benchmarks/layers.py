"""Extraction cost of `--layers` with 4 blocks vs the output alone, on a 4-block tiny encoder (CPU).

python benchmarks/layers.py   # prints one JSON line: median seconds of each and their ratio

32 generated RAVDESS videos; the two settings alternate, 3 runs each, each into a fresh cache, so
machine noise falls on both alike.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vjfer.encoders import load_encoder, registry
from vjfer.encoders.vjepa import ViTConfig
from vjfer.extract import ExtractConfig, extract, plan_extraction
from vjfer.synthetic import make_ravdess


def timed(root: Path, cache_root: Path, encoder, layers) -> float:
    config = ExtractConfig(
        dataset="ravdess",
        root=root,
        cache_root=cache_root,
        encoder="tiny",
        workers=0,
        layers=layers,
    )
    start = time.perf_counter()
    extract(config, progress=False, plan=plan_extraction(config, encoder=encoder))
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    spec = registry.ENCODERS["tiny"]
    four = ViTConfig(embed_dim=64, depth=4, num_heads=4, img_size=64)
    registry.ENCODERS["tiny"] = type(spec)("tiny", spec.factory, spec.weights_source, four)
    encoder = load_encoder("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ravdess"
        make_ravdess(
            root,
            actors=(1, 2, 3, 4),
            emotions=tuple(range(1, 9)),
            vocal_channels=(1,),
            modalities=(2,),
        )
        timed(root, Path(tmp) / "warm", encoder, None)  # page cache and allocator warm
        ones, fours = [], []
        for r in range(3):
            ones.append(timed(root, Path(tmp) / f"one{r}", encoder, None))
            fours.append(timed(root, Path(tmp) / f"four{r}", encoder, (-4, -3, -2, -1)))
        one, four_s = statistics.median(ones), statistics.median(fours)
    print(
        json.dumps(
            {
                "one_layer_s": round(one, 2),
                "four_layers_s": round(four_s, 2),
                "ratio": round(four_s / one, 3),
                "loadavg": os.getloadavg(),
            }
        )
    )


if __name__ == "__main__":
    main()
