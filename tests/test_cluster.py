"""vjfer.cluster: extraction as submitit array tasks and the probe as a submitit job, run with
submitit's local executor (no SLURM here), against single-process runs: shards and manifest byte
for byte; a task SIGKILLed, one that raises and one preempted (SIGUSR2, as SLURM signals), then the
job resubmitted; `vjfer status`; a probe job preempted after its first epoch, requeued."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from vjfer.cache import open_cache
from vjfer.cache.format import MANIFEST, read_shard_header
from vjfer.cluster import (
    ClusterConfig,
    NodeFailure,
    cluster_config,
    cluster_status,
    cluster_words,
    format_status,
    make_executor,
    retry_node_failures,
    submit_extraction,
    submit_probe,
)
from vjfer.errors import ConfigError
from vjfer.extract import ExtractConfig, extract, plan_extraction
from vjfer.extract.plan import task_shards
from vjfer.synthetic import make_ravdess

REPO = Path(__file__).resolve().parents[1]
LOCAL = ClusterConfig(executor="local", tasks=4, parallel=2, gpus_per_task=0, cpus_per_task=1)

# Imported by the local jobs (PYTHONPATH): tasks that fail once each, the way nodes and bugs do.
HOOKS = """
import os, signal
from pathlib import Path
from vjfer.cache.writer import ShardWriter
from vjfer.cluster import ExtractTask, ProbeTask
from vjfer.probe.resume import PassCheckpoint

def once(name):
    mark = Path(os.environ["VJFER_TEST_MARKS"]) / name
    if mark.exists():
        return False
    mark.touch()
    return True

def signal_after_first_entry(sig):  # from the writer thread, mid-shard
    original = ShardWriter.append
    def append(self, entry):
        original(self, entry)
        ShardWriter.append = original
        os.kill(os.getpid(), sig)
    ShardWriter.append = append

class Faulty(ExtractTask):
    def run(self, task):
        if task == 1 and once("kill"):
            signal_after_first_entry(signal.SIGKILL)
        if task == 2 and once("raise"):
            raise ValueError("a bug in task 2")
        if task == 3 and once("preempt"):  # SLURM's warning before preemption or the time limit
            signal_after_first_entry(signal.SIGUSR2)
        return super().run(task)

class Preempted(ProbeTask):
    def run(self, attempt):
        if once("preempt-probe"):
            original = PassCheckpoint.save
            def save(self, *args):
                original(self, *args)
                PassCheckpoint.save = original
                os.kill(os.getpid(), signal.SIGUSR2)
            PassCheckpoint.save = save
        return super().run(attempt)
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """8 synthetic RAVDESS videos (2 shorter than a clip)."""
    root = tmp_path_factory.mktemp("ravdess")
    make_ravdess(root, emotions=(1, 8), vocal_channels=(1,), modalities=(1, 2), short_every=3)
    return root


def config_for(root: Path, cache_root: Path) -> ExtractConfig:
    return ExtractConfig(
        dataset="ravdess",
        root=root,
        cache_root=cache_root,
        encoder="tiny",
        shard_size=1,  # 8 shards: 2 a task
        batch_size=4,
        workers=0,
        device="cpu",
        dedup=False,
    )


@pytest.fixture(scope="module")
def clean(root, tmp_path_factory) -> Path:
    """A single-process extraction: the cache every array must equal."""
    config = config_for(root, tmp_path_factory.mktemp("clean"))
    return extract(config, progress=False, plan=plan_extraction(config)).cache_dir


@pytest.fixture
def hooks(tmp_path, monkeypatch):
    """The HOOKS module, importable here and in the local jobs."""
    (tmp_path / "cluster_hooks.py").write_text(textwrap.dedent(HOOKS))
    (tmp_path / "marks").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    path = os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("VJFER_TEST_MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    import cluster_hooks

    return cluster_hooks


def shard_digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.glob("shard-*")}


def manifest_without_paths(directory: Path) -> dict:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["config"].pop("cache_root")  # the only path that differs
    return manifest


