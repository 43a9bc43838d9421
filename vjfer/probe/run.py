"""A probe run on disk: train every fold of a cache in one pass and write what each fold produced.

`run_request` is `vjfer probe` as one function; `run_probe` opens a cache, checks it is the one
asked for, and calls `train_folds`, which trains and evaluates every fold (and every head of a grid)
in one pass (`vjfer.probe.folds.train_grid`) and writes the run directory: config.json,
summary.json, summary.md and fold-K/ (probe.pt, predictions, metrics.json, confusions), and with a
grid selection.csv, grid_test_results.csv, fold-K/selected/ and fold-K/heads/ (docs/stage2.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import cast, get_args

import pandas as pd
import torch

import vjfer
from vjfer.cache import Cache, open_cache
from vjfer.cache.format import Coverage
from vjfer.datasets.folds import fold_numbers
from vjfer.env import environment, resolve_device
from vjfer.errors import CacheError, CheckpointError, ConfigError
from vjfer.files import check_writable, read_json_object
from vjfer.labels import check_dataset
from vjfer.probe.config import (
    RUN_ONLY,
    OptionError,
    ProbeKind,
    TrainConfig,
    check_numbers,
    check_subset,
)
from vjfer.probe.curve import few_shot_curve, few_shot_lines
from vjfer.probe.folds import (
    GridPoint,
    GridResult,
    apply_splits,
    check_folds,
    failed_text,
    make_grid,
    select_modality,
    train_grid,
)
from vjfer.probe.layer import ALL, CONCAT, LayerChoice, layer_axis
from vjfer.probe.model import PROBES, probe_checkpoint
from vjfer.probe.resume import CHECKPOINT, PassCheckpoint, RunMode, publish_run, staged_run
from vjfer.probe.summary import format_run_summary, summarise_folds
from vjfer.probe.train import FoldResult
from vjfer.results import FamilySummary, LayerSummary, RunSummary, Selected, write_json
from vjfer.runs import one_cache
from vjfer.schemas import RunConfig
from vjfer.store import check_store_folds
from vjfer.tables import METRIC_COLUMNS, format_percent

log = logging.getLogger(__name__)


def config_dict(config: TrainConfig) -> dict:
    """asdict(config) with JSON types (betas as a list); `probe_depth` and `knn_k` only when not
    1, `shots` and `train_fraction` only when set and `batch_heads` only when on, so runs without
    them record what they always did."""
    out = asdict(config)
    out["betas"] = list(config.betas)
    for name, default in (
        ("probe_depth", 1),
        ("knn_k", 1),
        ("shots", None),
        ("train_fraction", None),
        ("batch_heads", False),
    ):
        if out[name] == default:  # new settings: recorded only when not at default
            del out[name]
    return out


def cache_description(cache: Cache) -> dict:
    """What a run records about the cache it read (enough to refuse a different one later)."""
    return {
        "path": str(cache.path),
        "dataset": cache.dataset,
        "fingerprint": cache.fingerprint,
        "settings": cache.settings,
        "grid": list(cache.grid),
        "embed_dim": cache.embed_dim,
        "num_views": cache.num_views,
    }


def _confusion_frame(matrix: list[list[int]], names) -> pd.DataFrame:
    frame = pd.DataFrame(matrix, index=list(names), columns=list(names))
    frame.index.name = "truth\\predicted"
    return frame


def write_fold(result: FoldResult, directory: Path, cache: Cache, config: TrainConfig) -> None:
    """Write fold-K/: probe.pt, config.json, clip_predictions.csv, video_predictions.csv,
    metrics.json, confusion.csv (PBV), confusion_mv.csv, confusion_clip.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    names = list(cache.class_names)
    meta = {
        "probe": config.probe,
        "embed_dim": cache.embed_dim,
        "num_classes": len(names),
        "num_heads": config.num_heads,
        **({"probe_depth": config.probe_depth} if config.probe_depth != 1 else {}),
        **({"knn_k": config.knn_k} if config.probe == "knn" else {}),
        "class_names": names,
        "dataset": cache.dataset,
        "fold": result.fold,
        "config": config_dict(config),
        "cache": cache_description(cache),
        "encoder": cache.settings.get("encoder"),
        "vjfer_version": vjfer.__version__,
    }
    ckpt_meta = dict(meta)
    if (basis := cache.pca_basis()) is not None:  # predict projects new tokens on it
        ckpt_meta["store_pca_basis"] = {
            "basis": torch.from_numpy(basis[0]),
            "mean": torch.from_numpy(basis[1]),
        }
    torch.save(probe_checkpoint(result.probe, ckpt_meta), directory / "probe.pt")
    write_json(directory / "config.json", {k: v for k, v in meta.items() if k != "class_names"})
    result.clips.to_csv(directory / "clip_predictions.csv", index=False, float_format="%.6g")
    result.videos.to_csv(directory / "video_predictions.csv", index=False, float_format="%.6g")
    write_json(directory / "metrics.json", {**result.metrics, "history": result.history})
    for voting, suffix in (("pbv", ""), ("mv", "_mv"), ("clip", "_clip")):
        frame = _confusion_frame(result.metrics[voting]["confusion"], names)
        frame.to_csv(directory / f"confusion{suffix}.csv")


