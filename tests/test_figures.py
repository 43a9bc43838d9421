"""Figures: confusion matrices and the PCA figure are real PNG images, drawn without pyplot."""

from __future__ import annotations

import inspect

import matplotlib
import numpy as np
import pytest
from conftest import assert_png

from vjfer import figures, report
from vjfer.figures import confusion_figure, pca_figure, row_normalise
from vjfer.labels import class_names


def test_row_normalise_keeps_empty_rows_zero():
    norm = row_normalise(np.array([[2, 2], [0, 0]]))
    assert norm.tolist() == [[0.5, 0.5], [0.0, 0.0]]


def test_confusion_figure_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    names = class_names("ravdess")
    matrix = rng.integers(0, 10, (8, 8)) + np.diag(np.full(8, 30))
    assert_png(confusion_figure(matrix, names, "RAVDESS, PBV", tmp_path / "cm.png"))
    # a cross matrix before class handling: rows CREMA-D labels, columns RAVDESS predictions
    raw = rng.integers(0, 10, (6, 8))
    path = confusion_figure(
        raw, class_names("crema-d"), "raw", tmp_path / "raw.png", predicted_names=names
    )
    assert_png(path)
    with pytest.raises(ValueError, match="6 true and 6 predicted class names for a 6x8"):
        confusion_figure(raw, class_names("crema-d"), "raw", tmp_path / "bad.png")


def test_labels_are_plain_text_not_mathtext(tmp_path):
    """Issue 32: a list file's class label may hold `$`; matplotlib's mathtext would refuse `a$b`
    when the figure is saved. Labels are drawn as written."""
    matrix = np.array([[3, 1], [0, 4]])
    assert_png(confusion_figure(matrix, ["a$b", "$x"], "labels with $", tmp_path / "cm.png"), 100)
    assert matplotlib.rcParams["text.parse_math"]  # only the figure's own drawing is plain


def test_pca_figure_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 6, 40)
    path = pca_figure(
        rng.normal(size=(40, 16)),
        rng.normal(size=(40, 8)),
        y,
        class_names("crema-d"),
        "CREMA-D fold 1",
        tmp_path / "pca.png",
    )
    assert_png(path)


def test_figures_leave_no_global_state(tmp_path):
    """Figures are made with the object API: none registers with pyplot's figure manager."""
    from matplotlib._pylab_helpers import Gcf

    before = Gcf.get_num_fig_managers()
    confusion_figure(np.eye(6) * 4, class_names("crema-d"), "t", tmp_path / "cm.png")
    assert Gcf.get_num_fig_managers() == before
    source = inspect.getsource(figures) + inspect.getsource(report)
    assert (
        "import matplotlib.pyplot" not in source and "from matplotlib import pyplot" not in source
    )
