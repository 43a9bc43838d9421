"""Stage 2: probes trained and evaluated from the feature cache alone (DESIGN.md, "Probes").

`model` holds the attentive and linear probes, `train` the training loop, `run` a run of all folds
written to disk, `evaluate` clip scoring and whole-video voting (PBV, MV).
"""

from vjfer.probe.evaluate import format_summary, predict_videos, vote_mv, vote_pbv
from vjfer.probe.model import AttentiveProbe, LinearProbe, load_probe
from vjfer.probe.run import run_probe, train_folds
from vjfer.probe.train import TrainConfig, train_fold

__all__ = [
    "AttentiveProbe", "LinearProbe", "TrainConfig", "format_summary", "load_probe", "predict_videos",
    "run_probe", "train_fold", "train_folds", "vote_mv", "vote_pbv",
]  # fmt: skip
