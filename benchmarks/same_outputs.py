"""Do two vjfer source trees produce the same outputs? A refactor's byte-identity check.

    git archive OLD | tar -x -C /tmp/old        # the code before the change
    python benchmarks/same_outputs.py --old /tmp/old --new . --work /tmp/same

Both trees run as `python -m vjfer` (each with PYTHONPATH pointing at it) on inputs generated once
by the old tree: the demo's RAVDESS and CREMA-D sets, a 3-layer RAVDESS cache, a list-file dataset
and a generated DFEW tree, all with the tiny encoder on the CPU.

Stage 1: each tree extracts every cache; the shards' datasets and attributes and the manifests
(timings and paths aside) are compared. Stage 2 runs on the OLD tree's caches for both trees, so
that a difference there is a difference of stage 2: `probe --fold all` with a 2x2 grid on every
cache (`--layer all` on the 3-layer one), `cross` both ways with `--calm both`, `report` and
`predict --json`. Every CSV must be byte-identical; every `metrics.json` and `summary.json` equal
once timing fields are left out; `predict`'s JSON equal. Prints one line per difference and a
tally; exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import numpy.lib.recfunctions as rfn

PROBE = [
    "--epochs",
    "2",
    "--lr",
    "1e-3,5e-4",
    "--wd",
    "0.01,0.05",
    "--device",
    "cpu",
    "--num-workers",
    "0",
    "--no-progress",
]
TIMING_KEYS = {
    "seconds",
    "timing",
    "timings",
    "elapsed",
    "started",
    "finished",
    "created",
    "env",
    "environment",
    "wall_s",
    "epoch_seconds",
    "duration",
}
SKIP_FILES = {"config.json", "report.html"}  # paths and the environment; the page embeds figures


# The tiny encoder with 3 blocks (the registry's has 2), as tests/test_extract_layers.py builds it.
THREE_BLOCKS = """
import sys
from vjfer.encoders import registry
from vjfer.encoders.vjepa import ViTConfig
spec = registry.ENCODERS["tiny"]
three = ViTConfig(embed_dim=32, depth=3, num_heads=2, img_size=64)
registry.ENCODERS["tiny"] = type(spec)("tiny", spec.factory, spec.weights_source, three)
from vjfer.cli import main
sys.argv = ["vjfer", *sys.argv[1:]]
main()
"""


def vjfer(code: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(code.resolve()), "OMP_NUM_THREADS": "1"}
    command = ["-c", THREE_BLOCKS] if "0,1,2" in args else ["-m", "vjfer"]
    # cwd: `python -c` and `-m` put the working folder first on sys.path, before PYTHONPATH
    done = subprocess.run(
        [sys.executable, *command, *args], env=env, text=True, capture_output=True, cwd=code
    )
    if check and done.returncode not in (0, 2):
        raise SystemExit(f"{code}: vjfer {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def python(code: Path, script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    subprocess.run([sys.executable, "-c", script, *args], env=env, check=True, cwd=code)


def check_tree(code: Path) -> None:
    """Refuse to compare a tree that is not the one imported (an installed vjfer shadowing it)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    where = subprocess.run(
        [sys.executable, "-c", "import vjfer; print(vjfer.__file__)"],
        env=env,
        text=True,
        capture_output=True,
        check=True,
        cwd=code,
    ).stdout.strip()
    if Path(where).resolve().parent != (code / "vjfer").resolve():
        raise SystemExit(f"{code}: python imports vjfer from {where}, not from this tree")


GENERATE = """
import sys
from pathlib import Path
from vjfer.synthetic import demo_datasets
from vjfer.synthetic_frames import make_dfew
root = Path(sys.argv[1])
data = demo_datasets(root / "data", seed=0)
make_dfew(root / "dfew")
videos = sorted((data["ravdess"]).rglob("*.mp4"))
labels = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
rows = ["path,label,group"]
for v in videos:
    parts, rel = v.stem.split("-"), v.relative_to(data["ravdess"]).as_posix()
    rows.append(f"{rel},{labels[int(parts[2]) - 1]},{parts[6]}")
(root / "list.csv").write_text("\\n".join(rows) + "\\n")
print(data["ravdess"], data["crema-d"])
"""


