"""vjfer.store: parsing, round-trip error bounds per format, pool2's grid, raw-buffer decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjfer.errors import ConfigError
from vjfer.store import (
    Codec,
    StoreFormat,
    decode_raw,
    dequantize,
    encode,
    pool2,
    quantize,
    transform,
)


def _tokens(shape=(3, 2, 32, 64), seed=0) -> torch.Tensor:
    """Gaussian-like float16 tokens with a per-token scale spread (as encoder outputs have)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * torch.rand((*shape[:-1], 1), generator=g).add(0.2) * 3
    return x.to(torch.float16)


def _rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize(
    "text, canonical, pool, pca, number",
    [
        ("fp16", "fp16", 1, 0, "fp16"),
        ("int8", "int8", 1, 0, "int8"),
        ("pool2", "pool2", 2, 0, "fp16"),
        ("int8+pool2", "pool2+int8", 2, 0, "int8"),
        ("pool2+pca:32+fp8", "pool2+pca:32+fp8", 2, 32, "fp8"),
        ("pca:8+fp16", "pca:8", 1, 8, "fp16"),
    ],
)
def test_parse_and_canonical_spelling(text, canonical, pool, pca, number):
    fmt = StoreFormat.parse(text)
    assert (fmt.pool, fmt.pca, fmt.number, str(fmt)) == (pool, pca, number, canonical)
    assert StoreFormat.parse(str(fmt)) == fmt


@pytest.mark.parametrize("text", ["int4", "pool3", "int8+int8", "pca:0", "pca:x", "pool2+pool2"])
def test_parse_refuses_unknown_steps(text):
    with pytest.raises(ConfigError, match=r"--store .*cannot read step .*e\.g\. pool2\+int8"):
        StoreFormat.parse(text)


@pytest.mark.parametrize("number, bound", [("int8", 0.01), ("fp8", 0.04), ("fp16", 1e-9)])
def test_round_trip_error_bounds(number, bound):
    x = _tokens()
    values, scales = quantize(x.float(), number)
    y = dequantize(values, scales, number)
    assert y.dtype == torch.float16 and y.shape == x.shape
    assert _rel_l2(y, x) < bound
    if number == "int8":  # stored bytes: 1 a value, scales fp16 per token
        assert values.dtype == torch.int8 and scales.shape == x.shape[:-1]
        assert int(values.abs().max()) == 127  # the largest |x| of a token maps to 127
        assert _rel_l2(y, x) > 1e-4  # it is quantized
    if number == "fp8":
        assert values.dtype == torch.uint8


def test_int8_zero_token_and_exact_scale():
    x = torch.zeros(2, 4, 8)
    x[0, 1] = torch.arange(8) - 4.0
    values, scales = quantize(x, "int8")
    y = dequantize(values, scales, "int8")
    assert float(scales[1, 0]) == 0 and (y[1] == 0).all() and torch.isfinite(y).all()
    assert float(scales[0, 1]) == pytest.approx(4 / 127, rel=1e-3)


def _wide_tokens() -> torch.Tensor:
    """float16 tokens [T, 64] whose largest |x| runs from 6e4 (far above fp8's 448) down to 2e-7
    (far below its smallest normal 2^-6, and scales below float16's normal range)."""
    g = torch.Generator().manual_seed(3)
    top = torch.logspace(4.8, -6.7, 96, dtype=torch.float64)  # [T]: the token's largest |x|
    x = (torch.rand(96, 64, generator=g, dtype=torch.float64) * 2 - 1) * top[:, None]
    x[:, 0] = top  # each token reaches its largest |x|
    return x.to(torch.float16)


def _stored(values: torch.Tensor, scales: torch.Tensor, number: str) -> torch.Tensor:
    """What the stored bytes mean before the decoded value is rounded to float16: float64."""
    raw = values.view(torch.int8 if number == "int8" else torch.float8_e4m3fn).double()
    return raw * scales.double()[:, None]


@pytest.mark.parametrize("number", ["int8", "fp8"])
def test_scaled_formats_keep_their_stated_error_over_the_float16_range(number):
    """int8 |x̂ − x| ≤ s/2, fp8 |x̂ − x| ≤ 2^-4·|x| + 2^-10·s (vjfer.store), with s the token's
    stored scale, which may not be far from max|x| / top: without a per-token scale fp8 clips
    the large tokens and flushes the small ones to zero."""
    x = _wide_tokens()
    values, scales = quantize(x.float(), number)
    top = 127.0 if number == "int8" else 448.0
    exact = x.double().abs().amax(dim=-1) / top
    s = scales.double()
    assert (s >= exact * (1 - 2**-10)).all() and (s <= exact * 1.5 + 2**-24).all()
    err = (_stored(values, scales, number) - x.double()).abs()
    bound = s[:, None] / 2 if number == "int8" else 2**-4 * x.double().abs() + 2**-10 * s[:, None]
    worst = (err / bound).max()
    assert worst <= 1 + 1e-9, f"{number}: error {float(worst):.3f} × the stated bound"
    y = dequantize(values, scales, number).double()  # then float16's own rounding of x̂
    assert ((y - x.double()).abs() <= bound * (1 + 1e-9) + 2**-11 * y.abs() + 2**-25).all()