def assert_same_cache(directory: Path, clean: Path) -> None:
    assert shard_digests(directory) == shard_digests(clean) and len(shard_digests(clean)) == 8
    assert manifest_without_paths(directory) == manifest_without_paths(clean)
    assert (directory / "failures.jsonl").read_bytes() == (clean / "failures.jsonl").read_bytes()
    ids = [v for p in sorted(directory.glob("shard-*")) for v in read_shard_header(p)["video_ids"]]
    assert len(ids) == len(set(ids)) == 8  # every video (and so its clips) in one shard, once
    assert open_cache(directory).num_clips == open_cache(clean).num_clips


def test_task_t_of_n_is_rank_t_of_world_n():
    assert task_shards(8, 1, 4) == [1, 5] and task_shards(3, 3, 4) == []
    assert sorted(i for t in range(3) for i in task_shards(10, t, 3)) == list(range(10))


def test_the_last_task_writes_the_manifest_once(root, clean, tmp_path):
    """Tasks wait for none: the first to finish finds shards missing and writes nothing; the last
    writes the manifest; finishing again (a late task, a resubmission) leaves it as it is."""
    from vjfer.encoders import load_encoder
    from vjfer.extract.run import finish_manifest

    config, encoder = config_for(root, tmp_path), load_encoder("tiny")
    plans = [plan_extraction(config, rank=t, world_size=2, encoder=encoder) for t in (1, 0)]
    first = extract(config, progress=False, plan=plans[0], finish="last")
    directory = first.cache_dir
    assert not first.complete and not (directory / MANIFEST).exists()
    assert sorted(p.name for p in directory.glob("shard-*")) == [
        f"shard-0000{i}.h5" for i in (1, 3, 5, 7)
    ]
    last = extract(config, progress=False, plan=plans[1], finish="last")
    assert last.complete and last.rank == 0
    written = (directory / MANIFEST).stat().st_mtime_ns
    assert finish_manifest(config, plan_extraction(config, encoder=encoder))
    assert (directory / MANIFEST).stat().st_mtime_ns == written
    assert_same_cache(directory, clean)


