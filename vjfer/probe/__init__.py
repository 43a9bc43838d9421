"""Stage 2: probes trained and evaluated from the feature cache alone (docs/design.md, "Stage 2").

`config` holds the training options, `model` the attentive and linear probes, `reader` reads cached
clips at disk speed, `head` is one probe in training, `train` trains many heads from one pass over
the cache, `folds` sets up every fold (and a grid of heads with inner-validation selection) in that
pass, `evaluate` scores clips and votes per video (PBV, MV), `summary` sums a run up, and `run`
writes a run to disk (`run_request`: `vjfer probe` as one function).
"""

from vjfer.probe.config import TrainConfig
from vjfer.probe.folds import GridPoint, make_grid
from vjfer.probe.model import load_probe
from vjfer.probe.run import ProbeRequest, run_probe, run_request, train_folds

__all__ = [
    "GridPoint",
    "ProbeRequest",
    "TrainConfig",
    "load_probe",
    "make_grid",
    "run_probe",
    "run_request",
    "train_folds",
]
