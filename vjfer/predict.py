"""Emotion of any video file with a trained probe run: decode, plan clips, encode, probe, vote.

Each `fold-K/probe.pt` stores the settings of the cache it was trained on, so prediction rebuilds
that pipeline exactly (encoder and checkpoint, verified by sha256; resolution, views, clip plan,
hop; the cache's token rounding). Fold probes' probabilities are averaged per clip; the emotion is
the PBV over the video's clips, with the MV beside it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vjfer.cache.format import SHORTEST_UNPADDED, TOKEN_DTYPE, layer_blocks
from vjfer.clips import STEP_PLANS, eval_windows, gather_clips
from vjfer.decode import decode_video
from vjfer.encoders import load_encoder
from vjfer.encoders.registry import COMPUTE_DTYPES
from vjfer.errors import CheckpointError, ConfigError, VideoError
from vjfer.face import FaceCropper, config_from_settings
from vjfer.prepare import normalize_clips
from vjfer.probe.evaluate import clip_probabilities, vote_mv, vote_pbv
from vjfer.probe.model import Probe, load_probe
from vjfer.runs import find_probes
from vjfer.store import StoreFormat, transform
from vjfer.timeline import clip_centre_seconds

log = logging.getLogger(__name__)

# Encoder fingerprint fields that must match the run's: they fix what a token means. The compute
# dtype (bf16 on CUDA, fp32 on CPU) may differ; that difference is logged, not refused.
IDENTITY_FIELDS = (
    "name",
    "checkpoint_sha256",
    "weights",
    "seed",
    "resolution",
    "grid",
    "embed_dim",
)
TORCH_TOKEN_DTYPE = getattr(torch, TOKEN_DTYPE.name)  # float16, as cached


@dataclass
class RunProbes:
    """The probes of one run (one per fold, or the one asked for) and the settings they share."""

    probes: dict[int, Probe]
    class_names: tuple[str, ...]
    settings: dict  # the training cache's settings (vjfer.extract.cache_settings)
    run_dir: Path
    pca_basis: tuple[torch.Tensor, torch.Tensor] | None = None  # (basis [D, K], mean [D]): pca


@dataclass
class Prediction:
    videos: pd.DataFrame  # one row per video that decoded
    clips: pd.DataFrame  # one row per clip of those videos
    failures: list[dict]  # {"path", "reason"} per video that could not be read
    notes: list[str] = field(default_factory=list)  # caveats per video (shorter than a clip)


def _run_folds(run_dir: Path) -> list[int] | None:
    """The folds a run trained (its summary.json), or None when it has no summary."""
    try:
        return [int(k) for k in json.loads((run_dir / "summary.json").read_text("utf-8"))["folds"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_run(
    run_dir: str | Path,
    fold: int | None = None,
    device: str = "cpu",
    folds: Sequence[int] | None = None,
) -> RunProbes:
    """Load every fold's probe of a `vjfer probe` run (or fold `fold`, or `folds`); they must agree.

    A run whose summary lists a fold without its `fold-K/probe.pt` is refused unless `folds` (or
    `fold`) says which probes to use: averaging four folds in silence would be another model.
    """
    run_dir = Path(run_dir)
    paths = find_probes(run_dir)
    wanted = [fold] if fold is not None else (list(folds) if folds else None)
    if wanted is None:
        expected = _run_folds(run_dir) or sorted(paths)
        if missing := [k for k in expected if k not in paths]:
            have = ",".join(map(str, sorted(paths)))
            raise ConfigError(
                f"run {run_dir} trained folds {expected} but "
                + ", ".join(f"fold-{k}/probe.pt" for k in missing)
                + f" is missing: pass --folds {have} to predict with the probes there, or rerun "
                f"`vjfer probe --fold {missing[0]}`"
            )
    else:
        if absent := [k for k in wanted if k not in paths]:
            raise ConfigError(
                f"run {run_dir} has no fold {absent[0]}; it has folds {sorted(paths)}"
            )
        paths = {k: paths[k] for k in wanted}
    probes, metas = {}, {}
    for k, path in paths.items():
        probes[k], metas[k] = load_probe(path, device)
    first = metas[min(metas)]
    for k, meta in metas.items():
        for key in ("class_names", "embed_dim"):
            if meta[key] != first[key]:
                raise CheckpointError(f"{paths[k]}: {key} differs from fold {min(metas)}'s")
        if meta["cache"]["fingerprint"] != first["cache"]["fingerprint"]:
            raise CheckpointError(f"{paths[k]} was trained on another cache than fold {min(metas)}")
    basis = None
    if "store_pca_basis" in first:
        basis = (first["store_pca_basis"]["basis"], first["store_pca_basis"]["mean"])
    return RunProbes(
        probes, tuple(first["class_names"]), first["cache"]["settings"], run_dir, basis
    )


def check_encoder(encoder_fp: dict, run_fp: dict, run_dir: Path) -> None:
    """Refuse an encoder whose identity differs from the one the run's cache was made with."""
    for key in IDENTITY_FIELDS:
        if encoder_fp.get(key) != run_fp.get(key):
            raise CheckpointError(
                f"run {run_dir} was trained on tokens of an encoder with "
                f"{key}={run_fp.get(key)!r}, but the loaded encoder has "
                f"{key}={encoder_fp.get(key)!r}"
                + (" — pass the same checkpoint file" if key == "checkpoint_sha256" else "")
            )
    if encoder_fp.get("compute_dtype") != run_fp.get("compute_dtype"):
        log.warning(
            "run %s was extracted with %s compute, predicting with %s: probabilities may differ "
            "slightly",
            run_dir,
            run_fp.get("compute_dtype"),
            encoder_fp.get("compute_dtype"),
        )


