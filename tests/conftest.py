"""Shared pytest set-up and helpers: CUDA-marked tests skip, with the reason printed, on machines
without a GPU; `make_entries` makes learnable tokens; the `tiny_cache` fixture stores them as a
cache built once per test process and shared (`write_tiny_cache`: a cache of a test's own)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import subprocess
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
import pytest
import torch

from vjfer.cache import VideoEntry, build_cache
from vjfer.clips import plan_clips
from vjfer.datasets.folds import load_folds
from vjfer.store import Codec, StoreFormat
from vjfer.synthetic import write_video


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
                entries.append(
                    VideoEntry(
                        video_id=f"{actor:02d}-{label}-{rep}",
                        label=label,
                        actor=actor,
                        fold=folds[actor],
                        n_frames=n_frames,
                        fps=30.0,
                        frames=frames,
                        tokens=tokens.astype(np.float16),
                    )
                )
    return entries


PROBE_SETTINGS = {"encoder": "synthetic", "resolution": 64, "plan": "windows", "hop": 8}


def write_tiny_cache(
    directory: Path,
    *,
    entries: Iterable[VideoEntry] | None = None,
    settings: dict | None = None,
    dataset: str = "ravdess",
    shard_size: int = 64,
    store: str | None = None,
    failures: Iterable[dict] = (),
    **make,
) -> Path:
    """A cache at `directory` of `entries` (default: `make_entries(**make)`), with the settings
    `{"e": "x"}` unless given, stored in the `store` format (e.g. "int8") when given."""
    codec = Codec(StoreFormat.parse(store), GRID) if store else None
    entries = make_entries(**make) if entries is None else entries
    settings = {"e": "x"} if settings is None else settings
    return build_cache(
        directory,
        settings,
        entries,
        dataset=dataset,
        grid=GRID,
        shard_size=shard_size,
        failures=tuple(failures),
        codec=codec,
    )


def _digests(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """`write_tiny_cache`'s cache for the same arguments, built once per test process and shared by
    every test that asks for it, so no test may change it (each is compared byte for byte at the
    end of the session): (**arguments) -> directory. Given `entries`, it builds a new one."""
    built: dict[str, Path] = {}
    digests: dict[str, dict[str, str]] = {}

    def get(**args) -> Path:
        if "entries" in args:
            return write_tiny_cache(tmp_path_factory.mktemp("tiny-cache") / "c", **args)
        named = {k: list(v) if isinstance(v, range) else v for k, v in args.items()}
        key = json.dumps(named, sort_keys=True, default=str)
        if key not in built:
            built[key] = write_tiny_cache(tmp_path_factory.mktemp("tiny-cache") / "c", **args)
            digests[key] = _digests(built[key])
        return built[key]

    yield get
    for key, directory in built.items():
        assert _digests(directory) == digests[key], f"a test changed the shared tiny cache {key}"


@pytest.fixture(scope="session")
def cache_dir(tiny_cache) -> Path:
    """The probe tests' cache: `make_entries()` (24 actors x 8 classes, one video each) in shards of
    50 videos, under a synthetic encoder's settings."""
    return tiny_cache(settings=PROBE_SETTINGS, shard_size=50)


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


def once_per_session(tmp_path_factory, name: str, build: Callable[[Path], object]):
    """`build(folder)` once for the whole test session, however many pytest-xdist workers ask:
    the first builds under a lock in the folder the workers share, the others wait and read its
    pickled result (so a fixture two test files use is not paid twice with `--dist loadfile`).
    What `build` writes must be read-only to the tests."""
    import pickle

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, done = shared / name, shared / f"{name}.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.is_file():
            out.mkdir(exist_ok=True)
            done.write_bytes(pickle.dumps(build(out)))
    return pickle.loads(done.read_bytes())


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`run_demo` once per session (one epoch: the plumbing, not accuracy): (folder, DemoResult)."""
    from vjfer.demo import DemoConfig, run_demo

    def build(out: Path):
        return out, run_demo(out, config=DemoConfig(epochs=1))

    return once_per_session(tmp_path_factory, "demo", build)


@pytest.fixture
def tmpfs(tmp_path):
    """A 200 KB tmpfs (needs root and mount permission; skipped elsewhere)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a tmpfs needs root and mount permission")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tiny shapes run fastest so, and CI machines are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args, ok: bool = True) -> str:
    """`vjfer ARGS...` in-process (click's runner); its output, asserting exit 0 unless
    `ok=False`."""
    from click.testing import CliRunner

    from vjfer.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


