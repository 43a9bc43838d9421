"""Tables (Markdown, CSV) and figures (PNG) of vjfer's results, in the paper's layouts.

Eing et al. (2026, arXiv:2601.09524) report Table II (within-dataset UAR / WAR per voting rule),
Table III (beside published peers), Table IV (cross-dataset) and Figure 5 (2-D PCA of test-fold
video embeddings). Each table is computed as a `Table` (a DataFrame plus caption and notes) from run
directories and rendered by `vjfer.tables`; `vjfer.figures` draws the PNGs. The paper's "UAR" is
macro precision, so its numbers sit beside ours in columns that say so (docs/report.md).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

import vjfer
from vjfer import report_html, run_details, timeline
from vjfer.cache import open_cache
from vjfer.encoders.registry import family_of
from vjfer.errors import CacheError, ConfigError, VjferError
from vjfer.figures import (
    confusion_figure,
    few_shot_figure,
    layer_figure,
    pca_figure,
    timeline_figure,
)
from vjfer.files import read_json_object
from vjfer.labels import DATASETS
from vjfer.metrics import bootstrap_intervals, pooled_metrics
from vjfer.probe.curve import CURVE_FIGURE, setting_label
from vjfer.probe.evaluate import video_embeddings
from vjfer.probe.model import load_probe
from vjfer.probe.summary import LAYER_FIGURE, LAYER_NOTE
from vjfer.results import (
    FoldMetrics,
    RunSummary,
    mean_of,
    read_probe_run,
    read_summary,
    run_class_names,
    voting_means,
    write_json,
)
from vjfer.run_protocol import ProtocolCodes, peer_aspects, run_aspects
from vjfer.runs import CROSS_DIR, training_cache
from vjfer.tables import (
    DATASET_TITLES,
    HIGH,
    LOW,
    METRIC_COLUMNS,
    STD,
    Table,
    interval_cells,
    metric_cells,
    percent,
    render_html,
    render_markdown,
    write_table,
)

log = logging.getLogger(__name__)

PAPER_DATASETS = ("ravdess", "crema-d")  # the paper's tables; other datasets join when run

PAPER = "Eing et al. 2026 (arXiv:2601.09524)"
# The paper's Table II / IV targets: (the paper's "UAR" = macro precision, WAR) in percent.
PAPER_TABLE_II: dict[tuple[str, str], tuple[float, float]] = {
    ("ravdess", "pbv"): (76.40, 72.93),
    ("ravdess", "mv"): (76.38, 73.80),
    ("crema-d", "pbv"): (79.39, 78.86),
    ("crema-d", "mv"): (79.13, 78.47),
}
# Keyed by (train, test, calm handling).
PAPER_TABLE_IV: dict[tuple[str, str, str], tuple[float, float]] = {
    ("crema-d", "ravdess", "drop"): (77.82, 75.59),
    ("crema-d", "ravdess", "merge"): (73.92, 70.92),
    ("ravdess", "crema-d", "drop"): (61.69, 59.82),
    ("ravdess", "crema-d", "merge"): (58.72, 54.90),
}
# + optional "note" and "protocol" ("aspect: text; ...", `run_protocol.peer_aspects`)
PEERS_COLUMNS = ("method", "dataset", "uar", "war", "modality", "source")
VOTING = {"pbv": "PBV", "mv": "MV"}
PAPER_UAR = 'Paper "UAR" (= macro precision)'


# ---------------------------------------------------------------------------------------------
# Inputs: probe runs (`vjfer.probe.run.train_folds`) and cross runs (`vjfer.cross`).


@dataclass
class ProbeRun:
    path: Path
    dataset: str
    probe: str
    summary: RunSummary  # summary.json
    folds: dict[int, FoldMetrics]  # fold -> fold-K/metrics.json
    # its cache's settings (the manifest's, else the copy the run recorded; None: neither found)
    settings: dict | None = None
    # voting -> metric -> value over every fold's test predictions pooled (`pooled_figures`)
    pooled: dict[str, dict[str, float]] = field(default_factory=dict)
    # voting -> metric -> (low, high), the bootstrap interval of the pooled figure
    intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # voting -> metric -> mean ± std over the seeds of the reported point (`seed_spread`)
    seeds: dict[str, dict[str, dict]] = field(default_factory=dict)

    @property
    def splits(self) -> str:
        """The fold protocol; runs made before it was recorded used the paper's folds."""
        return self.summary["splits"] if "splits" in self.summary else "paper"

    def aspects(self, voting: str) -> dict[str, str]:
        """Its protocol under `voting` (`run_protocol.run_aspects`)."""
        modality = cast(dict, self.summary).get("modality")  # `probe --modality`, where recorded
        return run_aspects(self.dataset, self.splits, self.probe, voting, self.settings, modality)


@dataclass
class CrossRun:
    path: Path
    summary: dict  # summary.json, `CrossResult.to_json`


SKIPPED = "; skipped"  # ends the problem line of a run found but not read


def find_runs(paths: Sequence[str | Path]) -> tuple[list[ProbeRun], list[CrossRun], list[str]]:
    """Probe and cross runs at or under `paths` (every summary.json found), plus problems seen."""
    probe_runs, cross_runs, problems, seen = [], [], [], set()
    for root in map(Path, paths):
        if not root.exists():
            problems.append(f"{root} does not exist")
            continue
        found = [root / "summary.json"] if (root / "summary.json").is_file() else []
        found += sorted(root.glob(f"{CROSS_DIR}/*/summary.json")) if found else []  # its crosses
        for summary_path in found or sorted(root.rglob("summary.json")):
            staged = summary_path.relative_to(root).parts[:-1]
            if any(p.endswith((".partial", ".old")) for p in staged):  # a run being written or
                continue  # the one it replaced (vjfer.probe.resume), not a run of its own
            run_dir = summary_path.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            try:
                summary = read_json_object(summary_path)
                if summary.get("kind") == "cross":
                    cross_runs.append(CrossRun(summary_path.parent, summary))
                elif "per_fold" in summary and "dataset" in summary:
                    run_dir = summary_path.parent
                    run_summary, folds = read_probe_run(run_dir)
                    probe = run_summary.get("probe", "?")
                    run = ProbeRun(run_dir, run_summary["dataset"], probe, run_summary, folds)
                    run.pooled, run.intervals = pooled_figures(
                        run_dir, run_summary["folds"], run.dataset
                    )
                    run.seeds = seed_spread(run_dir, run_summary.get("head"), run_summary["folds"])
                    probe_runs.append(run)
                else:
                    problems.append(f"{summary_path} is neither a probe nor a cross run{SKIPPED}")
            except (OSError, ValueError, KeyError, ConfigError) as err:
                problems.append(f"{summary_path} could not be read ({err}){SKIPPED}")
    return probe_runs, cross_runs, problems