GRID_WARNING = (
    "# Test-fold scores of every grid point. Picking a row by these numbers selects on the test "
    "fold and is not a valid result; the valid choice is in selection.csv (inner validation).\n"
)


def _write_grid(result: GridResult, out_dir: Path, cache: Cache, config: TrainConfig) -> None:
    """selection.csv, grid_test_results.csv, fold-K/selected/ and fold-K/heads/<point>/."""
    selection = pd.DataFrame(result.inner)
    selection["selected"] = [
        result.selected[k] == h for k, h in zip(selection["fold"], selection["head"], strict=True)
    ]
    selection.to_csv(out_dir / "selection.csv", index=False, float_format="%.6g")
    rows = []
    for (k, name), fold in sorted(result.results.items()):
        rows.append(
            {
                "fold": k,
                "head": name,
                **{f"{v}_{s}": fold.metrics[v][s] for v in ("pbv", "mv") for s in METRIC_COLUMNS},
            }
        )
        heads = out_dir / f"fold-{k}" / "heads" / name
        heads.mkdir(parents=True, exist_ok=True)
        fold.videos.to_csv(heads / "video_predictions.csv", index=False, float_format="%.6g")
        write_json(heads / "metrics.json", {**fold.metrics, "history": fold.history})
    rows += [
        {
            "fold": int(f["head"].split("/")[0].removeprefix("fold")),
            "head": f["head"].split("/")[-1],
            "failed": failed_text(f),
        }
        for f in result.failed
        if "/inner" not in f["head"]
    ]
    with open(out_dir / "grid_test_results.csv", "w", encoding="utf-8") as f:
        f.write(GRID_WARNING)
        pd.DataFrame(rows).to_csv(f, index=False, float_format="%.6g")
    for k in result.folds:
        point = next(p for p in result.grid if p.name == result.selected[k])
        write_fold(result.chosen(k), out_dir / f"fold-{k}" / "selected", cache, point.apply(config))


def videos_digest(cache: Cache) -> str:
    """sha256 of the cache's per-video table as a pass reads it (ids, labels, actors, folds, clip
    counts): two caches of one fingerprint but other videos, or other folds, differ in it."""
    columns = [c for c in ("video_id", "label", "actor", "fold", "n_clips") if c in cache.videos]
    table = cache.videos[columns].astype(str).to_csv(index=False)
    return hashlib.sha256(table.encode("utf-8")).hexdigest()


