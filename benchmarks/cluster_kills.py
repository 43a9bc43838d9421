"""Kill trial of `vjfer extract --executor local`: RUNS runs in which random array tasks are
SIGKILLed or preempted (SIGUSR2, the signal SLURM sends before preemption or the time limit, which
submitit answers by requeuing the task) at random moments, and the job resubmitted until the cache
is complete; each run's shards, manifest and failures.jsonl must equal a single-process extraction
byte for byte, every video in exactly one shard.

    python benchmarks/cluster_kills.py --work /tmp/kill-trial [--runs 10] [--tasks 4] [--parallel 2]

Prints one line per run and the tally (JSON) at the end. CPU only: generated RAVDESS-named videos
and the tiny encoder; no SLURM needed (submitit's local executor).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def digests(directory: Path) -> dict[str, str]:
    files = [*directory.glob("shard-*"), directory / "failures.jsonl"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.exists()}


def manifest(directory: Path) -> dict | None:
    path = directory / "manifest.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["config"].pop("cache_root")  # the one path that differs
    return data


def live_tasks(directory: Path) -> list[int]:
    """Pids of the tasks holding a rank lock (their lock names them) and still alive."""
    pids = []
    for lock in directory.glob(".extract-rank*.lock"):
        words = lock.read_text().split()
        if len(words) >= 2 and words[0] == "pid":
            try:
                os.kill(int(words[1]), 0)
                pids.append(int(words[1]))
            except (OSError, ValueError):
                pass
    return pids


def one_run(base: list[str], cache_root: Path, directory: Path, rng: random.Random) -> dict:
    """Submit, SIGKILL or preempt random live tasks at random moments, resubmit until complete
    (at most 6 submissions)."""
    counts = {"rounds": 0, "sigkill": 0, "sigusr2": 0}
    cmd = [*base, "--cache", str(cache_root)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for _ in range(6):
        counts["rounds"] += 1
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # one or two strikes in the first submission, at most one in the next two, then none
        strikes = {1: rng.choice([1, 2]), 2: rng.choice([0, 1]), 3: rng.choice([0, 1])}
        strikes = strikes.get(counts["rounds"], 0)
        while proc.poll() is None:
            pids = live_tasks(directory)
            if strikes and pids and rng.random() < 0.6:
                sig = rng.choice([signal.SIGKILL, signal.SIGUSR2])
                try:
                    os.kill(rng.choice(pids), sig)
                    counts["sigkill" if sig == signal.SIGKILL else "sigusr2"] += 1
                    strikes -= 1
                except OSError:
                    pass
            time.sleep(rng.uniform(0.05, 0.6))
        if manifest(directory) is not None:
            break
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from vjfer.synthetic import make_ravdess

    root = args.work / "data"
    if not root.exists():
        make_ravdess(root, emotions=(1, 3, 5, 8), vocal_channels=(1,), modalities=(1, 2))
    base = [sys.executable, "-m", "vjfer", "extract", "--dataset", "ravdess", "--root", str(root)]
    base += ["--encoder", "tiny", "--shard-size", "2", "--workers", "0", "--device", "cpu"]
    base += ["--no-dedup", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([*base, "--cache", str(args.work / "clean")], env=env, check=True, **quiet)
    (clean,) = (args.work / "clean" / "ravdess").iterdir()
    executor = ["--executor", "local", "--tasks", str(args.tasks), "--parallel", str(args.parallel)]
    executor += ["--gpus-per-task", "0", "--cpus-per-task", "1"]
    rng = random.Random(args.seed)
    tally = {"runs": 0, "identical": 0, "interrupted": 0, "sigkill": 0, "sigusr2": 0}
    tally["resubmissions"] = 0
    for run in range(args.runs):
        cache_root = args.work / f"run-{run}"
        directory = cache_root / "ravdess" / clean.name
        start = time.monotonic()
        counts = one_run(base + executor, cache_root, directory, rng)
        same = digests(directory) == digests(clean) and manifest(directory) == manifest(clean)
        ids = [v["video_id"] for v in (manifest(directory) or {"videos": []})["videos"]]
        once = len(ids) == len(set(ids)) == len(manifest(clean)["videos"])
        tally["runs"] += 1
        tally["identical"] += same and once
        tally["interrupted"] += counts["sigkill"] + counts["sigusr2"] > 0
        tally["sigkill"] += counts["sigkill"]
        tally["sigusr2"] += counts["sigusr2"]
        tally["resubmissions"] += counts["rounds"] - 1
        print(
            f"run {run}: {counts['sigkill']} SIGKILL, {counts['sigusr2']} SIGUSR2, "
            f"{counts['rounds']} submission(s), {'identical' if same and once else 'DIFFERENT'} "
            f"({time.monotonic() - start:.0f} s)",
            flush=True,
        )
    print(json.dumps(tally))


if __name__ == "__main__":
    main()
