"""`vjfer cache convert`: an existing fp16 cache in a compact store format, and what that cost.

Source shard i becomes target shard i (same videos, rows, failures and aliases; tokens re-stored by
`vjfer.store`), written as `.partial`, fsynced and renamed like extraction's, so an interrupted run
resumes to the bytes of an uninterrupted one; the source is only read. The target's settings add
`store_format` (and `store_pca`), so its fingerprint is its own; it records the source's
(`lineage`).

A `pca:K` cache belongs to one test fold (`--pca-fold K`): its basis is fitted on the other folds'
clips only, so no test video leaks into it, and `vjfer probe` refuses any other fold on it.
`store_cost.json` (and `vjfer cache compare A B`) holds the size ratio and, on a seeded sample of
clips mapped back to the source's token space, the relative L2 error and per-token cosine; with
`--run DIR`, each fold's probe's clip-level agreement and largest |Δ softmax| (docs/stage2.md,
"Compact caches").
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from vjfer.cache import Cache, VideoEntry, open_cache
from vjfer.cache.format import (
    CONVERT_RECORD,
    MANIFEST,
    SOURCE_COLUMNS,
    _plain,
    cache_dir_name,
    fingerprint,
    read_shard_header,
    size_ratio,
)
from vjfer.cache.writer import (
    ShardWriter,
    atomic_write_text,
    manifest_from_shards,
    shard_header,
    write_manifest,
)
from vjfer.errors import CacheError, ConfigError
from vjfer.files import read_json_object
from vjfer.lock import FileLock
from vjfer.store import Codec, StoreFormat, pool2

log = logging.getLogger(__name__)

COST_FILE = "store_cost.json"
PCA_CLIPS = 512  # clips of training videos the basis is fitted on (all when fewer)
COST_CLIPS = 64  # clips the token error and probe agreement are measured on


@dataclass(frozen=True)
class ConvertConfig:
    """Every option of `vjfer cache convert` and its default."""

    source: Path
    store: str
    out: Path | None = None  # default: beside the source, named like extraction names caches
    pca_fold: int | None = None  # pca: the test fold; the basis is fitted on the other folds
    pca_clips: int = PCA_CLIPS
    cost_clips: int = COST_CLIPS
    run: Path | None = None  # a probe run on the source: measure its agreement
    seed: int = 0  # the clip samples (PCA fit, cost)


@dataclass
class ConvertSummary:
    directory: Path
    shards_written: int
    shards_skipped: int
    cost: dict


# ---------------------------------------------------------------------------------------------
# Pure helpers.


def sample_clips(cache: Cache, rows: np.ndarray, clips: int, seed: int) -> list[tuple[str, int]]:
    """(video_id, clip) pairs: `clips` stored clips of the videos at `rows`, seeded, sorted."""
    videos = cache.videos.iloc[np.asarray(rows, dtype=np.int64)]
    videos = videos[videos["alias_of"] == ""]  # a shared stream's clips are its twin's
    where = [
        (v, c)
        for v, n in zip(videos["video_id"], videos["n_clips"], strict=True)
        for c in range(int(n))
    ]
    picked = np.random.default_rng(seed).choice(len(where), min(clips, len(where)), replace=False)
    return sorted(where[i] for i in picked)


def fit_pca(
    cache: Cache, k: int, test_fold: int, *, pool: int = 1, clips: int = PCA_CLIPS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Top-k principal directions of the tokens of clips of videos *not* in `test_fold`.

    Returns (basis float32 [D, k], mean float32 [D], the video ids that contributed). Each
    direction's sign makes its largest-magnitude entry positive, so the basis is deterministic.
    """
    folds = cache.videos["fold"].to_numpy()
    if test_fold not in set(folds.tolist()):
        raise ConfigError(
            f"--pca-fold {test_fold}: cache {cache.path} holds folds {sorted(set(folds.tolist()))}"
        )
    train = np.flatnonzero(folds != test_fold)
    picked = sample_clips(cache, train, clips, seed)
    D = cache.embed_dim
    total, gram, count = np.zeros(D), np.zeros((D, D)), 0
    by_video: dict[str, list[int]] = {}
    for vid, c in picked:
        by_video.setdefault(vid, []).append(c)
    for vid, cs in by_video.items():  # float64 sums: no token matrix held, order-independent
        x = torch.from_numpy(np.ascontiguousarray(cache.tokens(vid)[cs]))  # [c, V, N, D]
        if pool == 2:  # the basis of pool2+pca is fitted on pooled tokens
            x = pool2(x, cache.grid)
        x = x.reshape(-1, D).double()
        total += x.sum(0).numpy()
        gram += (x.T @ x).numpy()
        count += x.shape[0]
    mean = total / count
    cov = gram / count - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)  # ascending
    basis = vectors[:, ::-1][:, :k]
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(k)])
    basis = basis * np.where(signs == 0, 1, signs)
    log.info(
        "PCA basis: %d directions keep %.1f%% of the variance of %d tokens (%d clips of %d "
        "videos outside fold %d)",
        k,
        100 * values[::-1][:k].sum() / max(values.sum(), 1e-30),
        count,
        len(picked),
        len(by_video),
        test_fold,
    )
    return basis.astype(np.float32), mean.astype(np.float32), sorted(by_video)


