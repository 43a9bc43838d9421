"""Metrics against hand-computed confusion matrices; fold aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vjfer import metrics

# rows = truth: class 0 -> [3, 1, 0], class 1 -> [0, 2, 0], class 2 -> [1, 0, 1]
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 2]


def test_confusion_rows_are_truth():
    expected = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(metrics.confusion(Y_TRUE, Y_PRED, 3), expected)


def test_confusion_keeps_absent_classes_in_order():
    cm = metrics.confusion(Y_TRUE, Y_PRED, 5)
    assert cm.shape == (5, 5)
    assert cm[3:].sum() == 0 and cm[:, 3:].sum() == 0
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        metrics.confusion(Y_TRUE, Y_PRED, 2)


def test_recall_based_metrics():
    # recalls 3/4, 2/2, 1/2
    np.testing.assert_allclose(metrics.per_class_recall(Y_TRUE, Y_PRED, 3), [0.75, 1.0, 0.5])
    assert metrics.uar(Y_TRUE, Y_PRED) == pytest.approx((0.75 + 1.0 + 0.5) / 3)
    assert metrics.war(Y_TRUE, Y_PRED) == pytest.approx(6 / 8)


def test_macro_precision_is_not_uar():
    # precisions per predicted column: 3/4, 2/3, 1/1 -- what the reference script calls "UAR"
    expected = (3 / 4 + 2 / 3 + 1) / 3
    assert metrics.macro_precision(Y_TRUE, Y_PRED) == pytest.approx(expected)
    assert metrics.macro_precision(Y_TRUE, Y_PRED) != pytest.approx(metrics.uar(Y_TRUE, Y_PRED))
    # F1 per class: 0.75, 0.8, 2/3
    assert metrics.macro_f1(Y_TRUE, Y_PRED) == pytest.approx((0.75 + 0.8 + 2 / 3) / 3)


def test_never_predicted_class_has_precision_zero():
    assert metrics.macro_precision([0, 1, 1], [0, 0, 0]) == pytest.approx((1 / 3 + 0) / 2)
    assert metrics.uar([0, 1, 1], [0, 0, 0]) == pytest.approx(0.5)


def test_absent_true_class_recall_is_nan_and_left_out_of_uar():
    recall = metrics.per_class_recall(Y_TRUE, Y_PRED, 4)
    assert math.isnan(recall[3])
    assert metrics.uar(Y_TRUE, Y_PRED) == pytest.approx(0.75)
    out = metrics.classification_metrics(Y_TRUE, Y_PRED, 4)
    assert out["per_class_recall"][3] is None and out["n"] == 8


@pytest.mark.filterwarnings("ignore:A single label was found")
def test_numpy_metrics_equal_sklearn_to_the_bit():
    """vjfer computes from the confusion matrix; summaries stay byte-identical only if every value
    is sklearn's to the last bit (including classes absent from truth or predictions)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score

    rng = np.random.default_rng(0)
    for case in range(60):
        classes, n = int(rng.integers(1, 9)), int(rng.integers(1, 60))
        t = rng.integers(0, classes, n)
        p = np.where(rng.random(n) < 0.5, t, rng.integers(0, classes, n))
        if case % 4 == 0:  # labels that skip values: the seen classes are not 0..C-1
            t, p = t * 3, p * 3
        assert metrics.war(t, p) == float(accuracy_score(t, p))
        assert metrics.macro_precision(t, p) == float(
            precision_score(t, p, average="macro", zero_division=0)
        )
        assert metrics.macro_f1(t, p) == float(f1_score(t, p, average="macro", zero_division=0))
        c = int(max(t.max(), p.max())) + 1
        expected = confusion_matrix(t, p, labels=np.arange(c))
        np.testing.assert_array_equal(metrics.confusion(t, p, c), expected)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one length"):
        metrics.uar([0, 1], [0])
    with pytest.raises(ValueError, match="no samples"):
        metrics.war([], [])


def test_fold_summary_mean_and_sample_std():
    folds = [
        {"fold": 1, "pbv": {"uar": 0.5, "war": 0.6}, "note": "x", "per_class_recall": [1.0]},
        {"fold": 2, "pbv": {"uar": 0.7, "war": 0.8}, "note": "y", "per_class_recall": [0.0]},
        {"fold": 3, "pbv": {"uar": 0.9, "war": 0.7}, "note": "z", "per_class_recall": [0.5]},
    ]
    out = metrics.fold_summary(folds)
    assert out["pbv"]["uar"]["mean"] == pytest.approx(0.7)
    assert out["pbv"]["uar"]["std"] == pytest.approx(0.2)  # ddof=1: sqrt((0.04 + 0 + 0.04) / 2)
    assert out["pbv"]["war"]["values"] == [0.6, 0.8, 0.7]
    assert "note" not in out and "per_class_recall" not in out
    single = metrics.fold_summary(folds[:1])
    assert single["pbv"]["uar"] == {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}
    with pytest.raises(ValueError, match="no folds"):
        metrics.fold_summary([])


