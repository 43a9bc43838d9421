"""What a table row compared: its protocol, aspect by aspect, in words and as a short code.

A number is comparable with another only under the same protocol: the folds, which frames make a
clip (sampling and frame step), which clips are scored (test views), the spatial view and
resolution, a frozen or fine-tuned encoder, the metric's definition, the voting rule, and whether a
figure is a mean over folds or pooled over them. A vjfer row's protocol is read from its cache
settings and run summary (`run_aspects`); a published row's from the `protocol` column of
vjfer/data/peers.csv (`peer_aspects`). `ProtocolCodes` names each distinct protocol of a report
P1, P2, ... for the tables' Protocol cells, with a legend for their notes.

Caches made before a setting existed read as what they hold: no `frame_step` is the V-JEPA step 4,
no `face_crop` is whole frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from vjfer.clips import FRAME_STEP, FRAMES_PER_CLIP
from vjfer.errors import ConfigError

# The aspects, in the order a protocol is written: "folds: ...; sampling: ...; ...".
ASPECTS = (
    "folds",
    "sampling",
    "test views",
    "spatial",
    "training",
    "metric",
    "voting",
    "figure",
)
NOT_STATED = "not stated"  # a peer's source does not say
NO_CACHE = "not recorded (no cache settings: cache not found and the run did not record them)"
SEPARATOR = "; "

# summary["splits"] (`datasets.folds.SPLITS`) in words; runs made before it was recorded used the
# paper's folds.
FOLDS = {
    "paper": "5-fold by actor (the paper's splits)",
    "mae-dfer": "6-fold by actor (MAE-DFER split01..06: fold k = actors 4k-3..4k)",
    "file": "the list file's folds",
    "groups": "seeded group folds of the list file",
}
OFFICIAL = {
    "dfew": "official 5-fold (single-labelled)",
    "mafw": "official 5-fold (single-labelled)",
    "ferv39k": "official train/test",
}
RAVDESS_FILES = {1: "01 (audio-video) files only", 2: "02 (video-only) files only"}
METRIC = 'UAR = mean per-class recall, WAR = accuracy (macro precision = the paper\'s "UAR")'
VOTING = {
    "pbv": "PBV: clip probabilities summed, argmax",
    "mv": "MV: majority of the clips' own decisions",
}
FIGURE = "mean over folds (pooled columns: all folds' test predictions pooled)"


def fold_protocol(
    dataset: str, splits: str, settings: Mapping | None, modality: int | None = None
) -> str:
    """The folds in words; on RAVDESS also which modality files were used: `modality` (the
    run's `--modality`), else the cache's."""
    text = OFFICIAL.get(dataset, splits) if splits == "official" else FOLDS.get(splits, splits)
    if dataset == "ravdess" and (settings is not None or modality is not None):
        if modality is None:  # `extract --modality` (MM 01 / 02); none: both
            modality = (settings or {}).get("modality")
        held = RAVDESS_FILES.get(int(modality), f"modality {modality}") if modality else None
        text += ", " + (held or "01 and 02 files")
    return text


def sampling(settings: Mapping) -> tuple[str, str]:
    """(sampling and step, test views) of a cache's clip plan."""
    plan, hop = settings.get("plan"), settings.get("hop")
    step = int(settings.get("frame_step") or FRAME_STEP)  # caches before the setting: step 4
    span = f"{FRAMES_PER_CLIP} frames over {FRAMES_PER_CLIP * step} (V-JEPA linspace)"
    windows = f"every hop-{hop} window, probabilities averaged"
    plans = {
        "windows": (span, windows),
        "reference": (f"{span}; training: the reference's 8 clips", windows),
        "reference-train": (f"{span}: the reference's 8 training clips", "those 8 clips"),
        "reference-eval": (span, "every stride-1 window, probabilities averaged"),
        "stride": (
            f"stride {step}: frames 0, {step}, {2 * step}, ..., the last repeated to "
            f"{FRAMES_PER_CLIP} (MAE-DFER)",
            f"2 views: the first and the last {FRAMES_PER_CLIP} strided frames (1 when they "
            "coincide), probabilities averaged",
        ),
        "segments": (
            f"{FRAMES_PER_CLIP} segment middles (DFER-CLIP)",
            f"1 view: the {FRAMES_PER_CLIP} segment middles",
        ),
    }
    if plan not in plans:  # a plan this vjfer does not know, or none recorded
        what = f"plan {plan}" if plan else "plan not recorded"
        return what, what
    found, views = plans[plan]
    if (preset := settings.get("protocol")) is not None:  # `extract --protocol`, where recorded
        found += f" (preset {preset})"
    return found, views


def spatial(settings: Mapping) -> str:
    """The spatial view and resolution R of a cache, and its face crop."""
    views, R = settings.get("views"), settings.get("resolution")
    text = {
        "center": f"short side to {int(R * 256 / 224)}, centre {R}×{R}" if R else "",
        "3crop": f"short side to {R}, 3 crops {R}×{R} along the long side" if R else "",
        "whole": f"whole frame resized to {R}×{R}" if R else "",
    }.get(views or "") or (f"views {views}, resolution {R}" if views else NO_CACHE)
    if isinstance(face := settings.get("face_crop"), Mapping):
        text += f", of face crops ({face.get('method')}, margin {face.get('margin')})"
    return text


def run_aspects(
    dataset: str,
    splits: str,
    probe: str,
    voting: str,
    settings: Mapping | None,
    modality: int | None = None,
) -> dict[str, str]:
    """A vjfer row's protocol: aspect -> text, from its run (dataset, fold protocol, probe,
    voting rule, RAVDESS modality if it chose one) and its cache's settings (None: not found,
    and not recorded by the run)."""
    if settings is None:
        sampled, views, space, encoder = NO_CACHE, NO_CACHE, NO_CACHE, "encoder"
    else:
        (sampled, views), space = sampling(settings), spatial(settings)
        encoder = str(settings.get("encoder", "encoder"))
    return {
        "folds": fold_protocol(dataset, splits, settings, modality),
        "sampling": sampled,
        "test views": views,
        "spatial": space,
        "training": f"frozen {encoder} + {probe} probe",
        "metric": METRIC,
        "voting": VOTING.get(voting, voting),
        "figure": FIGURE,
    }


def peer_aspects(text: object, where: str = "peers.csv") -> dict[str, str]:
    """A peers.csv `protocol` cell as aspect -> text: "aspect: text; aspect: text" (aspects of
    ASPECTS; those not given are "not stated"). A cell without aspect names (an older peers
    file) is its folds; an empty cell states nothing."""
    out = dict.fromkeys(ASPECTS, NOT_STATED)
    if not isinstance(text, str) or not text.strip():
        return out
    parts = [p.strip() for p in text.strip().split(SEPARATOR.strip())]
    named = [p.partition(":") for p in parts]
    if not any(name.strip() in ASPECTS for name, _, _ in named):
        out["folds"] = text.strip()
        return out
    for name, colon, value in named:
        if not colon or name.strip() not in ASPECTS:
            raise ConfigError(
                f"{where}: protocol part {name.strip()!r} names no aspect; write "
                f'"aspect: text" parts joined by "{SEPARATOR}", aspects: {", ".join(ASPECTS)}'
            )
        out[name.strip()] = value.strip()
    return out


def protocol_text(aspects: Mapping[str, str]) -> str:
    """The aspects as one line, in ASPECTS order: "folds: ...; sampling: ...; ..."."""
    return SEPARATOR.join(f"{a}: {aspects[a]}" for a in ASPECTS if a in aspects)


def short_text(aspects: Mapping[str, str]) -> str:
    """`protocol_text` of the aspects stated, then the names of those not stated."""
    stated = {a: t for a, t in aspects.items() if t != NOT_STATED}
    silent = [a for a in ASPECTS if aspects.get(a, NOT_STATED) == NOT_STATED]
    if not stated:
        return "nothing stated"
    return protocol_text(stated) + (f"; {NOT_STATED}: {', '.join(silent)}" if silent else "")


class ProtocolCodes:
    """P1, P2, ... for the distinct protocols of a report, in the order they are first met, so
    Tables II and III share one legend."""

    def __init__(self) -> None:
        self.protocols: dict[str, dict[str, str]] = {}  # code -> aspects
        self._codes: dict[str, str] = {}  # protocol_text -> code

    def code(self, aspects: Mapping[str, str]) -> str:
        text = protocol_text(aspects)
        if text not in self._codes:
            self._codes[text] = f"P{len(self._codes) + 1}"
            self.protocols[self._codes[text]] = dict(aspects)
        return self._codes[text]

    def legend(self, codes) -> list[str]:
        """One note line per code in `codes` (e.g. a table's Protocol cells), in code order."""
        used = {c for c in codes if isinstance(c, str) and c in self.protocols}
        return [f"{c}: {short_text(self.protocols[c])}." for c in self.protocols if c in used]

    def frame(self) -> pd.DataFrame:
        """One row per code, one column per aspect."""
        rows = [{"Code": c, **{a.capitalize(): p[a] for a in ASPECTS}} for c, p in self.items()]
        return pd.DataFrame(rows, columns=["Code", *(a.capitalize() for a in ASPECTS)])

    def items(self):
        return self.protocols.items()
