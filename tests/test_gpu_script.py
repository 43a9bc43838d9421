"""benchmarks/gpu.sh, rehearsed on the CPU: its command line, step names, statuses and summaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_summary  # noqa: E402  (a benchmark script, not a package module)

STEPS = [
    "preflight",
    "cuda-tests",
    "data",
    "extract-bf16",
    "extract-fp16",
    "probe",
    "int8",
    "cross",
    "report",
    "predict",
    "nccl",
    "ranks",
    "encoder-b1",
    "encoder-b4",
    "encoder-b8",
    "encoder-b16",
    "agreement",
    "extract",
    "stage2",
    "heads",
]
FAST = ("preflight", "encoder-b1", "heads")  # the rehearsal's quick steps (~15 s)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Path:
    """`bash benchmarks/gpu.sh --rehearse OUT` with only the fast steps selected."""
    out = tmp_path_factory.mktemp("gpu")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_STEPS": "|".join(FAST),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(out.parent),
    }
    done = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--rehearse", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


@pytest.mark.slow
def test_rehearsal_writes_three_files(rehearsal):
    assert sorted(p.name for p in rehearsal.iterdir()) == ["gpu.json", "gpu.log", "gpu.md"]
    assert "== heads: exit 0" in (rehearsal / "gpu.log").read_text()


@pytest.mark.slow
def test_rehearsal_steps_and_statuses(rehearsal):
    summary = json.loads((rehearsal / "gpu.json").read_text())
    assert summary["mode"] == "rehearsal"
    steps = {s["name"]: s for s in summary["steps"]}
    assert [s["name"] for s in summary["steps"]] == STEPS
    assert {n: steps[n]["status"] for n in FAST} == {
        "preflight": "pass",
        "encoder-b1": "pass",
        "heads": "pass",
    }
    for name in set(STEPS) - set(FAST):
        assert (steps[name]["status"], steps[name]["reason"]) == (
            "skipped",
            "not selected (GPU_STEPS)",
        )
    env = summary["environment"]
    assert env["av"] and env["torch"] and env["cuda_available"] is False


@pytest.mark.slow
def test_rehearsal_figures_are_numbers(rehearsal):
    figures = json.loads((rehearsal / "gpu.json").read_text())["figures"]
    assert sorted(figures) == ["encoder-b1", "heads"]
    encoder = figures["encoder-b1"]
    assert encoder["clips_per_s"] > 0 and encoder["batch_size"] == 1 and encoder["mfu"] is None
    heads = figures["heads"]
    assert heads["step"]["median_s"] > 0
    rows = {(r["store"], r["source"], r["heads"]): r for r in heads["epochs"]}
    assert sorted(rows) == sorted(
        (s, w, h) for s in ("fp16", "int8") for w in ("disk", "held") for h in (1, 5)
    )
    for (store, source, _), r in rows.items():
        assert r["epoch_s"] > 0 and r["per_head_step_ms"] > 0
        one = rows[(store, source, 1)]["per_head_step_ms"]
        assert r["per_head_step_vs_1"] == pytest.approx(r["per_head_step_ms"] / one)
    (section,) = heads["batching"]  # --batch-heads at the tiny shape: 1 and 5 heads a step
    assert section["shape"]["tokens"] == 256 and [r["heads"] for r in section["batched"]] == [1, 5]
    one, five = section["batched"]
    assert one["vs_one_head"] == 1 and five["batched_step_ms"] > 0 and five["separate_step_ms"] > 0
    assert sorted(section["families"]["added"]) == ["attentive+linear", "attentive+linear+knn"]


@pytest.mark.slow
def test_rehearsal_markdown_lists_every_step(rehearsal):
    lines = (rehearsal / "gpu.md").read_text().splitlines()
    table = {
        cells[1]: cells[2]
        for line in lines
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.split("|")]]
        if len(cells) == 8
    }
    assert {name: table[name] for name in FAST} == {
        "preflight": "pass",
        "encoder-b1": "pass",
        "heads": "pass",
    }
    assert set(STEPS) <= set(table)
    assert lines[-1] == "3 pass, 0 fail, 0 timeout, 17 skipped"


@pytest.mark.parametrize(
    "rc, result, expected",
    [
        ("124", {}, "timeout"),
        ("137", {}, "timeout"),
        ("1", {"error": "boom"}, "fail"),
        ("0", {"status": "skipped", "reason": "no CUDA"}, "skipped"),
        ("0", {}, "pass"),
        ("budget", {}, "skipped"),
    ],
)
def test_step_status(rc, result, expected):
    assert gpu_summary.step_status(rc, result)[0] == expected