@pytest.mark.slow
def test_four_local_array_tasks_equal_one_process(root, clean, tmp_path, monkeypatch):
    """`vjfer extract --executor local --tasks 4 --parallel 2`: the same cache, byte for byte."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["--dataset", "ravdess", "--root", root, "--encoder", "tiny", "--cache", tmp_path]
    args += ["--shard-size", 1, "--batch-size", 4, "--workers", 0, "--device", "cpu"]
    args += ["--no-dedup", "--executor", "local", "--tasks", 4, "--parallel", 2]
    out = run_cli("extract", *args, "--gpus-per-task", 0, "--cpus-per-task", 1)
    directory = tmp_path / "ravdess" / clean.name
    assert f"logs: {directory}.submitit" in out and f"{directory} complete" in out
    assert_same_cache(directory, clean)
    status = run_cli("status", directory)
    lines = status.splitlines()
    assert lines[0].endswith(" complete") and "resume" not in status
    assert [line.split()[5] for line in lines[3:]] == ["done"] * 4  # the task rows' state


@pytest.mark.slow
def test_killed_failed_and_preempted_tasks_then_resubmitted(root, clean, hooks, tmp_path):
    """Task 1 SIGKILLed mid-shard, task 2 raising, task 3 preempted (requeued by submitit, it
    resumes at its first unfinished shard); `vjfer status` names the failed tasks and their logs;
    the job resubmitted runs tasks 1 and 2 only and ends with the single-process cache."""
    config = config_for(root, tmp_path / "cache")
    first = submit_extraction(config, LOCAL, echo=lambda _: None, task=hooks.Faulty)
    assert sorted(first.failed) == [1, 2] and not first.complete
    assert "killed" in first.failed[1] and "ValueError: a bug in task 2" in first.failed[2]
    directory = first.directory
    assert not (directory / MANIFEST).exists()  # never over missing shards
    log = Path(f"{first.folder}/{first.jobs[3]}_0_log.err").read_text()
    assert (
        "this job is preempted" in log
        and "Requeued"
        in Path(f"{first.folder}").joinpath(f"{first.jobs[3]}_0_log.out").read_text() + log
    )
    status = cluster_status(directory)
    states = {r["task"]: r["state"] for r in status["tasks"]}
    assert states == {0: "done", 1: "stopped", 2: "failed", 3: "done"}
    text = format_status(status)
    assert f"{first.folder}/{first.jobs[2]}_0_log.err" in text and "a bug in task 2" in text
    assert f"resume  {first.command}" in text and "--executor local --tasks 4" in first.command
    second = submit_extraction(config, LOCAL, echo=lambda _: None)
    assert sorted(second.jobs) == [1, 2] and second.complete and not second.failed
    assert_same_cache(directory, clean)
    assert cluster_status(directory)["complete"]


def test_node_failures_are_retried_then_reported():
    calls = []

    def flaky(attempt):
        calls.append(attempt)
        if attempt < 2:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return "done"

    assert retry_node_failures(flaky, 2, "task 0") == "done" and calls == [0, 1, 2]
    with pytest.raises(NodeFailure, match=r"task 0 failed for its node .* 2 time\(s\)"):
        retry_node_failures(lambda a: flaky(-1), 1, "task 0")
    calls.clear()

    def bad_input(attempt):
        calls.append(attempt)
        raise ValueError("not the node's")

    with pytest.raises(ValueError):
        retry_node_failures(bad_input, 3, "task 0")
    assert calls == [0]  # a bug or a bad input is not retried


def test_options_file_and_command_line(tmp_path):
    file = tmp_path / "cluster.toml"
    file.write_text('executor = "slurm"\npartition = "gpu"\ntasks = 8\ntime_min = 60\n')
    cluster = cluster_config({"tasks": 16, "qos": None}, file)
    assert (cluster.executor, cluster.partition, cluster.tasks, cluster.time_min) == (
        "slurm",
        "gpu",
        16,
        60,
    )
    words = cluster_words(cluster)
    assert words == ["--executor", "slurm", "--tasks", "16", "--partition", "gpu"] + [
        "--time-min",
        "60",
    ]
    file.write_text('executor = "slurm"\ngpus = 2\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['gpus'\]"):
        cluster_config({}, file)
    with pytest.raises(ConfigError, match="--tasks must be >= 1"):
        ClusterConfig(executor="local", tasks=0)


def test_slurm_parameters_reach_the_sbatch_script(tmp_path, monkeypatch):
    """submitit's own sbatch script of the options (a stand-in `srun` on PATH: no SLURM here)."""
    srun = tmp_path / "bin" / "srun"
    srun.parent.mkdir()
    srun.write_text("#!/bin/sh\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{srun.parent}{os.pathsep}{os.environ['PATH']}")
    cluster = ClusterConfig(
        executor="slurm",
        partition="gpu",
        gpus_per_task=1,
        cpus_per_task=10,
        mem_gb=64,
        time_min=90,
        account="proj",
        qos="high",
    )
    executor = make_executor(tmp_path / "jobs", cluster, "vjfer-extract-x")
    script = executor._executor._make_submission_file_text("python -c pass", "uid")
    for line in (
        "--partition=gpu",
        "--gpus-per-node=1",
        "--cpus-per-task=10",
        "--mem=64GB",
        "--time=90",
        "--account=proj",
        "--qos=high",
        "--job-name=vjfer-extract-x",
        "--signal=USR2@",
    ):
        assert f"#SBATCH {line}" in script, line


def test_executor_options_need_executor_and_submitit(tmp_path, monkeypatch):
    args = ["extract", "--dataset", "ravdess", "--root", tmp_path, "--encoder", "tiny"]
    out = run_cli(*args, "--tasks", 4, ok=False)
    assert "error: --tasks: only with --executor local|slurm" in out
    out = run_cli("status", tmp_path, ok=False)
    assert f"error: no {tmp_path}.submitit/cluster.json: {tmp_path} was not extracted" in out
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    needs = (
        "error: --executor needs submitit: pip install 'vjfer[cluster]' (or pip install submitit)"
    )
    assert run_cli(*args, "--executor", "local", ok=False).strip().splitlines()[-1] == needs
    out = run_cli("probe", "--cache", tmp_path, "--executor", "slurm", ok=False)
    assert out.strip().splitlines()[-1] == needs


