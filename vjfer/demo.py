"""The embedded default: the whole pipeline on generated data with the tiny encoder, on the CPU.

`vjfer demo` generates small RAVDESS- and CREMA-D-like datasets (`vjfer.synthetic`), extracts them
with the seeded random `tiny` encoder, probes all five folds, runs both cross-dataset directions,
writes the report and predicts one video: every step the library call the real pipeline uses. The
encoder is random, so what the probes learn comes from the generated faces' class signal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vjfer.cross import CrossResult, cross_evaluate
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig, extract
from vjfer.predict import Prediction, format_prediction, predict_videos
from vjfer.probe.config import TrainConfig
from vjfer.probe.run import run_probe
from vjfer.report import build_report
from vjfer.results import RunSummary, mean_of, read_summary
from vjfer.synthetic import demo_datasets
from vjfer.tables import format_percent

log = logging.getLogger(__name__)

DATASETS = ("ravdess", "crema-d")  # the demo's two generated datasets


@dataclass(frozen=True)
class DemoConfig:
    """Sizes chosen so the demo finishes in about two minutes on 2 CPU cores."""

    encoder: str = "tiny"
    hop: int = 8
    batch_size: int = 16  # clips per encoder call
    workers: int = 1  # decoding processes beside the encoder
    epochs: int = 20  # as the reference
    lr: float = 3e-3  # with D = 64, a higher rate than the reference's 1e-3 ...
    num_heads: int = 4  # ... and 16-dim heads instead of 16 heads of 4 dims
    probe_batch_size: int = 4
    seed: int = 0
    # torch threads for the stages after extraction (None: torch's default, one per core). Two
    # threads beside one busy process on two cores wait for each other at every operator
    # (benchmarks/contention.py: a probe step 37x slower, the demo 4.65x its idle time); one
    # thread is not slowed so (1.60x). One thread also makes the demo's numbers the same on any
    # machine; they differ from a two-thread run's in float rounding (1e-7 in the weights).
    threads: int | None = 1

    def extract_config(self, dataset: str, root: Path, out: Path) -> ExtractConfig:
        """How the demo extracts `dataset` from `root` into `out/cache`."""
        return ExtractConfig(
            dataset=dataset,
            root=root,
            encoder=self.encoder,
            cache_root=out / "cache",
            hop=self.hop,
            batch_size=self.batch_size,
            workers=self.workers,
            device="cpu",
        )

    def train_config(self) -> TrainConfig:
        """How the demo trains its probes."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            num_heads=self.num_heads,
            batch_size=self.probe_batch_size,
            seed=self.seed,
            device="cpu",
            num_workers=0,
        )


@dataclass
class DemoResult:
    out: Path
    data: dict[str, Path]
    caches: dict[str, Path]
    runs: dict[str, Path]
    summaries: dict[str, RunSummary]  # dataset -> probe summary (summary.json)
    cross: list[CrossResult]  # per direction and handling
    report: list[Path]
    prediction: Prediction  # of one generated video
    seconds: dict[str, float]


def run_demo(out: str | Path, seed: int = 0, config: DemoConfig | None = None) -> DemoResult:
    """Run every stage into `out` (data/, cache/, runs/, report/); rerunning resumes extraction
    and replaces the runs."""
    config = config or DemoConfig(seed=seed)
    out = Path(out)
    seconds: dict[str, float] = {}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[name] = now - tick
        tick = now

    data = demo_datasets(out / "data", seed=config.seed)
    lap("generate")
    caches = {}
    for dataset in DATASETS:
        caches[dataset] = extract(config.extract_config(dataset, data[dataset], out)).cache_dir
    lap("extract")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        return _after_extraction(out, data, caches, config, seconds, lap)
    finally:
        torch.set_num_threads(threads)