def run_encoder(
    settings: dict, checkpoint: str | Path | None, device: str, checkpoint_given: bool = True
):
    """Load the encoder a run's cache was made with; `checkpoint` for pretrained encoders only.

    A checkpoint for a run made with random weights is an error when `checkpoint_given` (the
    user named it), and ignored otherwise (VJFER_CHECKPOINT, meant for the real encoders).
    """
    name, fp = settings["encoder"], settings["encoder_fingerprint"]
    # the compute dtype the cache was made with (a CPU-made cache: fp32)
    dtype = {label: key for key, (_, label) in COMPUTE_DTYPES.items()}[fp["compute_dtype"]]
    if not checkpoint_given and (name == "tiny" or fp["weights"] == "random-init"):
        checkpoint = None
    if checkpoint is not None and (name == "tiny" or fp["weights"] == "random-init"):
        raise ConfigError(
            f"--checkpoint does not apply: the run's cache was made with {name} "
            f"({fp['weights'] if name != 'tiny' else 'seeded random weights'}); drop it"
        )
    if name == "tiny":
        return load_encoder(name, device=device, seed=fp["seed"], dtype=dtype)
    if fp["weights"] == "random-init":  # a run on random real-size weights (benchmarks)
        return load_encoder(name, device=device, random_weights=True, seed=fp["seed"], dtype=dtype)
    if checkpoint is None:
        raise ConfigError(
            f"the run was made with {name} weights of sha256 {fp['checkpoint_sha256'][:12]}…: "
            "give that checkpoint with --checkpoint or VJFER_CHECKPOINT"
        )
    if fp["weights"] in ("hf-directory", "state-dict"):  # no jepa weights choice to repeat
        return load_encoder(name, checkpoint, device, dtype=dtype)
    return load_encoder(name, checkpoint, device, weights=fp["weights"], dtype=dtype)


