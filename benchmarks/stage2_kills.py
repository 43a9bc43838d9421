"""Stage 2 killed and resumed: SIGKILL at random moments and at every exact write of the pass
checkpoint and of the publish, then the command a user would run next; each run must end equal to
the uninterrupted one and leave nothing behind (no RUN.partial, RUN.old, *.tmp, checkpoint.pt).

python benchmarks/stage2_kills.py --random 10   # one line per trial, then the tally as JSON

A generated RAVDESS (5 actors, one per fold) is extracted once with the tiny encoder; every trial
runs `vjfer probe --fold all` with a 2-point grid, 4 epochs and a checkpoint every epoch in a
subprocess. Exact points: a wrapper kills the process just before and just after each commit of
`checkpoint.pt`, and just before and after `publish_run` (the last is the moment between the
publish's rename and the checkpoint's deletion). After the kill: `--resume` when a RUN.partial is
there, the plain command when nothing is (it trains anew), and the plain command (refused: the run
exists) when the run was published, which tidies what the publish left.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

KILLER = """
import os, signal, sys
from pathlib import Path
point, count = int(os.environ["KILL_AT"]), [0]
def hit():
    count[0] += 1
    if count[0] == point:
        os.kill(os.getpid(), signal.SIGKILL)
import vjfer.files as files, vjfer.probe.resume as resume, vjfer.probe.run as run
commit = files.commit_file
def commit_file(tmp, path):
    if Path(path).name == "checkpoint.pt": hit()
    commit(tmp, path)
    if Path(path).name == "checkpoint.pt": hit()
files.commit_file = commit_file
publish = resume.publish_run
def publish_run(partial, out):
    hit(); publish(partial, out); hit()
resume.publish_run = run.publish_run = publish_run
from vjfer.cli import main
sys.argv = ["vjfer", *sys.argv[1:]]
main()
"""


def vjfer(*args, env=None, kill_after: float | None = None) -> int:
    """Run `vjfer ARGS` (through the killer when env holds KILL_AT); its exit code (-9: killed)."""
    code = ["-c", KILLER] if env and "KILL_AT" in env else ["-m", "vjfer"]
    process = subprocess.Popen(
        [sys.executable, *code, *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is not None:
        try:
            return process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()  # a SIGKILL, by us or by the killer: -9


def plain(value):
    """JSON without its timing fields and paths (two equal runs differ only there)."""
    if isinstance(value, dict):
        return {
            k: plain(v)
            for k, v in value.items()
            if k not in ("environment", "path", "out_dir")
            and not k.endswith(("seconds", "seconds_share", "_s"))
        }
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def same_run(a: Path, b: Path) -> list[str]:
    """The files of run `b` that differ from run `a` (JSON without timings, .pt by tensors)."""
    names_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    names_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    diffs = [f"only in one: {n}" for n in sorted(names_a ^ names_b)]
    for name in sorted(names_a & names_b):
        pa, pb = a / name, b / name
        if name.suffix == ".json":
            equal = plain(json.loads(pa.read_text())) == plain(json.loads(pb.read_text()))
        elif name.suffix == ".pt":
            sa, sb = (torch.load(p, weights_only=True) for p in (pa, pb))
            equal = all(
                torch.equal(sa["state_dict"][k], sb["state_dict"][k]) for k in sa["state_dict"]
            )
        elif name.suffix in (".md", ".png"):
            continue  # Markdown names the run's folder; figures carry no number of their own
        else:
            equal = pa.read_bytes() == pb.read_bytes()
        if not equal:
            diffs.append(f"differs: {name}")
    return diffs


def leftovers(out: Path) -> list[str]:
    left = [p for p in out.rglob("*") if p.name.endswith((".partial", ".old", ".tmp"))]
    left += [p for p in out.rglob("checkpoint.pt")]
    return [str(p.relative_to(out)) for p in left]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=10, help="trials killed at a random moment")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from vjfer.synthetic import make_ravdess

    work = Path(tempfile.mkdtemp(prefix="vjfer-kill-"))
    make_ravdess(work / "R", actors=(1, 3, 6, 8, 10), emotions=(1, 3, 5), seed=0)
    cache = work / "cache"
    vjfer(
        "extract",
        "--dataset",
        "ravdess",
        "--root",
        work / "R",
        "--encoder",
        "tiny",
        "--cache",
        cache,
        "--workers",
        "0",
        "--device",
        "cpu",
        "--no-progress",
    )
    probe = [
        "probe",
        "--dataset",
        "ravdess",
        "--cache",
        cache,
        "--epochs",
        "4",
        "--checkpoint-every",
        "1",
        "--lr",
        "1e-3,3e-3",
        "--device",
        "cpu",
        "--num-workers",
        "0",
        "--no-progress",
    ]
    start = time.perf_counter()
    assert vjfer(*probe, "--out", work / "ref") == 0
    seconds = time.perf_counter() - start
    (ref,) = (work / "ref").iterdir()
    rng = random.Random(args.seed)
    trials = [("exact", k) for k in range(1, 4 * 2 + 2 + 1)]  # 4 checkpoints x 2, publish x 2
    # random moments within the first 90 % of the uninterrupted run (start-up included)
    trials += [("random", round(rng.uniform(0.5, 0.9 * seconds), 2)) for _ in range(args.random)]
    tally = {"trials": 0, "killed": 0, "identical": 0, "clean": 0, "seconds": round(seconds, 1)}
    for kind, at in trials:
        out = work / f"{kind}-{at}"
        env = {"KILL_AT": str(at)} if kind == "exact" else None
        killed = vjfer(*probe, "--out", out, env=env, kill_after=None if env else at) == -9
        partial = list(out.glob("*.partial")) if out.exists() else []
        published = (
            [p for p in out.iterdir() if p.is_dir() and "." not in p.name] if out.exists() else []
        )
        then = "--resume" if partial else ("plain, refused" if published else "plain")
        vjfer(*probe, "--out", out, *(["--resume"] if partial else []))
        (run,) = [p for p in out.iterdir() if p.is_dir() and p.name == ref.name]
        diffs, left = same_run(ref, run), leftovers(out)
        tally["trials"] += 1
        tally["killed"] += killed
        tally["identical"] += not diffs
        tally["clean"] += not left
        print(
            f"{kind} {at}: {'killed' if killed else 'finished first'}, then {then}: "
            f"{'identical' if not diffs else diffs[:3]}, "
            f"{'nothing left' if not left else left}",
            flush=True,
        )
    print(json.dumps(tally))


if __name__ == "__main__":
    main()
