"""Finding what the stages wrote: the one cache that fits, a probe run and its fold probes.

One rule each, and an error that lists what was found: `one_cache` (what `vjfer probe` trains from),
`training_cache` (a probe's, by fingerprint), `find_target_cache` (the other dataset's cache by the
same encoder, for `vjfer cross`), `find_probe_run` and `find_probes` (a run's `fold-K/probe.pt`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from vjfer.cache import Cache, find_caches, open_cache, read_manifest
from vjfer.cache.format import canonical_json, read_shard_header
from vjfer.cache.reader import incomplete_message
from vjfer.errors import CacheError, CheckpointError, ConfigError
from vjfer.labels import check_dataset

# Cache settings (vjfer.extract.cache_settings) that choose which clips of which videos a cache
# holds, not what a clip's tokens are: a probe may read another dataset's cache that differs in
# these. Every other fingerprint input (encoder, checkpoint, compute and storage dtype, resolution,
# normalisation, face crop, store format, tokens version, and any input added later) must agree.
# Views may differ too: a probe averages over a clip's views, so 3crop tokens of a center-trained
# probe are a test-time choice, as in within-dataset evaluation.
CLIP_SELECTION = (
    "dataset",
    "plan",
    "hop",
    "views",
    "windows_version",
    "augment",
    "shard_size",
    "limit",
    "max_lost_frames",
    "dedup_streams",  # layout and which videos
    "list",  # a list file: which items, their labels and folds
)
# What to say when a token setting differs (the default: made by the same encoder).
SAME_TOKENS_NEED = {
    "store_format": "tokens stored in the same format (`vjfer cache convert --store FORMAT`)",
    "store_pca": "tokens stored in the same format (the same PCA basis)",
    "face_crop": "frames cropped the same way (`vjfer extract --face-crop`)",
    "tokens_version": "tokens made by the same vjfer tokens version (re-extract the older cache)",
}
FOLD_DIR = re.compile(r"^fold-(\d+)$")
CROSS_DIR = "cross"  # a probe run's cross-dataset results: RUN/cross/cross-<src>-to-<dst>-<calm>/


def _differing_field(have: object, want: object, name: str) -> str | None:
    """The first (dotted) field name where two settings values differ, or None."""
    if isinstance(have, dict) and isinstance(want, dict):
        for key in sorted(set(have) | set(want)):
            if key not in have or key not in want:
                return f"{name}.{key}"
            if sub := _differing_field(have[key], want[key], f"{name}.{key}"):
                return sub
        return None
    return None if canonical_json(have) == canonical_json(want) else name


PER_DATASET = ("boxes_file", "boxes_sha256")  # face_crop fields: each dataset has its own boxes


def token_mismatch(have: dict, want: dict) -> str | None:
    """What differs between two caches' settings (`have`: the probe's training cache) in the
    first token setting they disagree on, and what cross-dataset evaluation needs; None when
    every setting but `CLIP_SELECTION` agrees."""
    for key in sorted((set(have) | set(want)) - set(CLIP_SELECTION)):
        a, b = have.get(key), want.get(key)
        if key == "face_crop" and isinstance(a, dict) and isinstance(b, dict):
            a, b = ({k: v for k, v in d.items() if k not in PER_DATASET} for d in (a, b))
        if (field_name := _differing_field(a, b, key)) is not None:
            need = SAME_TOKENS_NEED.get(key, "both caches made by the same encoder")
            return (
                f"{key}={canonical_json(have.get(key))} against {key}="
                f"{canonical_json(want.get(key))} (field {field_name!r} differs): "
                f"cross-dataset evaluation needs {need}"
            )
    return None


def check_same_encoder(probe_settings: dict, cache: Cache, probe_path: Path) -> None:
    """Raise CacheError naming the first token setting in which the probe's training cache and
    `cache` differ (`token_mismatch`)."""
    if (mismatch := token_mismatch(probe_settings, cache.settings)) is not None:
        raise CacheError(
            f"{probe_path} was trained on tokens that differ from those of cache {cache.path}: "
            f"{mismatch}"
        )


def one_cache(cache_root: Path, dataset: str | None, fingerprint: str | None = None) -> Path:
    """The single cache at or under `cache_root` (of `dataset`), or an error listing the choices."""
    found = find_caches(cache_root, complete=True)  # each manifest read, no cache opened
    if dataset is not None:
        found = [p for p in found if read_manifest(p)["dataset"] == dataset]
    if fingerprint is not None:
        found = [p for p in found if read_manifest(p)["fingerprint"].startswith(fingerprint)]
    if len(found) == 1:
        return found[0]
    what = f"{dataset or 'any dataset'} cache" + (
        f" with fingerprint {fingerprint}" if fingerprint else ""
    )
    if not found:
        partial = [p for p in find_caches(cache_root) if p not in find_caches(cache_root, True)]
        partial = [p for p in partial if dataset is None or _dataset_of(p) == dataset]
        if partial:  # an interrupted extraction or convert: name the command that resumes it
            raise CacheError(incomplete_message(partial[0]))
        raise ConfigError(
            f"no {what} under {cache_root}: run `vjfer extract` first, or give --cache"
        )
    listing = "\n  ".join(str(p) for p in found)
    raise ConfigError(
        f"{len(found)} {what}s under {cache_root}; choose one with --cache (and --dataset):\n  "
        f"{listing}"
    )


def _dataset_of(directory: Path) -> str:
    """The dataset of an unfinished cache: its first shard's, else the folder it sits in (a
    convert's target may sit anywhere; an extraction's sits in <cache>/<dataset>/)."""
    for shard in sorted(directory.glob("shard-*.h5")):
        try:
            return str(read_shard_header(shard)["dataset"])
        except CacheError:
            continue
    return directory.parent.name


def training_cache(meta: dict, candidates: Sequence[str | Path]):
    """The cache a probe was trained from: the first of `candidates`, then the path it recorded,
    whose fingerprint is the one the probe recorded."""
    want = meta["cache"]["fingerprint"]
    tried = []
    for path in [*candidates, meta["cache"]["path"]]:
        try:
            cache = open_cache(path)
        except CacheError as err:
            tried.append(f"{path}: {err}")
            continue
        if cache.fingerprint == want:
            return cache
        tried.append(f"{path}: fingerprint {cache.fingerprint[:8]}")
    raise CacheError(f"no cache with fingerprint {want[:8]} (tried {'; '.join(tried)})")


def find_probes(run_dir: str | Path) -> dict[int, Path]:
    """fold -> `fold-K/probe.pt` of a probe run directory, by fold; raises if there is none."""
    run_dir = Path(run_dir)
    found = {}
    for sub in sorted(run_dir.iterdir()) if run_dir.is_dir() else ():
        if (m := FOLD_DIR.match(sub.name)) and (sub / "probe.pt").is_file():
            found[int(m.group(1))] = sub / "probe.pt"
    if not found:
        raise CheckpointError(f"no fold-K/probe.pt under {run_dir} (is it a `vjfer probe` run?)")
    return dict(sorted(found.items()))


def find_probe_run(runs_root: str | Path, dataset: str) -> Path:
    """The one probe run of `dataset` at or under `runs_root` (a summary.json of `vjfer probe`
    with fold-K/probe.pt beside it); ConfigError listing the candidates if not exactly one."""
    dataset, root = check_dataset(dataset), Path(runs_root)
    found = []
    for summary in sorted(root.rglob("summary.json")) if root.is_dir() else ():
        info = json.loads(summary.read_text(encoding="utf-8"))
        if info.get("kind") != "cross" and info.get("dataset") == dataset:
            if any((summary.parent / f"fold-{k}" / "probe.pt").is_file() for k in info["folds"]):
                found.append(summary.parent)
    if len(found) != 1:
        listed = ", ".join(map(str, found)) or "none"
        raise ConfigError(
            f"need exactly one {dataset} probe run under {root}; found {listed} (name the run dir)"
        )
    return found[0]


def find_target_cache(cache_root: str | Path, dataset: str, run_dir: str | Path) -> Path:
    """The one complete cache of `dataset` under `cache_root` made with the encoder settings of
    the probes in `run_dir`; CacheError listing what was found if not exactly one."""
    dataset, root = check_dataset(dataset), Path(cache_root)
    probe_path = next(iter(find_probes(run_dir).values()))
    settings = json.loads((probe_path.parent / "config.json").read_text())["cache"]["settings"]
    fits, others = [], []
    for manifest in sorted(root.rglob("manifest.json")) if root.is_dir() else ():
        try:
            cache = open_cache(manifest)
            if cache.dataset == dataset:
                check_same_encoder(settings, cache, probe_path)
                fits.append(cache.path)
        except CacheError as err:
            others.append(f"{manifest.parent} ({err})")
    if len(fits) != 1:
        unusable = f"; not usable: {'; '.join(others)}" if others else ""
        raise CacheError(
            f"need exactly one {dataset} cache made like {run_dir}'s under {root}; found "
            f"{', '.join(map(str, fits)) or 'none'}{unusable}"
        )
    return fits[0]