def generate(old: Path, work: Path) -> dict[str, list[str]]:
    """Generate the inputs with the old tree; returns each cache's extract arguments."""
    inputs = work / "inputs"
    if not (inputs / "list.csv").exists():
        python(old, GENERATE, str(inputs))
    ravdess, crema = inputs / "data" / "ravdess", inputs / "data" / "crema-d"
    tiny = ["--encoder", "tiny", "--device", "cpu", "--workers", "0", "--no-progress"]
    return {
        "ravdess": ["--dataset", "ravdess", "--root", str(ravdess), *tiny],
        "crema-d": ["--dataset", "crema-d", "--root", str(crema), *tiny],
        "ravdess-3layers": [
            "--dataset",
            "ravdess",
            "--root",
            str(ravdess),
            "--layers",
            "0,1,2",
            *tiny,
        ],
        "list": [
            "--dataset",
            "list",
            "--list",
            str(inputs / "list.csv"),
            "--root",
            str(ravdess),
            *tiny,
        ],
        "dfew": ["--dataset", "dfew", "--root", str(inputs / "dfew"), *tiny],
    }


def extract_all(code: Path, out: Path, jobs: dict[str, list[str]]) -> dict[str, Path]:
    caches = {}
    for name, args in jobs.items():
        root = out / name
        vjfer(code, "extract", *args, "--cache", str(root))
        manifests = sorted(root.rglob("manifest.json"))
        assert len(manifests) == 1, (name, manifests)
        caches[name] = manifests[0].parent
    return caches


def plain_json(value):
    if isinstance(value, dict):
        return {
            k: plain_json(v)
            for k, v in value.items()
            if k not in TIMING_KEYS
            and not k.endswith(
                ("_seconds", "_seconds_share", "_s", "_at", "_path", "_dir", "_root")
            )
        }
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value


def compare_h5(a: Path, b: Path) -> list[str]:
    diffs: list[str] = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if names_a != names_b:
            return [f"{a.name}: objects {names_a} vs {names_b}"]
        for name in [""] + names_a:
            oa, ob = (fa[name], fb[name]) if name else (fa, fb)
            attrs_a = {k: v for k, v in oa.attrs.items() if "time" not in k and "path" not in k}
            attrs_b = {k: v for k, v in ob.attrs.items() if "time" not in k and "path" not in k}
            if sorted(attrs_a) != sorted(attrs_b) or any(
                not np.array_equal(np.asarray(attrs_a[k]), np.asarray(attrs_b[k])) for k in attrs_a
            ):
                diffs.append(f"{a.name}:{name or '/'} attributes differ")
            if isinstance(oa, h5py.Dataset):
                va, vb = oa[()], ob[()]
                if va.dtype.names and "source_path" in va.dtype.names:
                    va, vb = (rfn.drop_fields(v, "source_path") for v in (va, vb))
                # variable-length strings are object arrays: their bytes are pointers
                plain_a, plain_b = (
                    (v.tolist() if v.dtype.kind == "O" else v.tobytes()) for v in (va, vb)
                )
                if va.dtype != vb.dtype or va.shape != vb.shape or plain_a != plain_b:
                    diffs.append(f"{a.name}:{name} data differs")
    return diffs


def compare_caches(old: dict[str, Path], new: dict[str, Path]) -> list[str]:
    diffs = []
    for name in old:
        a, b = old[name], new[name]
        if a.name != b.name:
            diffs.append(f"cache {name}: folder {a.name} vs {b.name} (fingerprint)")
            continue
        shards_a = sorted(p.name for p in a.glob("shard-*.h5"))
        if shards_a != sorted(p.name for p in b.glob("shard-*.h5")):
            diffs.append(f"cache {name}: shard lists differ")
            continue
        for shard in shards_a:
            diffs += [f"cache {name}: {d}" for d in compare_h5(a / shard, b / shard)]
        ma = plain_json(json.loads((a / "manifest.json").read_text()))
        mb = plain_json(json.loads((b / "manifest.json").read_text()))
        if ma != mb:
            keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
            diffs.append(f"cache {name}: manifest.json differs in {keys}")
    return diffs


