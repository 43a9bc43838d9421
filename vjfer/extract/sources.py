"""Source files of a cache: where a video's path is recorded relative to the dataset root, the
video-stream digests that find identical streams (stored once), and the check that a complete
shard's videos still come from the files encoded (size and mtime, else sha256).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vjfer import cache
from vjfer.errors import VideoError
from vjfer.video import SourceIdentity, read_source, source_identity, stream_digest

STREAMS_MEMO = "streams.json"  # video-stream digests by source path, size and mtime


def relative_source(path: Path, root: Path) -> str:
    """A video's path as the cache records it: relative to the dataset root (POSIX)."""
    path, root = Path(path), Path(root).expanduser().absolute()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def duplicate_streams(digests: dict[str, str]) -> dict[str, str]:
    """video id -> the smallest id with the same video-stream digest (only for the others)."""
    groups: dict[str, list[str]] = {}
    for video_id, digest in sorted(digests.items()):
        if digest:
            groups.setdefault(digest, []).append(video_id)
    return {alias: ids[0] for ids in groups.values() for alias in ids[1:]}


def stream_digests(records: list, root: Path, memo_path: Path | None = None
                   ) -> tuple[dict[str, str], dict[str, SourceIdentity]]:  # fmt: skip
    """Video-stream digest and source identity of every record (each file read once; a memo file
    keyed by path, size and mtime spares the reading on reruns). Unreadable files get ""."""
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8")) if memo_path else {}
    except (OSError, ValueError):
        memo = {}
    digests, sources, fresh = {}, {}, {}
    for r in records:
        name = relative_source(r.path, root)
        try:
            st = r.path.stat()
            known = memo.get(name)
            if known and (known["size"], known["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                identity, digest = (
                    SourceIdentity(name, st.st_size, st.st_mtime_ns, known["sha256"]),
                    known["stream"],
                )
            else:
                data, identity = read_source(r.path)
                identity, digest = dataclasses.replace(identity, path=name), stream_digest(data)
        except (VideoError, OSError):
            continue
        digests[r.video_id], sources[r.video_id] = digest, identity
        fresh[name] = {"size": identity.size, "mtime_ns": identity.mtime_ns,
                       "sha256": identity.sha256, "stream": digest}  # fmt: skip
    if memo_path is not None and fresh != memo:
        cache.atomic_write_text(memo_path, json.dumps(fresh, indent=0, sort_keys=True))
    return digests, sources


def source_changed(stored: dict, path: Path, name: str) -> str | None:
    """Why the file at `path` is not the source recorded in `stored` ({path, size, mtime_ns,
    sha256}), or None when it is. Size and mtime equal: trusted; otherwise its sha256 decides."""
    try:
        st = path.stat()
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    same_stat = (st.st_size, st.st_mtime_ns) == (stored["size"], stored["mtime_ns"])
    if same_stat and stored["path"] == name:
        return None
    try:
        now = source_identity(path, name)
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    if now.sha256 == stored["sha256"]:
        return None  # touched, copied or moved: the same bytes
    return (f"{path}: sha256 {now.sha256[:12]}, size {now.size}; encoded from "
            f"{stored['path']} sha256 {stored['sha256'][:12]}, size {stored['size']}")  # fmt: skip


def changed_sources(header: dict, records: dict, root: Path) -> list[str]:
    """The videos of a complete shard whose source files differ from the ones encoded, each with
    both identities; failed videos count too (their file may have been repaired)."""
    table = header["videos"]
    changes = []
    for i, vid in enumerate(table["video_id"]):
        stored = {
            k.removeprefix("source_"): cache._plain(table[k][i]) for k in cache.SOURCE_COLUMNS
        }
        path = records[vid].path
        if why := source_changed(stored, path, relative_source(path, root)):
            changes.append(why)
    for fail in header["failures"]:
        if fail["source"] is not None:
            path = records[fail["video_id"]].path
            if why := source_changed(fail["source"], path, relative_source(path, root)):
                changes.append(why)
    return changes
