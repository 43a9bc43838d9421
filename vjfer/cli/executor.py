"""The `--executor` options `vjfer extract` and `vjfer probe` share (`vjfer.cluster`): given, the
work is submitted as submitit jobs instead of run here. None of them enters a cache's fingerprint
or manifest: they are taken out of the command's options (`pop_cluster`) before its config is
made."""

from __future__ import annotations

from dataclasses import fields
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
    per_job = [
        ("--retries", "node failures (CUDA error, out of memory) retried in a job"),
        ("--requeues", "times a job reaching its time limit is requeued (preempted: always)"),
        ("--partition", "SLURM partition"),
        ("--gpus-per-task", "GPUs of each job"),
        ("--cpus-per-task", "CPUs of each job"),
        ("--mem-gb", "SLURM memory of each job, GB"),
        ("--time-min", "time limit of each job, minutes; then requeued"),
        ("--account", "SLURM account"),
        ("--qos", "SLURM QOS"),
    ]
    if array:
        per_job[:0] = [
            ("--tasks", "array tasks"),
            ("--parallel", "at most this many at once (0: all)"),
        ]
    return options + [_option(name, text) for name, text in per_job]


def _option(name: str, text: str):
    """An --executor option: None when not given (a --cluster-config file's value or
    ClusterConfig's default then), its default from ClusterConfig shown in --help."""
    from vjfer.cluster import ClusterConfig

    field = next(f for f in fields(ClusterConfig) if f.name == name[2:].replace("-", "_"))
    kind = int if field.type in ("int", "int | None") else str
    default = f"  [default: {field.default}]" if field.default is not None else ""
    return click.option(name, type=kind, help=f"--executor: {text}.{default}")


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
