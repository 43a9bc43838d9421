"""Source files of a cache: where a video's path is recorded relative to the dataset root, the
video-stream digests that find identical streams (stored once), and the check that a complete
shard's videos still come from the files encoded (their content hash, xxh3-128; size and mtime
only when asked to trust them).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vjfer.cache.format import SOURCE_COLUMNS, _plain
from vjfer.cache.writer import atomic_write_text
from vjfer.decode import source_identity
from vjfer.errors import VideoError
from vjfer.prepare import SourceIdentity
from vjfer.video import read_source, stream_digest

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


def _memo_hit(known: dict | None, path: Path, st, trust_size_mtime: bool) -> str | None:
    """The file's xxh3-128 when the memo entry `known` still describes it, else None: by content
    (the file is read and hashed), or with `trust_size_mtime` by an unchanged size and mtime_ns."""
    if not known or (known["size"], known["mtime_ns"]) != (st.st_size, st.st_mtime_ns):
        return None
    if trust_size_mtime:
        return known.get("xxh3", "")
    now = source_identity(path, sha256=False).xxh3
    return now if now == known.get("xxh3") else None


def stream_digests(
    records: list, root: Path, memo_path: Path | None = None, trust_size_mtime: bool = False
) -> tuple[dict[str, str], dict[str, SourceIdentity]]:
    """Video-stream digest and source identity of every record (each file read once). A memo file
    spares the demuxing on reruns for files whose content hash (xxh3-128) is the one it recorded,
    or, with `trust_size_mtime`, whose size and mtime are. Unreadable files get ""."""
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8")) if memo_path else {}
    except (OSError, ValueError):
        memo = {}
    memo = memo if isinstance(memo, dict) else {}
    digests, sources, fresh = {}, {}, {}
    for r in records:
        name = relative_source(r.path, root)
        try:
            st = r.path.stat()
            known = memo.get(name)
            if known and (fast := _memo_hit(known, r.path, st, trust_size_mtime)) is not None:
                identity, digest = (
                    SourceIdentity(name, st.st_size, st.st_mtime_ns, known["sha256"], fast),
                    known["stream"],
                )
            else:
                data, identity = read_source(r.path)
                identity, digest = dataclasses.replace(identity, path=name), stream_digest(data)
        except (VideoError, OSError):
            continue
        digests[r.video_id], sources[r.video_id] = digest, identity
        fresh[name] = {
            "size": identity.size,
            "mtime_ns": identity.mtime_ns,
            "sha256": identity.sha256,
            "xxh3": identity.xxh3,
            "stream": digest,
        }
    if memo_path is not None and fresh != memo:
        atomic_write_text(memo_path, json.dumps(fresh, indent=0, sort_keys=True))
    return digests, sources


def source_changed(
    stored: dict,
    path: Path,
    name: str,
    trust_size_mtime: bool = False,
    current: SourceIdentity | None = None,
) -> str | None:
    """Why the file at `path` is not the source recorded in `stored` ({path, size, mtime_ns,
    sha256, xxh3}), or None when it is.

    The content decides: its xxh3-128 (sha256 for shards from before xxh3 was recorded), hashed
    now unless `current` (this run's identity of the same file) is given. With `trust_size_mtime`,
    an unchanged path, size and mtime_ns are trusted and the file is not read.
    """
    try:
        st = path.stat()
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    same_stat = (st.st_size, st.st_mtime_ns) == (stored["size"], stored["mtime_ns"])
    if trust_size_mtime and same_stat and stored["path"] == name:
        return None
    key = "xxh3" if stored.get("xxh3") else "sha256"
    label = {"xxh3": "xxh3-128", "sha256": "sha256"}[key]
    try:
        if current is None or not getattr(current, key):
            current = source_identity(path, name, sha256=key == "sha256")
    except OSError as err:
        return f"{path}: cannot read it now ({err.strerror})"
    if getattr(current, key) == stored[key]:
        return None  # touched, copied or moved: the same bytes
    return (
        f"{path}: {label} {getattr(current, key)[:12]}, size {current.size}; encoded from "
        f"{stored['path']} {label} {stored[key][:12]}, size {stored['size']}"
    )


def changed_sources(
    header: dict,
    records: dict,
    root: Path,
    trust_size_mtime: bool = False,
    current: dict[str, SourceIdentity] | None = None,
) -> list[str]:
    """The videos of a complete shard whose source files differ from the ones encoded, each with
    both identities; failed videos count too (their file may have been repaired). `current`: the
    identities this run already computed (video id -> SourceIdentity), so no file is read twice."""
    table, current = header["videos"], current or {}
    changes = []
    for i, vid in enumerate(table["video_id"]):
        stored = {k.removeprefix("source_"): _plain(table[k][i]) for k in SOURCE_COLUMNS}
        path = records[vid].path
        why = source_changed(
            stored, path, relative_source(path, root), trust_size_mtime, current.get(vid)
        )
        if why:
            changes.append(why)
    for fail in header["failures"]:
        if fail["source"] is not None:
            path = records[fail["video_id"]].path
            why = source_changed(
                fail["source"],
                path,
                relative_source(path, root),
                trust_size_mtime,
                current.get(fail["video_id"]),
            )
            if why:
                changes.append(why)
    return changes