def to_source_space(
    tokens: torch.Tensor,
    fmt: StoreFormat,
    grid: tuple[int, int, int],
    basis: tuple[np.ndarray, np.ndarray] | None,
) -> torch.Tensor:
    """Float tokens [..., N', D'] of a `fmt` cache -> [..., N, D] in the source's token space:
    projections times the basis plus the mean, pooled tokens repeated over their 2×2 block."""
    x = tokens.float()
    if fmt.pca:
        if basis is None:
            raise ValueError(f"a {fmt} cache needs its PCA basis to map tokens back")
        b, m = (torch.from_numpy(a) for a in basis)
        x = x @ b.T + m
    if fmt.pool == 2:
        t, h, w = grid
        *lead, _, D = x.shape
        x = x.reshape(*lead, t, h // 2, 1, w // 2, 1, D).expand(*lead, t, h // 2, 2, w // 2, 2, D)
        x = x.reshape(*lead, t * h * w, D)
    return x


def shard_entries(src: Cache, shard: str) -> tuple[list[VideoEntry], list[VideoEntry], list[dict]]:
    """(stored videos, aliases, failures) of one source shard, as a writer takes them; the tokens
    are left empty (a shard can hold gigabytes): `_write_shard` reads them one video at a time."""
    header = read_shard_header(src.path / shard)
    table = header["videos"]
    stored: list[VideoEntry] = []
    aliases: list[VideoEntry] = []
    for i, vid in enumerate(table["video_id"]):
        alias_of = table["alias_of"][i]
        face_status = face_box = None
        if "face_status" in table:
            x, y, w, h = (int(b) for b in table["face_box"][i])
            face_status, face_box = table["face_status"][i], (x, y, w, h) if w > 0 else None
        source = {k.removeprefix("source_"): _plain(table[k][i]) for k in SOURCE_COLUMNS}
        entry = VideoEntry(
            video_id=vid,
            label=int(table["label"][i]),
            actor=int(table["actor"][i]),
            fold=int(table["fold"][i]),
            n_frames=int(table["n_frames"][i]),
            fps=float(table["fps"][i]),
            frames=src.clip_frames(vid),
            tokens=np.empty(0, np.float16),
            face_status=face_status,
            face_box=face_box,
            lost_frames=int(table["lost_frames"][i]),
            container_frames=int(table["container_frames"][i]),
            source=_Source(**source) if source["size"] >= 0 else None,
            alias_of=alias_of,
            clip_role=None if alias_of else src.clip_roles(vid),  # training clips stay training
        )
        (aliases if alias_of else stored).append(entry)
    return stored, aliases, header["failures"]


@dataclass(frozen=True)
class _Source:
    """A source identity as the shard stores it (duck-types video.SourceIdentity)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    xxh3: str = ""


def target_settings(src: Cache, fmt: StoreFormat, pca: dict | None) -> dict:
    """The converted cache's fingerprint inputs: the source's plus its store format."""
    settings = {**src.settings, "store_format": str(fmt)}
    if pca is not None:
        settings["store_pca"] = pca
    return settings


# ---------------------------------------------------------------------------------------------
# Conversion.


def _write_shard(
    src: Cache, index: int, entry: dict, header: dict, codec: Codec, directory: Path
) -> None:
    stored, aliases, failures = shard_entries(src, entry["name"])
    V, N, D = src.shape
    writer = ShardWriter(directory / entry["name"], header, V, N, D, codec)
    try:
        by_owner: dict[str, list[VideoEntry]] = {}
        for a in aliases:
            by_owner.setdefault(a.alias_of, []).append(a)
        failed = {f["video_id"]: f for f in failures}
        by_id = {e.video_id: e for e in stored}
        for vid in entry["video_ids"]:  # the source's order: stored videos and failures, sorted
            if vid in failed:
                writer.add_failure(failed[vid])
                continue
            writer.append(replace(by_id[vid], tokens=src.tokens(vid)))
            for alias in by_owner.get(vid, []):
                writer.add_alias(alias)
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _write_record(config: ConvertConfig, fmt: StoreFormat, directory: Path) -> None:
    """convert.json, before the first shard: an interrupted or damaged converted cache names the
    command that (re)writes it (`cache.convert_command`)."""
    record = {
        "source": str(config.source),
        "store": str(fmt),
        "out": str(directory),
        "pca_fold": config.pca_fold,
    }
    atomic_write_text(directory / CONVERT_RECORD, json.dumps(record, indent=1))


def convert(config: ConvertConfig) -> ConvertSummary:
    """Write `config.source` in `config.store` format (resumable), then measure the cost."""
    src = open_cache(config.source)
    fmt, basis, mean, pca = _target_format(src, config)
    settings = target_settings(src, fmt, pca)
    fp = fingerprint(settings)
    if config.out is not None:
        directory = Path(config.out)
    else:
        name = cache_dir_name(settings["encoder"], settings["resolution"], fp)
        directory = src.path.parent / name
    if directory.resolve() == src.path.resolve():
        raise ConfigError(f"--out {directory} is the source cache; name another directory")
    directory.parent.mkdir(parents=True, exist_ok=True)
    with convert_lock(directory):  # one writer of the target until its cost is written
        check_target(directory, fp)
        directory.mkdir(parents=True, exist_ok=True)
        _write_record(config, fmt, directory)
        codec = Codec(fmt, src.grid, basis, mean, layers=len(src.layers or (0,)))
        written, skipped = _convert_shards(src, directory, settings, fp, codec)
        extra = {"excluded": src.manifest["excluded"]}
        if "config" in src.manifest:
            extra["config"] = src.manifest["config"]
        write_manifest(directory, manifest_from_shards(directory, extra))
        cost = compare_caches(
            src, open_cache(directory), clips=config.cost_clips, seed=config.seed, run=config.run
        )
        atomic_write_text(directory / COST_FILE, json.dumps(cost, indent=1) + "\n")
    return ConvertSummary(directory, written, skipped, cost)


def _fingerprints(directory: Path) -> set[str]:
    """The fingerprints the caches files in `directory` carry (its manifest's, its shards')."""
    found = set()
    if (directory / MANIFEST).is_file():
        manifest = read_json_object(directory / MANIFEST, CacheError)
        found.add(str(manifest.get("fingerprint")))
    for shard in directory.glob("shard-*.h5"):
        try:
            with h5py.File(shard, "r") as f:
                found.add(str(f.attrs.get("fingerprint")))
        except OSError:
            found.add(f"unreadable {shard.name}")
    return found


def check_target(directory: Path, fp: str) -> None:
    """`--out` is new, empty, or an interrupted convert to this very target (its convert.json
    written, every cache file of fingerprint `fp`); never a folder inside a cache, another cache,
    or a folder holding anything else (other caches below it)."""
    for parent in directory.resolve().parents:
        if (parent / MANIFEST).is_file() or any(parent.glob("shard-*.h5")):
            raise ConfigError(f"--out {directory} lies inside cache {parent}; name another folder")
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ConfigError(f"--out {directory} is a file; name a new or empty folder")
    if not any(directory.iterdir()):
        return
    found = _fingerprints(directory)
    if (directory / CONVERT_RECORD).is_file() and found <= {fp}:
        return  # an interrupted (or finished) convert of the same source to the same format
    what = (
        f"a cache of another fingerprint ({', '.join(sorted(f[:12] for f in found - {fp}))})"
        if found - {fp}
        else "files that are not this convert's"
    )
    raise ConfigError(
        f"--out {directory} holds {what}; name a new or empty folder (a convert interrupted "
        "there resumes when rerun with the same source and --store)"
    )


def convert_lock(directory: Path) -> FileLock:
    """The lock of a convert's target `directory`: `<directory>.lock` beside it (so the target
    holds only the cache), naming pid, host and since when; removed when released."""

    def refusal(holder: str) -> CacheError:
        return CacheError(
            f"{directory} is being written by another vjfer cache convert ({holder}); wait for "
            "it to finish or stop it, then rerun (it resumes from the finished shards)"
        )

    return FileLock(directory.with_name(directory.name + ".lock"), refusal, since=True, remove=True)


def _target_format(
    src: Cache, config: ConvertConfig
) -> tuple[StoreFormat, np.ndarray | None, np.ndarray | None, dict | None]:
    """The target store format, and for a PCA format its basis, mean and record (fitted here);
    ConfigError for a conversion that cannot be made."""
    fmt = StoreFormat.parse(config.store)
    if not src.store.plain:
        raise ConfigError(
            f"cache {src.path} is stored as {src.store}; convert from its fp16 "
            "source (its `lineage` in `vjfer cache info`)"
        )
    if fmt.plain:
        raise ConfigError(f"--store fp16: cache {src.path} already is fp16")
    fmt.grid(src.grid)  # refuses pool2 on an odd grid
    fmt.dim(src.embed_dim)
    if fmt.pool > 1 and len(src.layers or (0,)) > 1:
        raise ConfigError(
            f"--store {fmt}: cache {src.path} stacks {len(src.layers or ())} encoder layers per "
            "clip, which pooled grids do not support yet; convert a single-layer cache "
            "(extract --layers K), or use int8 / fp8"
        )
    if fmt.pca and len(src.layers or (0,)) > 1:
        raise ConfigError(
            f"--store {fmt}: cache {src.path} stacks {len(src.layers or ())} encoder "
            "layers per clip, and one PCA basis would mix their statistics; convert "
            "a single-layer cache (extract --layers K), or use int8 / fp8 / pool2"
        )
    if not fmt.pca:
        if config.pca_fold is not None:
            raise ConfigError(f"--pca-fold applies to pca formats only, not --store {fmt}")
        return fmt, None, None, None
    if config.pca_fold is None:
        raise ConfigError(
            f"--store {fmt} needs --pca-fold K: the test fold whose training "
            "videos (the other folds) the basis is fitted on"
        )
    basis, mean, fitted = fit_pca(
        src, fmt.pca, config.pca_fold, pool=fmt.pool, clips=config.pca_clips, seed=config.seed
    )
    pca = {
        "test_fold": config.pca_fold,
        "fit_clips": config.pca_clips,
        "seed": config.seed,
        "fit_videos": len(fitted),
        "basis_sha256": hashlib.sha256(basis.tobytes() + mean.tobytes()).hexdigest(),
    }
    return fmt, basis, mean, pca


def _convert_shards(
    src: Cache, directory: Path, settings: dict, fp: str, codec: Codec
) -> tuple[int, int]:
    """Write every shard of `src` not yet complete in `directory`: (written, skipped)."""
    lineage = {"source_fingerprint": src.fingerprint, "source_store": str(src.store)}
    written = skipped = 0
    shards = src.manifest["shards"]
    first = read_shard_header(src.path / shards[0]["name"])
    for index, entry in enumerate(shards):
        target = directory / entry["name"]
        if target.exists():
            try:
                done = read_shard_header(target)
                if done["fingerprint"] == fp and done["video_ids"] == entry["video_ids"]:
                    skipped += 1
                    continue
            except CacheError as err:
                log.warning("%s is unreadable, redoing it: %s", target, err)
        source_header = read_shard_header(src.path / entry["name"])
        header = shard_header(
            dataset=src.dataset,
            fp=fp,
            settings=settings,
            grid=src.grid,
            embed_dim=src.embed_dim,
            num_views=src.num_views,
            index=index,
            num_shards=len(shards),
            shard_size=first["shard_size"],
            video_ids=entry["video_ids"],
            aliases=source_header["aliases"],
        )
        header["lineage"] = lineage
        _write_shard(src, index, entry, header, codec, directory)
        written += 1
        log.info("converted %s (%d of %d)", entry["name"], index + 1, len(shards))
    return written, skipped


# ---------------------------------------------------------------------------------------------
# Cost.


def _cache_record(c: Cache) -> dict:
    """A cache's path, fingerprint, store format and size in bytes (its shards')."""
    size = sum((c.path / s["name"]).stat().st_size for s in c.manifest["shards"])
    return dict(path=str(c.path), fingerprint=c.fingerprint, store=str(c.store), bytes=size)


def compare_caches(
    a: Cache, b: Cache, *, clips: int = COST_CLIPS, seed: int = 0, run: Path | None = None
) -> dict:
    """What storing `a`'s tokens as `b` costs: size ratio, token error, probe agreement (`run`)."""
    if not a.store.plain:
        raise ConfigError(f"compare A B: A ({a.path}) must be an fp16 cache, it is {a.store}")
    if list(a.videos["video_id"]) != list(b.videos["video_id"]):
        raise ConfigError(f"compare A B: {a.path} and {b.path} hold different videos")
    grid = b.manifest["layout"]["store"]["grid"] if not b.store.plain else list(b.grid)
    if list(a.grid) != list(grid):
        raise ConfigError(
            f"compare A B: {b.path} was made from tokens on grid {grid}, "
            f"{a.path} has {list(a.grid)}"
        )
    basis = b.pca_basis()
    picked = sample_clips(a, np.arange(len(a.videos)), clips, seed)
    num = den = 0.0
    cosines, pairs = [], []
    for vid in sorted({v for v, _ in picked}):
        cs = [c for v, c in picked if v == vid]
        x = torch.from_numpy(a.tokens(vid)[cs]).float()  # [c, V, N, D]
        y = to_source_space(torch.from_numpy(b.tokens(vid)[cs]), b.store, a.grid, basis)
        num += float(((y - x) ** 2).sum())
        den += float((x**2).sum())
        cosines.append(torch.nn.functional.cosine_similarity(x, y, dim=-1).reshape(-1))
        pairs.append((x, y))
    cos = torch.cat(cosines).numpy()
    source, converted = _cache_record(a), _cache_record(b)
    cost = {
        "source": source,
        "converted": converted,
        "size_ratio": converted["bytes"] / source["bytes"],
        "clip_size_ratio": size_ratio(b.manifest["layout"]),
        "sample_clips": len(picked),
        "seed": seed,
        "relative_l2": float(np.sqrt(num / den)),
        "cosine_mean": float(cos.mean()),
        "cosine_p1": float(np.percentile(cos, 1)),
    }
    if run is not None:
        cost["probes"] = probe_agreement(a, run, pairs)
    return cost


