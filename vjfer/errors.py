"""The few exception types vjfer raises. `vjfer.cli` prints any `VjferError` as one line and exits
1."""

from __future__ import annotations

from pathlib import Path


class VjferError(Exception):
    """Base of every error vjfer raises on purpose (bad input, bad configuration)."""


class DatasetError(VjferError):
    """A dataset root, file name or split that cannot be used."""


class SplitError(DatasetError):
    """Fold files that are inconsistent, or a fold split that would leak test actors."""


FACE_FAILURE_PREFIX = "no face"  # how a face-crop failure's reason starts (failures.jsonl)


class VideoError(VjferError):
    """A video that cannot be decoded. Carries the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CheckpointError(VjferError):
    """A checkpoint that is not one, is truncated, or does not fit the architecture."""


class CacheError(VjferError):
    """A feature cache that is missing, incomplete, corrupt or made with other settings."""


class ConfigError(VjferError):
    """Options that do not fit together, or an unknown name."""


class TrainingError(VjferError):
    """A probe whose training diverged (a loss that is not finite)."""
