"""The options of `vjfer extract` (`ExtractConfig`) and what of them enters the cache: the
fingerprint inputs (`cache_settings`), the record written into the manifest (`config_record`) and
the command that makes the same cache again (`command_words`, printed to resume an interrupted one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from vjfer import augment
from vjfer.cache.format import TOKEN_DTYPE
from vjfer.clips import (
    CLIP_PLANS,
    DRAW_PLANS,
    DRAWS_VERSION,
    FRAME_STEP,
    FRAMES_PER_CLIP,
    MAX_AUGMENT_COPIES,
    STEP_PLANS,
    WINDOWS_VERSION,
    ClipPlan,
)
from vjfer.datasets.listfile import list_identity
from vjfer.encoders.checkpoint import Weights
from vjfer.encoders.registry import COMPUTE_DTYPES
from vjfer.errors import ConfigError
from vjfer.face import FaceCropConfig, face_settings, parse_face_crop
from vjfer.labels import LIST, check_dataset
from vjfer.prepare import MAX_FRAME_PIXELS, VIEWS, Views
from vjfer.protocols import PAPER, get_protocol
from vjfer.store import StoreFormat

HOP_PLANS = ("windows", "reference")  # the plans whose evaluation windows are `hop` starts apart

# The version of the code that turns a video into tokens (decoding, frame preparation, clip plans,
# the encoders' forward pass). It is a fingerprint input instead of the package version, so a new
# vjfer release reuses caches unless their tokens would change. tests/test_extract.py pins the
# tokens of a fixed video: when that test fails, the tokens changed, so bump this number.
TOKENS_VERSION = 1


@dataclass(frozen=True)
class ExtractConfig:
    """Every option of `vjfer extract`, with its default (the CLI reads these defaults)."""

    dataset: str
    root: Path
    list_file: Path | None = None  # --dataset list: the CSV naming each item, label, group, fold
    encoder: str = "vjepa-h16-384"  # the paper's backbone
    checkpoint: Path | None = None
    weights: Weights = "target_encoder"  # jepa: EMA "target_encoder" or online "encoder"
    cache_root: Path = Path("cache")
    hop: int = 8  # starts between evaluation windows (plans "windows" and "reference")
    plan: ClipPlan = "windows"
    # every K-th frame (plan stride: MAE-DFER's sampling rate); None: FRAME_STEP (4). The V-JEPA
    # plans have the reference's fixed step 4 and segments none: they refuse one
    frame_step: int | None = None
    train_draws: int = 8  # stride/segments: draws of the loader's training rule cached per video
    views: Views = "center"
    batch_size: int = 8  # clips per encoder call; each brings its V views
    workers: int | None = None  # decoding processes; 0: in the main process; None: from the cores
    device: str = "auto"  # auto: cuda:LOCAL_RANK when CUDA is available, else cpu
    limit: int | None = None  # only the first N videos (sorted by id)
    force: bool = False  # delete this rank's shards and the manifest, and start again
    shard_size: int = 64  # videos per shard
    allow_low_disk: bool = False  # start even when the size estimate exceeds the free space
    face_crop: str = "none"  # none (whole frames, the paper's input) | haar | boxes:FILE
    face_fallback: str = "fail"  # a video without a face: fail (listed) | full (whole frame)
    face_margin: float = FaceCropConfig.margin  # added on every side of the face box
    max_lost_frames: float = 0.1  # a video that lost a larger fraction of its frames is a failure
    no_reencode: bool = False  # refuse, rather than re-encode, shards whose source files changed
    # resume: trust a source whose size and mtime_ns are unchanged instead of hashing its content
    trust_size_mtime: bool = False
    decode_timeout: float | None = 600.0  # seconds per video before it becomes a failure
    max_frame_pixels: int = MAX_FRAME_PIXELS  # a larger frame is lost (folder), its video failed
    dedup: bool = True  # videos with identical video streams: encoded and stored once
    store: str = "fp16"  # store format of the tokens (vjfer.store): fp16, int8, fp8, pool2, ...
    dtype: str = "bf16"  # encoder compute dtype on CUDA: bf16 | fp16 (the reference's) | fp32
    augment: int = 0  # augmented copies of each video's 8 training clips (`vjfer.augment`)
    # their draws: one generator per (seed, video, copy, clip); with plan stride/segments, the
    # seed of the training draws (one generator per (seed, video, draw))
    augment_seed: int = 0
    # encoder blocks to cache (negative: from the end); None: the encoder's output (the last
    # block through the final norm), as before layers existed
    layers: tuple[int, ...] | None = None
    # RAVDESS only: the one modality (MM) to keep, 1 audio-video or 2 video-only (the peers' 6
    # folds list 02 files only); None: both, as `vjfer index` without --modality
    modality: int | None = None
    # a preset of the field (vjfer.protocols: paper, mae-dfer, dfer-clip): sets plan, frame step,
    # views and modality as its source does; an option that contradicts it is refused
    protocol: str | None = None

    def __post_init__(self):
        if self.protocol is not None:
            self._apply_protocol()
        if (check_dataset(self.dataset) == LIST) != (self.list_file is not None):
            raise ConfigError(
                "--list FILE goes with --dataset list, and only with it; got "
                f"--dataset {self.dataset} and --list {self.list_file}"
            )
        if self.plan not in CLIP_PLANS:
            raise ConfigError(f"plan must be one of {CLIP_PLANS}, got {self.plan!r}")
        self._check_sampling()
        if self.dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"dtype must be one of {tuple(COMPUTE_DTYPES)}, got {self.dtype!r}")
        if self.modality is not None:
            if check_dataset(self.dataset) != "ravdess":
                raise ConfigError(
                    f"--modality selects RAVDESS files (MM 01/02); --dataset {self.dataset} has "
                    "no modalities: drop --modality"
                )
            if self.modality not in (1, 2):
                raise ConfigError(
                    f"--modality must be 1 (audio-video) or 2 (video-only), got {self.modality!r}"
                )
        if self.views not in VIEWS:
            raise ConfigError(f"views must be one of {VIEWS}, got {self.views!r}")
        if self.augment < 0:
            raise ConfigError(f"augment must be >= 0 copies, got {self.augment}")
        for name in ("hop", "batch_size", "shard_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.workers is not None and self.workers < 0) or (
            self.limit is not None and self.limit < 1
        ):
            raise ConfigError(f"need workers >= 0 and limit >= 1, got {self.workers}, {self.limit}")
        if not 0 <= self.max_lost_frames <= 1:
            raise ConfigError(f"max_lost_frames is a fraction in 0..1, got {self.max_lost_frames}")
        if self.max_frame_pixels < 1:
            raise ConfigError(f"max_frame_pixels must be >= 1, got {self.max_frame_pixels}")
        if self.decode_timeout is not None and self.decode_timeout <= 0:
            raise ConfigError(f"decode_timeout must be > 0 seconds, got {self.decode_timeout}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        self.face()  # raises ConfigError on a bad --face-crop / --face-fallback / --face-margin
        if StoreFormat.parse(self.store).pca:
            raise ConfigError(
                f"--store {self.store}: a PCA basis is fitted on the training tokens, which do not "
                "exist before extraction; extract with --store fp16 (or int8), then run "
                "`vjfer cache convert CACHE --store pca:K`"
            )

    def _apply_protocol(self) -> None:
        """Set the fields `--protocol` decides (ConfigError when an option given contradicts it:
        an option at its default is the preset's to set)."""
        preset = get_protocol(self.protocol or "")
        defaults = {f.name: f.default for f in fields(self)}
        for name, value in preset.settings(check_dataset(self.dataset)).items():
            given = getattr(self, name)
            if given != defaults[name] and given != value:
                raise ConfigError(
                    f"--protocol {preset.name} sets {option_name(name)} {value}; you gave "
                    f"{option_name(name)} {given}: drop one of them"
                )
            object.__setattr__(self, name, value)  # frozen: set before the checks below

    def _check_sampling(self) -> None:
        """--frame-step, --train-draws and --augment against --plan (ConfigError naming the fix)."""
        if self.frame_step is not None and self.plan not in STEP_PLANS:
            raise ConfigError(
                f"--frame-step applies to --plan stride; --plan {self.plan} has "
                + ("no frame step" if self.plan in DRAW_PLANS else "the reference's fixed step 4")
                + ": drop --frame-step or use --plan stride"
            )
        if self.frame_step is not None and self.frame_step < 1:
            raise ConfigError(
                f"--frame-step must be >= 1 (every K-th frame; 1: consecutive frames), "
                f"got {self.frame_step}"
            )
        if self.plan in DRAW_PLANS and self.train_draws < 1:
            raise ConfigError(f"--train-draws must be >= 1, got {self.train_draws}")
        if self.plan not in DRAW_PLANS and self.train_draws != ExtractConfig.train_draws:
            raise ConfigError(
                f"--train-draws applies to --plan {' or '.join(DRAW_PLANS)}; --plan {self.plan} "
                "has no training draws: drop --train-draws"
            )
        if self.augment and self.plan in DRAW_PLANS:
            raise ConfigError(
                f"--augment copies the V-JEPA reference's 8 training clips; --plan {self.plan} "
                "caches its loader's training draws instead (--train-draws): drop --augment"
            )
        if self.augment > MAX_AUGMENT_COPIES:
            raise ConfigError(
                f"--augment takes at most {MAX_AUGMENT_COPIES} copies, got {self.augment}"
            )

    def step(self) -> int | None:
        """The frame step of the plan: --frame-step (or FRAME_STEP) for stride, FRAME_STEP for
        the V-JEPA plans, None for segments (it has none)."""
        if self.plan == "segments":
            return None
        return FRAME_STEP if self.frame_step is None else self.frame_step

    def face(self) -> FaceCropConfig:
        """The face-crop settings (`vjfer.face`)."""
        return parse_face_crop(self.face_crop, self.face_fallback, self.face_margin)


def stored_blocks(config: ExtractConfig, encoder) -> tuple[int, ...] | None:
    """The 0-based blocks a cache of `config` stacks per clip, or None for the encoder's output
    alone: no `--layers`, or `--layers` naming just the last block (`-1`), which *is* that output
    (its block through the final norm), so it is the same cache, fingerprint and bytes."""
    if config.layers is None:
        return None
    blocks = encoder.resolve_layers(config.layers)
    return None if blocks == (encoder.depth - 1,) else blocks


def cache_settings(config: ExtractConfig, encoder) -> dict:
    """The fingerprint inputs: everything that changes the tokens or their meaning."""
    settings = {
        "dataset": check_dataset(config.dataset),
        "encoder": config.encoder,
        "encoder_fingerprint": encoder.fingerprint,  # checkpoint sha256, weights, compute dtype
        "resolution": encoder.resolution,
        "frames": FRAMES_PER_CLIP,
        "frame_step": config.step(),  # FRAME_STEP for the V-JEPA plans, as before
        "plan": config.plan,
        "hop": config.hop if config.plan in HOP_PLANS else None,  # other plans ignore it
        "views": config.views,
        "mean": list(encoder.mean),
        "std": list(encoder.std),
        "dtype": TOKEN_DTYPE.name,
        "tokens_version": TOKENS_VERSION,  # the code that makes tokens, not the package version
        # layout: a cache of the first N videos, or cut into other shards, is another cache
        "shard_size": config.shard_size,
        "limit": config.limit,
        "max_lost_frames": config.max_lost_frames,  # which partial decodes the cache holds
        "dedup_streams": config.dedup,  # identical video streams stored once (changes the layout)
    }
    if config.augment:  # only then: caches without copies keep their fingerprint and bytes
        settings["augment"] = {
            "copies": config.augment,
            "seed": config.augment_seed,
            "recipe": augment.RECIPE,
            "version": augment.VERSION,
        }
    if config.plan in DRAW_PLANS:  # the training draws (V-JEPA plans have none: no key)
        settings["train_draws"] = {
            "draws": config.train_draws,
            "seed": config.augment_seed,
            "version": DRAWS_VERSION,
        }
    if config.plan in HOP_PLANS:  # a v1 `windows` cache held other frames: never reuse it
        settings["windows_version"] = WINDOWS_VERSION
    # Only a face crop adds a key: whole-frame caches keep the fingerprint (and bytes) they had.
    if (face := face_settings(config.face())) is not None:
        settings["face_crop"] = face
    if not (store := StoreFormat.parse(config.store)).plain:  # likewise: fp16 adds nothing
        settings["store_format"] = str(store)
    if config.modality is not None:  # the videos held; as the others, only when set
        settings["modality"] = config.modality
    if config.max_frame_pixels != MAX_FRAME_PIXELS:  # which frames are lost: only when changed
        settings["max_frame_pixels"] = config.max_frame_pixels
    if config.protocol not in (None, PAPER.name):  # the paper's preset is today's cache
        settings["protocol"] = config.protocol
    if config.list_file is not None:  # a list file decides labels and folds: its content counts
        identity = list_identity(config.list_file)
        settings["list"] = {**asdict(identity), "classes": list(identity.classes)}
    if (blocks := stored_blocks(config, encoder)) is not None:  # likewise: the last block alone
        # "norm": what each block's output passed through (vjfer.encoders.registry.Built)
        settings["layers"] = {
            "blocks": list(blocks),
            "depth": encoder.depth,
            "norm": encoder.layer_norm,
        }
    return settings


def config_record(config: ExtractConfig) -> dict:
    """`asdict(config)` with paths as strings: written into the manifest.

    Without a face crop the face options are left out, so a whole-frame cache's manifest stays
    byte-identical to one written before face crops existed.
    """
    record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    if config.face_crop == "none":
        for key in ("face_crop", "face_fallback", "face_margin"):
            del record[key]
    if StoreFormat.parse(config.store).plain:  # as for face crops: fp16 manifests stay as they were
        del record["store"]
    if not config.trust_size_mtime:  # recorded when asked for; default manifests stay as they were
        del record["trust_size_mtime"]
    if config.layers in (None, (-1,)):  # likewise: the encoder's output alone (stored_blocks)
        del record["layers"]
    if config.list_file is None:  # only a list dataset has one
        del record["list_file"]
    if config.protocol is None:  # likewise: a preset is recorded when one was named
        del record["protocol"]
    if config.max_frame_pixels == MAX_FRAME_PIXELS:  # likewise
        del record["max_frame_pixels"]
    if config.modality is None:  # likewise: RAVDESS's both modalities, as before the option
        del record["modality"]
    if config.frame_step is None:  # likewise: default manifests stay as they were
        del record["frame_step"]
    if config.plan not in DRAW_PLANS:  # only the loaders' plans draw training clips
        del record["train_draws"]
    return record


# Options a resume must not repeat: --force deletes the shards the resume means to keep.
NOT_RESUMED = ("force",)
FIRST_OPTIONS = ("dataset", "root", "encoder", "cache_root")  # always printed, in this order
RENAMED = {"cache_root": "--cache", "list_file": "--list"}  # fields whose option is not their name


def option_name(field: str) -> str:
    """The `vjfer extract` option of an `ExtractConfig` field (tests/test_extract_resume_command.py
    checks that the CLI declares exactly these): `--cache` for `cache_root`, `--list` for
    `list_file` (as `vjfer index` calls it), else the field with dashes."""
    return RENAMED.get(field, "--" + field.replace("_", "-"))


def command_words(config: ExtractConfig) -> list[str]:
    """The `vjfer extract` command (as words) that re-creates `config`: the dataset, its root, the
    encoder and the cache root, then every other option whose value differs from its default, so
    an option added to `ExtractConfig` (and the CLI) enters the command with no edit here."""
    defaults = {f.name: f.default for f in fields(ExtractConfig)}
    words = ["vjfer", "extract"]
    for name in (*FIRST_OPTIONS, *(n for n in defaults if n not in FIRST_OPTIONS)):
        value = getattr(config, name)
        if name in NOT_RESUMED or (name not in FIRST_OPTIONS and value == defaults[name]):
            continue
        if isinstance(value, bool):  # a flag: --x turns on a False default, --no-x turns off True
            words.append(option_name(name) if value else option_name(f"no_{name}"))
        elif isinstance(value, (tuple, list)):  # a comma list (--layers 0,-1)
            words += [option_name(name), ",".join(map(str, value))]
        elif value is not None:
            words += [option_name(name), str(value)]
    return words