def tokens_digest(cache: Cache) -> str:
    """sha256 over every shard's stored per-clip checksums: a cache re-extracted under the same
    fingerprint whose tokens changed (a source file replaced and re-encoded) differs in it."""
    digest = hashlib.sha256()
    for shard in sorted(s["name"] for s in cache.manifest["shards"]):
        digest.update(shard.encode() + cache.chunks(shard).checksums.tobytes())
    return digest.hexdigest()


def _checkpoint(
    work: Path, cache: Cache, folds: Sequence[int], config: TrainConfig, grid: Sequence[GridPoint]
) -> PassCheckpoint:
    """The pass's checkpoint in the run's staging folder, with what a resume must match."""
    settings = {k: v for k, v in config_dict(config).items() if k not in RUN_ONLY}
    identity = {
        "train": settings,
        "folds": list(folds),
        "grid": [p.record() for p in grid],
        "cache_fingerprint": cache.fingerprint,
        "dataset": cache.dataset,
        "cache_videos": videos_digest(cache),
        "clip_checksums": tokens_digest(cache),  # sorts after cache_videos, named first on a diff
    }
    return PassCheckpoint(work / CHECKPOINT, identity, config.checkpoint_every)


def _refuse_other_cache(work: Path, cache: Cache) -> None:
    """An interrupted run continues only on the cache it was trained on (its config.json says
    which): CheckpointError naming both, before anything of the staged run is rewritten."""
    if not (work / "config.json").is_file():
        return
    was = read_json_object(work / "config.json", CheckpointError, schema=RunConfig)["cache"]
    if was["fingerprint"] != cache.fingerprint:
        raise CheckpointError(
            f"{work} was trained on another cache: {was['path']} (fingerprint "
            f"{was['fingerprint'][:12]}), not {cache.path} (fingerprint "
            f"{cache.fingerprint[:12]}); resume with that cache, or --force to "
            "start over"
        )


def _summary(
    result: GridResult,
    cache: Cache,
    folds: Sequence[int],
    config: TrainConfig,
    splits: str,
    coverage: Coverage,
) -> RunSummary:
    """summary.json's content: the reported head's scores, the selected head's and, with heads
    on several layers, one entry per layer."""
    summary = RunSummary(
        dataset=cache.dataset,
        splits=splits,
        probe=config.probe,
        cache_fingerprint=cache.fingerprint,
        head=result.default,
        plan=result.plan,
        pass_seconds=sum(e["seconds"] for e in result.pass_epochs),
        coverage=str(coverage),
        failed_heads=result.failed,
        class_names=list(cache.class_names),
        **summarise_folds([result.reported(k).metrics for k in folds]),
    )
    if len(result.grid) > 1:
        summary["selected"] = Selected(
            selection={str(k): result.selected[k] for k in folds},
            **summarise_folds([result.chosen(k).metrics for k in folds]),
        )
    if points := result.layer_points():  # a per-layer table: which depth carries expression
        summary["layers"] = [
            LayerSummary(
                layer=p.layer,
                head=p.name,
                **summarise_folds([result.results[(k, p.name)].metrics for k in folds]),
            )
            for p in points
            if all((k, p.name) in result.results for k in folds)
        ]  # a diverged head has none
    if families := result.families():  # a Table II row per family: its reported, its selected
        summary["families"] = [_family(result, family, folds) for family in families]
    if curve := few_shot_curve(result, config.probe):  # only with --shots / --train-fraction
        summary["few_shot"] = curve
    return summary


def _family(result: GridResult, family: str, folds: Sequence[int]) -> FamilySummary:
    """One family's entry of summary.json: its reported head's scores and its selected heads'."""
    head, selected = result.family_default(family).name, result.family_selected(family)
    return FamilySummary(
        probe=family,
        head=head,
        selected=Selected(
            selection={str(k): selected[k] for k in folds},
            **summarise_folds([result.results[(k, selected[k])].metrics for k in folds]),
        ),
        **summarise_folds([result.results[(k, head)].metrics for k in folds]),
    )