POOLED_VOTINGS = tuple(VOTING)  # the video-level votes, columns of video_predictions.csv


# The bootstrap behind every interval of the tables: fixed, so a report's intervals are the same
# bytes each time it is written; stated in the tables' notes and written to bootstrap.json.
@dataclass(frozen=True)
class Bootstrap:
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    method: str = "percentile"  # the interval's bounds: quantiles of the resampled figures


BOOTSTRAP = Bootstrap()
SUBJECT_DATASETS = ("ravdess", "crema-d")  # their groups are actors; DFEW's etc. are the clips


def resample_unit(dataset: str, has_groups: bool = True) -> str:
    """What one bootstrap draw takes: an actor (with all their test videos) where the dataset
    has subjects, a list file's group, else a video (DFEW, FERV39k and MAFW name no actors: the
    group folds keep apart is the clip itself); a video where the predictions name no group."""
    if not has_groups:
        return "video"
    return "actor" if dataset in SUBJECT_DATASETS else "group" if dataset == "list" else "video"


def pooled_intervals(labels, preds, groups, unit: str) -> dict[str, tuple[float, float]]:
    """metric -> (low, high), `BOOTSTRAP`'s interval of the pooled predictions, resampled by
    `groups` unless `unit` is "video"."""
    return bootstrap_intervals(
        labels,
        preds,
        None if unit == "video" else groups,
        resamples=BOOTSTRAP.resamples,
        seed=BOOTSTRAP.seed,
        level=BOOTSTRAP.level,
    )


def _read_parts(paths: Sequence[Path], columns: Sequence[str]) -> list[pd.DataFrame] | None:
    """`columns` (and `actor` where present) of each CSV; None when one is missing, unreadable
    or empty (a pooled figure of some folds would not be one)."""
    parts = []
    for path in paths:
        try:
            part = pd.read_csv(path, usecols=lambda c: c in {*columns, "actor"})
        except (OSError, ValueError) as err:
            log.debug("%s: no pooled figures (%s)", path, err)
            return None
        if part.empty or any(c not in part.columns for c in columns):
            return None
        parts.append(part)
    return parts or None


def pooled_figures(
    run_dir: str | Path, folds: Sequence[int], dataset: str, head: str | None = None
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, tuple[float, float]]]]:
    """(voting -> UAR, WAR and macro precision of every fold's test videos pooled, voting ->
    their `pooled_intervals`) from each fold's `fold-K/video_predictions.csv` (label, actor, and
    the PBV and MV decisions of the reported head; with `head`, that grid point's
    `fold-K/heads/<head>/`); both empty when a fold's predictions are missing or unreadable."""
    where = ("heads", head, "video_predictions.csv") if head else ("video_predictions.csv",)
    paths = [Path(run_dir, f"fold-{k}", *where) for k in folds]
    parts = _read_parts(paths, ["label", *POOLED_VOTINGS])
    if parts is None:
        return {}, {}
    pooled = pd.concat(parts, ignore_index=True)
    unit = resample_unit(dataset, "actor" in pooled.columns)
    groups = pooled["actor"].to_numpy() if unit != "video" else None
    scores = {
        v: pooled_metrics([(p["label"].to_numpy(), p[v].to_numpy()) for p in parts])
        for v in POOLED_VOTINGS
    }
    intervals = {
        v: pooled_intervals(pooled["label"].to_numpy(), pooled[v].to_numpy(), groups, unit)
        for v in POOLED_VOTINGS
    }
    return scores, intervals


GRID_RESULTS = "grid_test_results.csv"  # `vjfer.probe.run`: every grid point's test-fold scores
SEED_PART = re.compile(r"-seed-?\d+")  # in a grid point's name (`GridPoint.name`)


def seed_spread(
    run_dir: str | Path, head: str | None, folds: Sequence[int]
) -> dict[str, dict[str, dict]]:
    """voting -> metric -> {"mean", "std", "n"} over the seeds of the reported head's grid point
    (the heads of `grid_test_results.csv` that differ from it only in `--seed`): each seed's fold
    mean, then their mean and sample std; empty for a run of one seed, without a grid, or with a
    seed that failed or lacks a fold."""
    path = Path(run_dir) / GRID_RESULTS
    if head is None or not path.is_file():
        return {}
    try:
        grid = pd.read_csv(path, comment="#")
    except (OSError, ValueError) as err:
        log.debug("%s: no seed spread (%s)", path, err)
        return {}
    if "head" not in grid.columns:
        return {}
    point = SEED_PART.sub("", head)
    mine = grid[[SEED_PART.sub("", str(h)) == point for h in grid["head"]]]
    heads = mine.groupby("head")
    if heads.ngroups < 2 or any(sorted(g["fold"]) != sorted(folds) for _, g in heads):
        return {}
    out: dict[str, dict[str, dict]] = {}
    for voting in POOLED_VOTINGS:
        for metric in METRIC_COLUMNS:
            column = f"{voting}_{metric}"
            if column not in mine.columns or mine[column].isna().any():
                return {}
            means = heads[column].mean().to_numpy()
            out.setdefault(voting, {})[metric] = {
                "mean": float(np.mean(means)),
                "std": float(np.std(means, ddof=1)),
                "n": len(means),
            }
    return out


SEEDS_NOTE = (
    "Seeds UAR / WAR (runs of several --seed values): mean ± sample std over the seeds of the "
    "reported head's grid point (its lr and weight decay) of each seed's fold mean, from "
    f"{GRID_RESULTS} (test-fold scores: the spread the seed alone makes, not a selection)."
)


def seed_cells(run: ProbeRun, voting: str, shown: bool) -> dict:
    """{"Seeds", "Seeds UAR", "Seeds UAR std", ...} in percent (NaN without a seed spread);
    nothing when no run of the table has one (`shown`)."""
    if not shown:
        return {}
    spread = run.seeds.get(voting, {})
    row: dict = {"Seeds": spread["uar"]["n"] if spread else float("nan")}
    for key in ("uar", "war"):
        agg = spread.get(key, {})
        col = f"Seeds {METRIC_COLUMNS[key]}"
        row[col], row[col + STD] = percent(agg.get("mean")), percent(agg.get("std"))
    return row


