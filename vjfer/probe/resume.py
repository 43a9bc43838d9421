"""Stage 2 survives a kill and never overwrites: the pass's checkpoint and a run folder's staging.

**Staging.** A run (or a cross-dataset result) is written into `<out>.partial/` and renamed to
`<out>` when complete. An existing run is refused unless replaced (`force`, at the rename: the old
run stays whole until the new one is) or continued (`resume`, from `<out>.partial/`).

**Checkpoint.** Every `checkpoint_every` epochs (and after the last) the pass saves each head's
probe, optimizer, scaler, step count, history and failure, and the pass's epoch records, into
`<out>.partial/checkpoint.pt` (atomically). Every draw is a pure function of (seed, epoch), so a
resumed pass is bit-identical to an uninterrupted one on the CPU. The checkpoint records the
settings, the cache fingerprint and `vjfer.probe.run.videos_digest`, and refuses any other. It is
deleted once the run is complete; evaluation is not checkpointed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from vjfer.errors import CheckpointError, ConfigError
from vjfer.files import atomic_write

log = logging.getLogger(__name__)

RunMode = Literal["new", "force", "resume"]
CHECKPOINT = "checkpoint.pt"


def run_mode(force: bool, resume: bool) -> RunMode:
    """The mode of `--force` and `--resume` (neither: new); both is an error."""
    if force and resume:
        raise ConfigError("--force starts the run over, --resume continues it: give one")
    return "force" if force else "resume" if resume else "new"


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def stage_run(out: str | Path, mode: RunMode) -> Path:
    """The folder to write run `out` into (`<out>.partial/`, made), refusing what `mode` forbids:
    `new` an existing run or an interrupted one; `resume` a complete one."""
    out = Path(out)
    partial = partial_dir(out)
    if out.exists() and not _is_empty_dir(out) and mode != "force":
        fix = "nothing to resume; " if mode == "resume" else ""
        raise ConfigError(f"run {out} exists: {fix}--force replaces it, or choose another --out")
    if partial.exists() and mode == "new":
        raise ConfigError(
            f"an interrupted run is at {partial}: --resume continues it, --force starts it over"
        )
    if partial.exists() and mode == "force":
        shutil.rmtree(partial)
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot write run folder {partial} ({err}); choose another --out"
        ) from err
    return partial


def publish_run(partial: Path, out: Path) -> None:
    """Rename the complete `partial` to `out`, replacing an old run there only now: should the
    second rename fail, the old run goes back in place, whole, and `partial` stays."""
    old = out.with_name(out.name + ".old")
    if _is_empty_dir(out):
        out.rmdir()
    elif out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    try:
        partial.rename(out)
    except BaseException:
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_atomic(obj: object, path: Path) -> None:
    """torch.save through `files.atomic_write`: never half a file."""
    atomic_write(path, lambda f: torch.save(obj, f), suffix=".tmp")


def _first_difference(saved: dict, wanted: dict, prefix: str = "") -> str | None:
    """The first key (dotted) whose values differ, with both values, or None."""
    for key in sorted(set(saved) | set(wanted)):
        have, want = saved.get(key), wanted.get(key)
        if isinstance(have, dict) and isinstance(want, dict):
            if found := _first_difference(have, want, f"{prefix}{key}."):
                return found
        elif have != want:
            return f"{prefix}{key}: checkpoint {have!r}, now {want!r}"
    return None


@dataclass
class PassCheckpoint:
    """Where a pass saves its state, every how many epochs, and what it must match to resume.

    `identity`: JSON-like settings (training options that change results, the cache fingerprint,
    folds, grid); `heads` of `save`/`restore` are `vjfer.probe.head.Head`s, named uniquely."""

    path: Path
    identity: dict
    every: int = 1

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether the pass saves after epoch `epoch` (0-based) of `epochs`."""
        return self.every > 0 and ((epoch + 1) % self.every == 0 or epoch + 1 == epochs)

    def save(self, epoch: int, heads: Sequence, records: list[dict]) -> None:
        save_atomic(
            {
                "identity": self.identity,
                "epoch": epoch + 1,
                "records": records,
                "heads": {h.name: h.state() for h in heads},
            },
            self.path,
        )
        log.info("checkpoint after epoch %d: %s", epoch + 1, self.path)

    def restore(self, heads: Sequence) -> tuple[int, list[dict]]:
        """Load the saved state into `heads`; (epochs done, the pass's records). (0, []) when
        there is no checkpoint yet; CheckpointError naming what differs from the saved pass."""
        if not self.path.is_file():
            return 0, []
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a damaged file
            raise CheckpointError(
                f"{self.path} is not a readable checkpoint ({err}); --force starts the run over"
            ) from err
        if diff := _first_difference(saved["identity"], self.identity):
            raise CheckpointError(
                f"{self.path} was saved by another pass ({diff}): rerun with "
                "its settings, or --force to start over"
            )
        names = sorted(h.name for h in heads)
        if sorted(saved["heads"]) != names:
            raise CheckpointError(
                f"{self.path} holds heads {sorted(saved['heads'])}, this pass "
                f"trains {names}: --force starts over"
            )
        for head in heads:
            head.load_state(saved["heads"][head.name])
        log.info("resuming after epoch %d from %s", saved["epoch"], self.path)
        return int(saved["epoch"]), list(saved["records"])
