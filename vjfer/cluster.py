"""Both stages as submitit jobs: `vjfer extract --executor slurm|local` and `vjfer probe --executor
slurm|local`, and what `vjfer status` reads back.

Extraction: the cache's shards are split into `tasks` array tasks; task t of N runs exactly what
torchrun rank t of world size N runs, on the same shards (`vjfer.extract.plan.task_shards`), so a
task's output does not depend on its node, and the task that finds every shard complete writes the
manifest, once (`vjfer.extract.run.finish_manifest`). A task preempted or at its time limit is
requeued by submitit (`checkpoint`, as `submitit.helpers.Checkpointable`) and resumes at its first
unfinished shard; a node failure (a CUDA error, out of memory) is retried `retries` times in the
task, then reported; a bad video is a failure entry, as always. Stage 2 is one job that
checkpoints every epoch and continues with `--resume` when requeued.

The submitit folder (pickles, logs) and `cluster.json` (what was submitted: the options, the job
of each task, the command that resumes) sit beside the cache, in `<cache>.submitit/`. SLURM is
reached only through submitit (`AutoExecutor`, `map_array`); `local` is submitit's
`LocalExecutor`: the same path on one machine, how it is tested.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import tomllib

from vjfer.errors import ConfigError, VjferError

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")
JOBS_SUFFIX = ".submitit"  # <cache>.submitit/: submitit's pickles and logs, and RECORD
RECORD = "cluster.json"
# Words of the errors a node (not an input) causes: retried, then reported
NODE_FAILURES = ("CUDA", "CUBLAS", "cuDNN", "NCCL", "out of memory")
T = TypeVar("T")


class NodeFailure(VjferError):
    """A task failed for its node (CUDA error, out of memory) more times than it may retry."""


@dataclass(frozen=True)
class ClusterConfig:
    """How the work is submitted (never a fingerprint input: the cache is the same wherever it is
    made). The SLURM fields are per array task; `local` uses `gpus_per_task` and `time_min`."""

    executor: str  # local | slurm
    tasks: int = 1  # array tasks the extraction's shards are split into
    parallel: int = 0  # at most this many tasks at once; 0: all
    retries: int = 2  # node failures (CUDA error, out of memory) retried in a task
    requeues: int = 20  # time limits requeued at most; preemptions always (V-JEPA: 20)
    partition: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int | None = None
    time_min: int = 240  # a task's time limit; it is requeued when reached
    account: str | None = None
    qos: str | None = None

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {EXECUTORS}, got {self.executor!r}")
        for name in ("tasks", "cpus_per_task", "time_min"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        for name in ("parallel", "retries", "requeues", "gpus_per_task"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}"
                )


def read_cluster_file(path: Path) -> dict:
    """The options a `--cluster-config` TOML file sets (ClusterConfig's field names)."""
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"--cluster-config {path}: {err}") from None
    known = [f.name for f in fields(ClusterConfig)]
    if unknown := sorted(set(values) - set(known)):
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {', '.join(known)}")
    return values


def cluster_config(given: dict, file: Path | None = None) -> ClusterConfig:
    """ClusterConfig of the options given (None: not given), over the file's, over the defaults."""
    values = read_cluster_file(file) if file is not None else {}
    values.update({k: v for k, v in given.items() if v is not None})
    if "executor" not in values:
        raise ConfigError("give --executor local|slurm (or `executor` in --cluster-config)")
    return ClusterConfig(**values)


def cluster_words(cluster: ClusterConfig, array: bool = True) -> list[str]:
    """The command-line options that make `cluster` again (the defaults left out)."""
    words = ["--executor", cluster.executor]
    for f in fields(ClusterConfig)[1:]:
        value = getattr(cluster, f.name)
        if value != f.default and (array or f.name not in ("tasks", "parallel")):
            words += ["--" + f.name.replace("_", "-"), str(value)]
    return words


