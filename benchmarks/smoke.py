"""The CUDA smoke run of benchmarks/gpu.sh: every GPU path of vjfer once, end to end, step by step.

Each call runs one STEP and writes WORK/results/<name>.json: {"status": "pass" | "skipped" |
"fail", ...what it checked}. A step that needs CUDA and finds none records "skipped: no CUDA"
(the CPU rehearsal, `bash benchmarks/gpu.sh --rehearse OUT`); any other problem raises, so the
process exits non-zero and the shell's step records a failure with the traceback in gpu.log.

Steps, in gpu.sh's order (each reads what the ones before it left in WORK):

- `cuda-tests`: `pytest -m cuda` (every CUDA test; on a GPU none may skip), listed by test id.
- `data`: generated RAVDESS- and CREMA-D-named videos (`vjfer.synthetic`, 2 actors per fold).
- `extract --dtype bf16|fp16`: both datasets with `--encoder` (a real-size V-JEPA with random,
  NOT pretrained, weights, or `tiny`) through `vjfer.extract.extract`; the CLI has no
  random-weights flag for the real sizes.
- `probe`: `vjfer probe --fold all` with a 2 × 2 lr × wd grid and `--in-memory gpu` (RAM on CPU).
- `int8`: `vjfer cache convert --store int8`, then `vjfer probe` on the int8 cache.
- `cross`, `report`, `predict`: the CLI on the bf16 run.
- `nccl`: under torchrun, two ranks on one device try an NCCL all-reduce (NCCL may refuse two
  ranks on one GPU: the step then records its error as the reason it was skipped).
- `ranks`: a two-rank torchrun extraction on the one device (vjfer's ranks share no process
  group: each writes its own shards, rank 0 the manifest), checked against the one-rank cache.

    python benchmarks/smoke.py STEP --work DIR [--device cuda] [--encoder vjepa-l16] [...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent  # the project root: tests/ and vjfer/ live there
PYTEST_WHEELS = "pytest pluggy iniconfig pygments packaging"  # pytest and what it imports
GRID = {"lr": "1e-3,3e-3", "wd": "0.01,0.05"}  # the 2 × 2 grid: 4 heads per fold in one pass


class Skipped(Exception):
    """The step cannot run here (the reason is recorded, never silently)."""


def cuda_or_skip(device: str) -> None:
    if not device.startswith("cuda"):
        raise Skipped("no CUDA (--device cpu)")
    if not torch.cuda.is_available():
        raise Skipped("no CUDA: torch.cuda.is_available() is False")


def vjfer_cli(*args: str, timeout: float = 300) -> str:
    """Run `python -m vjfer ARGS` as a user would; its stdout, or an error with its output."""
    cmd = [sys.executable, "-m", "vjfer", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def the_run(runs: Path, cache_name: str) -> Path:
    """The one probe run directory `vjfer probe` made under `runs` for the cache `cache_name`."""
    found = sorted(p.parent for p in runs.glob(f"*{cache_name}*/summary.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one run of cache {cache_name} under {runs}, found {found}")
    return found[0]


def cache_dir(work: Path, dtype: str, dataset: str) -> Path:
    """The cache `extract --dtype` wrote for `dataset` (one per dtype root)."""
    found = [p.parent for p in (work / "cache" / dtype / dataset).glob("*/manifest.json")]
    if len(found) != 1:
        raise RuntimeError(f"expected one {dataset} cache under {work}/cache/{dtype}, got {found}")
    return found[0]


def summary_uar(run: Path) -> float:
    """The run's mean PBV UAR (a number: the run scored every fold)."""
    from vjfer.results import mean_of, read_summary

    return float(mean_of(read_summary(run), "pbv", "uar")["mean"])


# ---------------------------------------------------------------------------- the steps


