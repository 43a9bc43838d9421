"""`vjfer bench`: the leaderboard of encoders × layers × probe families over datasets.

`run_bench` takes caches and probe runs; a cache without a finished run of the asked probe families
is probed in one pass (`vjfer.probe.run.run_request`, every family's heads sharing each read). Each
family's reported head of each run is one leaderboard entry (`BenchEntry`); `leaderboard_table`
sets them as rows (encoder, layer, probe family) × columns (dataset: UAR and WAR, PBV, mean ± std
over folds and the report's 95 % bootstrap interval, `vjfer.report.pooled_figures`), and
`write_bench` writes leaderboard.csv, leaderboard.html (`vjfer.bench_page`) and predictions.parquet
(every test prediction of every entry, `predictions_frame`). docs/bench.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from vjfer.compare import encoder_label, store_format
from vjfer.encoders.registry import ENCODERS, family_of
from vjfer.errors import ConfigError, VjferError
from vjfer.files import read_json_object
from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import GridPoint
from vjfer.probe.layer import CONCAT, layer_label
from vjfer.probe.run import ProbeRequest, run_request
from vjfer.probe.summary import summarise_folds
from vjfer.report import pooled_figures
from vjfer.results import RunSummary, read_summary, run_class_names
from vjfer.run_protocol import SEPARATOR, run_aspects
from vjfer.store import StoreFormat
from vjfer.tables import DATASET_TITLES, HIGH, LOW, STD, Table

log = logging.getLogger(__name__)

FAMILIES = ("attentive", "linear", "knn")  # the default probe families of a bench
VOTING = "pbv"  # the leaderboard's video-level vote (the reference's)
METRICS = {"uar": "UAR", "war": "WAR"}
RUNS = "runs"  # under --out: the runs bench trains
IDENTITY = ("Encoder", "Family", "Params (M)", "GFLOPs/clip", "Cache KB/clip", "Layer", "Probe")


@dataclass(frozen=True)
class BenchConfig:
    """What a bench trains where a cache lacks a run: the probe options (`vjfer probe`'s)."""

    families: tuple[str, ...] = FAMILIES
    train: TrainConfig = TrainConfig()
    folds: str | tuple[int, ...] = "all"
    lrs: tuple[float, ...] = ()
    wds: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    ks: tuple[int, ...] = ()
    layers: tuple = ()  # --layer values (`vjfer.probe.layer`): several give a row per layer
    progress: bool = True


@dataclass
class BenchEntry:
    """One probe family's reported head of one run: a leaderboard row's cell on one dataset."""

    run: Path
    dataset: str
    encoder: str  # `compare.encoder_label`: name and weights
    encoder_family: str  # `registry.family_of`
    layer: str
    probe: str
    head: str
    head_dir: str | None  # fold-K/<head_dir>/video_predictions.csv; None: fold-K/ itself
    folds: list[int]
    splits: str  # the fold protocol (`datasets.SPLITS`): part of the column, with the dataset
    mean: dict  # metric -> {"mean", "std"} (fractions) of VOTING, over folds
    intervals: dict  # metric -> (low, high) (fractions), pooled over folds
    protocol: str
    class_names: list[str]
    costs: dict = field(default_factory=dict)  # params, gflops, bytes_per_clip (None: unknown)


# ---------------------------------------------------------------------------------------------
# Inputs: caches and runs.


def is_probe_run(path: Path) -> bool:
    """A finished `vjfer probe` run (not a cross run, not a run being written)."""
    if not (path / "summary.json").is_file() or not (path / "config.json").is_file():
        return False
    if any(p.endswith((".partial", ".old")) for p in path.parts):
        return False
    return read_json_object(path / "summary.json").get("kind") != "cross"


def find_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(caches, runs) at or under `paths`; ConfigError naming a path that holds neither."""
    from vjfer.cache import find_caches

    caches: list[Path] = []
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise ConfigError(f"{path} does not exist: give caches (`vjfer extract`) or runs")
        if is_probe_run(path):
            runs.append(path)
            continue
        found_caches = find_caches(path, complete=True)
        found_runs = [
            s.parent for s in sorted(path.rglob("summary.json")) if is_probe_run(s.parent)
        ]
        if not found_caches and not found_runs:
            raise ConfigError(
                f"{path}: no complete cache (manifest.json) or `vjfer probe` run (summary.json) "
                "at or under it: extract one (`vjfer extract`) or give a run"
            )
        caches += found_caches
        runs += found_runs
    return list(dict.fromkeys(caches)), list(dict.fromkeys(runs))


def run_families(run: Path) -> list[str]:
    """The probe families a run trained (each with its reported head)."""
    summary = read_json_object(run / "summary.json")
    if "families" in summary:
        return [f["probe"] for f in summary["families"]]
    return [str(summary.get("probe", "attentive"))]


def _run_fingerprint(run: Path) -> str | None:
    return read_json_object(run / "config.json").get("cache", {}).get("fingerprint")


def covering_run(cache: Path, runs: Sequence[Path], families: Sequence[str]) -> Path | None:
    """The first of `runs` made from `cache` whose families include all of `families`."""
    fingerprint = read_json_object(cache / "manifest.json")["fingerprint"]
    for run in runs:
        if _run_fingerprint(run) == fingerprint and set(families) <= set(run_families(run)):
            return run
    return None


def ensure_runs(
    caches: Sequence[Path], runs: Sequence[Path], out: Path, config: BenchConfig
) -> list[Path]:
    """`runs` plus, per cache none of them (nor a run under `out/runs`) covers, a new run of the
    asked families trained in one pass; returns every run to tabulate."""
    done = list(runs)
    trained = [r for r in sorted((out / RUNS).glob("*")) if is_probe_run(r)]
    for cache in caches:
        if covering_run(cache, done, config.families):
            continue
        if (run := covering_run(cache, trained, config.families)) is None:
            log.info("bench: probing %s (%s)", cache, ", ".join(config.families))
            request = ProbeRequest(
                cache=cache,
                runs=out / RUNS,
                config=config.train,
                folds=config.folds,
                lrs=config.lrs,
                wds=config.wds,
                seeds=config.seeds,
                probes=config.families,
                ks=config.ks,
                layers=config.layers,
                mode="force",  # a run of these settings that is not covering is redone
                progress=config.progress,
            )
            run = run_request(request)
        done.append(run)
    return list(dict.fromkeys(done))


# ---------------------------------------------------------------------------------------------
# Entries: each run's families, their scores, intervals and costs.


def encoder_costs(settings: dict, checkpoint: str | None) -> dict:
    """{"params", "gflops"} of a cache's encoder where known: a fixed-size registered encoder
    (`vjfer encoders`' figures), or an image model whose directory is still at `checkpoint`
    (its config.json read, no weights loaded); None otherwise."""
    name = str(settings.get("encoder", ""))
    spec = ENCODERS.get(name)
    if spec is not None and spec.vit is not None:
        from vjfer.encoders.vjepa import build_vit, count_params, forward_flops

        return {
            "params": count_params(build_vit(spec.vit, "meta")),
            "gflops": forward_flops(spec.vit) / 1e9,
        }
    if checkpoint and Path(checkpoint).is_dir():
        try:
            from vjfer.encoders.image import config_costs

            return config_costs(name, Path(checkpoint))
        except (ImportError, KeyError, OSError, ValueError, VjferError) as err:
            log.debug("%s: no encoder costs (%s)", checkpoint, err)
    return {"params": None, "gflops": None}


def cache_costs(run: Path) -> dict:
    """The run's cache: {"settings", "bytes_per_clip", "params", "gflops"}; the stored bytes of a
    clip from the cache's manifest (tokens and scales, every view and stored layer), None when
    the cache is no longer where the run found it."""
    cache = read_json_object(run / "config.json")["cache"]
    settings, manifest = cache["settings"], Path(cache["path"]) / "manifest.json"
    nbytes, checkpoint = None, None
    if manifest.is_file():
        data = read_json_object(manifest)
        layout = data["layout"]
        fmt = StoreFormat.parse(layout["store"]["format"] if "store" in layout else "fp16")
        nbytes = sum(
            fmt.clip_nbytes(layout["num_views"], layout["num_tokens"], layout["embed_dim"])
        )
        checkpoint = data.get("config", {}).get("checkpoint")
    return {"settings": settings, "bytes_per_clip": nbytes, **encoder_costs(settings, checkpoint)}


def _protocol(summary: dict, probe: str, settings: dict) -> str:
    """The entry's protocol in words (`run_protocol.run_aspects`), the probe aside."""
    splits = summary["splits"] if "splits" in summary else "paper"
    aspects = run_aspects(
        summary["dataset"], splits, probe, VOTING, settings, summary.get("modality")
    )
    return SEPARATOR.join(f"{k}: {v}" for k, v in aspects.items() if k != "training")


Head = tuple[str, str | int, str, str | None, dict]  # probe, layer, name, folder, mean


def run_heads(run: Path, summary: dict) -> list[Head]:
    """(probe family, layer, head, head folder, mean) of each leaderboard head of a run: per
    family and stored layer, its first grid point (the reference default, as a family's reported
    head); a run of one head: that head (fold-K/ itself)."""
    config = read_json_object(run / "config.json")
    grid = config.get("grid", [])
    if len(grid) < 2:
        layer = config["train"].get("layer", CONCAT)
        return [(summary.get("probe", "attentive"), layer, summary["head"], None, summary["mean"])]
    heads: list[Head] = []
    seen = set()
    for record in grid:
        point = GridPoint(**record)
        probe = point.probe or summary.get("probe", "attentive")
        if (probe, point.layer) in seen:
            continue
        seen.add((probe, point.layer))
        paths = [
            run / f"fold-{k}" / "heads" / point.name / "metrics.json" for k in summary["folds"]
        ]
        if not all(p.is_file() for p in paths):  # a head that failed: no row
            log.warning("bench: %s: head %s lacks a fold's metrics; left out", run, point.name)
            continue
        mean = summarise_folds([read_json_object(p) for p in paths])["mean"]
        heads.append((probe, point.layer, point.name, f"heads/{point.name}", mean))
    return heads


def run_entries(run: Path) -> list[BenchEntry]:
    """One entry per probe family and stored layer of a run (`run_heads`)."""
    summary: dict = dict(read_summary(run))
    costs = cache_costs(run)
    settings = costs.pop("settings")
    blocks = settings["layers"]["blocks"] if "layers" in settings else None
    splits = summary["splits"] if "splits" in summary else "paper"  # runs before it: the paper's
    entries = []
    for probe, layer, head, head_dir, mean in run_heads(run, summary):
        grid_head = head if head_dir else None  # a grid point's own fold-K/heads/<head>/
        _, intervals = pooled_figures(run, summary["folds"], summary["dataset"], grid_head)
        entries.append(
            BenchEntry(
                run=run,
                dataset=summary["dataset"],
                encoder=encoder_label(settings) + _store_tag(settings),
                encoder_family=family_of(str(settings.get("encoder", ""))),
                layer=layer_label(layer, blocks),
                probe=probe,
                head=head,
                head_dir=head_dir,
                folds=list(summary["folds"]),
                splits=splits,
                mean=mean[VOTING],
                intervals=intervals.get(VOTING, {}),
                protocol=_protocol(summary, splits, settings),
                class_names=list(run_class_names(cast(RunSummary, summary))),
                costs=costs,
            )
        )
    return entries


def _store_tag(settings: dict) -> str:
    """', int8' for a cache stored other than fp16: another row than the fp16 cache's."""
    fmt = store_format(settings)
    return "" if fmt == "fp16" else f", {fmt}"


# ---------------------------------------------------------------------------------------------
# The leaderboard table, its CSV and the predictions table.


def _percent(value) -> float:
    return float("nan") if value is None else 100.0 * float(value)


def _cells(entry: BenchEntry, title: str) -> dict:
    """`<title> UAR`, `... std`, `... low`, `... high` and the same for WAR (percent)."""
    row = {}
    for key, name in METRICS.items():
        col = f"{title} {name}"
        agg = entry.mean.get(key) or {}
        low, high = entry.intervals.get(key, (None, None))
        row[col], row[col + STD] = _percent(agg.get("mean")), _percent(agg.get("std"))
        row[col + LOW], row[col + HIGH] = _percent(low), _percent(high)
    return row


def _identity(entry: BenchEntry) -> dict:
    c = entry.costs
    return dict(
        zip(
            IDENTITY,
            (
                entry.encoder,
                entry.encoder_family,
                np.nan if c.get("params") is None else c["params"] / 1e6,
                np.nan if c.get("gflops") is None else c["gflops"],
                np.nan if c.get("bytes_per_clip") is None else c["bytes_per_clip"] / 1e3,
                entry.layer,
                entry.probe,
            ),
            strict=True,
        )
    )


def column_title(entry: BenchEntry) -> str:
    """A dataset column's title: the dataset and its fold protocol ('RAVDESS (paper folds)'),
    so runs under other folds never share a column."""
    return f"{DATASET_TITLES.get(entry.dataset, entry.dataset)} ({entry.splits} folds)"


def column_protocols(entries: Sequence[BenchEntry]) -> dict[str, str]:
    """Column title -> its protocol in words, in order of first appearance."""
    out: dict[str, str] = {}
    for entry in entries:
        out.setdefault(column_title(entry), entry.protocol)
    return out


def leaderboard_table(entries: Sequence[BenchEntry]) -> Table:
    """Rows encoder × layer × probe family (sorted), columns per dataset and fold protocol: UAR
    and WAR (PBV, %), mean ± std over folds and [low, high] the pooled bootstrap interval; NaN
    where a row has no run of that column. Two runs of one row and column: the first is shown."""
    rows: dict[tuple, dict] = {}
    for entry in entries:
        key = (entry.encoder, entry.layer, entry.probe)
        row = rows.setdefault(key, _identity(entry))
        title = column_title(entry)
        if f"{title} UAR" in row:
            log.warning("bench: %s has two %s runs; showing the first", key, title)
            continue
        row.update(_cells(entry, title))
    frame = pd.DataFrame([rows[k] for k in sorted(rows)])
    columns = list(IDENTITY) + [
        f"{t} {m}{s}"
        for t in column_protocols(entries)
        for m in METRICS.values()
        for s in ("", STD, LOW, HIGH)
    ]
    frame = frame.reindex(columns=columns)
    return Table("leaderboard", "Leaderboard", frame, leaderboard_notes(entries))


def leaderboard_notes(entries: Sequence[BenchEntry]) -> list[str]:
    """What the cells are and how the intervals were drawn (the protocols: `column_protocols`)."""
    from vjfer.report import interval_note

    return [
        "Cells: video-level UAR and WAR (PBV: the class with the highest summed clip "
        "probability), percent, mean ± sample std over folds; each probe family's reported head "
        "(its reference-default grid point) on each stored layer.",
        interval_note([e.dataset for e in entries]),
        "Params and GFLOPs/clip (matmul FLOPs of one 16-frame clip's forward pass) where the "
        "encoder's sizes are known; Cache KB/clip: the stored bytes of one clip (every view and "
        "stored layer), from the cache's manifest.",
        "Each column's protocol (folds, metric, voting, figure) is stated on leaderboard.html; "
        "a row's sampling, views and resolution are its cache's.",
    ]


def predictions_frame(entries: Sequence[BenchEntry]) -> pd.DataFrame:
    """Every test prediction of every entry: one row per test video per fold per head, with
    `probabilities` (a list: the mean clip probability per class, in `class_names` order)."""
    parts = []
    for e in entries:
        for fold in e.folds:
            where = e.run / f"fold-{fold}" / (e.head_dir or "") / "video_predictions.csv"
            try:
                videos = pd.read_csv(where, dtype={"video_id": str})
            except (OSError, ValueError) as err:
                raise ConfigError(f"{where}: cannot read ({err}); rerun the probe run") from None
            probs = videos[[f"prob_{c}" for c in e.class_names]].to_numpy(np.float64)
            probs = probs / videos["n_clips"].to_numpy()[:, None]  # summed over clips -> mean
            parts.append(
                pd.DataFrame(
                    {
                        "encoder": e.encoder,
                        "encoder_family": e.encoder_family,
                        "layer": e.layer,
                        "probe": e.probe,
                        "head": e.head,
                        "dataset": e.dataset,
                        "fold": fold,
                        "video": videos["video_id"].astype(str),
                        "subject": videos["actor"].astype(np.int64),
                        "label": videos["label"].astype(np.int64),
                        "label_name": videos["label_name"].astype(str),
                        "prediction": videos[VOTING].astype(np.int64),
                        "class_names": [list(e.class_names)] * len(videos),
                        "probabilities": list(probs),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


# ---------------------------------------------------------------------------------------------
# The command.


@dataclass
class BenchResult:
    out: Path
    runs: list[Path]
    entries: list[BenchEntry]
    table: Table
    written: dict[str, Path]  # "csv", "html", "parquet" -> path


def write_bench(entries: Sequence[BenchEntry], out: Path) -> tuple[Table, dict[str, Path]]:
    """leaderboard.csv, leaderboard.html and predictions.parquet into `out`."""
    from vjfer.bench_page import write_leaderboard_page
    from vjfer.tables import render_csv

    out.mkdir(parents=True, exist_ok=True)
    table = leaderboard_table(entries)
    written = {"csv": out / "leaderboard.csv", "parquet": out / "predictions.parquet"}
    written["csv"].write_text(render_csv(table), encoding="utf-8")
    predictions_frame(entries).to_parquet(written["parquet"], index=False)
    written["html"] = write_leaderboard_page(table, entries, column_protocols(entries), out)
    return table, written


def run_bench(
    paths: Sequence[str | Path], out: str | Path, config: BenchConfig | None = None
) -> BenchResult:
    """`vjfer bench`: find the caches and runs at `paths`, probe the caches no run covers, and
    write the leaderboard into `out`."""
    config, out = config or BenchConfig(), Path(out)
    if bad := [f for f in config.families if f not in FAMILIES]:
        raise ConfigError(f"--probe {bad[0]!r}: give families among {', '.join(FAMILIES)}")
    caches, runs = find_inputs(paths)
    runs = ensure_runs(caches, runs, out, config)
    entries = [e for run in runs for e in run_entries(run) if e.probe in config.families]
    if not entries:
        raise ConfigError(
            f"no run of the families {', '.join(config.families)} at {', '.join(map(str, paths))}: "
            "give caches (bench probes them) or runs of those families"
        )
    table, written = write_bench(entries, out)
    return BenchResult(out, runs, entries, table, written)