def require_submitit():
    """The submitit module, or a one-line error saying how to install it."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--executor needs submitit: pip install 'vjfer[cluster]' (or pip install submitit)"
        ) from None
    return submitit


def jobs_folder(directory: Path) -> Path:
    """The submitit folder of a cache (or runs folder) `directory`: beside it, `<name>.submitit`."""
    directory = Path(directory)
    return directory.with_name(directory.name + JOBS_SUFFIX)


def make_executor(folder: Path, cluster: ClusterConfig, name: str):
    """submitit's executor for `cluster`: `AutoExecutor` on SLURM, `LocalExecutor` here (which
    takes the GPUs each job sees, `visible_gpus`)."""
    submitit = require_submitit()
    common = {
        "name": name,
        "timeout_min": cluster.time_min,
        "nodes": 1,
        "tasks_per_node": 1,
        "cpus_per_task": cluster.cpus_per_task,
        "gpus_per_node": cluster.gpus_per_task,
    }
    if cluster.executor == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=cluster.requeues)
        executor.update_parameters(**common)
        return executor
    try:
        executor = submitit.AutoExecutor(
            folder=folder, cluster="slurm", slurm_max_num_timeout=cluster.requeues
        )
    except RuntimeError as err:  # no srun: not on a SLURM cluster
        raise ConfigError(
            f"--executor slurm: {err}; submit from the cluster's login node, or use --executor "
            "local"
        ) from None
    slurm = {
        f"slurm_{k}": v
        for k, v in (
            ("partition", cluster.partition),
            ("account", cluster.account),
            ("qos", cluster.qos),
        )
        if v is not None
    }
    mem = {"mem_gb": cluster.mem_gb} if cluster.mem_gb is not None else {}
    executor.update_parameters(**common, **mem, **slurm)
    return executor


def node_failure(err: BaseException) -> bool:
    """Whether `err` is the node's (a CUDA error, out of memory), not the input's or the code's."""
    if isinstance(err, MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(w in str(err) for w in NODE_FAILURES)


def retry_node_failures(run: Callable[[int], T], retries: int, what: str) -> T:
    """`run(attempt)`, run again after a node failure up to `retries` times (a new attempt resumes
    from what the failed one wrote); then NodeFailure, naming the host. Other errors pass."""
    for attempt in range(retries + 1):
        try:
            return run(attempt)
        except Exception as err:
            if not node_failure(err):
                raise
            if attempt == retries:
                raise NodeFailure(
                    f"{what} failed for its node {socket.gethostname()} {attempt + 1} time(s) "
                    f"(last: {' '.join(str(err).split())[:300]}); resubmit it (`vjfer status` "
                    "prints the command), on other nodes if it recurs"
                ) from err
            log.warning("%s: node failure %d of %d, retrying: %s", what, attempt + 1, retries, err)
            _free_gpu_memory()
    raise AssertionError("unreachable")


def _free_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _job_logging() -> None:
    """The job's log lines go to its submitit log, as `vjfer`'s do to the terminal."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


class _Requeued:
    """What `submitit.helpers.Checkpointable` gives: on preemption or at the time limit submitit
    calls `checkpoint` and requeues what it returns; the work's state lives in its files (shards,
    the probe's checkpoint), so the same call resumes it."""

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Stage 1: array tasks.


class ExtractTask(_Requeued):
    """Array task `task` of `tasks`: the extraction torchrun rank `task` of world size `tasks`
    runs (`extract(finish="last")`), into `directory` (checked: a node whose encoder makes another
    fingerprint, e.g. without the GPU the submitter planned for, refuses)."""

    def __init__(self, config, tasks: int, retries: int, directory: Path):
        self.config, self.tasks, self.retries, self.directory = config, tasks, retries, directory

    def __call__(self, task: int) -> dict:
        _job_logging()
        return retry_node_failures(lambda _: self.run(task), self.retries, f"task {task}")

    def run(self, task: int) -> dict:
        from vjfer.extract import extract, plan_extraction

        plan = plan_extraction(self.config, rank=task, world_size=self.tasks, local_rank=0)
        if plan.directory != self.directory:
            raise ConfigError(
                f"task {task} on {socket.gethostname()} plans cache {plan.directory}, the "
                f"submission {self.directory} (another device or compute dtype?); give --device"
            )
        s = extract(self.config, progress=False, plan=plan, finish="last")
        return {
            "task": task,
            "shards_written": s.shards_written,
            "shards_skipped": s.shards_skipped,
            "videos": s.videos_done,
            "failed": s.failed,
            "complete": s.complete,
        }


@dataclass
class Submission:
    """What `submit_extraction` did: the cache, the submitit folder, each task's job id, and
    (local: known once they ended) the tasks that failed, with their logs."""

    directory: Path
    folder: Path
    jobs: dict[int, str]
    complete: bool
    waited: bool
    failed: dict[int, str] = dataclasses.field(default_factory=dict)  # task -> why, log
    command: str = ""

    @property
    def failed_videos(self) -> int:
        """The videos the complete cache's `failures.jsonl` lists as not decoded."""
        path = self.directory / "failures.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return sum(json.loads(line)["stage"] == "decode" for line in lines if line.strip())


def tasks_use_cuda(config, cluster: ClusterConfig) -> bool:
    """Whether the tasks will encode on a GPU (then their encoder's compute dtype is the GPU's)."""
    import torch

    if config.device == "cpu" or cluster.gpus_per_task == 0:
        return False
    return cluster.executor == "slurm" or torch.cuda.is_available()


def _submitter_encoder(config, cuda: bool):
    """The encoder the submitter plans with, on its CPU, carrying the fingerprint the tasks'
    encoder will have (on a GPU: the compute dtype of `config.dtype`), so it names their cache."""
    from vjfer.encoders import load_encoder
    from vjfer.encoders.registry import COMPUTE_DTYPES

    encoder = load_encoder(
        config.encoder, config.checkpoint, "cpu", config.weights, dtype=config.dtype
    )
    if cuda:
        encoder.fingerprint = {
            **encoder.fingerprint,
            "compute_dtype": COMPUTE_DTYPES[config.dtype][1],
        }
    return encoder


def _clear_for_force(directory: Path, tasks: int) -> None:
    """--force under an executor: the submitter deletes the shards and manifest once (a requeued
    task must not delete them again)."""
    from vjfer.cache.format import FAILURES, MANIFEST
    from vjfer.extract.plan import check_lock

    for t in range(tasks):
        check_lock(directory, t)
    for path in [*directory.glob("shard-*.h5*"), directory / MANIFEST, directory / FAILURES]:
        path.unlink(missing_ok=True)


def submit_extraction(
    config,
    cluster: ClusterConfig,
    *,
    echo: Callable[[str], object] = print,
    task: type[ExtractTask] = ExtractTask,
) -> Submission:
    """Plan the cache (here, on the CPU), then submit one array task for each task with a shard
    still to write; `local` waits for them (at most `parallel` at once), `slurm` returns once
    submitted. With nothing left to write, the manifest is finished here. `task`: the task class
    (tests subclass it to kill a task)."""
    from vjfer.extract import format_plan, plan_extraction
    from vjfer.extract.config import command_words
    from vjfer.extract.plan import check_lock, task_shards
    from vjfer.extract.run import finish_manifest

    require_submitit()
    cuda = tasks_use_cuda(config, cluster)
    encoder = _submitter_encoder(config, cuda)
    plan = plan_extraction(config, rank=0, world_size=1, local_rank=0, encoder=encoder)
    directory = plan.directory
    if config.force:
        _clear_for_force(directory, cluster.tasks)
        config = replace(config, force=False)
        plan = plan_extraction(config, rank=0, world_size=1, local_rank=0, encoder=encoder)
    for t in range(cluster.tasks):
        check_lock(directory, t)  # a task still running: refuse, naming it
    num_shards = len(plan.shards)
    pending = [
        t
        for t in range(cluster.tasks)
        if any(i not in plan.done for i in task_shards(num_shards, t, cluster.tasks))
    ]
    command = shlex.join(command_words(config) + cluster_words(cluster))
    folder = jobs_folder(directory)
    echo(format_plan(plan))
    if cluster.tasks > num_shards:
        log.warning("%d tasks for %d shards: the last ones have none", cluster.tasks, num_shards)
    if not pending:
        complete = finish_manifest(config, plan)
        state = "written" if complete else "MISSING"
        echo(f"jobs       none: every shard is complete; manifest {state}")
        return Submission(directory, folder, {}, complete, True, command=command)
    folder.mkdir(parents=True, exist_ok=True)
    record = _Record(folder, cluster, num_shards, plan.fingerprint, command, "extract")
    work = task(config, cluster.tasks, cluster.retries, directory)
    executor = make_executor(folder, cluster, f"vjfer-extract-{directory.name}")
    echo(f"jobs       {len(pending)} of {cluster.tasks} tasks ({cluster.executor}), logs: {folder}")
    if cluster.executor == "slurm":
        executor.update_parameters(slurm_array_parallelism=cluster.parallel or len(pending))
        jobs = dict(zip(pending, executor.map_array(work, pending), strict=True))
        record.add(jobs)
        ids = sorted({j.job_id.split("_")[0] for j in jobs.values()})
        echo(f"submitted  SLURM array job {', '.join(ids)}; watch: vjfer status {directory}")
        return Submission(directory, folder, _ids(jobs), False, False, command=command)
    jobs = _run_local(executor, work, pending, cluster, record)
    failed = {t: _outcome(j)[1] for t, j in jobs.items() if _outcome(j)[0] != "success"}
    complete = finish_manifest(config, plan) if not failed else False
    return Submission(directory, folder, _ids(jobs), complete, True, failed, command)


def _ids(jobs: dict) -> dict[int, str]:
    return {t: j.job_id for t, j in jobs.items()}


def _run_local(executor, work, pending: list[int], cluster: ClusterConfig, record: _Record) -> dict:
    """Run `work(t)` for each pending task as a local submitit job, at most `cluster.parallel` at
    once (each slot with its own GPUs when there are), and wait for all."""
    import torch

    parallel = cluster.parallel or len(pending)
    gpus = torch.cuda.device_count() if cluster.gpus_per_task else 0
    queue = list(pending)
    jobs: dict[int, Any] = {}  # task -> its job
    running: dict[int, Any] = {}  # slot -> the job in it
    try:
        _fill_slots(executor, work, queue, jobs, running, parallel, gpus, cluster, record)
    except KeyboardInterrupt:  # Ctrl-C: stop the tasks too (they resume when rerun)
        for job in running.values():
            job.cancel(check=False)
        raise
    return jobs


def _fill_slots(executor, work, queue, jobs, running, parallel, gpus, cluster, record) -> None:
    """Submit from `queue` whenever one of the `parallel` slots is free, until all ended."""
    while queue or running:
        for slot in [s for s, job in running.items() if job.done()]:  # (in place: Ctrl-C sees it)
            del running[slot]
        for slot in range(parallel):
            if queue and slot not in running:
                if gpus:  # slot s gets GPUs s*g.. (mod the GPUs here)
                    g = cluster.gpus_per_task
                    executor.update_parameters(
                        visible_gpus=tuple((slot * g + k) % gpus for k in range(g))
                    )
                t = queue.pop(0)
                jobs[t] = running[slot] = executor.submit(work, t)
                record.add({t: jobs[t]})
        time.sleep(0.2)


def _outcome(job) -> tuple[str, str]:
    """("success", "") or ("error" | "stopped", why and the log) of a job that ended."""
    paths = job.paths
    where = f"log {paths.stderr}"
    if not paths.result_pickle.exists():
        return "stopped", f"ended without a result (killed?); {where}"
    from submitit.core.utils import pickle_load

    outcome, value = pickle_load(paths.result_pickle)
    if outcome == "success":
        return "success", ""
    last = [line for line in str(value).strip().splitlines() if line.strip()]
    return "error", f"{last[-1] if last else outcome}; {where}"


class _Record:
    """`cluster.json` in the submitit folder: the options, the shards, the resume command, and each
    submission's job (id, logs) of each task; rewritten atomically as jobs are submitted."""

    def __init__(
        self,
        folder: Path,
        cluster: ClusterConfig,
        num_shards: int,
        fp: str,
        command: str,
        kind: str,
    ):
        self.path = folder / RECORD
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {"submissions": []}
        self.data.update(
            kind=kind,
            cluster=dataclasses.asdict(cluster),
            num_shards=num_shards,
            fingerprint=fp,
            command=command,
        )
        self.data["submissions"].append(
            {"at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "jobs": {}}
        )

    def add(self, jobs: dict) -> None:
        from vjfer.cache.writer import atomic_write_text

        for t, job in jobs.items():
            self.data["submissions"][-1]["jobs"][str(t)] = {
                "job_id": job.job_id,
                "stdout": str(job.paths.stdout),
                "stderr": str(job.paths.stderr),
                "result": str(job.paths.result_pickle),
            }
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------
# `vjfer status`: what the record and the cache directory say.


def read_record(directory: Path) -> dict:
    """The `cluster.json` of cache `directory`; ConfigError when it was not extracted as jobs."""
    path = jobs_folder(directory) / RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(
            f"no {path}: {directory} was not extracted with `vjfer extract --executor ...` "
            f"(`vjfer cache info {directory}` describes any cache)"
        ) from None


def _alive(lock: Path) -> str | None:
    """The holder a task's lock file names when that process runs on this host; None otherwise
    (its text outlives the process; the flock does not)."""
    from vjfer.lock import lock_holder

    if not lock.exists():
        return None
    words = lock_holder(lock).split()
    if len(words) < 5 or words[0] != "pid" or words[4] != socket.gethostname():
        return None
    return " ".join(words[:5]) if _pid_alive(words[1]) else None


def _pid_alive(pid: str) -> bool:
    """Whether process `pid` of this host runs (a local job's id is its controller's pid)."""
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def _slurm_state(directory: Path, job_id: str) -> str | None:
    """SLURM's state of a job (submitit asks `sacct`): RUNNING, PENDING, TIMEOUT, ...; None when
    it cannot be asked (not on the cluster)."""
    try:
        from submitit.slurm.slurm import SlurmJob

        return str(SlurmJob(jobs_folder(directory), job_id).state)
    except Exception:  # noqa: BLE001 (no sacct here, or it failed: the files still say a lot)
        return None


def _task_state(
    directory: Path, task: int, job: dict | None, shards: dict, executor: str
) -> tuple[str, str]:
    """(state, detail) of one task: done, running, failed (why; its log), stopped, pending."""
    if shards["pending"] == shards["partial"] == 0:
        return "done", ""
    if holder := _alive(directory / f".extract-rank{task}.lock"):
        return "running", holder
    if job is None:
        return "pending", "never submitted"
    if executor == "local" and _pid_alive(job["job_id"]):  # its job process: starting up
        return "running", f"starting (job process {job['job_id']})"
    slurm = _slurm_state(directory, job["job_id"]) if executor == "slurm" else None
    if slurm in ("RUNNING", "COMPLETING"):
        return "running", f"on SLURM; log {job['stderr']}"
    if slurm in ("PENDING", "REQUEUED", "CONFIGURING", "RESIZING", "SUSPENDED"):
        return "pending", f"SLURM: {slurm}"
    result = Path(job["result"])
    if result.exists():
        from submitit.core.utils import pickle_load

        outcome, value = pickle_load(result)
        if outcome == "error":
            lines = [line for line in str(value).splitlines() if line.strip()]
            return "failed", f"{lines[-1] if lines else 'error'}; log {job['stderr']}"
        return "ended", f"with shards missing; log {job['stderr']}"
    if slurm not in (None, "UNKNOWN"):  # TIMEOUT, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY, ...
        return "stopped", f"SLURM: {slurm}; log {job['stderr']}"
    if shards["partial"] or Path(job["stderr"]).exists():
        return "stopped", f"no result (killed, or queued for a requeue); log {job['stderr']}"
    return "pending", f"job {job['job_id']} queued"


def cluster_status(directory: Path) -> dict:
    """Per array task of cache `directory`: its shards done / in progress (a `.partial`) /
    pending, its latest job and its state; the resume command."""
    from vjfer.cache.format import MANIFEST, PARTIAL_SUFFIX, read_shard_header, shard_name
    from vjfer.extract.plan import task_shards

    directory = Path(directory)
    record = read_record(directory)
    tasks, num_shards = record["cluster"]["tasks"], record["num_shards"]
    latest: dict[int, dict] = {}
    for submission in record["submissions"]:
        latest.update({int(t): job for t, job in submission["jobs"].items()})

    def complete(i: int) -> bool:
        path = directory / shard_name(i)
        if not path.exists():
            return False
        try:
            h = read_shard_header(path)
        except VjferError:
            return False
        return (h["fingerprint"], h["num_shards"]) == (record["fingerprint"], num_shards)

    rows = []
    for t in range(tasks):
        mine = task_shards(num_shards, t, tasks)
        done = [i for i in mine if complete(i)]
        partial = [
            i
            for i in mine
            if i not in done and (directory / (shard_name(i) + PARTIAL_SUFFIX)).exists()
        ]
        counts = {
            "shards": len(mine),
            "done": len(done),
            "partial": len(partial),
            "pending": len(mine) - len(done) - len(partial),
        }
        job = latest.get(t)
        state, detail = _task_state(directory, t, job, counts, record["cluster"]["executor"])
        rows.append(
            {"task": t, **counts, "state": state, "detail": detail, "job_id": job and job["job_id"]}
        )
    manifest = directory / MANIFEST
    finished = manifest.exists() and json.loads(manifest.read_text(encoding="utf-8"))["complete"]
    return {
        "cache": str(directory),
        "folder": str(jobs_folder(directory)),
        "executor": record["cluster"]["executor"],
        "complete": bool(finished),
        "tasks": rows,
        "command": record["command"],
    }


def format_status(status: dict) -> str:
    """`cluster_status` as the lines `vjfer status` prints."""
    rows = status["tasks"]
    done = sum(r["done"] for r in rows)
    shards = sum(r["shards"] for r in rows)
    state = "complete" if status["complete"] else f"INCOMPLETE ({done} of {shards} shards)"
    lines = [
        f"cache   {status['cache']}  {state}",
        f"jobs    {status['folder']} ({status['executor']}, {len(rows)} tasks)",
        f"{'task':>6} {'shards':>6} {'done':>5} {'in progress':>11} {'pending':>7}  "
        f"{'state':<8} job",
    ]
    for r in rows:
        lines.append(
            f"{r['task']:>6} {r['shards']:>6} {r['done']:>5} {r['partial']:>11} {r['pending']:>7}  "
            f"{r['state']:<8} {r['job_id'] or '-'}" + (f"  {r['detail']}" if r["detail"] else "")
        )
    if not status["complete"]:
        lines.append(f"resume  {status['command']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Stage 2: one job.


class ProbeTask(_Requeued):
    """`vjfer probe` as one job: `run_request`; requeued (or retried after a node failure), it
    continues from the pass's last checkpoint (`--resume`, bit-identical after a kill)."""

    def __init__(self, request, retries: int):
        self.request, self.retries = request, retries

    def __call__(self) -> str:
        _job_logging()
        return str(retry_node_failures(self.run, self.retries, "the probe job"))

    def run(self, attempt: int) -> Path:
        from vjfer.probe.run import run_request

        request = self.request if attempt == 0 else replace(self.request, mode="resume")
        return run_request(request, draw=_run_figures)

    def checkpoint(self, *args: Any, **kwargs: Any):
        from submitit.helpers import DelayedSubmission

        resumed = copy.copy(self)  # what it wrote so far is continued, not replaced
        resumed.request = replace(self.request, mode="resume")
        return DelayedSubmission(resumed)


def _run_figures(run_dir: Path) -> None:
    from vjfer.report import figures_for_run  # matplotlib only when a figure is drawn

    figures_for_run(run_dir)


def submit_probe(
    request,
    cluster: ClusterConfig,
    *,
    echo: Callable[[str], object] = print,
    task: type[ProbeTask] = ProbeTask,
) -> Path | None:
    """Submit `vjfer probe` as one job (its submitit folder beside the runs folder); `local`
    waits and returns the run directory, `slurm` returns None once submitted. `task`: the job's
    class (tests subclass it to interrupt the job)."""
    require_submitit()
    if request.config.checkpoint_every == 0:  # a requeued job continues from the last epoch
        request = replace(request, config=replace(request.config, checkpoint_every=1))
    folder = jobs_folder(request.runs)
    folder.mkdir(parents=True, exist_ok=True)
    executor = make_executor(folder, replace(cluster, tasks=1), "vjfer-probe")
    job = executor.submit(task(replace(request, progress=False), cluster.retries))
    echo(f"job     {job.job_id} ({cluster.executor}); log {job.paths.stderr}")
    if cluster.executor == "slurm":
        echo(f"watch   tail -f {job.paths.stderr}; the run goes to {request.runs}")
        return None
    job.wait()
    outcome, why = _outcome(job)
    if outcome != "success":
        raise ConfigError(f"the probe job {job.job_id} failed: {why}")
    return Path(job.result())