def stage2(code: Path, caches: dict[str, Path], out: Path, inputs: Path) -> None:
    runs = out / "runs"
    for name, cache in caches.items():
        extra = ["--layer", "all"] if name == "ravdess-3layers" else []
        vjfer(
            code,
            "probe",
            "--cache",
            str(cache),
            "--fold",
            "all",
            "--out",
            str(runs / name),
            *PROBE,
            *extra,
        )
    for source, target in (("ravdess", "crema-d"), ("crema-d", "ravdess")):
        vjfer(
            code,
            "cross",
            "--train",
            source,
            "--test",
            target,
            "--calm",
            "both",
            "--runs",
            str(runs / source),
            "--cache",
            str(caches[target]),
            "--device",
            "cpu",
        )
    run_dirs = [str(p) for p in sorted(runs.glob("*/*")) if p.is_dir()]
    vjfer(
        code,
        "report",
        *run_dirs,
        "--out",
        str(out / "report"),
        "--cache",
        str(caches["ravdess"].parent.parent),
        "--device",
        "cpu",
    )
    video = sorted((inputs / "data" / "ravdess").rglob("*.mp4"))[0]
    run = next(p for p in sorted((runs / "ravdess").iterdir()) if p.is_dir())
    done = vjfer(
        code,
        "predict",
        str(video),
        "--run",
        str(run),
        "--json",
        "--device",
        "cpu",
        "--clips",
        check=False,
    )
    (out / "predict.json").write_text(done.stdout)


def compare_trees(a: Path, b: Path) -> tuple[int, list[str]]:
    diffs, same = [], 0
    a, b = a.resolve(), b.resolve()
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    for rel in sorted(files_a ^ files_b):
        diffs.append(f"only in {'old' if rel in files_a else 'new'}: {rel}")
    for rel in sorted(files_a & files_b):
        if rel.name in SKIP_FILES or rel.suffix in (".pt", ".png"):
            continue
        pa, pb = a / rel, b / rel
        if rel.suffix == ".json":
            equal = plain_json(json.loads(pa.read_text())) == plain_json(json.loads(pb.read_text()))
        else:  # a report names the folders it read: each side's own root
            equal = pa.read_bytes().replace(bytes(a), b"ROOT") == pb.read_bytes().replace(
                bytes(b), b"ROOT"
            )
        if equal:
            same += 1
        else:
            diffs.append(f"differs: {rel}")
    return same, diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="the source tree before")
    parser.add_argument("--new", type=Path, default=Path("."), help="the source tree after")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("--skip-stage1", action="store_true", help="compare stage 2 only")
    args = parser.parse_args()
    args.old, args.new, args.work = (p.resolve() for p in (args.old, args.new, args.work))
    for code in (args.old, args.new):
        check_tree(code)
    jobs = generate(args.old, args.work)
    old_caches = extract_all(args.old, args.work / "old" / "cache", jobs)
    diffs: list[str] = []
    if not args.skip_stage1:
        new_caches = extract_all(args.new, args.work / "new" / "cache", jobs)
        diffs += compare_caches(old_caches, new_caches)
    for side, code in (("old", args.old), ("new", args.new)):
        out = args.work / side / "stage2"
        shutil.rmtree(out, ignore_errors=True)
        stage2(code, old_caches, out, args.work / "inputs")
    same, tree_diffs = compare_trees(args.work / "old" / "stage2", args.work / "new" / "stage2")
    diffs += tree_diffs
    n_csv = sum(1 for _ in (args.work / "old" / "stage2").rglob("*.csv"))
    for line in diffs:
        print(line)
    print(
        f"{same} stage-2 files equal ({n_csv} CSVs in all), {len(diffs)} differences, "
        f"{len(old_caches)} caches compared" + (" (stage 1 skipped)" if args.skip_stage1 else "")
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    csv.field_size_limit(1 << 30)
    sys.exit(main())