def _family_lines(summary: RunSummary) -> str:
    """summary.md's table of a several-family run: per family, its reported head's and its
    selected heads' video-level UAR and WAR (mean ± std over folds, %); "" otherwise."""
    if "families" not in summary:
        return ""

    def cell(entry, voting: str, metric: str) -> str:
        agg = entry["mean"][voting][metric]
        std = "" if agg["std"] is None else f" ± {format_percent(agg['std'])}"
        return format_percent(agg["mean"]) + std

    lines = [
        "",
        "Probe families (each family's reference-default head, and the heads its inner "
        "validation selects among that family's points; video level, mean ± std over folds, %):",
        "",
        "| family | head | PBV UAR | PBV WAR | MV UAR | MV WAR | selected PBV UAR "
        "| selected PBV WAR |",
        "|---" * 8 + "|",
    ]
    for f in summary["families"]:
        ours = [cell(f, v, m) for v in ("pbv", "mv") for m in ("uar", "war")]
        chosen = [cell(f["selected"], "pbv", m) for m in ("uar", "war")]
        lines.append(f"| {f['probe']} | {f['head']} | " + " | ".join(ours + chosen) + " |")
    return "\n".join(lines) + "\n"


def _write_summary(work: Path, summary: RunSummary, failed: list[dict]) -> None:
    """summary.json and summary.md (with the probe families and the failed heads, if any)."""
    write_json(work / "summary.json", summary)
    lines = "".join(f"\n- {failed_text(f)}" for f in failed)
    lines = f"\nFailed heads (loss not finite; never selected):{lines}\n" if lines else ""
    text = format_run_summary(summary) + _family_lines(summary) + few_shot_lines(summary) + lines
    (work / "summary.md").write_text(text, encoding="utf-8")


def train_folds(
    cache: Cache,
    folds: Sequence[int],
    config: TrainConfig,
    out_dir: str | Path,
    progress: bool = True,
    grid: Sequence[GridPoint] | None = None,
    mode: RunMode = "new",
    splits: str | None = None,
    modality: int | None = None,
) -> RunSummary:
    """Train and evaluate every fold (and grid point) in one pass, writing `out_dir/fold-K/` per
    fold and `config.json`, `summary.json`, `summary.md` in `out_dir`. Returns the summary.

    The run is written into `<out_dir>.partial/` and renamed when complete (`vjfer.probe.resume`):
    `mode` "new" refuses an existing run, "force" replaces it, "resume" continues an interrupted
    one from its last checkpoint, on the cache it was trained on only. `splits`: the fold
    protocol in use, as `open_run_cache` checked it (default: `folds.check_folds` of the cache),
    recorded in config.json and the summary; `modality`: the RAVDESS modality `open_run_cache`
    kept, recorded in config.json when set."""
    out_dir = Path(out_dir)
    splits = splits or check_folds(cache)
    check_store_folds(cache, list(folds))
    grid = list(grid) if grid else [GridPoint.of(config)]
    with staged_run(out_dir, mode) as work:  # the run's lock, held until it is published
        if mode == "resume":
            _refuse_other_cache(work, cache)
        coverage = cache.coverage()
        log.info("%s: %s", cache.path, coverage)
        run = {
            "train": config_dict(config),
            "folds": list(folds),
            "splits": splits,
            **({"modality": modality} if modality is not None else {}),  # only when set
            "cache": cache_description(cache),
            "grid": [p.record() for p in grid],
            "coverage": asdict(coverage),
            "environment": environment(),
            "vjfer_version": vjfer.__version__,
        }
        write_json(work / "config.json", run)
        checkpoint = _checkpoint(work, cache, folds, config, grid)
        result = train_grid(cache, folds, config, grid, progress=progress, checkpoint=checkpoint)
        for k in folds:
            fold = result.reported(k)
            write_fold(fold, work / f"fold-{k}", cache, grid[0].apply(config))
            log.info(
                "fold %d: PBV UAR %.4f WAR %.4f",
                k,
                fold.metrics["pbv"]["uar"],
                fold.metrics["pbv"]["war"],
            )
        if len(grid) > 1:
            _write_grid(result, work, cache, config)
        summary = _summary(result, cache, folds, config, splits, coverage)
        _write_summary(work, summary, result.failed)
        publish_run(work, out_dir)  # then drop the checkpoint: a kill in between loses nothing
        (out_dir / CHECKPOINT).unlink(missing_ok=True)
    return summary