def cross_intervals(cross: CrossRun) -> dict[str, dict[str, tuple[float, float]]]:
    """voting -> metric -> (low, high) of a cross run: every probe's scored videos (each
    `fold-K/video_predictions.csv`, the videos its class handling kept) pooled and resampled by
    the target's actors (all of an actor's rows in every probe drawn together), else by video;
    empty when a probe's predictions are missing."""
    s = cross.summary
    paths = [cross.path / f"fold-{f['fold']}" / "video_predictions.csv" for f in s["folds"]]
    columns = ["label_as", *(f"{v}_{x}" for v in POOLED_VOTINGS for x in ("as", "kept"))]
    parts = _read_parts(paths, columns)
    if parts is None:
        return {}
    pooled = pd.concat(parts, ignore_index=True)
    unit = resample_unit(s["target"], "actor" in pooled.columns)
    out = {}
    for v in POOLED_VOTINGS:
        kept = pooled[pooled[f"{v}_kept"].astype(bool)]
        if kept.empty:
            continue
        # class names as codes: the metrics need only which names are equal
        codes, _ = pd.factorize(pd.concat([kept["label_as"], kept[f"{v}_as"]]).astype(str))
        truth, pred = codes[: len(kept)], codes[len(kept) :]
        groups = kept["actor"].to_numpy() if unit != "video" else None
        out[v] = pooled_intervals(truth, pred, groups, unit)
    return out


def bootstrap_record(probe_runs: Sequence[ProbeRun], cross_runs: Sequence[CrossRun]) -> dict:
    """bootstrap.json: `BOOTSTRAP` and what each dataset's draws took (`resample_unit`)."""
    datasets = {r.dataset for r in probe_runs} | {c.summary["target"] for c in cross_runs}
    return {
        **dataclasses.asdict(BOOTSTRAP),
        "unit": {d: resample_unit(d) for d in sorted(datasets)},
    }


def interval_note(datasets: Sequence[str], pooled: str = "every fold's test videos pooled") -> str:
    """The tables' note on their [low, high] intervals, naming the rule of each dataset shown
    (`datasets`: the tested ones) and what was pooled."""
    units: dict[str, list[str]] = {}
    for d in dict.fromkeys(datasets):
        units.setdefault(resample_unit(d), []).append(DATASET_TITLES.get(d, d))
    rule = "; ".join(f"by {u}: {', '.join(titles)}" for u, titles in units.items())
    return (
        f"[low, high] (on the page: low–high under the value): {BOOTSTRAP.level:.0%} "
        f"{BOOTSTRAP.method} bootstrap interval of the "
        f"pooled figure ({pooled}, {BOOTSTRAP.resamples} resamples, "
        f"seed {BOOTSTRAP.seed}; bootstrap.json), resampled by actor where the dataset has "
        "actors (an actor drawn brings all their test videos), else by video"
        + (f" ({rule})" if rule else "")
        + ". No interval where a run's per-video predictions are missing, nor on published rows "
        "(no per-video predictions)."
    )


def _refuse_all_unreadable(
    probe_runs: list, cross_runs: list, problems: list[str], where: str
) -> None:
    """ConfigError naming every run found when none of them could be read (not empty tables)."""
    skipped = [m for m in problems if m.endswith(SKIPPED)]
    if skipped and not probe_runs and not cross_runs:
        raise ConfigError(f"no readable run at or under {where}: " + "; ".join(skipped))


def _source_name(cross: CrossRun) -> str:
    """The name of the probe run a cross run tests (its own folder's name when it records none)."""
    try:
        return source_run(cross).name
    except KeyError:
        return cross.path.name


def source_run(cross: CrossRun) -> Path:
    """The probe run a cross run's probes come from: the run it lives in (`RUN/cross/NAME/`), or
    for one written elsewhere (before issue 20) the run it recorded."""
    home = cross.path.parent.parent
    if cross.path.parent.name == CROSS_DIR and (home / "summary.json").is_file():
        return home
    return Path(cross.summary["run_dir"])


def check_pairs(probe_runs: Sequence[ProbeRun], cross_runs: Sequence[CrossRun]) -> None:
    """ConfigError when Table IV would show a cross run beside Table II rows of another run of
    its source dataset (naming both): a report pairs a run with its own cross results."""
    for cross in cross_runs:
        same = [r for r in probe_runs if r.dataset == cross.summary["source"]]
        home = source_run(cross).resolve()
        if same and home not in {r.path.resolve() for r in same}:
            raise ConfigError(
                f"cross run {cross.path} comes from probe run {home}, but the report's "
                f"{cross.summary['source']} run is {', '.join(str(r.path) for r in same)}: "
                f"report a run with its own cross results (`vjfer report {home}`)"
            )


# ---------------------------------------------------------------------------------------------
# The paper's tables, computed (values in percent).


DELTA_NOTE = "Δ = ours − the paper's figure, in percentage points."


def beside_paper(cells: dict, paper: tuple[float | None, float | None]) -> dict:
    """`metric_cells` (and `interval_cells`) with the paper's WAR and "UAR" (= macro precision)
    each after the column it compares with, followed by the difference (ours − paper; NaN without
    a paper figure)."""
    paper_uar, paper_war = (float("nan") if p is None else p for p in paper)

    def cells_of(col: str) -> dict:  # the value, its std and its interval where given
        return {k: cells[k] for k in (col, col + STD, col + LOW, col + HIGH) if k in cells}

    out = cells_of("UAR") | cells_of("WAR")
    out |= {"Paper WAR": paper_war, "Δ WAR": cells["WAR"] - paper_war}
    out |= cells_of("Macro precision")
    out |= {PAPER_UAR: paper_uar, "Δ macro precision": cells["Macro precision"] - paper_uar}
    return out


POOLED_NOTE = (
    "Pooled UAR / WAR: over the test predictions of all folds pooled (each fold's "
    "fold-K/video_predictions.csv concatenated, every video once), beside the fold mean; a dash "
    "where a fold's predictions are missing."
)
PEER_FIGURES_NOTE = (
    "Fold mean or pooled: a published figure is what its source reports (each protocol's "
    "figure): MAE-DFER's README Total is the mean over the folds; the SVFAP paper pools the "
    "predictions of the 5 folds."
)


def pooled_cells(run: ProbeRun, voting: str) -> dict[str, float]:
    """{"Pooled UAR", "Pooled WAR"} in percent, NaN without the run's predictions."""
    scores = run.pooled.get(voting, {})
    return {f"Pooled {m}": percent(scores.get(k)) for k, m in (("uar", "UAR"), ("war", "WAR"))}


def protocol_notes(codes: ProtocolCodes, cells) -> list[str]:
    """The legend of the codes among `cells` (a table's Protocol cells)."""
    return [
        "Protocol: a code per row (the protocols table lists each by aspect); "
        "what each code means:",
        *codes.legend(cells),
    ]


def encoder_family(settings: Mapping | None) -> str:
    """The training family of the encoder that made a run's cache (`family_of`), or "not
    recorded" (the settings table's word) when neither its cache nor its config.json says."""
    if not settings or "encoder" not in settings:
        return run_details.NOT_RECORDED
    return family_of(str(settings["encoder"]))