def step_cuda_tests(args) -> dict:
    """`pytest -m cuda`: pass when every CUDA test ran and passed (none skipped on a GPU)."""
    if importlib.util.find_spec("pytest") is None:
        raise RuntimeError(
            f"pytest is not importable by {sys.executable}: carry its wheels, "
            f"EXTRA='{PYTEST_WHEELS}' bash ../shared/device/wheels.sh"
        )
    # only the files that hold CUDA tests: the others may import what a bare machine lacks
    files = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").glob("test_*.py")
        if "mark.cuda" in p.read_text()
    )
    junit = args.work / "cuda-tests.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        *files,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
    sys.stderr.write(done.stdout[-6000:])
    cases = ET.parse(junit).getroot().iter("testcase")
    tests = {}
    for case in cases:
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag + (
                    f": {child.get('message', '')}" if child.tag == "skipped" else ""
                )
        tests[f"{case.get('classname')}::{case.get('name')}"] = outcome
    if not tests:
        raise RuntimeError("pytest -m cuda collected no tests")
    bad = {t: o for t, o in tests.items() if o in ("failure", "error")}
    skipped = {t: o for t, o in tests.items() if o.startswith("skipped")}
    result = {"tests": tests, "count": len(tests), "failed": len(bad), "skipped": len(skipped)}
    if bad:
        raise RuntimeError(f"{len(bad)} CUDA tests failed: {sorted(bad)}")
    if skipped and torch.cuda.is_available():
        raise RuntimeError(f"{len(skipped)} CUDA tests skipped on a GPU: {skipped}")
    if skipped:
        return {**result, "status": "skipped", "reason": f"no CUDA: all {len(tests)} skipped"}
    return result


def step_data(args) -> dict:
    """RAVDESS- and CREMA-D-named videos: 2 actors per fold, `--emotions` classes each."""
    from vjfer.synthetic import DEMO_CREMA_D_ACTORS, DEMO_RAVDESS_ACTORS, make_crema_d, make_ravdess

    data = args.work / "data"
    ravdess = make_ravdess(
        data / "ravdess",
        actors=DEMO_RAVDESS_ACTORS,
        vocal_channels=(1,),
        modalities=(2,),
        emotions=tuple(range(1, 1 + args.emotions)),
    )
    crema = make_crema_d(
        data / "crema-d",
        actors=DEMO_CREMA_D_ACTORS,
        sentences=("TIE",),
        emotions=("NEU", "ANG", "HAP", "SAD", "FEA", "DIS")[: args.emotions],
    )
    return {"ravdess_videos": len(ravdess), "crema_d_videos": len(crema)}


def extract_config(args, dataset: str):
    from vjfer.extract import ExtractConfig

    return ExtractConfig(
        dataset=dataset,
        root=args.work / "data" / dataset,
        encoder=args.encoder,
        cache_root=args.work / "cache" / args.dtype,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        batch_size=8,
        shard_size=16,
    )


def load_smoke_encoder(args):
    from vjfer.encoders import load_encoder

    return load_encoder(
        args.encoder, device=args.device, dtype=args.dtype, random_weights=args.encoder != "tiny"
    )


def step_extract(args) -> dict:
    """Both datasets, `--dtype` compute, one encoder load for the two."""
    from vjfer.extract import extract, plan_extraction

    encoder = load_smoke_encoder(args)
    out = {"encoder": args.encoder, "compute_dtype": encoder.compute_dtype}
    for dataset in ("ravdess", "crema-d"):
        config = extract_config(args, dataset)
        summary = extract(config, progress=False, plan=plan_extraction(config, encoder=encoder))
        if summary.videos_done == 0 or summary.clips == 0:
            raise RuntimeError(f"extract {dataset}: nothing encoded ({summary})")
        out[dataset] = {
            "videos": summary.videos_done,
            "clips": summary.clips,
            "clips_per_s": summary.clips_per_s,
        }
    if args.device.startswith("cuda"):
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def probe(args, cache: Path, runs: Path, in_memory: str) -> float:
    vjfer_cli(
        "probe",
        "--dataset",
        "ravdess",
        "--fold",
        "all",
        "--cache",
        str(cache),
        "--out",
        str(runs),
        "--epochs",
        str(args.epochs),
        "--lr",
        GRID["lr"],
        "--wd",
        GRID["wd"],
        "--in-memory",
        in_memory,
        "--device",
        args.device,
        "--no-progress",
        "--force",
        timeout=args.timeout,
    )
    return summary_uar(the_run(runs, cache.name))


