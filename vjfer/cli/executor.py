"""The `--executor` options `vjfer extract` and `vjfer probe` share (`vjfer.cluster`): given, the
work is submitted as submitit jobs instead of run here. None of them enters a cache's fingerprint
or manifest: they are taken out of the command's options (`pop_cluster`) before its config is
made."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import apply

ARRAY_ONLY = ("tasks", "parallel")  # extract's: a probe is one job


def _options(array: bool) -> list:
    options = [
        click.option(
            "--executor",
            type=click.Choice(["local", "slurm"]),
            help="Submit as submitit jobs: slurm (array tasks from the login node) or local (the "
            "same on this machine); needs pip install 'vjfer[cluster]'. docs/cluster.md.",
        ),
        click.option(
            "--cluster-config",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help="TOML file of the options below (the command line wins).",
        ),
    ]
    if array:
        options += [
            click.option("--tasks", type=int, help="--executor: array tasks (default 1)."),
            click.option(
                "--parallel", type=int, help="--executor: at most this many at once (default all)."
            ),
        ]
    per_job = [
        ("--retries", int, "node failures (CUDA error, out of memory) retried in a job (2)"),
        ("--requeues", int, "preemptions and time limits requeued at most (20)"),
        ("--partition", str, "SLURM partition"),
        ("--gpus-per-task", int, "GPUs of each job (1)"),
        ("--cpus-per-task", int, "CPUs of each job (8)"),
        ("--mem-gb", int, "SLURM memory of each job, GB"),
        ("--time-min", int, "time limit of each job, minutes (240); then requeued"),
        ("--account", str, "SLURM account"),
        ("--qos", str, "SLURM QOS"),
    ]
    return options + [
        click.option(name, type=t, help=f"--executor: {h}.") for name, t, h in per_job
    ]


CLUSTER_PARAMS = (
    "executor",
    "cluster_config",
    *ARRAY_ONLY,
    "retries",
    "requeues",
    "partition",
    "gpus_per_task",
    "cpus_per_task",
    "mem_gb",
    "time_min",
    "account",
    "qos",
)


def executor_options(f):
    """extract's --executor options (array tasks included)."""
    return apply(_options(array=True), f)


def job_options(f):
    """probe's --executor options (one job)."""
    return apply(_options(array=False), f)


def pop_cluster(options: dict):
    """Take the --executor options out of a command's `options`: their ClusterConfig, or None
    when none is given (the others without --executor are a usage error)."""
    from vjfer.cluster import cluster_config

    given = {k: options.pop(k) for k in CLUSTER_PARAMS if k in options}
    file = given.pop("cluster_config")
    if given["executor"] is None and file is None:
        if extra := [k for k, v in given.items() if v is not None]:
            flags = ", ".join("--" + k.replace("_", "-") for k in extra)
            raise click.UsageError(f"{flags}: only with --executor local|slurm")
        return None
    return cluster_config(given, file)