def probe_families(run: ProbeRun) -> list[ProbeRun]:
    """A run of several probe families (summary.json `families`) as one ProbeRun per family:
    its reported head's scores, pooled figures and seeds (the family's `head`, whose test
    predictions are `fold-K/heads/<head>/`); a run of one family is itself."""
    if "families" not in run.summary:
        return [run]
    runs = []
    for entry in run.summary["families"]:
        summary = cast(RunSummary, {**run.summary, **entry})
        del summary["families"]
        pooled, intervals = pooled_figures(run.path, entry["folds"], run.dataset, entry["head"])
        seeds = seed_spread(run.path, entry["head"], entry["folds"])
        runs.append(
            dataclasses.replace(
                run,
                probe=entry["probe"],
                summary=summary,
                pooled=pooled,
                intervals=intervals,
                seeds=seeds,
            )
        )
    return runs


FAMILY_NOTE = (
    "A run of several probe families (`--probe attentive,linear,knn`) has rows per family (the "
    "Probe column), each its family's reported head (its reference-default grid point) with the "
    "pooled figures of that head's test predictions; the heads each family's inner validation "
    "selects are in the run's summary.md."
)


def family_notes(runs: Sequence[ProbeRun]) -> list[str]:
    """`FAMILY_NOTE` where a run has several probe families (else a table's notes are as before
    the families)."""
    return [FAMILY_NOTE] if any("families" in r.summary for r in runs) else []


def table_ii(runs: Sequence[ProbeRun], codes: ProtocolCodes | None = None) -> Table:
    """Table II: within-dataset video-level results per voting rule, mean ± std over folds,
    the figures pooled over folds, and each row's protocol (a code of `codes`)."""
    codes = ProtocolCodes() if codes is None else codes
    shown = [family for run in runs for family in probe_families(run)]
    rows, seeds = [], any(run.seeds for run in shown)
    for run in shown:
        for voting, vname in VOTING.items():
            paper = PAPER_TABLE_II.get((run.dataset, voting), (None, None))
            rows.append(
                {
                    "Dataset": DATASET_TITLES.get(run.dataset, run.dataset),
                    "Run": run.path.name,
                    "Family": encoder_family(run.settings),
                    "Probe": run.probe,
                    "Voting": vname,
                    "Folds": len(run.summary["folds"]),
                    "Splits": run.splits,
                    "Classes": len(run_class_names(run.summary)),
                    **beside_paper(
                        metric_cells(voting_means(run.summary, voting))
                        | interval_cells(run.intervals.get(voting, {})),
                        paper,
                    ),
                    **pooled_cells(run, voting),
                    **seed_cells(run, voting, seeds),
                    "Protocol": codes.code(run.aspects(voting)),
                }
            )
    notes = [
        "Mean ± sample std over folds, in %. UAR = mean per-class recall; WAR = accuracy.",
        f"Paper columns: {PAPER}, Table II. The paper's UAR is macro precision (its metrics "
        "script divides TP by TP + FP), so it sits beside our Macro precision column; the paper "
        "prints no true UAR to set beside ours.",
        DELTA_NOTE,
        POOLED_NOTE,
        interval_note([r.dataset for r in runs]),
        *([SEEDS_NOTE] if seeds else []),
        *family_notes(runs),
        *protocol_notes(codes, [r["Protocol"] for r in rows]),
    ]
    return Table(
        "table2", "Table II: within-dataset results (video level)", pd.DataFrame(rows), notes
    )


def load_peers(path: str | Path | None = None) -> pd.DataFrame:
    """Published peer results (vjfer/data/peers.csv unless `path`): PEERS_COLUMNS, percent."""
    source = resources.files("vjfer") / "data" / "peers.csv" if path is None else Path(path)
    with source.open("r", encoding="utf-8") as f:
        peers = pd.read_csv(f)
    if missing := [c for c in PEERS_COLUMNS if c not in peers.columns]:
        raise ConfigError(f"{source}: missing column(s) {missing}; need {list(PEERS_COLUMNS)}")
    return peers


PER_DATASET = ("UAR", "WAR", "macro precision", "pooled UAR", "pooled WAR", "protocol")
# Table III's metric cells of a dataset, each with its interval columns for vjfer rows
TABLE_III_METRICS = {"uar": "UAR", "war": "WAR", "macro_precision": "macro precision"}


def table_iii(
    runs: Sequence[ProbeRun], peers: pd.DataFrame, codes: ProtocolCodes | None = None
) -> Table:
    """Table III: our mean results beside published ones, RAVDESS and CREMA-D side by side (and
    the field's datasets that a run has), each cell group with its protocol (a code of `codes`;
    a peer's from peers.csv's `protocol` column)."""
    codes = ProtocolCodes() if codes is None else codes
    rows: dict[tuple, dict] = {}
    peer_notes: dict[tuple[str, str, str], list[str]] = {}  # (method, modality, note) -> datasets
    for _, p in peers.iterrows():
        new = {"Method": p["method"], "Modality": p["modality"], "Source": p["source"]}
        row = rows.setdefault(("peer", p["method"], p["modality"]), new)
        title = DATASET_TITLES.get(p["dataset"], p["dataset"])
        if p["source"] not in row["Source"]:  # the field's datasets come from the peers' READMEs
            row["Source"] += f"; {title}: {p['source']}"
        # an empty cell (a number the paper does not print) stays NaN and renders as a dash
        row[f"{title} UAR"], row[f"{title} WAR"] = p["uar"], p["war"]
        where = f"peers.csv ({p['method']}, {p['dataset']})"
        row[f"{title} protocol"] = codes.code(peer_aspects(p.get("protocol"), where))
        note = p.get("note")  # optional column: why a cell is empty or what a number means
        if isinstance(note, str) and note.strip():
            peer_notes.setdefault((p["method"], p["modality"], note.strip()), []).append(title)
    for run in [family for one in runs for family in probe_families(one)]:
        title, family = DATASET_TITLES.get(run.dataset, run.dataset), encoder_family(run.settings)
        for voting, vname in VOTING.items():
            key: tuple[str, ...] = ("vjfer", family, run.probe, voting)
            if key in rows and f"{title} UAR" in rows[key]:  # a second run of this kind: own row
                key = (*key, run.path.name)
            method = f"vjfer, {run.probe} probe, {vname}" + (f" ({key[4]})" if len(key) > 4 else "")
            new = {"Method": method, "Modality": "video", "Family": family, "Source": "this run"}
            row = rows.setdefault(key, new)
            intervals = run.intervals.get(voting, {})
            for metric, name in TABLE_III_METRICS.items():
                agg = mean_of(run.summary, voting, metric)
                row[f"{title} {name}"] = percent(agg["mean"])
                low, high = intervals.get(metric, (None, None))
                row[f"{title} {name}{LOW}"], row[f"{title} {name}{HIGH}"] = (
                    percent(low),
                    percent(high),
                )
            pooled = pooled_cells(run, voting)
            row[f"{title} pooled UAR"], row[f"{title} pooled WAR"] = pooled.values()
            row[f"{title} protocol"] = codes.code(run.aspects(voting))
    cols = ["Method", "Modality", "Family"]
    # the paper's two datasets always; the field's (DFEW, FERV39k, MAFW) where a run has them
    shown = [d for d in DATASETS if d in PAPER_DATASETS or any(r.dataset == d for r in runs)]
    for d in shown:
        for m in PER_DATASET:
            spread = (LOW, HIGH) if m in TABLE_III_METRICS.values() else ()
            cols += [f"{DATASET_TITLES[d]} {m}{s}" for s in ("", *spread)]
    frame = pd.DataFrame(list(rows.values()), columns=[*cols, "Source"])
    used = [c for col in frame.columns if col.endswith(" protocol") for c in frame[col]]
    notes = [
        "Percent; vjfer rows are means over folds (Table II gives their std). Peer rows are "
        "published figures (vjfer/data/peers.csv, each with its source).",
        "The paper's own V-JEPA rows report macro precision under the name UAR; compare them "
        "with the macro precision columns.",
        *(
            f"{method} ({modality}), {', '.join(titles)}: {note}."
            for (method, modality, note), titles in peer_notes.items()
        ),
        POOLED_NOTE,
        interval_note([r.dataset for r in runs]),
        PEER_FIGURES_NOTE,
        *family_notes(runs),
        *protocol_notes(codes, used),
    ]
    return Table("table3", "Table III: comparison with published results", frame, notes)