def resolve_folds(cache: Cache, folds: str | int | Sequence[int]) -> list[int]:
    """ "all" -> every fold the cache holds (sorted); an int or ints -> checked against them."""
    present = fold_numbers(cache.videos["fold"].tolist())  # TRAIN_ONLY (0) is no test fold
    if folds == "all":
        return present
    wanted = [int(folds)] if isinstance(folds, (int, str)) else [int(k) for k in folds]
    if missing := [k for k in wanted if k not in present]:
        raise ConfigError(f"fold(s) {missing} not in cache {cache.path}; it holds folds {present}")
    return wanted


def run_name(
    dataset: str,
    cache_dir: str | Path,
    probe: str,
    folds: str | int | Sequence[int],
    grid_size: int = 1,
    seed: int = 0,
    splits: str | None = None,
    layers: Sequence[LayerChoice] = (),
    shots: Sequence[int] = (),
    fractions: Sequence[float] = (),
) -> str:
    """The directory name of a run under `vjfer probe --out`: one name per run setting, so a
    single-fold, grid, other-seed, other-layer or few-shot run never overwrites another:
    `<dataset>-<cache directory>-<probe>[-splits][-foldK[-L...]][-layerK[-K...]]`
    `[-shotsN[-N...]|-fractionF[-F...]][-gridN][-seedS]` (the default splits, seed 0, all folds,
    concat (every stored token) and every training video add nothing)."""
    name = f"{dataset}-{Path(cache_dir).name}-{probe}" + (f"-{splits}" if splits else "")
    if folds != "all":
        name += "-fold" + "-".join(map(str, [folds] if isinstance(folds, (int, str)) else folds))
    if list(layers) not in ([], [CONCAT]):
        name += "-layer" + "-".join(map(str, layers))
    name += "-shots" + "-".join(map(str, shots)) if shots else ""
    name += "-fraction" + "-".join(f"{f:g}" for f in fractions) if fractions else ""
    name += f"-grid{grid_size}" if grid_size > 1 else ""
    return name + (f"-seed{seed}" if seed else "")


def open_run_cache(
    cache: str | Path | Cache,
    *,
    splits: str | None = None,
    dataset: str | None = None,
    fingerprint: str | None = None,
    modality: int | None = None,
) -> tuple[Cache, str]:
    """The cache a run trains from, opened once (a `Cache` is taken as it is), its folds those of
    protocol `splits` (`folds.apply_splits`) and checked (`folds.check_folds`), its RAVDESS videos
    those of `modality` if given (`folds.select_modality`); refused if its dataset or
    fingerprint (a prefix suffices) is not the one asked for. Returns (cache, the fold protocol
    in use)."""
    cache = cache if isinstance(cache, Cache) else open_cache(cache)
    used = apply_splits(cache, splits)
    if dataset is not None and check_dataset(dataset) != cache.dataset:
        raise CacheError(
            f"cache {cache.path} holds {cache.dataset}, asked for {check_dataset(dataset)}"
        )
    select_modality(cache, modality, used)
    if fingerprint is not None and not cache.fingerprint.startswith(fingerprint):
        raise CacheError(
            f"cache {cache.path} has fingerprint {cache.fingerprint[:12]}…, asked for {fingerprint}"
        )
    log.info(
        "cache %s: every shard's structure and per-video table match the manifest; each clip "
        "this run reads is checked against its checksum as it is read; `vjfer cache verify "
        "%s` checks every clip",
        cache.path,
        cache.path,
    )
    return cache, check_folds(cache)


