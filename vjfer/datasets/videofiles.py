"""Finding video files under a root, shared by the adapters whose items are files (RAVDESS,
CREMA-D, a list file of videos): the file walk and the per-file scan with named exclusions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vjfer.datasets.records import Exclusion, Skip, VideoRecord, check_content
from vjfer.errors import DatasetError


def find_files(
    dataset: str, base: Path, video: tuple[str, ...], audio: tuple[str, ...], hint: str
) -> list[Path]:
    """Files under `base` (recursively) with a video or audio suffix, broken links included;
    DatasetError when no video file is among them."""
    suffixes = video + audio
    files = sorted(
        p
        for p in base.rglob("*")
        if p.suffix.lower() in suffixes and (p.is_file() or (p.is_symlink() and not p.exists()))
    )
    if not any(p.suffix.lower() in video for p in files):
        found = f" (only {len(files)} audio files)" if files else ""
        raise DatasetError(f"no {'/'.join(video)} videos under {base}{found}; {hint}")
    return files


def scan_files(
    files: list[Path], record: Callable[[Path], VideoRecord]
) -> tuple[list[VideoRecord], list[Exclusion]]:
    """`record(path)` of every file whose content is usable; the others as exclusions."""
    records, excluded = [], []
    for path in files:
        try:
            item = record(path)
            check_content(path)
        except Skip as skip:
            excluded.append(Exclusion(path, skip.reason, skip.detail))
            continue
        records.append(item)
    return records, excluded


def refuse_duplicates(records: list[VideoRecord]) -> None:
    """DatasetError when two files share a video id (records sorted by id)."""
    for a, b in zip(records[:-1], records[1:], strict=False):  # sorted: twins are neighbours
        if a.video_id == b.video_id:
            raise DatasetError(
                f"video id {a.video_id} found twice: {a.path} and {b.path}; keep one copy"
            )