def test_pooled_metrics_weigh_every_video_alike():
    # fold A: 4 videos, class 0 all right, class 1 half right; fold B: 2 videos, both wrong
    folds = [([0, 0, 1, 1], [0, 0, 1, 0]), ([1, 0], [0, 1])]
    pooled = metrics.pooled_metrics(folds)
    # pooled: class 0 recall 2/3, class 1 recall 1/3; 3 of 6 right
    assert pooled["uar"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert pooled["war"] == pytest.approx(3 / 6)
    # the fold mean differs: WAR (3/4 + 0) / 2
    assert np.mean([metrics.war(t, p) for t, p in folds]) == pytest.approx(0.375)
    # precision: 4 predictions of class 0, 2 right; 2 of class 1, 1 right
    assert pooled["macro_precision"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no folds"):
        metrics.pooled_metrics([])


# ---------------------------------------------------------------------------------------------
# Bootstrap intervals.


def _scored(n: int = 400, actors: int = 20, seed: int = 0):
    """Labels, predictions (about 70 % right) and actors of `n` videos."""
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, n)
    p = np.where(rng.random(n) < 0.7, t, rng.integers(0, 5, n))
    return t, p, rng.integers(0, actors, n)


def test_bootstrap_scores_equal_the_metrics_of_each_resample():
    t, p, g = _scored(n=120, actors=8)
    got = metrics.bootstrap_scores(t, p, g, resamples=3, seed=5)
    # the same draws, taken one resample at a time with the scalar metrics
    draws = np.random.default_rng(5).integers(0, 8, size=(3, 8))
    for r in range(3):
        idx = np.concatenate([np.flatnonzero(g == a) for a in np.unique(g)[draws[r]]])
        for name, fn in (
            ("uar", metrics.uar),
            ("war", metrics.war),
            ("macro_precision", metrics.macro_precision),
        ):
            assert got[name][r] == pytest.approx(fn(t[idx], p[idx]), abs=1e-12)
        assert got["macro_f1"][r] == pytest.approx(metrics.macro_f1(t[idx], p[idx]), abs=1e-12)


def test_bootstrap_interval_covers_the_point_and_is_fixed_by_its_seed():
    t, p, g = _scored()
    for metric, fn in (
        ("uar", metrics.uar),
        ("war", metrics.war),
        ("macro_precision", metrics.macro_precision),
    ):
        low, high = metrics.bootstrap_interval(t, p, g, metric, resamples=500, seed=0)
        assert low < fn(t, p) < high
    first = np.array(metrics.bootstrap_interval(t, p, g, resamples=500, seed=7)).tobytes()
    assert np.array(metrics.bootstrap_interval(t, p, g, resamples=500, seed=7)).tobytes() == first
    assert np.array(metrics.bootstrap_interval(t, p, g, resamples=500, seed=8)).tobytes() != first


def test_bootstrap_by_subject_widens_when_subjects_are_homogeneous():
    # 20 actors of 20 videos each, one class; an actor's videos are all right or all wrong
    t = np.zeros(400, dtype=int)
    g = np.repeat(np.arange(20), 20)
    p = np.where(g % 10 < 7, 0, 1)  # 14 actors right, 6 wrong: WAR 0.7
    by_actor = metrics.bootstrap_interval(t, p, g, "war", resamples=1000, seed=0)
    by_video = metrics.bootstrap_interval(t, p, None, "war", resamples=1000, seed=0)
    assert by_actor[1] - by_actor[0] > 2 * (by_video[1] - by_video[0])
    assert by_actor[0] < 0.7 < by_actor[1]


def test_bootstrap_interval_degenerate_cases():
    # one subject: every resample is the data itself, so the interval is the point twice
    assert metrics.bootstrap_interval([0, 1, 1], [0, 0, 1], [3, 3, 3], "uar") == (0.75, 0.75)
    # one class: UAR is its recall, within [0, 1]
    low, high = metrics.bootstrap_interval([2, 2, 2, 2], [2, 0, 2, 2], None, "uar", resamples=200)
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    with pytest.raises(ValueError, match="no samples"):
        metrics.bootstrap_interval([], [], None)
    with pytest.raises(ValueError, match="groups"):
        metrics.bootstrap_interval([0, 1], [0, 1], [1])
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.bootstrap_interval([0, 1], [0, 1], None, "auc")
