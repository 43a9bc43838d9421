"""Store formats of the token array: how a cache keeps each clip's tokens on disk, and back.

A format chains up to three steps, in this order, on float16 tokens [C, V, N, D] (N over a (t, h, w)
grid): `pool2` (2×2 mean over (h, w); odd h or w refused), `pca:K` (tokens minus a mean, times a
basis [D, K] of the training tokens' top-K directions) and a number format: `fp16`, `int8` or `fp8`
(e4m3), both with one float16 scale per token. Stated error of a value x with stored scale s:
int8 |x̂ − x| ≤ s/2; fp8 |x̂ − x| ≤ 2^-4·|x| + 2^-10·s (tests/test_store.py). `str()` is the
canonical spelling (`pool2+int8`). The table, sizes and chains: docs/stage2.md, "Compact caches".

A clip's checksum covers its token bytes then its scale bytes, so the stage-2 reader reads both into
one buffer and `decode_raw` dequantizes on whichever device the buffer was copied to. Every function
is pure and works on CPU or GPU tensors, so extraction, conversion, prediction and the readers share
one code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import torch

from vjfer.errors import ConfigError

Number = Literal["fp16", "int8", "fp8"]
NUMBERS: tuple[str, ...] = ("fp16", "int8", "fp8")
DEFAULT = "fp16"
INT8_MAX = 127.0
FP8_MAX = 448.0  # largest finite float8 e4m3fn
SCALES = "token_scales"  # the shard dataset of per-token scales (int8, fp8)
PCA_BASIS = "pca_basis"  # float32 [D, K], in every shard of a pca cache
PCA_MEAN = "pca_mean"  # float32 [D]
_PCA = re.compile(r"^pca:(\d+)$")


@dataclass(frozen=True)
class StoreFormat:
    """A parsed store format; `StoreFormat.parse("pool2+int8")`."""

    pool: int = 1  # 1: none; 2: 2x2 spatial average
    pca: int = 0  # 0: none; K: project on K principal directions
    number: Number = "fp16"

    @classmethod
    def parse(cls, text: str) -> StoreFormat:
        pool, pca, number = 1, 0, None
        for step in (s.strip() for s in str(text).split("+")):
            if step == "pool2" and pool == 1:
                pool = 2
            elif (m := _PCA.match(step)) and pca == 0 and int(m[1]) >= 1:
                pca = int(m[1])
            elif step in NUMBERS and number is None:
                number = step
            else:
                raise ConfigError(
                    f"--store {text!r}: cannot read step {step!r}; a format joins with '+' at most "
                    f"one each of pool2, pca:K (K >= 1) and {'|'.join(NUMBERS)}, e.g. pool2+int8"
                )
        if number == "fp8" and not hasattr(torch, "float8_e4m3fn"):
            raise ConfigError(
                f"--store {text!r}: this torch {torch.__version__} has no float8_e4m3fn; use int8"
            )
        return cls(pool, pca, cast(Number, number or DEFAULT))

    def __str__(self) -> str:
        steps = ["pool2"] * (self.pool == 2) + [f"pca:{self.pca}"] * (self.pca > 0)
        number = [self.number] if self.number != DEFAULT or not steps else []
        return "+".join([*steps, *number])  # fp16 is implied after pool2 / pca

    @property
    def plain(self) -> bool:
        """Today's format: float16 tokens as the encoder gave them."""
        return str(self) == DEFAULT

    @property
    def scaled(self) -> bool:
        """Stores a float16 scale per token beside the values."""
        return self.number != "fp16"

    @property
    def dtype(self) -> np.dtype:
        """Numpy dtype of the stored token values (fp8 as its raw bytes)."""
        return np.dtype({"fp16": "float16", "int8": "int8", "fp8": "uint8"}[self.number])

    def grid(self, grid: tuple[int, int, int]) -> tuple[int, int, int]:
        """The stored token grid of tokens on `grid` (t, h, w); ConfigError when pool2 cannot."""
        t, h, w = grid
        if self.pool == 1:
            return (t, h, w)
        if h % 2 or w % 2:
            raise ConfigError(
                f"--store {self}: pool2 needs an even token grid, the encoder's is "
                f"(t, h, w) = {tuple(grid)}; choose a format without pool2"
            )
        return (t, h // 2, w // 2)

    def dim(self, embed_dim: int) -> int:
        """Stored values per token."""
        if self.pca > embed_dim:
            raise ConfigError(f"--store {self}: K = {self.pca} > the tokens' {embed_dim} dims")
        return self.pca or embed_dim

    def clip_nbytes(self, views: int, tokens: int, dim: int) -> tuple[int, int]:
        """(token bytes, scale bytes) of one stored clip of [views, tokens, dim] stored values."""
        values = views * tokens * dim * self.dtype.itemsize
        return values, views * tokens * 2 * self.scaled


# ---------------------------------------------------------------------------------------------
# The steps (pure; float32 math, CPU or GPU).


def pool2(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """[..., N, D] on `grid` (t, h, w) -> [..., N/4, D] on (t, h/2, w/2), float32 means."""
    t, h, w = grid
    *lead, N, D = tokens.shape
    assert N == t * h * w, f"N={N} is not the grid {grid}"
    x = tokens.float().reshape(*lead, t, h // 2, 2, w // 2, 2, D)
    return x.mean(dim=(-4, -2)).reshape(*lead, t * (h // 2) * (w // 2), D)


def project(tokens: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [..., K]: (x - mean) @ basis, float32."""
    return (tokens.float() - mean.to(tokens.device)) @ basis.to(tokens.device)


def quantize(x: torch.Tensor, number: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """float [..., D] -> (stored values [..., D], float16 scales [...] or None for fp16).

    The scale is rounded to float16 *before* dividing, so decoding with the stored scale inverts
    exactly what was encoded. A scale that float16 rounds down by more than its normal rounding
    (below float16's normal range: tokens whose largest |x| is under 2^-14 · top) is moved up
    one float16 step, so the token's largest value still fits and no value is clipped; tokens of
    a larger |x| keep the scale they always had. An all-zero token gets scale 0 and decodes to
    zeros.
    """
    if number == "fp16":
        return x.to(torch.float16), None
    top = INT8_MAX if number == "int8" else FP8_MAX
    exact = x.float().abs().amax(dim=-1) / top  # [...]
    scale = exact.to(torch.float16)
    low = scale.float() < exact * (1 - 2**-10)  # float16's normal rounding is within 2^-11
    scale = torch.where(low, torch.nextafter(scale, torch.full_like(scale, torch.inf)), scale)
    divisor = torch.where(scale > 0, scale.float(), torch.ones_like(scale, dtype=torch.float32))
    y = x.float() / divisor.unsqueeze(-1)
    if number == "int8":
        return y.round().clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale
    return y.clamp_(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).view(torch.uint8), scale


def dequantize(values: torch.Tensor, scales: torch.Tensor | None, number: str) -> torch.Tensor:
    """Stored values [..., D] (and scales [...]) -> float16 [..., D]."""
    if number == "fp16":
        return values.view(torch.float16)
    x = values.view(torch.int8 if number == "int8" else torch.float8_e4m3fn).float()
    if scales is None:
        raise ValueError(f"{number} values need their per-token scales")
    return (x * scales.view(torch.float16).float().unsqueeze(-1)).to(torch.float16)


def encode(
    tokens: torch.Tensor,
    fmt: StoreFormat,
    grid: tuple[int, int, int],
    basis: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encoder tokens [..., N, D] (float16) -> stored (values [..., N', D'], scales [..., N'] or
    None); `basis` is (basis [D, K], mean [D]) for pca formats."""
    x = pool2(tokens, grid) if fmt.pool == 2 else tokens
    if fmt.pca:
        if basis is None:
            raise ConfigError(f"store format {fmt} needs its PCA basis")
        x = project(x, *basis)
    return quantize(x, fmt.number)


def transform(
    tokens: torch.Tensor,
    fmt: StoreFormat,
    grid: tuple[int, int, int],
    basis: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Encoder tokens -> float16 tokens as a reader of a `fmt` cache sees them (predict's path)."""
    values, scales = encode(tokens, fmt, grid, basis)
    return dequantize(values, scales, fmt.number)


def decode_raw(raw: torch.Tensor, fmt: StoreFormat, shape: tuple[int, int, int]) -> torch.Tensor:
    """Raw clip buffers -> float16 tokens [C, V, N', D'] (on raw's device).

    `raw` is what the stage-2 reader delivers: float16 [C, V, N', D'] for fp16 caches (returned as
    is), else uint8 [C, token bytes + scale bytes] (a clip's token chunk then its scale chunk).
    """
    V, N, D = shape
    C = raw.shape[0]
    if fmt.number == "fp16":
        return raw if raw.dtype == torch.float16 else raw.view(torch.float16).view(C, V, N, D)
    values_bytes, _ = fmt.clip_nbytes(V, N, D)
    values = raw[:, :values_bytes].contiguous().view(C, V, N, D)
    scales = raw[:, values_bytes:].contiguous().view(torch.float16).view(C, V, N)
    return dequantize(values, scales, fmt.number)


@dataclass(frozen=True)
class Codec:
    """What a shard writer needs to store encoder tokens in a format: the format, the encoder's
    grid (pool2 needs it), for pca the basis [D, K] and mean [D] (float32), and the encoder
    blocks stacked along each clip's token axis (`extract --layers`: N = layers · t·h·w)."""

    fmt: StoreFormat
    grid: tuple[int, int, int]
    basis: np.ndarray | None = None
    mean: np.ndarray | None = None
    layers: int = 1

    def encode(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """float16 [..., N, D] -> (stored values [..., N', D'], fp16 scales [..., N'] or None)."""
        pca = (torch.from_numpy(self.basis), torch.from_numpy(self.mean)) if self.fmt.pca else None
        # L stacked layers pool as a grid of L·t frames: pool2 averages within (h, w) only
        t, h, w = self.grid
        x = torch.from_numpy(np.ascontiguousarray(tokens))
        values, scales = encode(x, self.fmt, (self.layers * t, h, w), pca)
        return values.numpy(), None if scales is None else scales.numpy()

    def header(self, embed_dim: int) -> dict:
        """The shard attribute `store`: format and the encoder's token shape it was made from."""
        return {"format": str(self.fmt), "grid": list(self.grid), "embed_dim": embed_dim}


def check_store_folds(cache, folds: list[int]) -> None:
    """Refuse testing a fold whose videos shaped a pca cache's basis (vjfer.convert: the design)."""
    if "store_pca" not in cache.settings:
        return
    test_fold = cache.settings["store_pca"]["test_fold"]
    if bad := [k for k in folds if k != test_fold]:
        raise ConfigError(
            f"cache {cache.path} is stored as {cache.store} with a basis fitted on the videos "
            f"outside fold {test_fold}: testing fold(s) {bad} would test on videos the basis saw; "
            f"probe it with --fold {test_fold} (convert with --pca-fold K for fold K)"
        )