@pytest.mark.parametrize("number", ["int8", "fp8"])
def test_the_scale_is_rounded_before_dividing(number):
    """The stored value is x divided by the *stored* (float16) scale, rounded to the format: so
    int8's q is the integer nearest x / s for the s in the file (dividing by the exact scale and
    storing its float16 rounding misses by up to 2^-11·127 steps, more for small scales)."""
    x = _wide_tokens()
    values, scales = quantize(x.float(), number)
    y = x.double() / scales.double()[:, None]
    stored = _stored(values, scales, number) / scales.double()[:, None]
    if number == "int8":
        assert ((stored - y).abs() <= 0.5 + 1e-9).all()
    else:  # fp8 rounds y to the nearest e4m3 value
        nearest = y.float().to(torch.float8_e4m3fn).double()
        assert torch.equal(stored, nearest)


def test_pool2_averages_2x2_blocks_on_the_grid():
    grid = (2, 4, 6)  # t, h, w -> N = 48
    t = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 48, 1).expand(1, 48, 3)
    pooled = pool2(t, grid)
    assert pooled.shape == (1, 2 * 2 * 3, 3)
    # token (t=0, h=0..1, w=0..1) = indices 0, 1, 6, 7
    assert float(pooled[0, 0, 0]) == (0 + 1 + 6 + 7) / 4
    # token (t=1, h=2..3, w=4..5) = 24 + {16, 17, 22, 23}: the last pooled token
    assert float(pooled[0, -1, 0]) == 24 + (16 + 17 + 22 + 23) / 4
    fmt = StoreFormat.parse("pool2+int8")
    assert fmt.grid((8, 4, 4)) == (8, 2, 2) and fmt.grid((8, 24, 24)) == (8, 12, 12)


def test_pool2_refuses_an_odd_grid():
    with pytest.raises(ConfigError, match=r"pool2 needs an even token grid.*\(8, 5, 4\)"):
        StoreFormat.parse("pool2").grid((8, 5, 4))


def test_pca_projects_on_the_basis():
    x = _tokens((2, 1, 8, 16))
    basis, mean = torch.eye(16)[:, :4], torch.full((16,), 0.5)
    values, scales = encode(x, StoreFormat.parse("pca:4"), (2, 2, 2), (basis, mean))
    assert scales is None and values.shape == (2, 1, 8, 4)
    torch.testing.assert_close(values.float(), (x.float() - 0.5)[..., :4], atol=2e-3, rtol=1e-3)
    with pytest.raises(ConfigError, match="needs its PCA basis"):
        encode(x, StoreFormat.parse("pca:4"), (2, 2, 2))
    with pytest.raises(ConfigError, match="K = 32 > the tokens' 16 dims"):
        StoreFormat.parse("pca:32").dim(16)


@pytest.mark.parametrize("text", ["int8", "fp8", "pool2+int8", "pool2"])
def test_raw_clip_buffers_decode_as_transform(text):
    """The reader's buffer (token bytes, then scale bytes, per clip) decodes to what `transform`
    gives for the same encoder tokens: prediction and training see the same numbers."""
    fmt, grid = StoreFormat.parse(text), (2, 4, 4)
    x = _tokens((3, 2, 32, 64)).numpy()
    values, scales = Codec(fmt, grid).encode(x)
    V, N, D = 2, 32 // fmt.pool**2, 64
    parts = [values.reshape(3, -1).view(np.uint8)]
    if scales is not None:
        parts.append(scales.reshape(3, -1).view(np.uint8))
    raw = torch.from_numpy(np.concatenate(parts, axis=1))
    assert raw.shape[1] == sum(fmt.clip_nbytes(V, N, D))
    got = decode_raw(raw, fmt, (V, N, D))
    assert got.dtype == torch.float16 and got.shape == (3, V, N, D)
    torch.testing.assert_close(got, transform(torch.from_numpy(x), fmt, grid), rtol=0, atol=0)


def test_clip_bytes_per_format():
    V, N, D = 1, 4608, 1280  # ViT-H/16 at 384
    fp16 = sum(StoreFormat.parse("fp16").clip_nbytes(V, N, D))
    assert fp16 == 11_796_480
    assert sum(StoreFormat.parse("int8").clip_nbytes(V, N, D)) == N * D + N * 2  # 0.502 of fp16
    assert sum(StoreFormat.parse("pool2+int8").clip_nbytes(V, N // 4, D)) == (N // 4) * (D + 2)
