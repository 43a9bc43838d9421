"""The declared shape of the JSON files vjfer reads back, checked before use.

A file vjfer wrote can still be edited, truncated or replaced by hand. Every reader of one goes
through `read_json_object(path, schema=...)` (vjfer.files), which bounds the file's size and nesting
before parsing and then checks it against one of the schemas below with msgspec (its error names the
field, e.g. `$.shards[0].name`), so a wrong type is one line naming the file, the field and the fix,
never a TypeError three calls later. The schemas state only what readers rely on: fields a reader
never touches may hold anything, and fields written by newer versions are allowed.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Record(msgspec.Struct):
    """Base: unknown fields are allowed (a newer vjfer may add some)."""


# ------------------------------------------------------------------------------------ manifest.json


class ManifestShard(_Record):
    name: str
    video_ids: list[str] | None  # None: a shard not written yet
    clips: int
    complete: bool


class ManifestLayout(_Record):
    grid: tuple[int, int, int]
    num_tokens: int
    embed_dim: int
    num_views: int
    dtype: str
    layers: list[int] | None = None
    store: dict[str, Any] | None = None


class Source(_Record):
    """Where a video's tokens came from: its file and content hashes (`source_*` in the shard)."""

    path: str = ""
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str = ""
    xxh3: str = ""


class OkVideo(_Record, tag_field="status", tag="ok"):
    video_id: str
    shard: str
    label: int
    actor: int
    fold: int
    n_frames: int
    fps: float
    first_clip: int
    n_clips: int
    lost_frames: int = 0
    container_frames: int = -1
    odd_size_frames: int = 0
    alias_of: str = ""
    face_status: str | None = None
    face_box: list[int] | None = None
    source: Source | None = None


class Failure(_Record):
    """A video that could not be used, with the reason (a shard's `failures`)."""

    video_id: str
    path: str
    reason: str
    stage: str = "decode"
    source: Source | None = None


class FailedVideo(Failure, tag_field="status", tag="failed"):
    shard: str | None = None


class Excluded(_Record):
    path: str
    reason: str


class StoredLayers(_Record):
    blocks: list[int]
    depth: int
    norm: str


class Settings(_Record):
    """The fingerprint inputs (vjfer.extract.config.cache_settings): the types of the keys
    readers use (caches built in memory by `build_cache` may leave some out)."""

    dataset: str | None = None
    encoder: str | None = None
    resolution: int | None = None
    encoder_fingerprint: dict[str, Any] | None = None
    frames: int = 16
    frame_step: int | None = 4  # None: segments (no step)
    plan: str = "windows"
    hop: int | None = None
    views: str = "center"
    dtype: str = "float16"
    layers: StoredLayers | None = None
    list_file: dict[str, Any] | None = msgspec.field(default=None, name="list")
    face_crop: dict[str, Any] | None = None
    store_format: str | None = None
    store_pca: dict[str, Any] | None = None


class Manifest(_Record):
    """manifest.json of a cache (vjfer.cache.writer writes it)."""

    format: str
    format_version: int
    dataset: str
    fingerprint: str
    settings: Settings
    layout: ManifestLayout
    class_names: list[str]
    shard_size: int
    complete: bool
    shards: list[ManifestShard]
    videos: list[OkVideo | FailedVideo]
    excluded: list[Excluded] = []
    lineage: dict[str, Any] | None = None


# ------------------------------------------------------------------------------- shard attributes


class ShardAttrs(_Record):
    """The attributes of a shard (`vjfer.cache.format.read_shard_header`, JSON ones decoded)."""

    dataset: str
    fingerprint: str
    settings: Settings
    grid: tuple[int, int, int]
    embed_dim: int
    num_views: int
    shard_size: int
    index: int
    video_ids: list[str]
    failures: list[Failure] = []
    aliases: dict[str, str] = {}
    store: dict[str, Any] | None = None
    lineage: dict[str, Any] | None = None


# ------------------------------------------------------------------------------------ probe.pt


class ProbeFile(_Record):
    """The metadata of a `probe.pt` (vjfer.probe.model.probe_checkpoint) beside its state dict."""

    format: str
    probe: str
    embed_dim: int
    num_classes: int
    num_heads: int
    state_dict: dict[str, Any]
    probe_depth: int = 1
    knn_k: int = 1
    class_names: list[str] | None = None
    layer_view: dict[str, Any] | None = None


# -------------------------------------------------------------------------------------- run files
# summary.json and fold-K/metrics.json are checked against the TypedDicts of vjfer.results, which
# describe them for the code that reads them; a probe run's config.json against RunConfig.


class RunCache(_Record):
    path: str
    fingerprint: str
    settings: dict[str, Any]


class RunConfig(_Record):
    """config.json of a probe run (vjfer.probe.run writes it): the cache it was trained on."""

    cache: RunCache
    train: dict[str, Any]


# ---------------------------------------------------------------------- Hugging Face config.json


class HfConfig(_Record):
    """A Hugging Face model folder's config.json: a JSON object whose sizes vjfer reads by name."""

    model_type: str | None = None


def validation_error(data: Any, schema: type) -> str | None:
    """None when `data` (parsed JSON) fits `schema`, else msgspec's message naming the field."""
    try:
        msgspec.convert(data, type=schema)
    except msgspec.ValidationError as err:
        return str(err)
    return None