def encode_video_tokens(
    encoder, path: Path, settings: dict, batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """One video -> (tokens float16 [C, V, N, D], clip frame indices [C, 16], fps, frames), as
    the cache would hold them (face-cropped as the cache was, if it was)."""
    blocks = layer_blocks(settings)
    crop = None
    if "face_crop" in settings:
        face = FaceCropper(config_from_settings(settings["face_crop"])).locate(path, path.stem)
        crop = None if face.box is None else (face.box.x, face.box.y, face.box.w, face.box.h)
    video = decode_video(path, encoder.resolution, settings["views"], crop=crop)
    plan, hop = settings["plan"], settings.get("hop") or 8
    step = settings.get("frame_step") if plan in STEP_PLANS else None  # stride's K
    # evaluation clips only (`reference` also lists its 8 training clips, stride/segments draws)
    clip_frames = eval_windows(video.n_frames, plan, hop, step)
    clips = gather_clips(video.frames, clip_frames)  # [C, V, 16, R, R, 3]
    C, V = clips.shape[:2]
    flat = torch.from_numpy(clips.reshape(C * V, *clips.shape[2:]))
    out = []
    for start in range(0, C * V, batch_size):
        batch = normalize_clips(
            flat[start : start + batch_size].to(encoder.device), encoder.mean, encoder.std
        )
        # Round as the cache stores tokens, so the probe sees what it was trained on; the blocks
        # the cache stacks (`extract --layers`), layer-major along N as the cache stores them.
        tokens = encoder.encode(batch, blocks).flatten(1, -2)  # [b, L·N, D]
        out.append(tokens.to(TORCH_TOKEN_DTYPE).cpu())
    L = len(blocks or (0,))
    tokens = torch.cat(out).view(C, V, L * encoder.num_tokens, encoder.embed_dim)
    return tokens.numpy(), clip_frames, video.fps, video.n_frames


def stored_like(
    tokens: np.ndarray,
    settings: dict,
    grid: tuple[int, int, int],
    basis: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> np.ndarray:
    """float16 encoder tokens [C, V, N, D] -> as a reader of the run's cache sees them: pooled,
    projected and quantized by its store format (vjfer.store), then dequantized."""
    if "store_format" not in settings:  # fp16 caches: as encoded
        return tokens
    fmt = StoreFormat.parse(settings["store_format"])
    t, h, w = grid  # L stacked layers pool as L·t frames (vjfer.store.Codec)
    grid = (len(layer_blocks(settings) or (0,)) * t, h, w)
    return transform(torch.from_numpy(tokens), fmt, grid, basis).numpy()


def predict_videos(
    paths: Sequence[str | Path],
    run_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    fold: int | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    folds: Sequence[int] | None = None,
    checkpoint_given: bool = True,
) -> Prediction:
    """Predict the emotion of each video with the run's probe(s) (fold probes averaged)."""
    run = load_run(run_dir, fold, device, folds)
    settings = run.settings
    enc_fp = settings["encoder_fingerprint"]
    encoder = run_encoder(settings, checkpoint, device, checkpoint_given)
    check_encoder(encoder.fingerprint, enc_fp, run.run_dir)
    names, probes = run.class_names, list(run.probes.values())
    video_rows, clip_rows, failures, notes = [], [], [], []
    for path in map(Path, paths):
        try:
            tokens, clip_frames, fps, n_frames = encode_video_tokens(
                encoder, path, settings, batch_size
            )
            tokens = stored_like(tokens, settings, encoder.grid, run.pca_basis)
        except VideoError as err:
            log.error("%s", err)
            failures.append({"path": str(path), "reason": err.reason})
            continue
        probs = np.mean([clip_probabilities(p, tokens, device) for p in probes], axis=0)
        pbv, mv = vote_pbv(probs), vote_mv(probs)
        row = {
            "path": str(path),
            "video_id": path.stem,
            "emotion": names[pbv],
            "mv": names[mv],
            "n_clips": len(probs),
            "n_frames": n_frames,
        }
        if n_frames < SHORTEST_UNPADDED:
            notes.append(
                f"{path}: {n_frames} frame(s), shorter than one clip ({SHORTEST_UNPADDED} "
                "frames): its one clip repeats the last frame (the reference's padding)"
            )
        row.update({f"prob_{c}": float(p) for c, p in zip(names, probs.mean(axis=0), strict=True)})
        video_rows.append(row)
        clips = pd.DataFrame(probs, columns=[f"prob_{c}" for c in names])
        clips.insert(0, "video_id", path.stem)
        clips.insert(1, "clip", np.arange(len(probs)))
        clips.insert(2, "start_frame", clip_frames[:, 0])
        clips.insert(3, "end_frame", clip_frames[:, -1])
        clips.insert(4, "start_s", clip_frames[:, 0] / fps)
        clips.insert(5, "centre_s", clip_centre_seconds(clip_frames, fps))  # the timeline's x
        clips["emotion"] = [names[i] for i in probs.argmax(axis=1)]
        clip_rows.append(clips)
    videos = pd.DataFrame(video_rows)
    clips = pd.concat(clip_rows, ignore_index=True) if clip_rows else pd.DataFrame()
    for note in notes:
        log.warning("%s", note)
    return Prediction(videos, clips, failures, notes)


def format_prediction(prediction: Prediction, class_names: Sequence[str] | None = None) -> str:
    """A plain-text table: one line per video with its emotion and per-class probabilities."""
    if prediction.videos.empty:
        return "no video could be read"
    frame = prediction.videos
    prob_cols = [c for c in frame.columns if c.startswith("prob_")]
    table = frame[["video_id", "emotion", "mv", "n_clips", *prob_cols]].copy()
    table.columns = ["video", "emotion (PBV)", "MV", "clips", *[c[5:] for c in prob_cols]]
    return table.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def prediction_json(prediction: Prediction, clips: bool = False) -> dict:
    """`vjfer predict --json`: {videos, failures, notes[, clips]}, one record per row."""
    out = {
        "videos": prediction.videos.to_dict(orient="records"),
        "failures": prediction.failures,
        "notes": prediction.notes,
    }
    if clips:
        out["clips"] = prediction.clips.to_dict(orient="records")
    return out


def draw_timelines(prediction: Prediction, path: str | Path) -> Path | None:
    """Each predicted video's emotion timeline (a panel each) into the PNG `path`; None: none."""
    if prediction.videos.empty:
        return None
    from vjfer.figures import timeline_figure  # matplotlib only when a figure is drawn
    from vjfer.timeline import prediction_panels, prob_class_names

    panels = prediction_panels(prediction.videos, prediction.clips)
    timeline_figure(panels, prob_class_names(prediction.videos), Path(path))
    return Path(path)
