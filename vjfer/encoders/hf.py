"""V-JEPA 2 through `transformers.VJEPA2Model`, from a local Hugging Face directory (optional
extra).

Only the encoder runs (`skip_predictor=True`); its `last_hidden_state` is the token output. Its 3-D
RoPE assumes a `crop_size // patch_size` square grid, so the input must be exactly crop_size²; any
frame count that is a multiple of `tubelet_size` is valid. The transformers helpers here (import
with an install hint, quiet loading, the directory's sha256) serve `videomae.py` too.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vjfer.digests import sha256_file
from vjfer.errors import CheckpointError, ConfigError
from vjfer.files import read_json_object
from vjfer.schemas import HfConfig
from vjfer.torchfile import refused_pickle

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'vjfer[hf]'"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def import_transformers():
    """The transformers module, or a ConfigError that says how to install it."""
    try:
        import transformers
    except ImportError as err:
        raise ConfigError(
            f"V-JEPA 2, VideoMAE and the image encoders need transformers: {INSTALL_HINT}"
        ) from err
    return transformers


@contextlib.contextmanager
def no_progress_bars(transformers) -> Iterator[None]:
    """transformers' "Loading weights" bar off while loading (it writes to stderr beside vjfer's
    own output, e.g. `vjfer predict --json`); the caller's setting is restored."""
    hf_logging = transformers.utils.logging
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def sha256_hf_directory(directory: Path) -> str:
    """SHA-256 over config.json and the weight files of a Hugging Face model directory."""
    files = sorted(
        p for p in directory.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES
    )
    listing = "".join(f"{p.name}\0{sha256_file(p)}\n" for p in files)
    return hashlib.sha256(listing.encode()).hexdigest()


class _Enough(Exception):
    """Raised by the hook of the deepest wanted block: the blocks after it need not run."""


def block_outputs(
    layers: nn.ModuleList,
    blocks: tuple[int, ...],
    norm: nn.Module | None,
    forward: Callable[[], object],
) -> Tensor:
    """The outputs of `layers[i]` for i in `blocks` (ascending) while `forward()` runs, each
    through `norm` (None: as they are) -> [B, L, N, D].

    Forward hooks read the blocks' outputs (a layer returns a tensor or a tuple whose first item
    is it); the pass stops after the deepest wanted block.
    """
    outs: dict[int, Tensor] = {}

    def hook(i: int):
        def keep(module, args, output) -> None:
            outs[i] = output[0] if isinstance(output, tuple) else output
            if i == blocks[-1]:
                raise _Enough

        return keep

    handles = [layers[i].register_forward_hook(hook(i)) for i in blocks]
    try:
        forward()
    except _Enough:
        pass
    finally:
        for handle in handles:
            handle.remove()
    stacked = torch.stack([outs[i] for i in blocks], dim=1)  # [B, L, N, D]
    return stacked if norm is None else norm(stacked)


class VJEPA2Backbone(nn.Module):
    """vjfer layout [B, 3, T, H, W] -> `VJEPA2Model(..., skip_predictor=True).last_hidden_state`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # transformers' VJEPA2Config; nn.Module's __getattr__ would type it as Tensor | Module
        config: Any = model.config
        self.crop_size: int = config.crop_size
        self.patch_size: int = config.patch_size
        self.tubelet: int = config.tubelet_size
        self.hidden_size: int = config.hidden_size
        self.depth: int = config.num_hidden_layers

    def forward(self, x: Tensor, blocks: tuple[int, ...] | None = None) -> Tensor:
        """[B, 3, T, H, W] -> [B, N, D]; with `blocks`, those blocks' outputs through the
        encoder's final layernorm, [B, L, N, D], as vjepa2's multilevel eval wrapper takes them."""
        B, C, T, H, W = x.shape
        if H != self.crop_size or W != self.crop_size or T % self.tubelet:
            raise ValueError(
                f"V-JEPA 2 input [B, C, T, H, W] = {list(x.shape)}: H and W must equal crop_size "
                f"{self.crop_size}, T must divide by tubelet_size {self.tubelet}"
            )
        videos = x.transpose(1, 2)  # pixel_values_videos is [B, T, C, H, W]
        if blocks is None:
            return self.model(pixel_values_videos=videos, skip_predictor=True).last_hidden_state
        encoder: Any = self.model.encoder
        return block_outputs(
            encoder.layer,
            blocks,
            encoder.layernorm,
            lambda: self.model(pixel_values_videos=videos, skip_predictor=True),
        )


def load_local_model(class_name: str, directory: Path, what: str) -> tuple[Any, dict]:
    """`transformers.<class_name>.from_pretrained` from a local directory only, float32, quietly:
    (model, loading info with missing/unexpected keys); CheckpointError naming the directory."""
    transformers = import_transformers()
    try:
        with no_progress_bars(transformers), warnings.catch_warnings():
            # torch's note on a pickle's protocol, before it refuses what the pickle holds
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            return getattr(transformers, class_name).from_pretrained(
                directory, local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
    except pickle.UnpicklingError as err:  # a pytorch_model.bin that pickles more than tensors
        raise refused_pickle(directory, err) from None
    except (OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{directory}: cannot load {what}: {err}") from err


def load_vjepa2(directory: str | Path) -> tuple[VJEPA2Backbone, str]:
    """Load `VJEPA2Model` from a local directory (no network); returns (backbone, sha256)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{directory}: is not a Hugging Face model directory (no config.json); V-JEPA 2 "
            "needs a local directory such as a download of facebook/vjepa2-vitl-fpc64-256"
        )
    model_type = read_json_object(config_path, CheckpointError, schema=HfConfig).get("model_type")
    if model_type != "vjepa2":
        raise CheckpointError(
            f"{directory}: holds another architecture: model_type {model_type!r}, expected 'vjepa2'"
        )
    model, info = load_local_model("VJEPA2Model", directory, "V-JEPA 2")
    if missing := [k for k in info["missing_keys"] if k.startswith("encoder.")]:
        raise CheckpointError(
            f"{directory}: holds another architecture: {len(missing)} encoder weights missing, "
            f"first {sorted(missing)[:5]}"
        )
    return VJEPA2Backbone(model), sha256_hf_directory(directory)