def protocol_table(codes: ProtocolCodes) -> Table:
    """The protocols of Tables II and III, one row per code, one column per aspect: what a
    paper needs beside table2.csv / table3.csv to read their Protocol cells."""
    return Table(
        "protocols",
        "Protocols of Tables II and III",
        codes.frame(),
        [
            "vjfer rows: from each run's cache settings and summary. Published rows: from the "
            "protocol column of vjfer/data/peers.csv (from the peers' code and papers; \"not "
            'stated" where the source does not say).',
            "Metric: the field's UAR is mean per-class recall; the paper (Eing et al.) prints "
            'macro precision under the name "UAR".',
        ],
    )


def table_iv(runs: Sequence[CrossRun], families: Mapping[Path, str] | None = None) -> Table:
    """Table IV: cross-dataset results per direction, calm handling and voting, with counts;
    `families`: cross run path -> the encoder family of the probe run it tests."""
    rows = []
    for run in runs:
        s = run.summary
        paper = PAPER_TABLE_IV.get((s["source"], s["target"], s["calm"]), (None, None))
        intervals = cross_intervals(run)
        for voting, vname in VOTING.items():
            per = [f[voting] for f in s["folds"]]
            rows.append(
                {
                    "Run": _source_name(run),  # two runs' crosses side by side stay apart
                    "Family": (families or {}).get(run.path, run_details.NOT_RECORDED),
                    "Train": DATASET_TITLES[s["source"]],
                    "Test": DATASET_TITLES[s["target"]],
                    "Calm": s["calm"],
                    "Voting": vname,
                    "Probes": len(per),
                    "Videos": s["n_videos"],
                    "Dropped per probe": " ".join(str(f["n_dropped"]) for f in per),
                    **beside_paper(
                        metric_cells(s["mean"][voting]) | interval_cells(intervals.get(voting, {})),
                        paper,
                    ),
                }
            )
    notes = [
        "Mean ± sample std over the training dataset's fold probes, in %, over the classes both "
        "datasets share. drop: videos labelled (CREMA-D → RAVDESS) or predicted (RAVDESS → "
        "CREMA-D) calm or surprised are dropped; merge: calm counts as neutral, surprised videos "
        "are dropped.",
        "Dropped per probe: one count per fold probe; the rest of the videos (Videos − dropped) "
        "are scored.",
        f"Paper columns: {PAPER}, Table IV (its UAR is macro precision).",
        DELTA_NOTE,
        interval_note(
            [r.summary["target"] for r in runs], "the videos each fold probe scored, pooled"
        ),
    ]
    return Table(
        "table4", "Table IV: cross-dataset results (video level)", pd.DataFrame(rows), notes
    )


def layer_table(runs: Sequence[ProbeRun]) -> Table:
    """Per-layer results of the runs with heads on several encoder layers (`vjfer probe --layer
    all`): UAR, WAR and macro precision per layer and voting rule, mean ± std over folds."""
    rows = []
    for run in runs:
        for entry in run.summary.get("layers", []):
            layer = entry["layer"]
            for voting, vname in VOTING.items():
                rows.append(
                    {
                        "Dataset": DATASET_TITLES.get(run.dataset, run.dataset),
                        "Run": run.path.name,
                        "Layer": "concat" if layer == "concat" else f"block {layer}",
                        "Head": entry["head"],
                        "Voting": vname,
                        "Folds": len(entry["folds"]),
                        **metric_cells(voting_means(entry, voting)),
                    }
                )
    notes = ["Mean ± sample std over folds, in %. " + LAYER_NOTE]
    return Table("layers", "Per-layer results (video level)", pd.DataFrame(rows), notes)


FEW_SHOT = "few_shot"  # the few-shot table's name, and its figures' kind


def few_shot_table(runs: Sequence[ProbeRun]) -> Table:
    """The few-shot curves of the runs that have one (`vjfer probe --shots` or
    `--train-fraction`): per family and setting, UAR, WAR and macro precision per voting rule,
    mean ± std over folds × draws."""
    rows = []
    for run in runs:
        for entry in run.summary.get("few_shot", []):
            for voting, vname in VOTING.items():
                rows.append(
                    {
                        "Dataset": DATASET_TITLES.get(run.dataset, run.dataset),
                        "Run": run.path.name,
                        "Probe": entry["probe"],
                        "Setting": setting_label(entry),
                        "Draws": len(entry["seeds"]),
                        "Folds": len(entry["folds"]),
                        "Voting": vname,
                        **metric_cells(voting_means(entry, voting)),
                    }
                )
    notes = [
        "Mean ± sample std over folds × draws (each draw a --seed: its own training videos "
        "per class, from the fold's training videos only), in %; per fold and draw, the head "
        "inner validation selects among the setting's points. Classes with fewer videos than the "
        "shots give all they have (summary.json `short_classes`)."
    ]
    return Table(FEW_SHOT, "Few-shot curve (video level)", pd.DataFrame(rows), notes)


# ---------------------------------------------------------------------------------------------
# Figures from runs.


