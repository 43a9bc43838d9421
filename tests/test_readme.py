"""The README's Python snippets run as written, on the demo's output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


@pytest.mark.slow
def test_readme_python_runs_on_the_demo(demo_run, tmp_path, monkeypatch, capsys):
    demo_dir, _ = demo_run
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has no ```python block"
    (tmp_path / "demo").symlink_to(demo_dir)  # the snippets say Path("demo"), as after `make demo`
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), scope)
    assert scope["cached"].dtype.name == "float16" and scope["cached"].ndim == 4
    assert scope["tokens"].shape[0] == len(scope["clip_frames"])
    assert (demo_dir / "api-run" / "selection.csv").is_file()  # the grid's inner selection
    assert (scope["named"] / "summary.json").is_file() and scope["named"].parent.name == "api-runs"
    row = scope["prediction"].videos.iloc[0]
    assert (
        row["video_id"] == scope["records"][0].video_id
        and row["emotion"] in scope["cache"].class_names
    )
    assert scope["records"][0].video_id in capsys.readouterr().out