def _after_extraction(
    out: Path,
    data: dict[str, Path],
    caches: dict[str, Path],
    config: DemoConfig,
    seconds: dict[str, float],
    lap,
) -> DemoResult:
    """Probe, cross, report and predict: the demo's stages that read the caches."""
    runs, summaries = {}, {}
    for dataset in DATASETS:
        # a rerun trains the (cheap) probes again: "force" replaces the old run once done
        run = out / "runs" / f"{dataset}-{caches[dataset].name}-attentive"
        runs[dataset] = run_probe(caches[dataset], "all", config.train_config(), run, mode="force")
        summaries[dataset] = read_summary(runs[dataset])
    lap("probe")
    cross = []
    for source, target in (("ravdess", "crema-d"), ("crema-d", "ravdess")):
        for calm in ("drop", "merge"):
            cross.append(cross_evaluate(runs[source], caches[target], calm, device="cpu"))
    lap("cross")
    report = build_report([out / "runs"], out / "report", caches=caches, device="cpu")
    lap("report")
    example = sorted(data["ravdess"].rglob("*.mp4"))[0]
    prediction = predict_videos([example], runs["ravdess"], device="cpu")
    lap("predict")
    return DemoResult(out, data, caches, runs, summaries, cross, report, prediction, seconds)


def _pct(value) -> str:
    return "  n/a" if value is None else f"{format_percent(value, 1):>5}%"


def format_demo(result: DemoResult) -> str:
    """What `vjfer demo` prints: where everything is, the headline numbers, what to try next."""
    from vjfer.labels import num_classes

    lines = ["", "vjfer demo — generated data, tiny random encoder, CPU", ""]
    for dataset, summary in result.summaries.items():
        uar, war = (mean_of(summary, "pbv", m)["mean"] for m in ("uar", "war"))
        chance = 1 / num_classes(dataset)
        lines.append(
            f"{dataset:<8} 5-fold subject-independent, PBV: UAR {_pct(uar)}  WAR "
            f"{_pct(war)}  (chance {_pct(chance)})"
        )
    for cross in result.cross:
        mean = cross.summary["pbv"]
        lines.append(
            f"cross {cross.source} -> {cross.target} ({cross.calm}): UAR "
            f"{_pct(mean['uar']['mean'])}  WAR {_pct(mean['war']['mean'])}"
        )
    lines += ["", "prediction for one generated video:", format_prediction(result.prediction), ""]
    lines += [
        f"data     {result.out / 'data'}   (RAVDESS/CREMA-D names and codecs)",
        f"caches   {', '.join(str(p) for p in result.caches.values())}",
        f"runs     {result.out / 'runs'}   (per fold: probe.pt, predictions, metrics, confusion)",
        f"report   {result.out / 'report' / 'report.md'}   (tables and figures)",
        f"page     {result.out / 'report' / 'report.html'}   (the whole report, one self-contained "
        "file)",
        "time     "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
        + f"; total {sum(result.seconds.values()):.0f} s",
        "",
        "next: vjfer predict VIDEO --run " + str(result.runs["ravdess"]),
        "      vjfer extract --dataset ravdess --root RAVDESS_DIR --checkpoint vith16-384.pth.tar",
    ]
    return "\n".join(lines)


def run_frames_demo(
    out: str | Path, dataset: str, seed: int = 0, config: DemoConfig | None = None
) -> Path:
    """One field dataset end to end: a generated DFEW-, FERV39k- or MAFW-like tree in its release's
    layout (`vjfer.synthetic_frames`) -> extract -> probe every official fold -> report.
    Returns the report's folder."""
    from vjfer.synthetic_frames import FRAME_TREES

    config, out = config or DemoConfig(seed=seed), Path(out)
    if dataset not in FRAME_TREES:
        raise ConfigError(
            f"demo --dataset {dataset}: known frame-folder demos {sorted(FRAME_TREES)}"
        )
    root = FRAME_TREES[dataset](out / "data" / dataset, seed=config.seed)
    cache = extract(config.extract_config(dataset, root, out)).cache_dir
    run = out / "runs" / f"{dataset}-{cache.name}-attentive"
    run_probe(cache, "all", config.train_config(), run, mode="force")
    build_report([out / "runs"], out / "report", caches={dataset: cache}, device="cpu")
    return out / "report"