def few_shot_figure_for_run(run_dir: str | Path, path: str | Path | None = None) -> Path | None:
    """PBV UAR against shots (or fraction) of a few-shot run (its summary.json `few_shot`), to
    `path` (default: `few_shot.png` beside its summary.md); None for a run without the curve."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if "few_shot" not in summary:
        return None
    title = (
        f"{DATASET_TITLES.get(summary['dataset'], summary['dataset'])}: few-shot UAR "
        f"({len(summary['folds'])} folds)"
    )
    return few_shot_figure(
        summary["few_shot"], title, Path(path) if path else run_dir / CURVE_FIGURE
    )


def figures_for_run(run_dir: str | Path) -> list[Path]:
    """The figures `vjfer probe` draws beside a run's summary.md: UAR against depth (several
    layers) and against shots (a few-shot curve); [] for a run with neither."""
    drawn = (layer_figure_for_run(run_dir), few_shot_figure_for_run(run_dir))
    return [path for path in drawn if path is not None]


def layer_figure_for_run(run_dir: str | Path, path: str | Path | None = None) -> Path | None:
    """UAR against depth of a run with heads on several layers (its summary.json `layers`), to
    `path` (default: `layers.png` beside its summary.md); None for a run of one layer."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if "layers" not in summary:
        return None
    title = (
        f"{DATASET_TITLES.get(summary['dataset'], summary['dataset'])}, {summary.get('probe', '')} "
        f"probe: UAR per encoder layer ({len(summary['folds'])} folds)"
    )
    return layer_figure(summary["layers"], title, Path(path) if path else run_dir / LAYER_FIGURE)


def summed_confusion(folds: Sequence[Mapping], voting: str) -> np.ndarray:
    """Sum of the folds' (or probes') confusion matrices of one voting rule: counts [C, C]."""
    return np.sum([np.asarray(f[voting]["confusion"], dtype=np.int64) for f in folds], axis=0)


def pca_for_run(
    run: ProbeRun,
    path: Path,
    *,
    fold: int | None = None,
    caches: Sequence[str | Path] = (),
    device: str = "cpu",
) -> Path:
    """Figure 5 for one probe run: the test videos of `fold` (default: the first) embedded by the
    fold's probe, read from the cache it was trained from (found among `caches`, else the path
    the probe recorded)."""
    fold = min(run.folds) if fold is None else fold
    probe, meta = load_probe(run.path / f"fold-{fold}" / "probe.pt", device)
    cache = training_cache(meta, caches)
    test = cache.videos.loc[cache.videos["fold"] == fold, "video_id"].tolist()
    if len(test) < 3:
        raise CacheError(f"{cache.path}: {len(test)} test videos in fold {fold}; PCA needs >= 3")
    mean_pooled, probe_pooled, y = video_embeddings(probe, cache, test, device=device)
    title = (
        f"{DATASET_TITLES.get(run.dataset, run.dataset)}: test videos of fold {fold} "
        f"({len(test)}), 2-D PCA"
    )
    return pca_figure(
        mean_pooled,
        probe_pooled,
        y,
        cache.class_names,
        title,
        path,
        probe_name=f"{meta['probe']} probe",
    )


# ---------------------------------------------------------------------------------------------
# The report.


def _labels_for(paths: Sequence[Path]) -> dict[Path, str]:
    """A short unique file-name label per run directory (its name, or parent-name)."""
    out, used = {}, set()
    for p in paths:
        label = p.name if p.name not in used else f"{p.parent.name}-{p.name}"
        while label in used:
            label += "_"
        used.add(label)
        out[p] = label
    return out


def _tables(
    probe_runs: list[ProbeRun], cross_runs: list[CrossRun], peers: pd.DataFrame, where: str
) -> tuple[list[Table], list[str]]:
    """Tables II-IV from what was found, and a line for each input that was not."""
    tables, missing, codes = [], [], ProtocolCodes()  # one legend for Tables II and III
    if probe_runs:
        tables.append(table_ii(probe_runs, codes))
    else:
        missing.append(f"Table II: no probe runs (summary.json of `vjfer probe`) under {where}")
    for d in PAPER_DATASETS:
        if not any(r.dataset == d for r in probe_runs):
            missing.append(f"no {DATASET_TITLES[d]} probe run: no Table II rows or Table III cells")
    tables.append(table_iii(probe_runs, peers, codes))
    tables.append(protocol_table(codes))
    if any("layers" in r.summary for r in probe_runs):
        tables.append(layer_table(probe_runs))
    if any("few_shot" in r.summary for r in probe_runs):
        tables.append(few_shot_table(probe_runs))
    if cross_runs:
        tables.append(table_iv(cross_runs, _cross_families(cross_runs, probe_runs)))
    else:
        missing.append(f"Table IV: no cross-dataset runs (`vjfer cross`) under {where}")
    have = {(r.summary["source"], r.summary["target"], r.summary["calm"]) for r in cross_runs}
    for src, dst, calm in PAPER_TABLE_IV:
        if cross_runs and (src, dst, calm) not in have:
            missing.append(
                f"Table IV: no {DATASET_TITLES[src]} → {DATASET_TITLES[dst]} ({calm}) run"
            )
    return tables, missing


def _cross_families(cross_runs: list[CrossRun], probe_runs: list[ProbeRun]) -> dict[Path, str]:
    """cross run path -> the encoder family of the probe run it tests (that run's settings as
    the report read them, else the copy its config.json recorded)."""
    known = {r.path.resolve(): r.settings for r in probe_runs}
    families = {}
    for cross in cross_runs:
        try:
            home = source_run(cross).resolve()
        except KeyError:  # a cross run that names no probe run
            families[cross.path] = encoder_family(None)
            continue
        settings = known[home] if home in known else _run_settings(home, None)
        families[cross.path] = encoder_family(settings)
    return families


def _confusion_figures(
    probe_runs: list[ProbeRun], cross_runs: list[CrossRun], names: dict[Path, str], out_dir: Path
) -> list[tuple[str, Path]]:
    """(caption, PNG) per run and voting rule: the folds' (or probes') confusions summed."""
    figures = []
    for run in probe_runs:
        title = DATASET_TITLES.get(run.dataset, run.dataset)
        for voting, vname in VOTING.items():
            caption = f"{title}, {run.probe} probe, {vname}: {len(run.folds)} folds pooled"
            matrix = summed_confusion(list(run.folds.values()), voting)
            path = out_dir / f"confusion-{names[run.path]}-{voting}.png"
            figures.append(
                (caption, confusion_figure(matrix, run_class_names(run.summary), caption, path))
            )
    for cross in cross_runs:
        s = cross.summary
        handling = "merge: calm as neutral" if s["calm"] == "merge" else "drop"
        for voting, vname in VOTING.items():
            caption = (
                f"{DATASET_TITLES[s['source']]} → {DATASET_TITLES[s['target']]} ({handling}), "
                f"{vname}: {len(s['folds'])} probes pooled"
            )
            matrix = summed_confusion(s["folds"], voting)
            path = out_dir / f"confusion-{names[cross.path]}-{voting}.png"
            figures.append((caption, confusion_figure(matrix, s["class_names"], caption, path)))
    return figures