def encoder_pipeline(tmp_path: Path, name: str, checkpoint: Path, *extract: object) -> dict:
    """A new encoder through every command, as a user runs it on the demo's kind of data:
    `extract --encoder NAME --checkpoint FILE [extract...]` of RAVDESS- and CREMA-D-like videos,
    `probe --fold all`, `cross` RAVDESS -> CREMA-D, `report`, `predict` of one video. Checks
    what every encoder must give (each command's outputs, a prediction for every test video,
    the report naming the run and the encoder's family); returns the paths and outputs."""
    import pandas as pd

    from vjfer.encoders.registry import family_of
    from vjfer.synthetic import make_crema_d, make_ravdess

    roots = {"ravdess": tmp_path / "RAVDESS", "crema-d": tmp_path / "CREMA-D"}
    make_ravdess(roots["ravdess"], actors=(2, 3, 10, 8, 1), emotions=(1, 3), modalities=(2,))
    make_crema_d(roots["crema-d"], actors=(1001, 1002), emotions=("NEU", "HAP"), sentences=("TIE",))
    cache, runs, out = tmp_path / "cache", tmp_path / "runs", tmp_path / "report"
    cpu = ("--device", "cpu", "--no-progress")
    for dataset, root in roots.items():
        run_cli(
            "extract",
            "--dataset",
            dataset,
            "--root",
            root,
            "--encoder",
            name,
            "--checkpoint",
            checkpoint,
            "--cache",
            cache,
            "--workers",
            "0",
            *extract,
            *cpu,
        )
    (manifest,) = cache.glob(f"ravdess/{name}-*/manifest.json")
    fold = ("--fold", "all", "--epochs", "1", "--num-workers", "0")
    run_cli("probe", "--dataset", "ravdess", "--cache", manifest.parent, "--out", runs, *fold, *cpu)
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["folds"] == [1, 2, 3, 4, 5]
    predicted = [pd.read_csv(run_dir / f"fold-{k}" / "video_predictions.csv") for k in range(1, 6)]
    assert sum(len(p) for p in predicted) == 10  # each of the 10 videos in its test fold
    run_cli(
        "cross",
        "--train",
        "ravdess",
        "--test",
        "crema-d",
        "--run",
        run_dir,
        "--cache",
        cache,
        "--calm",
        "drop",
        "--device",
        "cpu",
    )
    cross = json.loads(next(run_dir.glob("cross/*/summary.json")).read_text())
    assert cross["n_videos"] == 4 and len(cross["folds"]) == 5
    run_cli("report", runs, "--out", out, "--cache", cache)
    family = family_of(name)
    table2, table4 = pd.read_csv(out / "table2.csv"), pd.read_csv(out / "table4.csv")
    assert set(table2["Run"]) == {run_dir.name} and name in run_dir.name
    assert set(table2["Family"]) == {family} and set(table4["Family"]) == {family}
    assert family in (out / "report.html").read_text()
    video = sorted(roots["ravdess"].rglob("*.mp4"))[0]
    args = ("--run", run_dir, "--checkpoint", checkpoint, "--json", "--device", "cpu")
    (row,) = json.loads(run_cli("predict", video, *args))["videos"]
    assert sum(row[k] for k in row if k.startswith("prob_")) == pytest.approx(1.0, abs=1e-4)
    manifest_data = json.loads(manifest.read_text())
    return {"manifest": manifest_data, "run": run_dir, "report": out, "prediction": row}


def tiny_vjepa2(directory: Path, layers: int) -> Path:
    """A seeded, random V-JEPA 2 checkpoint in the Hugging Face layout (crop 32, 16-pixel patches,
    4 frames, width 32) with `layers` encoder blocks, saved to `directory`."""
    import transformers

    config = transformers.VJEPA2Config(
        crop_size=32,
        patch_size=16,
        frames_per_clip=4,
        hidden_size=32,
        num_attention_heads=2,
        num_hidden_layers=layers,
        pred_hidden_size=16,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
        num_pooler_layers=1,
    )
    torch.manual_seed(0)
    transformers.VJEPA2Model(config).save_pretrained(directory)
    return directory


@functools.lru_cache(maxsize=4)
def one_frame_video(fmt: Literal["mp4", "flv"]) -> bytes:
    """A valid one-frame 16x16 video, copied into every file of a name set."""
    buffer = io.BytesIO()
    write_video(buffer, np.full((1, 16, 16, 3), 128, np.uint8), Fraction(30), fmt)
    return buffer.getvalue()
