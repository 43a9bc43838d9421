"""Evaluate probes on cached videos: every evaluation window scored alone, then whole-video voting.

`score_videos` is the one scoring path: it reads each video's evaluation windows once for all the
probes that score it (fold evaluation, `cross`, predictions on cached videos). A window is scored on
its own ([1, N, D] per clip and view), softmaxed, and a clip's views averaged (one vote per clip).
A video's label is then decided two ways (the paper's Table II): PBV, the argmax of the clip
probabilities summed, and MV, the argmax of the clips' votes, ties to the lowest index. Clip-level
metrics (every clip labelled with its video's class) are reported too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from vjfer import metrics
from vjfer.cache import Cache
from vjfer.errors import SplitError
from vjfer.probe.config import AUTOCAST_DTYPES
from vjfer.probe.layer import select_layer
from vjfer.probe.model import Probe
from vjfer.probe.reader import ClipReader
from vjfer.probe.samples import rows_of
from vjfer.store import decode_raw

log = logging.getLogger(__name__)

EVAL_BATCH_CLIPS = 64  # clips (times views) per probe call


def vote_pbv(probs: np.ndarray) -> int:
    """Probability-based vote: argmax of `probs` [clips, classes] summed over clips, ties lowest."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be [clips >= 1, classes]; got shape {probs.shape}")
    return int(np.argmax(probs.sum(axis=0)))


