"""Emotion timelines: each clip's class probabilities against time, with the video's decision.

What `vjfer predict --plot` draws for any video file and the report for a few test videos per
dataset. Time is the clip's centre (halfway between its first and last frame) over the frame rate;
the decision is the PBV with the MV beside it. This module reads predictions and chooses videos;
`vjfer.figures.timeline_figure` draws the panels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PROB = "prob_"  # prefix of the per-class probability columns in every prediction table
# The report's choice, stated on the page under the figures (see `choose_videos`).
CHOICE_RULE = (
    "Over every fold's test videos of a dataset (each video is tested once, by the probe of the "
    "fold that holds its actor): the most and the least confident correct video and the most "
    "and the least confident wrong one, by the PBV decision. Confidence is the mean clip "
    "probability of the PBV class; ties go to the smaller video id."
)
CHOICES = (  # (correct?, most confident first?, caption)
    (True, True, "most confident correct"),
    (True, False, "least confident correct"),
    (False, True, "most confident wrong"),
    (False, False, "least confident wrong"),
)


@dataclass(frozen=True)
class TimelinePanel:
    """One video's timeline: what one panel of `figures.timeline_figure` shows."""

    title: str
    seconds: np.ndarray  # clip centres in seconds, float [C]
    probs: np.ndarray  # class probabilities per clip, float [C, K]
    pbv: int  # the video's decisions, class indices
    mv: int
    label: int | None = None  # the true class, when known


def clip_centre_seconds(clip_frames: np.ndarray, fps: float) -> np.ndarray:
    """Clip centres in seconds, float [C], from frame indices [C, 16] and the frame rate."""
    frames = np.asarray(clip_frames, dtype=np.float64)
    if frames.ndim != 2 or fps <= 0:
        raise ValueError(
            f"clip_frames must be [clips, frames] and fps > 0; got {frames.shape}, {fps}"
        )
    return (frames[:, 0] + frames[:, -1]) / 2.0 / fps


def prob_columns(frame: pd.DataFrame) -> list[str]:
    """The `prob_<class>` columns of a prediction table, in class order."""
    return [c for c in frame.columns if c.startswith(PROB)]


def prob_class_names(frame: pd.DataFrame) -> list[str]:
    """The class names a prediction table holds probabilities for, in class order."""
    return [c.removeprefix(PROB) for c in prob_columns(frame)]


def prediction_panels(videos: pd.DataFrame, clips: pd.DataFrame) -> list[TimelinePanel]:
    """One panel per video of a `vjfer.predict.Prediction` (its `videos` and `clips` tables).

    Clips are matched to videos by position (the clips table lists each video's clips in turn,
    in the videos' order), so two files with one stem stay apart.
    """
    names = prob_class_names(videos)
    panels, start = [], 0
    for _, video in videos.iterrows():
        n = int(video["n_clips"])
        mine = clips.iloc[start : start + n]
        start += n
        if len(mine) != n or (mine["video_id"] != video["video_id"]).any():
            raise ValueError(
                f"clips of {video['video_id']} are not where the videos table puts them"
            )
        pbv, mv = names.index(video["emotion"]), names.index(video["mv"])
        title = f"{video['video_id']}: PBV {names[pbv]}, MV {names[mv]}"
        probs = mine[[PROB + c for c in names]].to_numpy(float)
        panels.append(TimelinePanel(title, mine["centre_s"].to_numpy(float), probs, pbv, mv))
    return panels


def read_run_predictions(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every fold's `video_predictions.csv` and `clip_predictions.csv` of a probe run, stacked,
    with a `fold` column; a FileNotFoundError names the first missing file."""
    videos: list[pd.DataFrame] = []
    clips: list[pd.DataFrame] = []
    for fold_dir in sorted(Path(run_dir).glob("fold-*")):
        if not fold_dir.is_dir():
            continue
        fold = int(fold_dir.name.removeprefix("fold-"))
        for name, out in (("video_predictions.csv", videos), ("clip_predictions.csv", clips)):
            # ids stay text: DFEW / MAFW clip ids ("00001") are digits that must keep their zeros
            frame = pd.read_csv(fold_dir / name, dtype={"video_id": str})
            frame.insert(0, "fold", fold)
            out.append(frame)
    if not videos:
        raise FileNotFoundError(f"no fold-K/video_predictions.csv under {run_dir}")
    return pd.concat(videos, ignore_index=True), pd.concat(clips, ignore_index=True)


def choose_videos(videos: pd.DataFrame) -> list[tuple[str, str]]:
    """(video_id, caption) by `CHOICE_RULE` from stacked `video_predictions.csv` rows; a kind
    with no video (no wrong prediction, say) is left out, and no video is chosen twice."""
    names = prob_class_names(videos)
    pbv = videos["pbv"].to_numpy(int)
    sums = videos[[PROB + c for c in names]].to_numpy(float)
    confidence = sums[np.arange(len(videos)), pbv] / videos["n_clips"].to_numpy(float)
    ids, correct = videos["video_id"].astype(str), pbv == videos["label"].to_numpy(int)
    table = pd.DataFrame({"video_id": ids, "confidence": confidence, "correct": correct})
    chosen: list[tuple[str, str]] = []
    for correct, most, caption in CHOICES:
        taken = [v for v, _ in chosen]
        pool = table[(table["correct"] == correct) & ~table["video_id"].isin(taken)]
        if pool.empty:
            continue
        # Sort by confidence, then id, so ties resolve the same way on every machine.
        pool = pool.sort_values(["confidence", "video_id"], ascending=[not most, True])
        chosen.append((pool["video_id"].iloc[0], caption))
    return chosen


def run_panels(run_dir: str | Path, cache) -> list[TimelinePanel]:
    """Panels for the videos `choose_videos` picks from a probe run's test predictions; clip
    times come from `cache` (the run's training cache: clip frame indices and frame rates)."""
    videos, clips = read_run_predictions(run_dir)
    names = prob_class_names(videos)
    fps = cache.videos.set_index("video_id")["fps"]
    panels = []
    for video_id, caption in choose_videos(videos):
        video = videos[videos["video_id"].astype(str) == video_id].iloc[0]
        mine = clips[clips["video_id"].astype(str) == video_id].sort_values("clip")
        # `clip` numbers the evaluation windows (a `reference` cache also holds training clips)
        windows = cache.clip_frames(video_id)[cache.eval_clips(video_id)]
        frames = windows[mine["clip"].to_numpy(int)]
        pbv, mv, label = int(video["pbv"]), int(video["mv"]), int(video["label"])
        verdict = "correct" if pbv == label else "wrong"
        title = (
            f"{caption}: {video_id} (fold {int(video['fold'])})\n"
            f"truth {names[label]} · PBV {names[pbv]} ({verdict}) · MV {names[mv]}"
        )
        seconds = clip_centre_seconds(frames, float(fps.loc[video_id]))
        probs = mine[[PROB + c for c in names]].to_numpy(float)
        panels.append(TimelinePanel(title, seconds, probs, pbv, mv, label))
    return panels
