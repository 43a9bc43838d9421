"""Whole-video voting (PBV, MV), clip scoring over views, predictions from a cache, summaries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.errors import SplitError
from vjfer.probe.evaluate import (
    clip_probabilities,
    clip_votes,
    score_predictions,
    score_videos,
    vote_mv,
    vote_pbv,
    vote_videos,
)
from vjfer.probe.samples import rows_of
from vjfer.probe.summary import format_run_summary, summarise_folds


def test_pbv_sums_probabilities():
    probs = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.0, 0.1, 0.9]])
    assert vote_pbv(probs) == 0  # sums 1.2, 0.9, 0.9
    assert vote_mv(probs) == 0  # votes 2, 0, 1


def test_pbv_and_mv_can_disagree():
    probs = np.array([[0.5, 0.5, 0.0], [0.4, 0.6, 0.0], [0.0, 0.45, 0.55]])
    assert clip_votes(probs).tolist() == [1, 1, 1]
    assert vote_mv(probs) == 0  # a three-way tie goes to the lowest index
    assert vote_pbv(probs) == 1  # sums 0.9, 1.55, 0.55


def test_ties_go_to_the_lowest_index():
    probs = np.array([[0.1, 0.2, 0.7], [0.1, 0.7, 0.2]])
    assert vote_mv(probs) == 1  # votes 0, 1, 1
    assert vote_pbv(np.array([[0.3, 0.35, 0.35]])) == 1
    assert clip_votes(np.array([[0.5, 0.5]])).tolist() == [1, 0]


def test_single_clip_votes_equal_its_argmax():
    probs = np.array([[0.1, 0.2, 0.3, 0.4]])
    assert vote_pbv(probs) == vote_mv(probs) == 3


def test_empty_or_flat_input_raises():
    with pytest.raises(ValueError, match=r"\[clips >= 1, classes\]"):
        vote_pbv(np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"\[clips >= 1, classes\]"):
        vote_mv(np.zeros(3))


class _MeanProbe(nn.Module):
    """Logits = the mean of the first K token features (deterministic, easy to check)."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, tokens):
        return tokens[..., : self.k].mean(dim=1)


def test_clip_probabilities_average_views():
    tokens = torch.randn(5, 3, 4, 6)  # [C, V, N, D]
    probs = clip_probabilities(_MeanProbe(3), tokens, batch_clips=4)  # batches split views
    expected = tokens[..., :3].mean(dim=2).softmax(dim=-1).mean(dim=1)
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-6)
    assert probs.shape == (5, 3)


def _cache(tmp_path, views=2):
    rng = np.random.default_rng(0)
    entries = []
    for i, (actor, label, clips) in enumerate([(2, 0, 3), (2, 4, 1), (5, 7, 4)]):
        frames = np.arange(16)[None, :] * 4 + 8 * np.arange(clips)[:, None]
        tokens = rng.normal(size=(clips, views, 8, 16)).astype(np.float16)
        tokens[..., label] += 3.0  # the class feature is high
        entries.append(VideoEntry(f"v{i}", label, actor, 1, 100, 30.0, frames, tokens))
    return open_cache(
        build_cache(tmp_path / "c", {"e": 1}, entries, dataset="ravdess", grid=(2, 2, 2))
    )


def _clips(probe, cache, video_ids):
    """One row per cached evaluation window of `video_ids` (in cache order), scored by `probe`."""
    return score_videos(cache, {"probe": (probe, rows_of(cache, video_ids))})["probe"]


def _videos(probe, cache, video_ids):
    """Whole-video predictions (PBV and MV) of `video_ids` from the cache."""
    return vote_videos(_clips(probe, cache, video_ids), cache.class_names)


def test_predictions_from_a_cache(tmp_path):
    cache = _cache(tmp_path)
    probe = _MeanProbe(8)
    clips = _clips(probe, cache, ["v0", "v1", "v2"])
    assert len(clips) == 3 + 1 + 4
    assert clips["start_frame"].tolist()[:3] == [0, 8, 16]
    assert {f"prob_{c}" for c in cache.class_names} <= set(clips)
    np.testing.assert_allclose(clips.filter(like="prob_").sum(axis=1), 1.0, rtol=1e-5)
    videos = _videos(probe, cache, ["v0", "v1", "v2"])
    assert videos["video_id"].tolist() == ["v0", "v1", "v2"]
    assert videos["n_clips"].tolist() == [3, 1, 4]
    assert videos["pbv"].tolist() == [0, 4, 7] == videos["mv"].tolist()
    assert videos["pbv_name"].tolist() == ["neutral", "angry", "surprised"]
    assert videos.filter(like="votes_").sum(axis=1).tolist() == [3, 1, 4]
    with pytest.raises(SplitError, match="not in cache"):
        _clips(probe, cache, ["nope"])

    scores = score_predictions(videos, clips, 8)
    assert scores["pbv"]["war"] == 1.0 and scores["clip"]["n"] == 8
    assert np.array(scores["mv"]["confusion"]).shape == (8, 8)


def test_summary_table_layout():
    def fold(k, uar):
        m = {"uar": uar, "war": uar + 0.01, "macro_precision": uar + 0.02, "macro_f1": uar}
        return {"fold": k, "n_test_videos": 10, "pbv": m, "mv": m, "clip": m}

    summary = summarise_folds([fold(1, 0.5), fold(2, 0.7)])
    assert summary["mean"]["pbv"]["uar"]["mean"] == pytest.approx(0.6)
    text = format_run_summary({"dataset": "ravdess", "probe": "attentive", **summary})
    assert "| PBV | 60.00 ± 14.14 | 61.00 ± 14.14 | 62.00 ± 14.14 |" in text
    assert "| 2 | 10 | 70.00 | 71.00 | 72.00 | 70.00 | 71.00 | 72.00 |" in text
    single = format_run_summary(
        {"dataset": "ravdess", "probe": "linear", **summarise_folds([fold(1, 0.5)])}
    )
    assert "| MV | 50.00 | 51.00 |" in single


def test_mv_ties_are_flagged_and_counted_per_fold():
    import pandas as pd

    from vjfer.probe.evaluate import vote_videos

    names = ("a", "b", "c")
    rows = []
    # video t: clips vote b, c (a tie: MV takes b); video u: clips vote c, c, a (no tie)
    for vid, label, preds in (("t", 2, [1, 2]), ("u", 2, [2, 2, 0])):
        for k, p in enumerate(preds):
            probs = np.full(3, 0.1)
            probs[p] = 0.8
            rows.append(
                {
                    "video_id": vid,
                    "actor": 1,
                    "label": label,
                    "clip": k,
                    "start_frame": k,
                    **{f"prob_{c}": v for c, v in zip(names, probs, strict=True)},
                    "pred": p,
                }
            )
    clips = pd.DataFrame(rows)
    videos = vote_videos(clips, names)
    assert videos.set_index("video_id")["mv_tie"].to_dict() == {"t": True, "u": False}
    assert videos.set_index("video_id")["mv"].to_dict() == {"t": 1, "u": 2}
    scores = score_predictions(videos, clips, 3)
    assert scores["mv"]["tie_fraction"] == 0.5
    fold = {"fold": 2, "n_test_videos": 2, **scores}
    summary = summarise_folds([fold, {**fold, "fold": 3}])
    assert [f["mv_tie_fraction"] for f in summary["per_fold"]] == [0.5, 0.5]
    text = format_run_summary(summary)
    line = next(x for x in text.splitlines() if x.startswith("MV ties"))
    assert line.endswith("fold 2: 50.00 %, fold 3: 50.00 %.")
