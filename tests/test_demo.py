"""The embedded default: `run_demo` goes through every stage and its summary names what it made."""

from __future__ import annotations

import pytest

from vjfer.demo import format_demo


@pytest.mark.slow
def test_demo_runs_every_stage(demo_run):
    tmp_path, result = demo_run
    assert set(result.summaries) == {"ravdess", "crema-d"}
    for summary in result.summaries.values():
        assert summary["folds"] == [1, 2, 3, 4, 5]
    assert len(result.cross) == 4
    for cross in result.cross:
        for fold in cross.folds:
            assert fold["pbv"]["n_kept"] + fold["pbv"]["n_dropped"] == fold["pbv"]["n_total"]
    assert (tmp_path / "report" / "report.md").is_file()
    assert len(result.prediction.videos) == 1 and not result.prediction.failures
    text = format_demo(result)
    assert "chance  12.5%" in text and "chance  16.7%" in text
    assert str(tmp_path / "report" / "report.md") in text
    page = tmp_path / "report" / "report.html"
    assert result.report[-1] == page and page.is_file()
    (line,) = [x for x in text.splitlines() if x.startswith("page ")]
    assert line.split()[1] == str(page)  # `make demo` prints where the page is