def detail_tables(probe_runs: list[ProbeRun], run_caches: Sequence) -> list[Table]:
    """The report's detail tables (`vjfer.run_details`): settings, cache failures, per-fold
    results and per-class recall of the probe runs; none without probe runs."""
    if not probe_runs:
        return []
    failed = run_details.failures_frame(run_caches, DATASET_TITLES)
    unread = (
        ""
        if len(run_caches) == len(probe_runs)
        else (
            f" (read from {len(run_caches)} of {len(probe_runs)} runs' caches; see Missing inputs)"
        )
    )
    return [
        Table(
            "settings",
            "Run settings",
            run_details.settings_frame(probe_runs),
            [
                "One column per probe run, from its config.json (the cache's settings and the "
                "probe's training config)."
            ],
        ),
        Table(
            "failures",
            f"Videos the caches could not use: {len(failed)}" + unread,
            failed,
            [
                "From each training cache's manifest (failures.jsonl): nothing was substituted "
                "for these videos; they are in no fold."
            ],
        ),
        Table(
            "folds",
            "Per-fold results (video level)",
            run_details.fold_frame(probe_runs, DATASET_TITLES),
            ["In %, each fold's test actors only; Table II is their mean ± std."],
        ),
        Table(
            "recall",
            "Per-class recall (video level)",
            run_details.recall_frame(
                probe_runs, lambda r: run_class_names(r.summary), DATASET_TITLES
            ),
            [
                "Recall of each class in %, mean ± sample std over the folds; Videos = its test "
                "videos over all folds. UAR is the mean of this column."
            ],
        ),
    ]


def _run_caches(probe_runs: list[ProbeRun], candidates: Sequence) -> tuple[dict, list[str]]:
    """run path -> its training cache (as `runs.training_cache` finds it), and a line per run whose
    cache was not found."""
    found, missing = {}, []
    for run in probe_runs:
        config = run_details.read_run_config(run.path)
        if config is None or "cache" not in config:
            missing.append(f"cache of {run.path}: its config.json does not record one")
            continue
        try:
            found[run.path] = training_cache({"cache": config["cache"]}, candidates)
        except (VjferError, OSError, KeyError) as err:
            missing.append(f"cache of {run.path} (failures list, timelines): {err}")
    return found, missing


def _run_settings(run_dir: Path, cache) -> dict | None:
    """A run's cache settings: the manifest's when its cache was found (opened once, by
    `_run_caches`), else the copy its config.json recorded (the same: the fingerprint is their
    hash), so a run whose cache is gone still shows its protocol; None when neither exists."""
    if cache is not None:
        return dict(cache.settings)
    try:
        config = run_details.read_run_config(run_dir)
    except ConfigError:  # listed with the settings table's "not recorded"
        return None
    recorded = ((config or {}).get("cache") or {}).get("settings")
    return dict(recorded) if isinstance(recorded, dict) else None


def _timeline_figures(
    probe_runs: list[ProbeRun], run_caches: dict, names: dict[Path, str], out_dir: Path
) -> tuple[list[tuple[str, Path]], list[str]]:
    """(caption, PNG) per probe run whose cache was found: the videos `timeline.choose_videos`
    picks; and a line per run that could not be drawn."""
    figures, missing = [], []
    for run in probe_runs:
        if run.path not in run_caches:
            continue
        title = DATASET_TITLES.get(run.dataset, run.dataset)
        try:
            panels = timeline.run_panels(run.path, run_caches[run.path])
            path = timeline_figure(
                panels,
                run_class_names(run.summary),
                out_dir / f"timeline-{names[run.path]}.png",
                title=f"{title}: emotion over time in {len(panels)} test videos",
            )
        except (VjferError, OSError, KeyError, ValueError) as err:
            missing.append(f"timelines for {run.path}: {err}")
            continue
        figures.append((f"{title}, {run.path.name}: emotion timelines", path))
    return figures, missing


def _page_sections(
    tables: list[Table],
    details: list[Table],
    figures: dict[str, list[tuple[str, Path]]],
    missing: list[str],
) -> list[report_html.Section]:
    """report.html's sections, in reading order."""
    Section, PageFigure = report_html.Section, report_html.PageFigure
    by_name = {t.name: t for t in details}

    def figs(kind: str) -> list:
        return [PageFigure(caption, path) for caption, path in figures[kind]]

    def rendered(*names: str) -> list[str]:
        return [render_html(by_name[n]) for n in names if n in by_name]

    return [
        Section("run", "The runs", tables=rendered("settings", "failures")),
        Section(
            "results",
            "Results: Tables II, III and IV",
            tables=[render_html(t) for t in tables if t.name not in ("layers", FEW_SHOT)],
        ),
        Section("details", "Per fold and per class", tables=rendered("folds", "recall")),
        Section(
            "confusion",
            "Confusion matrices",
            [
                "Rows are the true class, normalised to 1; each row label gives its video count. "
                "Folds (or cross-dataset probes) are pooled."
            ],
            figures=figs("confusion"),
        ),
        *(
            [
                Section(
                    "layers",
                    "Which encoder layer",
                    ["Error bars: sample std over folds; dots: the folds."],
                    tables=[render_html(t) for t in tables if t.name == "layers"],
                    figures=figs("layers"),
                )
            ]
            if figures["layers"]
            else []
        ),
        *_few_shot_section(tables, figs(FEW_SHOT)),
        Section(
            "pca",
            "PCA of test-video embeddings (the paper's Figure 5)",
            figures=figs("pca"),
            wide_figures=True,
        ),
        Section(
            "timelines",
            "Emotion timelines",
            [
                "Each line is one class's probability for each clip, at the clip's centre in the "
                "video (seconds). The bold line is the class the video was given (PBV); the labels "
                "at its end name the PBV and MV decisions; the squares along the top are each "
                "clip's own decision, the votes MV counts.",
                "Which videos: " + timeline.CHOICE_RULE,
            ],
            figures=figs("timeline"),
            wide_figures=True,
        ),
        Section("missing", "Missing inputs", items=missing or ["Nothing: every input was found."]),
    ]


def _few_shot_section(tables: list[Table], figures: list) -> list[report_html.Section]:
    """The few-shot curve's section (its table and figures), or none for runs without one."""
    if not figures:
        return []
    return [
        report_html.Section(
            "few-shot",
            "Few-shot: UAR against training videos",
            ["Error bars: sample std over folds × draws; dots: each fold and draw."],
            tables=[render_html(t) for t in tables if t.name == FEW_SHOT],
            figures=figures,
        )
    ]


def _pca_figures(
    probe_runs: list[ProbeRun],
    names: dict[Path, str],
    out_dir: Path,
    candidates: list,
    fold: int | None,
    device: str,
) -> tuple[list[tuple[str, Path]], list[str]]:
    """Each probe run's PCA figure (caption, path), and what could not be drawn."""
    drawn, missing = [], []
    for run in probe_runs:
        try:
            path = pca_for_run(
                run,
                out_dir / f"pca-{names[run.path]}.png",
                fold=fold,
                caches=candidates,
                device=device,
            )
        except (VjferError, OSError, KeyError) as err:
            missing.append(f"PCA figure for {run.path}: {err}")
            continue
        drawn.append((f"{run.path.name}: PCA of test-fold embeddings (the paper's Figure 5)", path))
    return drawn, missing