def step_probe(args) -> dict:
    """`vjfer probe --fold all`, 2 × 2 grid, tokens held on the GPU (on CPU: in RAM)."""
    in_memory = "gpu" if args.device.startswith("cuda") else "yes"
    cache = cache_dir(args.work, "bf16", "ravdess")
    uar = probe(args, cache, args.work / "runs", in_memory)
    return {"in_memory": in_memory, "grid": GRID, "pbv_uar": uar}


def step_int8(args) -> dict:
    """`vjfer cache convert --store int8`, then `vjfer probe` on the int8 cache."""
    source = cache_dir(args.work, "bf16", "ravdess")
    target = args.work / "cache-int8" / source.name
    vjfer_cli(
        "cache",
        "convert",
        str(source),
        "--store",
        "int8",
        "--out",
        str(target),
        "--cost-clips",
        "16",
        timeout=args.timeout,
    )
    cost = json.loads((target / "store_cost.json").read_text())
    uar = probe(args, target, args.work / "runs-int8", "no")
    return {"relative_l2": cost.get("relative_l2"), "pbv_uar": uar}


def step_cross(args) -> dict:
    run = the_run(args.work / "runs", cache_dir(args.work, "bf16", "ravdess").name)
    text = vjfer_cli(
        "cross",
        "--train",
        "ravdess",
        "--test",
        "crema-d",
        "--calm",
        "both",
        "--runs",
        str(args.work / "runs"),
        "--run",
        str(run),
        "--cache",
        str(cache_dir(args.work, "bf16", "crema-d")),
        "--device",
        args.device,
        timeout=args.timeout,
    )
    made = sorted(p.name for p in (run / "cross").glob("cross-*"))  # cross results live in the run
    if not made:
        raise RuntimeError(f"vjfer cross wrote no cross-* result under {run / 'cross'}: {text}")
    return {"runs": made}


def step_report(args) -> dict:
    out = args.work / "report"
    vjfer_cli(
        "report",
        str(args.work / "runs"),
        "--out",
        str(out),
        "--cache",
        str(args.work / "cache" / "bf16"),
        "--device",
        args.device,
        timeout=args.timeout,
    )
    files = sorted(p.name for p in out.iterdir())
    for name in ("report.md", "report.html"):
        if name not in files:
            raise RuntimeError(f"vjfer report left no {name} in {out}: {files}")
    return {"files": len(files)}


def step_predict(args) -> dict:
    run = the_run(args.work / "runs", cache_dir(args.work, "bf16", "ravdess").name)
    video = sorted((args.work / "data" / "ravdess").rglob("*.mp4"))[0]
    rows = json.loads(
        vjfer_cli(
            "predict",
            "--run",
            str(run),
            "--device",
            args.device,
            "--json",
            str(video),
            timeout=args.timeout,
        )
    )
    return {"video": video.name, "prediction": rows}


def step_nccl(args) -> dict:
    """Two ranks on one GPU: an NCCL all-reduce under torchrun (rank 0 records the outcome)."""
    cuda_or_skip(args.device)
    return torchrun(args, "nccl-rank")


def nccl_rank(args) -> dict:
    import torch.distributed as dist

    device = torch.device(args.device)
    try:
        dist.init_process_group("nccl", timeout=timedelta(seconds=20), device_id=device)
        x = torch.ones(1, device=device) * (dist.get_rank() + 1)
        dist.all_reduce(x)
        torch.cuda.synchronize(device)
        dist.destroy_process_group()
    except Exception as err:  # the NCCL error is the reason the step is skipped
        raise Skipped(f"NCCL refused two ranks on {device}: {type(err).__name__}: {err}") from err
    world = int(os.environ["WORLD_SIZE"])
    if x.item() != world * (world + 1) / 2:
        raise RuntimeError(f"NCCL all-reduce gave {x.item()}, expected {world * (world + 1) / 2}")
    return {"world_size": world, "all_reduce": x.item(), "nccl": str(torch.cuda.nccl.version())}


