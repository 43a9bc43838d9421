"""Emotion timelines: clip centres in seconds, the report's choice of videos, drawn panels."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from vjfer.clips import plan_clips
from vjfer.figures import timeline_axes, timeline_figure
from vjfer.labels import class_names
from vjfer.timeline import (
    TimelinePanel,
    choose_videos,
    clip_centre_seconds,
    prediction_panels,
    run_panels,
)

NAMES = ["neutral", "happy", "sad"]


def test_clip_centre_is_halfway_between_first_and_last_frame():
    frames = plan_clips(100, "windows", hop=8)  # starts 0, 8, ..., 32, 35; frames s .. s + 63
    centres = clip_centre_seconds(frames, fps=25.0)
    assert centres[0] == pytest.approx(31.5 / 25) and centres[1] == pytest.approx(39.5 / 25)
    assert centres[-1] == pytest.approx((35 + 98) / 2 / 25)
    with pytest.raises(ValueError, match="fps > 0"):
        clip_centre_seconds(frames, 0)


def videos_table(rows) -> pd.DataFrame:
    """`video_predictions.csv` rows: (id, label, pbv, summed probs, n_clips)."""
    out = []
    for vid, label, pbv, probs, n in rows:
        out.append(
            {
                "fold": 1,
                "video_id": vid,
                "label": label,
                "n_clips": n,
                "pbv": pbv,
                "mv": pbv,
                **{f"prob_{c}": p for c, p in zip(NAMES, probs, strict=True)},
            }
        )
    return pd.DataFrame(out)


def test_choose_videos_follows_the_stated_rule():
    videos = videos_table(
        [
            ("a", 0, 0, [1.8, 0.1, 0.1], 2),  # correct, confidence 0.9
            ("b", 1, 1, [0.4, 0.6, 0.0], 1),  # correct, 0.6
            ("c", 2, 2, [0.0, 0.3, 2.1], 3),  # correct, 0.7
            ("d", 0, 1, [0.1, 0.8, 0.1], 1),  # wrong, 0.8
            ("e", 1, 2, [0.3, 0.3, 0.4], 1),  # wrong, 0.4
            ("f", 2, 0, [0.5, 0.2, 0.3], 1),  # wrong, 0.5
        ]
    )
    assert choose_videos(videos) == [
        ("a", "most confident correct"),
        ("b", "least confident correct"),
        ("d", "most confident wrong"),
        ("e", "least confident wrong"),
    ]
    # Nothing wrong, one correct video: it is chosen once, and no wrong kinds are invented.
    assert choose_videos(videos.iloc[:1]) == [("a", "most confident correct")]


class FakeCache:
    """What `run_panels` reads from a cache: frame rates and clip frame indices."""

    def __init__(self, fps: dict[str, float], n_clips: dict[str, int]):
        self.videos = pd.DataFrame({"video_id": list(fps), "fps": list(fps.values())})
        self.n_clips = n_clips

    def clip_frames(self, video_id: str) -> np.ndarray:
        return plan_clips(65 + 8 * (self.n_clips[video_id] - 1), "windows", hop=8)

    def eval_clips(self, video_id: str) -> np.ndarray:
        return np.arange(self.n_clips[video_id])  # evaluation windows only


def test_run_panels_read_a_run_and_place_clips_in_seconds(tmp_path):
    videos = videos_table([("a", 0, 0, [1.5, 0.3, 0.2], 2), ("b", 1, 2, [0.2, 0.3, 0.5], 1)])
    clips = pd.DataFrame(
        {
            "video_id": ["a", "a", "b"],
            "label": [0, 0, 1],
            "clip": [1, 0, 0],
            "prob_neutral": [0.6, 0.9, 0.2],
            "prob_happy": [0.3, 0.0, 0.3],
            "prob_sad": [0.1, 0.1, 0.5],
        }
    )
    (tmp_path / "fold-1").mkdir()
    videos.drop(columns="fold").to_csv(tmp_path / "fold-1" / "video_predictions.csv", index=False)
    clips.to_csv(tmp_path / "fold-1" / "clip_predictions.csv", index=False)
    panels = run_panels(tmp_path, FakeCache({"a": 30.0, "b": 20.0}, {"a": 2, "b": 1}))
    assert [p.title.split(":")[0] for p in panels] == [
        "most confident correct",
        "most confident wrong",
    ]
    a = panels[0]
    assert a.seconds.tolist() == pytest.approx([31.5 / 30, 39.5 / 30])  # clips sorted by index
    assert a.probs[:, 0].tolist() == [0.9, 0.6] and (a.pbv, a.mv, a.label) == (0, 0, 0)
    assert "truth neutral · PBV neutral (correct)" in a.title
    assert "PBV sad (wrong)" in panels[1].title


def test_prediction_panels_match_clips_to_videos_by_position():
    videos = pd.DataFrame(
        {
            "video_id": ["x", "x"],
            "emotion": ["happy", "sad"],
            "mv": ["happy", "sad"],
            "n_clips": [1, 2],
            "prob_neutral": [0, 0],
            "prob_happy": [1, 0],
            "prob_sad": [0, 1],
        }
    )
    clips = pd.DataFrame(
        {
            "video_id": ["x"] * 3,
            "centre_s": [1.0, 1.0, 1.3],
            "prob_neutral": [0.1, 0.0, 0.2],
            "prob_happy": [0.8, 0.1, 0.1],
            "prob_sad": [0.1, 0.9, 0.7],
        }
    )
    first, second = prediction_panels(videos, clips)  # two files with one stem stay apart
    assert len(first.seconds) == 1 and second.seconds.tolist() == [1.0, 1.3]
    assert (first.pbv, second.pbv) == (1, 2)
    with pytest.raises(ValueError, match="clips of x"):
        prediction_panels(videos, clips.iloc[:2])


def test_timeline_figure_labels_classes_and_seconds(tmp_path):
    names = class_names("crema-d")
    rng = np.random.default_rng(0)
    panels = []
    for n in (1, 4, 7):
        probs = rng.dirichlet(np.ones(len(names)), size=n)
        pbv = int(probs.sum(0).argmax())
        panels.append(TimelinePanel(f"video {n}", np.arange(n) * 0.27 + 1.0, probs, pbv, 0))
    fig = timeline_axes(panels, names, title="three videos")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 3
    assert all(ax.get_xlabel() == "time in the video (s, clip centre)" for ax in shown)
    assert all(ax.get_ylabel() == "probability" for ax in shown)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(names)
    labels = [t.get_text() for t in shown[2].texts]
    assert any(label.strip().startswith("PBV") for label in labels)
    path = timeline_figure(panels, names, tmp_path / "t.png")
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 800
    with pytest.raises(ValueError, match="expected"):
        timeline_axes([TimelinePanel("bad", np.zeros(2), np.zeros((2, 3)), 0, 0)], names)
