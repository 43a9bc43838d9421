"""Shared pytest set-up and helpers: CUDA-marked tests skip, with the reason printed, on machines
without a GPU; `make_entries` builds learnable token caches for the probe tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vjfer.cache import VideoEntry
from vjfer.clips import plan_clips
from vjfer.datasets import load_folds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(
        reason="needs a CUDA GPU; none is visible (torch.cuda.is_available() is False)"
    )
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


D, GRID, CLASSES = 32, (2, 2, 2), 8  # N = 8 tokens per clip


def make_entries(videos_per_class=1, actors=range(1, 25), views=1, seed=0, folds=None):
    """Videos whose tokens carry the class as a mean shift (plus an actor shift and noise)."""
    rng = np.random.default_rng(seed)
    folds = folds or load_folds("ravdess")
    prototypes = rng.normal(size=(CLASSES, D)) * 1.5
    entries = []
    for actor in actors:
        actor_shift = rng.normal(size=D) * 0.5
        for label in range(CLASSES):
            for rep in range(videos_per_class):
                n_frames = int(rng.integers(70, 130))
                frames = plan_clips(n_frames, "windows", hop=8)
                C = len(frames)
                tokens = (
                    rng.normal(size=(C, views, math.prod(GRID), D))
                    + prototypes[label]
                    + actor_shift
                )
                entries.append(VideoEntry(
                    video_id=f"{actor:02d}-{label}-{rep}", label=label, actor=actor, fold=folds[actor],
                    n_frames=n_frames, fps=30.0, frames=frames, tokens=tokens.astype(np.float16),
                ))  # fmt: skip
    return entries


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


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_height: int = 200) -> None:
    """`path` is a PNG that decodes to an RGB(A) image at least `min_height` pixels each way."""
    import matplotlib.image  # only the figure tests pay for matplotlib

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] >= min_height and image.shape[1] >= min_height


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`run_demo` once per session (one epoch: the plumbing, not accuracy): (folder, DemoResult)."""
    from vjfer.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, config=DemoConfig(epochs=1))


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny shapes run fastest so, and CI machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args, ok: bool = True) -> str:
    """`vjfer ARGS...` in-process (click's runner); its output, asserting exit 0 unless `ok=False`."""
    from click.testing import CliRunner

    from vjfer.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def tiny_vjepa2(directory: Path, layers: int) -> Path:
    """A seeded, random V-JEPA 2 checkpoint in the Hugging Face layout (crop 32, 16-pixel patches,
    4 frames, width 32) with `layers` encoder blocks, saved to `directory`."""
    import transformers

    config = transformers.VJEPA2Config(
        crop_size=32, patch_size=16, frames_per_clip=4, hidden_size=32, num_attention_heads=2,
        num_hidden_layers=layers, pred_hidden_size=16, pred_num_attention_heads=2,
        pred_num_hidden_layers=1, num_pooler_layers=1,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.VJEPA2Model(config).save_pretrained(directory)
    return directory