def _report_lines(
    candidates: list,
    tables: list[Table],
    figures: list[tuple[str, Path]],
    timelines: bool,
    missing: list[str],
) -> list[str]:
    """report.md after its first line: the caches' coverage, the tables, the figures, what is
    missing."""
    lines = ["The same report as one self-contained page: report.html.", ""]
    # what the numbers cover (Cache.coverage): cached of all files found
    for cache_path in candidates:
        try:
            cache = open_cache(cache_path)
            lines.append(f"- {cache.dataset} cache {cache.path.name}: {cache.coverage()}")
        except CacheError as err:
            lines.append(f"- cache {cache_path}: not readable ({err})")
    lines += [""] if candidates else []
    for table in tables:
        lines += [render_markdown(table), f"Files: {table.name}.md, {table.name}.csv", ""]
    lines += ["## Figures", ""]
    lines += [f"### {caption}\n\n![{caption}]({path.name})\n" for caption, path in figures]
    lines += [f"Timelines show: {timeline.CHOICE_RULE}", ""] if timelines else []
    lines += ["## Missing", ""]
    lines += [f"- {m}" for m in missing] or ["Nothing: every input was found."]
    return lines


def _figures(
    probe_runs: list[ProbeRun],
    cross_runs: list[CrossRun],
    out_dir: Path,
    candidates: list,
    pca_fold: int | None,
    device: str,
) -> tuple[dict[str, list[tuple[str, Path]]], list[str]]:
    """The report's figures but the timelines (kind -> [(caption, PNG)]) and what could not be
    drawn: confusion matrices, PCA, UAR per layer and the few-shot curves."""
    names = _labels_for([r.path for r in probe_runs] + [r.path for r in cross_runs])
    figures = {"confusion": _confusion_figures(probe_runs, cross_runs, names, out_dir)}
    figures["pca"], not_drawn = _pca_figures(
        probe_runs, names, out_dir, candidates, pca_fold, device
    )
    figures["layers"] = [
        (f"{run.path.name}: UAR per encoder layer", drawn)
        for run in probe_runs
        if (drawn := layer_figure_for_run(run.path, out_dir / f"layers-{names[run.path]}.png"))
    ]
    figures[FEW_SHOT] = [
        (f"{run.path.name}: few-shot UAR", drawn)
        for run in probe_runs
        if (drawn := few_shot_figure_for_run(run.path, out_dir / f"few-shot-{names[run.path]}.png"))
    ]
    return figures, not_drawn


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    caches: Mapping[str, str | Path] | Sequence[str | Path] = (),
    pca_fold: int | None = None,
    device: str = "cpu",
    peers: str | Path | None = None,
    require_runs: bool = False,
) -> list[Path]:
    """Gather the probe and cross runs at or under `run_dirs` and write into `out_dir`: Tables
    II-IV and the detail tables (md, csv), confusion matrices (PNG, folds summed, row-normalised),
    the PCA figure and emotion timelines per probe run, report.md linking them and listing what is
    missing, and report.html, the same as one self-contained page (last in the list returned).

    Args:
        caches: cache paths (or dataset -> path) to look for each run's training cache in, for
            the PCA figure, the failures list and the timelines; the path each probe recorded is
            tried last.
        pca_fold: the fold whose test videos the PCA figure shows (default: the run's first).
        peers: a peers CSV instead of the packaged vjfer/data/peers.csv.
        require_runs: ConfigError, before anything is written, when no run is found (`vjfer
            report`); else a report of the published rows alone.
    """
    out_dir = Path(out_dir)
    probe_runs, cross_runs, missing = find_runs(run_dirs)
    check_pairs(probe_runs, cross_runs)
    where = ", ".join(str(p) for p in run_dirs)
    _refuse_all_unreadable(probe_runs, cross_runs, missing, where)
    if require_runs and not probe_runs and not cross_runs:
        raise ConfigError(
            f"no probe or cross run at or under {where}: a report would hold the published rows "
            "only; run `vjfer probe` (and `vjfer cross`) first"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    candidates = list(caches.values()) if isinstance(caches, Mapping) else list(caches)
    run_caches, caches_not_found = _run_caches(probe_runs, candidates)
    for run in probe_runs:  # the protocol columns read them
        run.settings = _run_settings(run.path, run_caches.get(run.path))
    tables, not_found = _tables(probe_runs, cross_runs, load_peers(peers), where)
    missing += not_found
    written = [path for table in tables for path in write_table(table, out_dir)]
    if probe_runs or cross_runs:  # the intervals' settings, beside the tables they made
        written.append(out_dir / "bootstrap.json")
        write_json(written[-1], bootstrap_record(probe_runs, cross_runs))
    figures, not_drawn = _figures(probe_runs, cross_runs, out_dir, candidates, pca_fold, device)
    missing += not_drawn
    missing += caches_not_found
    names = _labels_for([r.path for r in probe_runs] + [r.path for r in cross_runs])
    figures["timeline"], not_drawn = _timeline_figures(probe_runs, run_caches, names, out_dir)
    missing += not_drawn
    details = detail_tables(probe_runs, list(run_caches.values()))
    written += [path for table in details for path in write_table(table, out_dir)]
    kinds = ("confusion", "layers", FEW_SHOT, "pca", "timeline")
    all_figures = [f for kind in kinds for f in figures[kind]]
    written += [path for _, path in all_figures]
    lines = [f"Runs read from {where}: {len(probe_runs)} probe, {len(cross_runs)} cross-dataset."]
    lines += _report_lines(
        candidates, [*tables, *details], all_figures, bool(figures["timeline"]), missing
    )
    for m in missing:
        log.warning("report: %s", m)
    index = out_dir / "report.md"
    index.write_text("\n".join(["# vjfer report", "", *lines]) + "\n", encoding="utf-8")
    lead = f"{lines[0]} Every table is also a CSV file beside this page."
    page = _write_page(out_dir / "report.html", lead, tables, details, figures, missing)
    return [*written, index, page]


def _write_page(
    path: Path,
    lead: str,
    tables: list[Table],
    details: list[Table],
    figures: dict[str, list[tuple[str, Path]]],
    missing: list[str],
) -> Path:
    """report.html: the report as one self-contained page, stamped with vjfer's version."""
    footer = (
        f"Written by vjfer {vjfer.__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC."
    )
    sections = _page_sections(tables, details, figures, missing)
    return report_html.write_page(path, "vjfer report", lead, sections, footer)
