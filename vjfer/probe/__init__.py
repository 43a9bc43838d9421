"""Stage 2: probes trained and evaluated from the feature cache alone (docs/design.md, "Stage 2").

`model` holds the attentive and linear probes, `reader` reads cached clips at disk speed, `train`
trains many heads from one pass over the cache, `folds` sets up every fold (and a grid of heads with
inner-validation selection) in that pass, `run` writes a run to disk, `evaluate` scores clips and
votes per video (PBV, MV).
"""

from vjfer.probe.evaluate import format_run_summary, predict_cached_videos, vote_mv, vote_pbv
from vjfer.probe.folds import GridPoint, make_grid, train_fold, train_grid
from vjfer.probe.model import AttentiveProbe, LinearProbe, load_probe
from vjfer.probe.run import run_probe, train_folds
from vjfer.probe.train import TrainConfig

__all__ = [
    "AttentiveProbe", "GridPoint", "LinearProbe", "TrainConfig", "format_run_summary", "load_probe", "predict_cached_videos",
    "make_grid", "run_probe", "train_fold", "train_folds", "train_grid", "vote_mv", "vote_pbv",
]  # fmt: skip