def clip_votes(probs: np.ndarray) -> np.ndarray:
    """Votes per class, int64 [classes]: each clip votes for its argmax (ties: lowest index)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be [clips >= 1, classes]; got shape {probs.shape}")
    return np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1]).astype(np.int64)


def vote_mv(probs: np.ndarray) -> int:
    """Majority vote over clips of `probs` [clips, classes]; a tie goes to the lowest class."""
    return int(np.argmax(clip_votes(probs)))


def _autocast(device: torch.device, dtype: str = "bf16"):
    """Autocast to `dtype` on CUDA (bf16 unless the run says otherwise); elsewhere fp32."""
    amp = AUTOCAST_DTYPES[dtype]
    return torch.autocast(
        "cuda", dtype=amp or torch.float32, enabled=device.type == "cuda" and amp is not None
    )


@torch.no_grad()
def clip_probabilities(
    probe: nn.Module,
    tokens: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    batch_clips: int = EVAL_BATCH_CLIPS,
    autocast: str = "bf16",
) -> np.ndarray:
    """Class probabilities of each clip, its views averaged: tokens [C, V, N, D] -> float32 [C, K].
    `autocast`: the dtype on CUDA (TrainConfig.autocast)."""
    device = torch.device(device)
    tokens = torch.as_tensor(tokens)
    C, V, N, D = tokens.shape
    flat = tokens.reshape(C * V, N, D)  # each clip and view scored alone
    out = []
    for start in range(0, C * V, batch_clips):
        x = flat[start : start + batch_clips].to(device, torch.float32, non_blocking=True)
        with _autocast(device, autocast):
            logits = probe(x)
        out.append(logits.float().softmax(dim=-1).cpu())
    return torch.cat(out).view(C, V, -1).mean(dim=1).numpy()


def clip_table(
    video_id: str,
    actor: int,
    label: int,
    starts: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
) -> pd.DataFrame:
    """One video's rows of a clip-prediction table: video_id, actor, label, clip, start_frame,
    prob_<class>... (`probs` float [C, K], views averaged) and pred (each clip's argmax)."""
    frame = pd.DataFrame(probs, columns=[f"prob_{c}" for c in class_names])
    frame.insert(0, "video_id", video_id)
    frame.insert(1, "actor", actor)
    frame.insert(2, "label", label)
    frame.insert(3, "clip", np.arange(len(probs)))
    frame.insert(4, "start_frame", np.asarray(starts).astype(np.int64))
    frame["pred"] = probs.argmax(axis=1)
    return frame


def eval_tokens(
    cache: Cache,
    rows: Sequence[int] | np.ndarray,
    *,
    device: torch.device,
    threads: int = 0,
    prefetch: int = 4,
) -> Iterator[tuple[str, np.ndarray, torch.Tensor]]:
    """(video_id, evaluation windows int64 [C'], tokens float16 [C', V, N, D] on `device`) of each
    row of `cache.videos`, in order: the one way evaluation reads tokens. Only the windows
    (`Cache.eval_clips`), through the stage-2 reader (`threads` reads in flight, `prefetch`
    videos ahead); valid until the next item is requested."""
    ids = [cache.videos.at[int(i), "video_id"] for i in rows]
    requests = [(vid, cache.eval_clips(vid)) for vid in ids]
    reader = ClipReader(cache, threads=threads, prefetch=prefetch, pin=device.type == "cuda")
    try:
        for (vid, clips), raw in zip(requests, reader.stream(requests), strict=True):
            # stored bytes cross to the device; int8 / fp8 become float16 [C', V, N, D] there
            tokens = decode_raw(raw.to(device, non_blocking=True), cache.store, cache.shape)
            yield vid, clips, tokens
    finally:
        reader.close()


def score_videos(
    cache: Cache,
    assignments: Mapping[str, tuple[nn.Module, np.ndarray]],
    *,
    device: torch.device | str = "cpu",
    class_names: Sequence[str] | None = None,
    batch_clips: int = EVAL_BATCH_CLIPS,
    autocast: str = "bf16",
    threads: int = 0,
    prefetch: int = 4,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """Score every evaluation window of each probe's videos, reading each video once for all the
    probes that score it: the one scoring path (folds, cross, predict on cached videos).

    `assignments`: name -> (probe, rows of `cache.videos` it scores); `class_names`: the probes'
    classes (default: the cache's; cross: the source dataset's). Returns name -> `clip_table` rows
    (views averaged), videos in row order.
    """
    device = torch.device(device)
    names = cache.class_names if class_names is None else class_names
    videos = cache.videos
    rows = np.unique(
        np.concatenate([np.asarray(r, dtype=np.int64) for _, r in assignments.values()])
    )
    scorers: dict[int, list[str]] = {int(i): [] for i in rows}
    modes = {name: probe.training for name, (probe, _) in assignments.items()}
    for name, (probe, who) in assignments.items():
        if len(set(map(int, who))) < len(who):  # a video twice would count its clips twice
            twice = pd.Series(np.asarray(who, dtype=np.int64)).duplicated()
            vid = videos.at[int(np.asarray(who)[twice.to_numpy()][0]), "video_id"]
            raise SplitError(
                f"{name}: video {vid!r} is listed twice in the videos it scores; "
                "list each video once"
            )
        probe.to(device).eval()
        for i in who:
            scorers[int(i)].append(name)
    tables: dict[str, list[pd.DataFrame]] = {name: [] for name in assignments}
    bar = tqdm(total=len(rows), desc="evaluating", unit="video", disable=not progress)
    stream = eval_tokens(cache, rows, device=device, threads=threads, prefetch=prefetch)
    for i, (vid, clips, tokens) in zip(rows, stream, strict=True):
        starts = cache.clip_frames(vid)[clips, 0]
        actor, label = int(videos.at[i, "actor"]), int(videos.at[i, "label"])
        for name in scorers[int(i)]:
            probs = clip_probabilities(assignments[name][0], tokens, device, batch_clips, autocast)
            tables[name].append(clip_table(vid, actor, label, starts, probs, names))
        bar.update()
    bar.close()
    for name, (probe, _) in assignments.items():
        probe.train(modes[name])
    return {name: pd.concat(t, ignore_index=True) for name, t in tables.items()}


def vote_videos(clips: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """Per-video table from `score_videos` rows: video_id, actor, label, label_name, n_clips,
    prob_<class> (summed over clips), votes_<class>, pbv, mv, pbv_name, mv_name, and mv_tie (the
    most votes went to more than one class, so MV took the lowest index among them)."""
    prob_cols = [f"prob_{c}" for c in class_names]
    rows = []
    for vid, group in clips.groupby("video_id", sort=True):
        probs = group[prob_cols].to_numpy()
        votes = clip_votes(probs)
        pbv, mv = vote_pbv(probs), vote_mv(probs)
        label = int(group["label"].iloc[0])
        row = {"video_id": vid, "actor": int(group["actor"].iloc[0]), "label": label}
        row |= {"label_name": class_names[label], "n_clips": len(group)}
        row |= dict(zip(prob_cols, probs.sum(axis=0).tolist(), strict=True))
        row |= {f"votes_{c}": int(n) for c, n in zip(class_names, votes, strict=True)}
        row |= {"pbv": pbv, "mv": mv, "pbv_name": class_names[pbv], "mv_name": class_names[mv]}
        row["mv_tie"] = bool((votes == votes.max()).sum() > 1)
        rows.append(row)
    return pd.DataFrame(rows)


@torch.no_grad()
def video_embeddings(
    probe: Probe,
    cache: Cache,
    video_ids: Sequence[str],
    *,
    device: str = "cpu",
    batch_clips: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per video: mean-pooled encoder tokens [n, D], the probe's pooled output [n, D] and the
    label [n]. Each evaluation window and view is pooled alone (as evaluation scores clips, and
    read as it reads them: `eval_tokens`), then averaged over the video; the reference pooled a
    video's clips jointly, which needs all its tokens at once."""
    rows = rows_of(cache, video_ids)
    mean_pooled, probe_pooled = [], []
    for _, _, tokens in eval_tokens(cache, rows, device=torch.device(device)):
        C, V, N, D = tokens.shape
        flat = tokens.reshape(C * V, N, D)
        mine, _ = select_layer(probe.layer_view, flat)  # the stored layer the probe reads
        mean_pooled.append(mine.float().mean(dim=(0, 1)).cpu())
        pooled = [
            probe.pooled(flat[i : i + batch_clips].to(device, torch.float32)).float().cpu()
            for i in range(0, C * V, batch_clips)
        ]
        probe_pooled.append(torch.cat(pooled).mean(dim=0))
    labels = cache.videos["label"].to_numpy()[rows]
    return torch.stack(mean_pooled).numpy(), torch.stack(probe_pooled).numpy(), labels


def score_predictions(videos: pd.DataFrame, clips: pd.DataFrame, num_classes: int) -> dict:
    """Metrics (`vjfer.metrics.classification_metrics`) and confusion matrices (lists, rows =
    truth) for PBV, MV and single clips: {"pbv": {..., "confusion"}, "mv": ..., "clip": ...}."""
    out = {}
    for name, truth, pred in (
        ("pbv", videos["label"], videos["pbv"]),
        ("mv", videos["label"], videos["mv"]),
        ("clip", clips["label"], clips["pred"]),
    ):
        scores = metrics.classification_metrics(truth, pred, num_classes)
        scores["confusion"] = metrics.confusion(truth, pred, num_classes).tolist()
        out[name] = scores
    if "mv_tie" in videos:  # few windows per video make ties common (4 at hop 8 on CREMA-D)
        out["mv"]["tie_fraction"] = float(videos["mv_tie"].mean()) if len(videos) else 0.0
    return out


VIDEO_VOTINGS = ("pbv", "mv")  # whole-video votes: probability-based and majority
VOTINGS = (*VIDEO_VOTINGS, "clip")  # and single clips
