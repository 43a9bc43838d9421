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

**One writer.** `staged_run` holds an exclusive lock on `<out>.lock` (beside `<out>.partial/`, so
`force` deleting the staging folder cannot drop it; `vjfer.lock.FileLock`) from before the staging
folder is touched until after the rename: a second writer of the same run, `force` and `resume`
included, is refused naming the holder. A run that stops on an error (not a kill, not a refused
resume) is marked failed in `<out>.partial/failed.json` with its reason, so a rerun says so.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from vjfer.errors import CheckpointError, ConfigError, VjferError
from vjfer.files import atomic_write, read_json_object
from vjfer.lock import FileLock
from vjfer.torchfile import torch_load

log = logging.getLogger(__name__)

RunMode = Literal["new", "force", "resume"]
CHECKPOINT = "checkpoint.pt"
FAILED = "failed.json"  # in `<out>.partial/`: the run stopped on this error


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
        if (reason := failed_reason(partial)) is not None:
            raise ConfigError(
                f"a failed run is at {partial}: {reason}; --force replaces it, --resume "
                "continues it from its last checkpoint"
            )
        raise ConfigError(
            f"an interrupted run is at {partial}: --resume continues it, --force starts it over"
        )
    if partial.exists() and mode == "force":
        shutil.rmtree(partial)
    if mode == "resume" and not partial.exists():  # said, not silently a run of its own
        log.warning("--resume: no interrupted run at %s; training %s from the start", partial, out)
    try:
        partial.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"cannot write run folder {partial} ({err}); choose another --out"
        ) from err
    return partial


def failed_reason(partial: Path) -> str | None:
    """The reason `partial` (a staging folder) was marked failed with, or None when it was not."""
    path = partial / FAILED
    if not path.is_file():
        return None
    try:
        reason = read_json_object(path).get("reason")
    except VjferError:
        reason = None
    return reason if isinstance(reason, str) else f"its reason is unreadable ({path})"


def mark_failed(partial: Path, err: BaseException) -> None:
    """Record in `partial/failed.json` that the run stopped on `err` (its text on one line)."""
    reason = " ".join(str(err).split()) or type(err).__name__
    record = {
        "reason": reason,
        "error": type(err).__name__,
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    text = (json.dumps(record, indent=1) + "\n").encode("utf-8")
    try:
        atomic_write(partial / FAILED, lambda f: f.write(text))
    except OSError as write_err:  # the error itself goes on; only the mark is lost
        log.warning("could not mark %s failed: %s", partial, write_err)


def run_lock(out: Path) -> FileLock:
    """The lock of run folder `out`: `<out>.lock` beside it, naming pid, host and since when;
    removed when released."""

    def refusal(holder: str) -> ConfigError:
        return ConfigError(
            f"run {out} is being written by another vjfer process ({holder}); wait for it to "
            "finish, or stop that process first"
        )

    return FileLock(out.with_name(out.name + ".lock"), refusal, since=True, remove=True)


@contextmanager
def staged_run(out: str | Path, mode: RunMode) -> Iterator[Path]:
    """`stage_run` under the run's lock (`run_lock`), held until the block ends (the block
    publishes): a second writer of `out` is refused naming the holder before anything is touched.
    An error in the block (a CheckpointError aside: a refused resume leaves the run as it was)
    marks the staging folder failed (`mark_failed`); a kill or Ctrl-C leaves it interrupted."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = run_lock(out).acquire()
    except OSError as err:
        raise ConfigError(
            f"cannot write run folder {partial_dir(out)} ({err}); choose another --out"
        ) from err
    try:
        tidy_published(out)
        work = stage_run(out, mode)
        try:
            yield work
        except CheckpointError:
            raise
        except Exception as err:
            if work.is_dir():
                mark_failed(work, err)
            raise
    finally:
        lock.release()


def tidy_published(out: Path) -> None:
    """What a kill between a publish's renames and its clean-up leaves of a published run (its
    summary written): the pass checkpoint inside it and the replaced run beside it (`RUN.old`)."""
    if (out / "summary.json").is_file():
        (out / CHECKPOINT).unlink(missing_ok=True)
        shutil.rmtree(out.with_name(out.name + ".old"), ignore_errors=True)


def publish_run(partial: Path, out: Path) -> None:
    """Rename the complete `partial` to `out`, replacing an old run there only now: should the
    second rename fail, the old run goes back in place, whole, and `partial` stays. A failed mark
    left by an earlier attempt (`mark_failed`) is dropped first."""
    (partial / FAILED).unlink(missing_ok=True)
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


def tensor_bytes(obj: object) -> int:
    """Bytes of the tensors in a (nested) checkpoint: about what torch.save writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def save_atomic(obj: object, path: Path) -> None:
    """torch.save through `files.atomic_write`: never half a file. A full disk (torch says
    `enforce fail at inline_container.cc`, or an OSError) is one CheckpointError naming the file,
    the bytes it needs and the fix; the temporary file is gone."""
    try:
        atomic_write(path, lambda f: torch.save(obj, f), suffix=".tmp")
    except (OSError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "inline_container" not in str(err):
            raise  # not a write failure
        free = shutil.disk_usage(path.parent).free
        raise CheckpointError(
            f"{path}: cannot be written ({getattr(err, 'strerror', None) or 'the write failed'}):"
            f" it needs about {tensor_bytes(obj) / 1e6:.1f} MB, {free / 1e6:.1f} MB are free; free"
            " space and rerun with --resume (the pass continues from its last checkpoint)"
        ) from None


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
            saved = torch_load(self.path)
        except CheckpointError as err:
            raise CheckpointError(f"{err}; --force starts the run over") from err
        if not isinstance(saved, dict) or not {"identity", "epoch", "records", "heads"} <= set(
            saved
        ):
            raise CheckpointError(
                f"{self.path}: not a checkpoint vjfer wrote (no identity, epoch, records and "
                "heads); --force starts the run over"
            )
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