def probe_agreement(a: Cache, run: Path, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Per fold probe of `run` (trained on cache `a`): argmax agreement and max |Δ softmax| of its
    clip probabilities on source vs converted tokens (the sample `pairs`)."""
    from vjfer.probe.evaluate import clip_probabilities
    from vjfer.probe.model import load_probe
    from vjfer.runs import find_probes

    out = {}
    for k, path in find_probes(run).items():
        probe, meta = load_probe(path)
        if meta["cache"]["fingerprint"] != a.fingerprint:
            raise ConfigError(
                f"--run {run}: {path} was trained on cache "
                f"{meta['cache']['fingerprint'][:8]}, not the source {a.fingerprint[:8]}"
            )
        p = np.concatenate([clip_probabilities(probe, x.half(), "cpu") for x, _ in pairs])
        q = np.concatenate([clip_probabilities(probe, y.half(), "cpu") for _, y in pairs])
        out[str(k)] = {
            "argmax_agreement": float((p.argmax(1) == q.argmax(1)).mean()),
            "max_abs_delta_softmax": float(np.abs(p - q).max()),
        }
    return out


def describe(summary: ConvertSummary) -> str:
    """The lines `vjfer cache convert` prints."""
    c = summary.cost
    lines = [
        f"cache       {summary.directory} ({c['converted']['store']}; {summary.shards_written} "
        f"shard(s) written, {summary.shards_skipped} already complete)",
        f"size        {c['converted']['bytes'] / 1e9:.3f} GB = {c['size_ratio']:.3f} of the "
        f"source's {c['source']['bytes'] / 1e9:.3f} GB",
        f"tokens      relative L2 error {c['relative_l2']:.4f}, cosine mean "
        f"{c['cosine_mean']:.4f}, 1st percentile {c['cosine_p1']:.4f} ({c['sample_clips']} clips)",
    ]
    for k, p in c.get("probes", {}).items():
        lines.append(
            f"fold {k}      probe argmax agreement {p['argmax_agreement']:.3f}, "
            f"max |Δ softmax| {p['max_abs_delta_softmax']:.4f}"
        )
    return "\n".join(lines)
