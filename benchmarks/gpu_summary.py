"""benchmarks/gpu.sh's two ends: what the machine has (`environment`), and the summary (`write`).

`environment` imports PyAV and torch (the GPU machine has no PyAV but the carried wheel), prints
their versions, CUDA, the device name and whether NCCL is there, and exits non-zero if either
import fails. `write` reads the shell's step table (name, limit, estimate, exit status, seconds)
and every step's result JSON from WORK/results, and writes OUT/gpu.json (all of it) and
OUT/gpu.md (each step's status; the figures, as ratios where they have one).

    python benchmarks/gpu_summary.py environment --json WORK/results/preflight.json
    python benchmarks/gpu_summary.py write --mode gpu --work WORK --out OUT --wall 400 --budget 470
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

STATUSES = ("pass", "fail", "timeout", "skipped")
BATCHES = (1, 4, 8, 16)
FIGURES = tuple(f"encoder-b{b}" for b in BATCHES) + ("agreement", "extract", "stage2", "heads")


def environment() -> dict:
    """Versions of what vjfer needs on the machine; raises ImportError when av or torch is
    missing."""
    import av
    import torch

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "av": av.__version__,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device": None,
        "nccl_available": False,
        "nccl": None,
    }
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
        env["device_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    import torch.distributed as dist

    try:
        import pytest  # the cuda-tests step needs it; the machine has it only as a carried wheel

        env["pytest"] = pytest.__version__
    except ImportError:
        env["pytest"] = None
    env["nccl_available"] = dist.is_available() and dist.is_nccl_available()
    if env["nccl_available"] and torch.cuda.is_available():
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return env


def step_status(rc: str, result: dict) -> tuple[str, str]:
    """(status, reason) of one step from its exit status (or the shell's marker) and result."""
    if rc == "select":
        return "skipped", "not selected (GPU_STEPS)"
    if rc == "budget":
        return "skipped", "out of time: the run's budget was spent"
    if rc in ("124", "137"):
        return "timeout", "ran past its limit"
    if rc != "0":
        return "fail", result.get("error", f"exit {rc}: see gpu.log")
    if result.get("status") == "skipped":
        return "skipped", result["reason"]
    if result.get("status") == "fail":
        return "fail", result.get("error", "")
    return "pass", ""


def read_steps(work: Path) -> tuple[list[dict], dict]:
    """The step rows and every result JSON by step name."""
    results = {p.stem: json.loads(p.read_text()) for p in sorted((work / "results").glob("*.json"))}
    steps = []
    for line in (work / "steps.tsv").read_text().splitlines():
        name, limit, estimate, rc, seconds = line.split("\t")
        status, reason = step_status(rc, results.get(name, {}))
        steps.append(
            {
                "name": name,
                "status": status,
                "reason": reason,
                "seconds": int(seconds),
                "limit_s": int(limit),
                "estimate_s": int(estimate),
                "exit": rc,
            }
        )
    return steps, results


def figure_rows(results: dict) -> list[tuple[str, str]]:
    """(figure, value) rows of the summary's figure table, for the figures that were measured."""
    rows = []
    for b in BATCHES:
        if r := results.get(f"encoder-b{b}"):
            mfu = f"MFU {r['mfu']:.1%}" if r.get("mfu") is not None else "MFU n/a (no peak)"
            rows.append(
                (
                    f"encoder {r['encoder']} {r['compute_dtype']}, batch {b}",
                    f"{r['clips_per_s']:.2f} clips/s, {r['achieved_tflops']:.3g} TFLOP/s, {mfu}",
                )
            )
    if a := results.get("agreement"):
        for key in ("bf16_autocast", "fp16_autocast", "fp16_storage_of_fp32"):
            v = a[key]
            rows.append(
                (
                    f"tokens {key} vs fp32 ({a['encoder']})",
                    f"rel. L2 {v['relative_l2']:.2e}, cosine mean {v['cosine_mean']:.6f}, "
                    f"p1 {v['cosine_p1']:.6f}",
                )
            )
    if e := results.get("extract"):
        rows.append(
            (
                f"extraction end to end / encoder only ({e['videos']} videos {e['size']}, "
                f"{e['workers']} decode workers)",
                f"{e['end_to_end_clips_s']:.1f} / {e['encoder_only_clips_s']:.1f} clips/s = "
                f"{e['end_to_end_vs_encoder']:.2f} (goal >= 0.9)",
            )
        )
        rows.append(("shard writer / plain writes", f"{e['writer_vs_plain']:.2f}"))
    if s := results.get("stage2"):
        rows += stage2_rows(s)
    if h := results.get("heads"):
        rows += heads_rows(h)
    return rows


def stage2_rows(s: dict) -> list[tuple[str, str]]:
    rows = []
    for state in ("cold", "warm"):
        v = s[state]
        rows.append(
            (
                f"stage-2 reader / raw reads, {state}",
                f"{v['reader_gb_s']:.2f} / {v['raw_gb_s']:.2f} GB/s = {v['reader_vs_raw']:.2f} "
                f"(4 files at a time {v['raw_parallel_gb_s']:.2f} GB/s)",
            )
        )
    for state, v in s.get("epoch_vs_read", {}).items():
        rows.append(
            (
                f"attentive epoch / its read, {state}",
                f"{v['epoch_s']:.2f} / {v['read_s']:.2f} s = {v['epoch_over_read']:.2f}",
            )
        )
    for fmt, v in s.get("stores", {}).items():
        rows.append(
            (
                f"reader clips/s, {fmt} / fp16, cold · warm; decode on the device",
                f"{v['cold']['clips_s_vs_fp16']:.2f} · {v['warm']['clips_s_vs_fp16']:.2f}; "
                f"{v['cold']['decode_ms_per_clip']:.2f} ms a clip",
            )
        )
    if p := s.get("passes"):
        rows.append(
            (
                "one pass / fold by fold (5 folds, cold)",
                f"bytes {p['bytes_ratio']:.3f}, wall {p['wall_ratio']:.2f}",
            )
        )
    return rows


def heads_rows(h: dict) -> list[tuple[str, str]]:
    shape = h["shape"]
    rows = [
        (
            f"one attentive head's step, {shape['batch']} x {shape['clips']} x {shape['tokens']} "
            f"x {shape['dim']} ({h['autocast']})",
            f"{1e3 * h['step']['median_s']:.1f} ms",
        )
    ]
    for r in h["epochs"]:
        rows.append(
            (
                f"epoch, {r['heads']} heads in one pass, {r['store']} from {r['source']}",
                f"{r['epoch_s']:.2f} s; {r['per_head_step_ms']:.1f} ms a head-step "
                f"(x{r['per_head_step_vs_1']:.2f} of one head's)",
            )
        )
    for section in h.get("batching", []):
        rows += batching_rows(section)
    return rows


def batching_rows(section: dict) -> list[tuple[str, str]]:
    """`heads.py`'s batched steps and families' passes at one shape."""
    shape = section["shape"]
    at = f"{shape['batch']} x {shape['clips']} x {shape['tokens']} x {shape['dim']}"
    rows = []
    for r in section["batched"]:
        alone = r.get("separate_step_ms")
        rows.append(
            (
                f"step of {r['heads']} heads batched (--batch-heads), {at}",
                f"{r['batched_step_ms']:.1f} ms = x{r['vs_one_head']:.2f} of one head's (goal "
                f"<= 3 at 40)" + (f"; one by one {alone:.1f} ms" if alone is not None else ""),
            )
        )
    if f := section.get("families"):
        added = ", ".join(f"{n} +{100 * v:.1f} %" for n, v in f["added"].items())
        rows.append(
            (f"linear and k-NN heads on an attentive pass, {at}", f"{added} (goal <= 10 %)")
        )
    return rows


def markdown(summary: dict) -> str:
    env = summary["environment"]
    lines = [
        f"# vjfer on {env.get('device') or 'no GPU'} ({summary['mode']}, {summary['date']})",
        "",
        f"torch {env.get('torch')} (CUDA {env.get('cuda')}), PyAV {env.get('av')}, Python "
        f"{env.get('python')}, {env.get('cpus')} cores, NCCL {env.get('nccl') or 'n/a'}; "
        f"wall {summary['wall_s']} s of a {summary['budget_s']} s budget.",
        "",
        "| step | status | seconds | limit | H200 estimate | note |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary["steps"]:
        note = s["reason"].replace("|", "/").replace("\n", " ")[:200]
        lines.append(
            f"| {s['name']} | {s['status']} | {s['seconds']} | {s['limit_s']} | "
            f"{s['estimate_s']} | {note} |"
        )
    lines += ["", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary["figure_rows"]]
    counts = {k: sum(s["status"] == k for s in summary["steps"]) for k in STATUSES}
    lines += ["", ", ".join(f"{n} {k}" for k, n in counts.items())]
    return "\n".join(lines) + "\n"


def write(args) -> int:
    steps, results = read_steps(args.work)
    summary = {
        "mode": args.mode,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "wall_s": args.wall,
        "budget_s": args.budget,
        "environment": results.pop("preflight", {}),
        "steps": steps,
        "smoke": {k: v for k, v in results.items() if k not in FIGURES},
        "figures": {k: v for k, v in results.items() if k in FIGURES},
    }
    summary["figure_rows"] = figure_rows(results)
    (args.out / "gpu.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    text = markdown(summary)
    (args.out / "gpu.md").write_text(text)
    print(text)
    return 1 if any(s["status"] in ("fail", "timeout") for s in steps) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("environment", help="versions of av, torch, CUDA, the device, NCCL")
    env.add_argument("--json", type=Path, required=True)
    w = sub.add_parser("write", help="gpu.json and gpu.md from the steps' results")
    w.add_argument("--mode", choices=("gpu", "rehearsal"), required=True)
    w.add_argument("--work", type=Path, required=True)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--wall", type=int, required=True, help="seconds the steps took")
    w.add_argument("--budget", type=int, required=True, help="seconds the run was allowed")
    args = parser.parse_args(argv)
    if args.command == "write":
        return write(args)
    found = environment()
    print(json.dumps(found, indent=1))
    args.json.write_text(json.dumps({"status": "pass", **found}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