def run_probe(
    cache: str | Path | Cache,
    folds: str | int | Sequence[int],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    dataset: str | None = None,
    fingerprint: str | None = None,
    progress: bool = True,
    grid: Sequence[GridPoint] | None = None,
    splits: str | None = None,
    mode: RunMode = "new",
    modality: int | None = None,
) -> Path:
    """Train and evaluate `folds` ("all", K or [K, ...]) of a cache (a path, opened once, or an
    opened `Cache`) under the fold protocol `splits` (default: the dataset's first,
    `datasets.SPLITS`) into `out_dir` (`mode`: see `train_folds`), refusing a cache of another
    dataset or fingerprint (`open_run_cache`); `modality`: RAVDESS's 1 or 2 only. Returns
    out_dir."""
    cache, used = open_run_cache(
        cache, splits=splits, dataset=dataset, fingerprint=fingerprint, modality=modality
    )
    train_folds(
        cache,
        resolve_folds(cache, folds),
        config,
        out_dir,
        progress=progress,
        grid=grid,
        mode=mode,
        splits=used,
        modality=modality,
    )
    return Path(out_dir)


# ------------------------------------------------------------------------- `vjfer probe`: a request


@dataclass(frozen=True)
class ProbeRequest:
    """One `vjfer probe`: which cache, which folds and grid, the training options and where the
    run goes (`runs/<run_name>`). Values are checked here, so the Python API refuses what the
    command line refuses. Empty grid axes take the value of `config`."""

    cache: Path = Path("cache")  # a cache directory, or a folder holding exactly one that fits
    runs: Path = Path("runs")  # the runs folder
    config: TrainConfig = TrainConfig()
    folds: str | int | tuple[int, ...] = "all"  # "all", K or (K, ...)
    lrs: tuple[float, ...] = ()
    wds: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    # --layer values: block numbers (negative: from the end of the stored list), concat, all
    layers: tuple[LayerChoice, ...] = ()
    probes: tuple[str, ...] = ()  # --probe families: several train in the same pass
    ks: tuple[int, ...] = ()  # --k: the k-NN heads' neighbours
    shots: tuple[int, ...] = ()  # --shots: few-shot heads, videos per class ...
    fractions: tuple[float, ...] = ()  # ... or --train-fraction: a share of each class
    splits: str | None = None
    modality: int | None = None  # RAVDESS: 1 or 2 only (the peers' 6 folds use 2); None: both
    dataset: str | None = None
    fingerprint: str | None = None
    mode: RunMode = "new"
    progress: bool = True

    def __post_init__(self) -> None:
        c = self.config
        object.__setattr__(self, "cache", Path(self.cache))
        object.__setattr__(self, "runs", Path(self.runs))
        for name, default in (
            ("lrs", c.lr),
            ("wds", c.weight_decay),
            ("seeds", c.seed),
            ("layers", c.layer),
            ("probes", c.probe),
            ("ks", c.knn_k),
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)) or (default,))
        if isinstance(self.folds, int):
            object.__setattr__(self, "folds", (self.folds,))
        elif self.folds != "all":
            object.__setattr__(self, "folds", tuple(int(k) for k in self.folds))
        check_numbers(self.lrs, "--lr", 0.0, strict=True)
        check_numbers(self.wds, "--wd", 0.0)
        if bad := [v for v in self.probes if v not in PROBES]:
            raise OptionError("--probe", f"{bad[0]!r}: give {' or '.join(PROBES)}")
        object.__setattr__(self, "probes", tuple(dict.fromkeys(self.probes)))
        check_numbers(self.ks, "--k", 1)
        shots = self.shots or (() if c.shots is None else (c.shots,))
        fractions = self.fractions or (() if c.train_fraction is None else (c.train_fraction,))
        object.__setattr__(self, "shots", tuple(dict.fromkeys(shots)))
        object.__setattr__(self, "fractions", tuple(dict.fromkeys(fractions)))
        check_subset(self.shots, self.fractions)
        object.__setattr__(self, "ks", tuple(dict.fromkeys(int(k) for k in self.ks)))
        if len(self.probes) == 1:  # one family: the pass's own, as `--probe linear` always was
            object.__setattr__(self, "config", replace(c, probe=cast(ProbeKind, self.probes[0])))
        if bad := [v for v in self.layers if not isinstance(v, int) and v not in (CONCAT, ALL)]:
            raise OptionError("--layer", f"{bad[0]!r}: give a block number, concat or all")
        if self.modality not in (None, 1, 2):
            raise OptionError("--modality", f"{self.modality!r}: 1 (audio-video) or 2 (video-only)")
        if self.mode not in get_args(RunMode):
            raise OptionError("mode", f"{self.mode!r}: one of {get_args(RunMode)}")


