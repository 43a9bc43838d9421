"""The one `torch.load` of vjfer: tensors only (`weights_only=True`), onto the CPU, and every
failure one CheckpointError line saying which kind it is: not a PyTorch file, truncated or damaged,
or a pickle that could run code, refused.

torch's own text is passed on only in part: it advises `weights_only=False`, which would run
whatever the file pickles; vjfer never suggests that.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from vjfer.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default (zip) format
PICKLE_MAGIC = b"\x80"  # a pickle stream (torch.save's legacy format) starts with PROTO
UNSAFE = "not a tensor file vjfer wrote, or unsafe: refused (it pickles {pickled})"

_UNSAFE_ADVICE = re.compile(
    r"weights_only\s*=\s*False|unsafe|arbitrary code|trust the source", re.IGNORECASE
)


def _torch_reason(err: Exception) -> str:
    """torch.load's message without its advice to load unsafely: the first line that gives none."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    safe = [ln for ln in lines if not _UNSAFE_ADVICE.search(ln)]
    return (safe[0] if safe else type(err).__name__)[:200]


def refused_pickle(path: Path, err: Exception) -> CheckpointError:
    """The one line for a file that torch's weights-only unpickler refused (no code ran), for the
    loaders that call torch.load through a library (transformers' pytorch_model.bin)."""
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(err))
    reason = detail[1].strip() if detail else _torch_reason(err)
    return CheckpointError(
        f"{path}: a weights file that pickles more than tensors: refused, no code ran ({reason})"
    )


def _load_error(path: Path, err: Exception, unsafe: str) -> CheckpointError:
    """Turn a torch.load failure into a CheckpointError saying which kind of failure it is; a
    refused global is `path: unsafe` (formatted with `pickled`, the global's name)."""
    full, text = str(err), _torch_reason(err)  # text: at most 200 characters
    # "Unsupported global: GLOBAL x.y was not an allowed global" or "Trying to load unsupported
    # GLOBAL x.y whose module x is blocked", as torch's versions say it
    if refused := re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", full):
        return CheckpointError(f"{path}: {unsafe.format(pickled=refused[1])}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(ZIP_MAGIC))
    except OSError as os_err:
        return CheckpointError(f"{path}: cannot be read ({os_err.strerror or os_err})")
    if head == ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as zip_err:
            return CheckpointError(f"{path}: truncated or damaged checkpoint ({zip_err}; {text})")
        if not any(n.endswith("data.pkl") for n in names):
            return CheckpointError(f"{path}: is not a PyTorch checkpoint (a zip without data.pkl)")
        return CheckpointError(f"{path}: truncated or damaged checkpoint ({text})")
    ends_early = isinstance(err, EOFError) or re.search(r"truncated|EOF|corrupted", full)
    if head.startswith(PICKLE_MAGIC) and ends_early:
        return CheckpointError(
            f"{path}: truncated or damaged checkpoint (pickle stream ends early)"
        )
    kind = "an empty file" if not head else f"starts with {head!r}"
    return CheckpointError(f"{path}: is not a PyTorch checkpoint ({kind}; {text})")


def torch_load(path: str | Path, *, mmap: bool = False, unsafe: str = UNSAFE) -> object:
    """torch.load(path, weights_only=True) onto the CPU (`mmap`: memory-mapped, zip files only);
    any failure is one CheckpointError line naming the file: a pickled global torch refuses reads
    `<path>: <unsafe>` (`unsafe` formatted with `pickled`, the global's name), never torch's
    advice to load with weights_only=False."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # torch.load raises many types; each becomes one CheckpointError
        raise _load_error(path, err, unsafe) from err