# ------------------------------------------------------------------------- `vjfer demo --bench`

BENCH_ENCODERS = ("tiny", "dinov2")  # two families: V-JEPA's architecture, an image model per frame
BENCH_RAVDESS_ACTORS = (2, 3, 10, 8, 1)  # one actor in each of the paper's five test folds


@dataclass(frozen=True)
class BenchDemoConfig:
    """The mini leaderboard's sizes: two tiny encoders × three probe families × generated
    RAVDESS- and DFEW-like data, in under a minute on one CPU core."""

    emotions: tuple[int, ...] = (1, 3, 5, 6)  # RAVDESS classes generated (all 8 are scored)
    dfew_clips_per_class: int = 3
    epochs: int = 5
    seed: int = 0
    threads: int | None = 1  # as DemoConfig.threads
    progress: bool = True

    def bench_config(self):
        from vjfer.bench import BenchConfig

        train = TrainConfig(
            epochs=self.epochs,
            lr=3e-3,
            num_heads=4,
            batch_size=4,
            seed=self.seed,
            device="cpu",
            num_workers=0,
        )
        return BenchConfig(train=train, progress=self.progress)


def tiny_dinov2(directory: Path, seed: int = 0) -> Path:
    """A tiny random DINOv2 (2 blocks of width 32, 32 px frames) saved as a Hugging Face directory
    with its image processor's config, as tests/test_image_encoders.py builds one; needs
    transformers (`pip install 'vjfer[hf]'`)."""
    import json

    from vjfer.encoders.hf import import_transformers

    transformers = import_transformers()
    torch.manual_seed(seed)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32)
    model = transformers.Dinov2Model(transformers.Dinov2Config(**sizes, patch_size=16, mlp_ratio=2))
    model.save_pretrained(directory)
    pre = {
        "image_processor_type": "BitImageProcessor",
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "size": {"shortest_edge": 36},
        "crop_size": {"height": 32, "width": 32},
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return directory


def bench_demo_data(out: Path, config: BenchDemoConfig) -> dict[str, Path]:
    """Generated RAVDESS-like (video files) and DFEW-like (frame folders) data under out/data."""
    from vjfer.synthetic import make_ravdess
    from vjfer.synthetic_frames import make_dfew

    ravdess = out / "data" / "ravdess"
    if not ravdess.exists():
        make_ravdess(
            ravdess,
            actors=BENCH_RAVDESS_ACTORS,
            emotions=config.emotions,
            modalities=(2,),
            vocal_channels=(1,),
            seed=config.seed,
        )
    dfew = out / "data" / "dfew"
    if not dfew.exists():
        make_dfew(dfew, clips_per_class=config.dfew_clips_per_class, frames=(20,), seed=config.seed)
    return {"ravdess": ravdess, "dfew": dfew}


def run_bench_demo(out: str | Path, config: BenchDemoConfig | None = None):
    """`vjfer demo --bench`: generate the data, extract it with both tiny encoders, and write the
    leaderboard (`vjfer.bench.run_bench`) into out/bench; returns the `BenchResult`."""
    from vjfer.bench import run_bench

    config, out = config or BenchDemoConfig(), Path(out)
    data = bench_demo_data(out, config)
    weights = out / "encoders" / "dinov2-tiny"
    if not (weights / "config.json").is_file():
        tiny_dinov2(weights, config.seed)
    caches = []
    for encoder in BENCH_ENCODERS:
        for dataset, root in data.items():
            extract_config = ExtractConfig(
                dataset=dataset,
                root=root,
                encoder=encoder,
                checkpoint=weights if encoder == "dinov2" else None,
                cache_root=out / "cache",
                batch_size=16,
                workers=0,
                device="cpu",
            )
            caches.append(extract(extract_config).cache_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads or threads)
    try:
        return run_bench(caches, out / "bench", config.bench_config())
    finally:
        torch.set_num_threads(threads)
