"""The field's evaluation protocols as named presets (`vjfer extract --protocol NAME`).

A number is comparable with a published row only when the frames, views and test files are the
ones the row was computed on. Each preset sets, in one word, what the peer's public loader does
at test time: the clip plan and frame step (per dataset), the spatial view, and for RAVDESS the
modality and fold protocol. What no preset can change (the encoder's resolution; a frozen probe
instead of fine-tuning) is stated in `Protocol.differs` and printed with the plan line.

The rules, from the peers' code (docs/comparing.md has the commands):
- `paper`: Eing et al. 2026 / lennarteingunia/vjepa-for-fer: 16 frames over 64 (the reference's
  linspace), every 8th evaluation window, short side to int(R·256/224) then the centre R×R.
- `mae-dfer`: sunlicai/MAE-DFER `kinetics.py` (VideoClsDatasetFrame, test mode) with the step of
  its `scripts/<dataset>/*.sh` (`sr`): every K-th frame, two test views (the first and the last 16),
  the whole face frame resized to a square. HiCMAE/SVFAP share the loader. Its RAVDESS split files
  hold the video-only (02) files of 6 folds of 4 actors.
- `dfer-clip`: zengqunzhao/DFER-CLIP `dataloader/video_dataloader.py`: the middle frame of 16 equal
  segments, one view, the whole frame resized to a square.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vjfer.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    """What a preset sets on `vjfer extract` (field names of `ExtractConfig`) and `vjfer probe`."""

    name: str
    source: str  # the file (and repository) whose rule it follows
    plan: str
    views: str
    datasets: tuple[str, ...]  # the datasets the source defines it for
    steps: Mapping[str, int] = field(default_factory=dict)  # frame step per dataset (`stride`)
    default_step: int | None = None  # the step on a dataset the source does not name
    modality: Mapping[str, int] = field(default_factory=dict)  # dataset -> RAVDESS MM kept
    splits: Mapping[str, str] = field(default_factory=dict)  # dataset -> `vjfer probe --splits`
    differs: str = ""  # what stays different from the source's own numbers

    def frame_step(self, dataset: str) -> int | None:
        """The frame step this preset uses on `dataset` (None: the plan's own)."""
        return self.steps.get(dataset, self.default_step)

    def settings(self, dataset: str) -> dict:
        """`ExtractConfig` field -> value this preset sets on `dataset`."""
        out: dict = {"plan": self.plan, "views": self.views}
        if (step := self.frame_step(dataset)) is not None:
            out["frame_step"] = step
        if dataset in self.modality:
            out["modality"] = self.modality[dataset]
        return out

    def plan_line(self, dataset: str) -> str:
        """One line for `index`/`extract` to print before work starts."""
        sets = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.settings(dataset).items())
        if dataset in self.splits:
            sets += f"; probe --splits {self.splits[dataset]}"
        where = (
            f"defined for {dataset}"
            if dataset in self.datasets
            else f"not defined for {dataset} (defined for {', '.join(self.datasets)}): its rule "
            "applied as is"
        )
        line = f"protocol {self.name} ({self.source}; {where}): {sets}"
        return line + (f". Still differs: {self.differs}" if self.differs else "")


PAPER = Protocol(
    name="paper",
    source="Eing et al. 2026, lennarteingunia/vjepa-for-fer evals/",
    plan="windows",
    views="center",
    datasets=("ravdess", "crema-d"),
)
MAE_DFER = Protocol(
    name="mae-dfer",
    source="sunlicai/MAE-DFER kinetics.py VideoClsDatasetFrame + scripts/<dataset>/*.sh",
    plan="stride",
    views="whole",
    datasets=("dfew", "ferv39k", "mafw", "ravdess"),
    # sr in MAE-DFER's scripts; RAVDESS/CREMA-D: HiCMAE's scripts of the same loader use sr=4
    steps={"dfew": 4, "mafw": 4, "ferv39k": 1},
    default_step=4,
    modality={"ravdess": 2},
    splits={"ravdess": "mae-dfer"},
    differs="a frozen encoder and probe (MAE-DFER fine-tunes 100 epochs); the encoder's "
    "resolution (MAE-DFER: 160 px)",
)
DFER_CLIP = Protocol(
    name="dfer-clip",
    source="zengqunzhao/DFER-CLIP dataloader/video_dataloader.py",
    plan="segments",
    views="whole",
    datasets=("dfew", "ferv39k", "mafw"),
    differs="a frozen encoder and probe (DFER-CLIP fine-tunes CLIP); the encoder's resolution "
    "(DFER-CLIP: 224 px); DFER-CLIP reports its best epoch on the test set, vjfer its last",
)
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (PAPER, MAE_DFER, DFER_CLIP)}


def get_protocol(name: str) -> Protocol:
    """The preset called `name`; one line naming the known ones otherwise."""
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown --protocol {name!r}; use one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]
