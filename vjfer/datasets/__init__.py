"""The dataset layer: one adapter per dataset turns a root into `VideoRecord`s (a video file or a
folder of frames, a label name, a group, a fold) and named `Exclusion`s; nothing found under a root,
or named by a split file, silently vanishes.

Adapters: `ravdess`, `crema-d` (labels from file names, folds from splits/*.csv, or RAVDESS's
`mae-dfer` 6 folds), `dfew`, `ferv39k`, `mafw` (frame folders and the releases' split files) and
`list` (a CSV list file). `DatasetError` when nothing can be indexed or the result would be
ambiguous; inconsistent split files raise `SplitError`; options that do not apply, `ConfigError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from vjfer.datasets import crema_d, dfew, ferv39k, listfile, mafw, ravdess
from vjfer.datasets.folds import fold_split
from vjfer.datasets.records import DatasetIndex, VideoRecord
from vjfer.errors import ConfigError
from vjfer.labels import check_dataset

ADAPTERS: dict[str, Callable[..., DatasetIndex]] = {
    "ravdess": ravdess.scan,
    "crema-d": crema_d.scan,
    "dfew": dfew.scan,
    "ferv39k": ferv39k.scan,
    "mafw": mafw.scan,
    "list": listfile.scan,
}
ENV_VARS: dict[str, str] = {
    "ravdess": "VJFER_RAVDESS",
    "crema-d": "VJFER_CREMA_D",
    "dfew": "VJFER_DFEW",
    "ferv39k": "VJFER_FERV39K",
    "mafw": "VJFER_MAFW",
    "list": "VJFER_LIST_ROOT",
}


def adapter_name(name: str) -> str:
    """The canonical adapter name (`crema_d` -> `crema-d`): `labels.check_dataset`'s."""
    return check_dataset(name)


def scan_dataset(
    name: str,
    root: str | Path,
    *,
    modalities: Iterable[int] | None = None,
    vocal_channels: Iterable[int] | None = None,
    splits: str | None = None,
    list_file: str | Path | None = None,
) -> DatasetIndex:
    """Index every item under `root`; items not kept are listed in `.excluded` with a reason.

    Args:
        name: an adapter (`ADAPTERS`).
        root: the dataset's top folder (see each adapter's docstring for the layout).
        modalities, vocal_channels: RAVDESS only: subsets of (1, 2); defaults (1, 2) and (1,).
        splits: the fold protocol (`SPLITS[name]`; default its first).
        list_file: `list` only: the CSV list file.
    """
    dataset = adapter_name(name)
    if dataset != "ravdess" and (modalities is not None or vocal_channels is not None):
        raise ConfigError("modalities and vocal_channels apply to RAVDESS only")
    if (dataset == "list") != (list_file is not None):
        raise ConfigError("--list FILE goes with --dataset list, and only with it")
    root = Path(root)
    if dataset == "ravdess":
        return ravdess.scan(
            root, splits=splits, modalities=modalities, vocal_channels=vocal_channels
        )
    if dataset == "list":
        return listfile.scan(root, list_file=Path(list_file or ""), splits=splits)
    return ADAPTERS[dataset](root, splits=splits)


def index_dataset(
    name: str,
    root: str | Path,
    *,
    modalities: Iterable[int] | None = None,
    vocal_channels: Iterable[int] | None = None,
    splits: str | None = None,
    list_file: str | Path | None = None,
) -> list[VideoRecord]:
    """The usable videos under `root`, sorted by video_id (see `scan_dataset`)."""
    return scan_dataset(
        name,
        root,
        modalities=modalities,
        vocal_channels=vocal_channels,
        splits=splits,
        list_file=list_file,
    ).records


__all__ = ["ADAPTERS", "ENV_VARS", "adapter_name", "fold_split", "index_dataset", "scan_dataset"]
