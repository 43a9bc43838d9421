"""Shared pytest set-up: CUDA-marked tests skip, with the reason printed, on machines without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def _write_truncated_faststart(path: Path, frames: int = 76, keep: float = 0.2) -> None:
    """An H.264 mp4 with its index first (faststart), cut to `keep` of its bytes: the index lists
    every frame, only the first few decode (a download that stopped)."""
    full = path.with_suffix(".full.mp4")
    rng = np.random.default_rng(1)
    with av.open(str(full), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "bframes": "2"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture(scope="session")
def truncated_mp4() -> Callable[..., None]:
    """Writes a truncated faststart H.264 mp4: (path, frames=76, keep=0.2) -> None."""
    return _write_truncated_faststart
