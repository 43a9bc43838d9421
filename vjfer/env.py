"""The software and hardware a run used: written into every extraction and probe run directory.

`environment()` is a plain dict (JSON-able) so a result can be traced to the versions behind it.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys

import torch

from vjfer import __version__
from vjfer.errors import ConfigError


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _nvidia_driver() -> str | None:
    """The NVIDIA driver version from nvidia-smi, or None (no GPU, no tool)."""
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def environment() -> dict:
    """vjfer, Python, platform, torch, CUDA, cuDNN, GPUs and driver, PyAV/FFmpeg, h5py, numpy."""
    import av
    import h5py
    import numpy

    cuda = torch.cuda.is_available()
    gpus = range(torch.cuda.device_count()) if cuda else range(0)
    return {
        "vjfer": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpus": available_cpus(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in gpus],
        "driver": _nvidia_driver() if cuda else None,
        "av": av.__version__,
        "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
        "numpy": numpy.__version__,
    }


def check_device(name: str) -> str:
    """`name` if it is a device vjfer runs on here: auto, cpu, or cuda / cuda:N where CUDA (and
    GPU N) exists; ConfigError naming it and the choices otherwise."""
    kind, _, index = name.partition(":")
    if name in ("auto", "cpu"):
        return name
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(
            f"device {name!r} is not one vjfer runs on: give auto, cpu, cuda or cuda:N"
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r}: this machine has no usable CUDA GPU "
            "(torch.cuda.is_available() is False); use cpu or auto"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s), "
            f"cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return name


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """ "auto" -> cuda when available, else cpu; "cuda" with a torchrun `local_rank` -> that GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and local_rank is not None:
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)