def step_ranks(args) -> dict:
    """Two-rank torchrun extraction on the one device, compared with the one-rank cache."""
    result = torchrun(args, "ranks-rank")
    from vjfer.cache import open_cache

    two = open_cache(cache_dir(args.work, "ranks", "ravdess"))
    one = open_cache(cache_dir(args.work, "bf16", "ravdess"))
    if two.num_clips != one.num_clips or len(two) != len(one):
        raise RuntimeError(
            f"two ranks: {len(two)} videos, {two.num_clips} clips; "
            f"one rank: {len(one)} videos, {one.num_clips} clips"
        )
    return {**result, "videos": len(two), "clips": two.num_clips}


def ranks_rank(args) -> dict:
    from vjfer.extract import extract, plan_extraction

    bf16 = argparse.Namespace(**{**vars(args), "dtype": "bf16"})  # the one-rank cache's settings
    config = replace(
        extract_config(bf16, "ravdess"),
        cache_root=args.work / "cache" / "ranks",
        workers=max(1, args.workers // 2),
    )  # the ranks share the cores
    encoder = load_smoke_encoder(bf16)
    summary = extract(config, progress=False, plan=plan_extraction(config, encoder=encoder))
    return {"rank_clips": summary.clips, "world_size": int(os.environ.get("WORLD_SIZE", 1))}


def torchrun(args, rank_step: str) -> dict:
    """Run `rank_step` under `torchrun --nproc-per-node 2`; rank 0's result is the step's."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        __file__,
        rank_step,
        "--work",
        str(args.work),
        "--device",
        args.device,
        "--encoder",
        args.encoder,
        "--workers",
        str(args.workers),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.timeout)
    sys.stderr.write(done.stdout[-3000:] + done.stderr[-6000:])
    result = read_result(args.work, rank_step)
    if result.get("status") == "skipped":
        raise Skipped(result["reason"])
    if done.returncode != 0:
        raise RuntimeError(f"torchrun {rank_step} exited {done.returncode}: {done.stderr[-2000:]}")
    return result


STEPS = {
    "cuda-tests": step_cuda_tests,
    "data": step_data,
    "extract": step_extract,
    "probe": step_probe,
    "int8": step_int8,
    "cross": step_cross,
    "report": step_report,
    "predict": step_predict,
    "nccl": step_nccl,
    "ranks": step_ranks,
    "nccl-rank": nccl_rank,
    "ranks-rank": ranks_rank,
}


def read_result(work: Path, name: str) -> dict:
    path = work / "results" / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(work: Path, name: str, result: dict) -> None:
    if int(os.environ.get("RANK", 0)) != 0:
        return  # under torchrun, rank 0 speaks for the step
    (work / "results").mkdir(parents=True, exist_ok=True)
    (work / "results" / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder shared by steps")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoder", default="vjepa-l16", help="real size (random weights) or tiny")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp16"), help="extract step")
    parser.add_argument("--emotions", type=int, default=8, help="data step: classes per dataset")
    parser.add_argument("--epochs", type=int, default=2, help="probe steps")
    parser.add_argument("--workers", type=int, default=4, help="decoding processes")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per command run")
    args = parser.parse_args(argv)
    name = args.step + (f"-{args.dtype}" if args.step == "extract" else "")
    start = time.perf_counter()
    try:
        result = {"status": "pass", **STEPS[args.step](args)}
    except Skipped as why:
        result = {"status": "skipped", "reason": str(why)}
    except Exception as err:
        write_result(args.work, name, {"status": "fail", "error": f"{type(err).__name__}: {err}"})
        traceback.print_exc()
        return 1
    result["seconds"] = time.perf_counter() - start
    write_result(args.work, name, result)
    print(json.dumps({name: result}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