@pytest.mark.slow
def test_a_probe_job_preempted_after_an_epoch_equals_a_direct_run(cache_dir, hooks, tmp_path):
    """`vjfer probe --executor local`, its job preempted after the first epoch's checkpoint and
    requeued by submitit (continuing with --resume), equals a run in this process bit for bit."""
    from test_probe_resume import _numbers

    from vjfer.probe.config import TrainConfig
    from vjfer.probe.run import ProbeRequest, run_request

    config = TrainConfig(epochs=2, batch_size=4, num_heads=4, num_workers=0, device="cpu")
    direct = ProbeRequest(cache=cache_dir, runs=tmp_path / "direct", config=config, folds=(1,))
    torch.set_num_threads(1)
    whole = run_request(direct, None)
    cluster = ClusterConfig(executor="local", gpus_per_task=0, cpus_per_task=1)
    job = replace(direct, runs=tmp_path / "job")
    cut = submit_probe(job, cluster, echo=lambda _: None, task=hooks.Preempted)
    assert cut == tmp_path / "job" / whole.name
    (log,) = (tmp_path / "job.submitit").glob("*_0_log.err")
    assert "this job is preempted" in log.read_text()
    ours, theirs = (json.loads((r / "fold-1" / "metrics.json").read_text()) for r in (whole, cut))
    assert _numbers(ours) == _numbers(theirs) and len(_numbers(ours)) > 50
    name = "clip_predictions.csv"
    assert (whole / "fold-1" / name).read_bytes() == (cut / "fold-1" / name).read_bytes()
    a, b = (torch.load(r / "fold-1" / "probe.pt", weights_only=True) for r in (whole, cut))
    a, b = a["state_dict"], b["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_torchrun_launchers_as_two_nodes_equal_one_process(root, clean, tmp_path):
    """`torchrun --nnodes 2 --rdzv-backend c10d` started twice on this machine, as on two nodes
    sharing the cache's file system (docs/cluster.md): the single-process cache."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    launcher += ["--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "two-nodes"]
    launcher += ["--rdzv-endpoint", f"127.0.0.1:{port}", "-m", "vjfer", "extract"]
    args = ["--dataset", "ravdess", "--root", str(root), "--encoder", "tiny", "--cache"]
    args += [str(tmp_path), "--shard-size", "1", "--batch-size", "4", "--workers", "0"]
    args += ["--device", "cpu", "--no-dedup", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    nodes = [
        subprocess.Popen(
            [*launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=300)[0].decode() for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert_same_cache(tmp_path / "ravdess" / clean.name, clean)


def test_the_submitter_names_the_cache_the_gpu_tasks_write(root, tmp_path):
    """The login node plans on its CPU with the fingerprint a GPU task's encoder has (its compute
    dtype), so both name one cache directory."""
    from vjfer.cluster import _submitter_encoder

    config = replace(config_for(root, tmp_path), device="auto")
    on_gpu = _submitter_encoder(config, cuda=True).fingerprint
    assert on_gpu["compute_dtype"] == "bfloat16-autocast"
    assert _submitter_encoder(config, cuda=False).fingerprint["compute_dtype"] == "float32"


@pytest.mark.cuda
def test_the_submitter_and_a_gpu_task_plan_one_directory(root, tmp_path):
    from vjfer.cluster import _submitter_encoder

    config = replace(config_for(root, tmp_path), device="cuda")
    here = plan_extraction(config, world_size=1, rank=0, encoder=_submitter_encoder(config, True))
    assert here.directory == plan_extraction(config, rank=1, world_size=4, local_rank=0).directory


def test_a_task_whose_node_names_another_cache_refuses(root, tmp_path):
    """A task planning another cache than its submission (another device or compute dtype on its
    node) refuses before writing anything."""
    from vjfer.cluster import ExtractTask

    task = ExtractTask(config_for(root, tmp_path), 4, 0, tmp_path / "ravdess" / "tiny-64-other")
    with pytest.raises(ConfigError, match=r"task 2 on .* plans cache .*, the submission .*other"):
        task(2)
    assert not list(tmp_path.glob("ravdess/*/shard-*"))


def test_a_complete_array_counts_the_videos_it_could_not_decode(tmp_path):
    from vjfer.cluster import Submission

    lines = [{"video_id": "a", "stage": "index"}, {"video_id": "b", "stage": "decode"}]
    (tmp_path / "failures.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert Submission(tmp_path, tmp_path, {}, True, True).failed_videos == 1