def _check_request(request: ProbeRequest) -> None:
    """What a request can be refused for before a cache is read: `--in-memory gpu` without a
    GPU, a runs folder that cannot be written."""
    config = request.config
    if config.in_memory == "gpu" and resolve_device(config.device).type != "cuda":
        raise OptionError(
            "--in-memory",
            f"--in-memory gpu holds the training tokens on a GPU, and "
            f"the device here is the CPU (--device {config.device}); use "
            "--in-memory yes (RAM) or auto",
        )
    try:
        check_writable(request.runs)
    except ConfigError as err:
        raise OptionError("--out", str(err)) from None


def run_request(request: ProbeRequest, draw: Callable[[Path], object] | None = None) -> Path:
    """`vjfer probe` as one function: find and open the cache (once), set and check its folds,
    build the grid, name the run, train, evaluate and write it under `request.runs`; with heads on
    several layers or few-shot settings, `draw(run_dir)` draws the per-layer figure and the
    few-shot curve (`vjfer.report.figures_for_run` from the command line). Returns the run
    directory."""
    _check_request(request)
    path = one_cache(request.cache, request.dataset, request.fingerprint)
    cache, used = open_run_cache(
        path,
        splits=request.splits,
        dataset=request.dataset,
        fingerprint=request.fingerprint,
        modality=request.modality,
    )
    try:
        layers = layer_axis(cache.layers, request.layers)
    except ConfigError as err:
        raise OptionError("--layer", str(err)) from None
    grid = make_grid(
        request.lrs,
        request.wds,
        request.seeds,
        layers,
        request.probes,
        request.ks,
        request.shots,
        request.fractions,
    )
    config = grid[0].apply(request.config)
    folds = resolve_folds(cache, request.folds)  # refuses folds the cache lacks
    named = "all" if request.folds == "all" else folds
    probe = "-".join(request.probes)  # several families: all named
    probe += f"-depth{config.probe_depth}" if config.probe_depth != 1 else ""
    run_dir = request.runs / run_name(
        cache.dataset,
        path,
        probe,
        named,
        len(grid),
        config.seed,
        request.splits,
        layers,
        request.shots,
        request.fractions,
    )
    if request.modality is not None:  # its own run: never mixed with a run on both modalities
        run_dir = run_dir.with_name(f"{run_dir.name}-modality{request.modality}")
    train_folds(
        cache,
        folds,
        config,
        run_dir,
        progress=request.progress,
        grid=grid,
        mode=request.mode,
        splits=used,
        modality=request.modality,
    )
    curve = bool(request.shots or request.fractions)
    if (len(layers) > 1 or curve) and draw is not None:  # UAR against depth / shots, beside it
        draw(run_dir)
    return run_dir
