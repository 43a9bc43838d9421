"""The reference's training augmentation of a clip, made once at extraction
(`vjfer extract --augment K`).

Eing et al.'s code (vjepa-for-fer, a fork of facebookresearch/jepa) re-augments every training clip
every epoch (`evals/video_classification_frozen/utils.py` `VideoTransform`):

1. RandAugment `rand-m7-n4-mstd0.5-inc1` on the native frames (`src/datasets/utils/video/
   randaugment.py`, after timm's): 4 of the 15 "increasing" ops drawn with replacement, each at
   p 0.5 and magnitude N(7, 0.5) clipped to 0..10, with a random sign where the op has one. One
   draw serves all 16 frames (`AugmentOp` gets the clip's frame list); ops that read image
   statistics (auto-contrast, equalize, contrast) take them per frame, as PIL does. Geometric ops
   resample bicubically and fill with grey 128.
2. ToTensor and ImageNet normalisation.
3. `random_resized_crop`: one box per clip, area 0.08-1.0 of the native frame, aspect 3/4-4/3
   (log-uniform), 10 tries then a centre fallback; bilinear (align_corners=False, no antialiasing)
   to R x R. No flip.
4. `RandomErasing(0.25, mode='pixel', max_count=1)`, cube=True: at p 0.25 one box (area 0.02-1/3,
   log-aspect 0.3-3.33, up to 100 tries) erased in every frame with N(0, 1) values.

Each of a sample's 8 clips is augmented independently, here from a generator seeded by (seed,
video, copy, clip), so a cache is reproducible. The ops are torch re-implementations of PIL's: the
same ops, arguments and draws, but the geometric ops' bicubic kernel is torch's (a = -0.75; PIL's
a = -0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vjfer.clips import video_key

MAX_LEVEL = 10.0
MAGNITUDE, MAGNITUDE_STD, NUM_OPS, OP_PROB = 7.0, 0.5, 4, 0.5  # rand-m7-n4-mstd0.5, p = 0.5 per op
FILL = 128  # the reference's grey fill of geometric ops
TRANSLATE_PCT = 0.45  # TranslateXRel / TranslateYRel at magnitude 10
# `_RAND_INCREASING_TRANSFORMS` (inc1), in the reference's order: the uniform draw indexes it
OPS = tuple(
    "AutoContrast Equalize Invert Rotate PosterizeIncreasing SolarizeIncreasing SolarizeAdd "
    "ColorIncreasing ContrastIncreasing BrightnessIncreasing SharpnessIncreasing ShearX ShearY "
    "TranslateXRel TranslateYRel".split()
)
CROP_SCALE, CROP_RATIO, CROP_TRIES = (0.08, 1.0), (3 / 4, 4 / 3), 10
ERASE_PROB, ERASE_AREA, ERASE_ASPECT, ERASE_TRIES = 0.25, (0.02, 1 / 3), (0.3, 1 / 0.3), 100
RECIPE = (
    "randaugment rand-m7-n4-mstd0.5-inc1 shared by a clip's frames; random-resized crop "
    "0.08-1 of the native frame, aspect 3/4-4/3, bilinear; no flip; cube erasing p 0.25, "
    "area 0.02-1/3, aspect 0.3-3.33, N(0,1)"
)  # recorded in the cache settings
VERSION = 1  # of this module's implementation: a change of pixels bumps it (and the fingerprint)
# PIL's ITU-R 601-2 luma, in its fixed-point form: L = (R·19595 + G·38470 + B·7471 + 2^15) >> 16
_LUMA = (19595, 38470, 7471)

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels


@dataclass(frozen=True)
class OpDraw:
    """One RandAugment op as drawn: its name and argument (None for the ops without one)."""

    name: str
    arg: float | None


@dataclass(frozen=True)
class ClipDraw:
    """Everything random about one augmented clip: the ops, the crop box, the erased box."""

    ops: tuple[OpDraw, ...]
    crop: Box  # of the native frame
    erase: Box | None  # of the R x R output; None: not erased (probability 0.75)
    noise_seed: int  # the erased pixels' N(0, 1) values


# ---------------------------------------------------------------------------- draws (pure)


def clip_rng(seed: int, video_id: str, copy: int, clip: int) -> np.random.Generator:
    """The generator of augmented copy `copy` of training clip `clip` of a video."""
    return np.random.default_rng([seed, video_key(video_id), copy, clip])


def _op_arg(name: str, magnitude: float, rng: np.random.Generator) -> float | None:
    """The reference's level-to-argument rule of op `name` (`LEVEL_TO_ARG`), sign drawn here."""
    level = magnitude / MAX_LEVEL
    sign = -1.0 if rng.random() > 0.5 else 1.0  # `_randomly_negate` (drawn for every op)
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return sign * level * 30.0  # degrees
    if name == "PosterizeIncreasing":
        return float(4 - int(level * 4))  # bits kept
    if name == "SolarizeIncreasing":
        return float(256 - int(level * 256))  # threshold
    if name == "SolarizeAdd":
        return float(int(level * 110))
    if name.endswith("Increasing"):  # Color, Contrast, Brightness, Sharpness: blend factor
        return 1.0 + sign * level * 0.9
    if name in ("ShearX", "ShearY"):
        return sign * level * 0.3
    return sign * level * TRANSLATE_PCT  # TranslateXRel / TranslateYRel: fraction of the side


def draw_ops(rng: np.random.Generator) -> tuple[OpDraw, ...]:
    """RandAugment's draw for one clip: the ops that fire, in order, with their arguments."""
    chosen = rng.integers(0, len(OPS), size=NUM_OPS)  # with replacement, uniform
    ops = []
    for index in chosen:
        if rng.random() > OP_PROB:
            continue
        magnitude = min(MAX_LEVEL, max(0.0, rng.normal(MAGNITUDE, MAGNITUDE_STD)))
        ops.append(OpDraw(OPS[index], _op_arg(OPS[index], magnitude, rng)))
    return tuple(ops)


def draw_crop(rng: np.random.Generator, height: int, width: int) -> Box:
    """`_get_param_spatial_crop`: a box of 0.08-1.0 of the frame's area, aspect 3/4-4/3."""
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_TRIES):
        target = rng.uniform(*CROP_SCALE) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    ratio = width / height  # fallback: the largest centred box within the aspect range
    if ratio < min(CROP_RATIO):
        w, h = width, int(round(width / min(CROP_RATIO)))
    elif ratio > max(CROP_RATIO):
        h, w = height, int(round(height * max(CROP_RATIO)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw_erase(rng: np.random.Generator, size: int, width: int | None = None) -> Box | None:
    """`RandomErasing._erase_cube` at probability 0.25: one box of the size x size clip (size x
    width when given), or None."""
    height, width = size, size if width is None else width
    if rng.random() > ERASE_PROB:
        return None
    log_aspect = (math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1]))
    for _ in range(ERASE_TRIES):
        target = rng.uniform(*ERASE_AREA) * height * width
        aspect = math.exp(rng.uniform(*log_aspect))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if w < width and h < height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return None


def draw_clip(rng: np.random.Generator, height: int, width: int, size: int) -> ClipDraw:
    """All draws of one clip, in the reference's order: ops, crop, erase."""
    ops = draw_ops(rng)
    crop = draw_crop(rng, height, width)
    erase = draw_erase(rng, size)
    return ClipDraw(ops, crop, erase, int(rng.integers(0, 2**63 - 1)))


# ---------------------------------------------------------------------------- ops on uint8 frames


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """PIL's float-to-8-bit: truncate toward zero, clip to 0..255."""
    return x.trunc().clamp_(0, 255).to(torch.uint8)


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """[T, H, W, 3] uint8 -> [T, H, W] uint8: PIL's convert("L")."""
    r, g, b = frames.int().unbind(-1)
    return ((r * _LUMA[0] + g * _LUMA[1] + b * _LUMA[2] + 32768) >> 16).to(torch.uint8)


def _blend(degenerate: torch.Tensor, frames: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ImageEnhance: degenerate + factor · (frames - degenerate), to 8 bits."""
    return _to_uint8(degenerate.float() + factor * (frames.float() - degenerate.float()))


def _autocontrast(frames: torch.Tensor) -> torch.Tensor:
    """Per frame and channel, stretch min..max to 0..255 (ImageOps.autocontrast, cutoff 0)."""
    lo = frames.amin(dim=(1, 2), keepdim=True).double()  # float64, as PIL's Python arithmetic
    hi = frames.amax(dim=(1, 2), keepdim=True).double()
    scale = torch.where(hi > lo, 255.0 / (hi - lo).clamp(min=1), torch.ones_like(hi))
    offset = torch.where(hi > lo, -lo * scale, torch.zeros_like(lo))
    return _to_uint8(frames.double() * scale + offset)


def _equalize(frames: torch.Tensor) -> torch.Tensor:
    """Per frame and channel, histogram equalisation with PIL's lookup table (ImageOps.equalize)."""
    out = frames.clone()
    for t in range(frames.shape[0]):
        for c in range(3):
            channel = frames[t, :, :, c]
            hist = torch.bincount(channel.flatten().long(), minlength=256)
            nonzero = hist[hist > 0]
            step = (int(hist.sum()) - int(nonzero[-1])) // 255
            if step == 0:
                continue
            # lut[i] = (step // 2 + hist[0] + ... + hist[i - 1]) // step
            before = torch.cumsum(hist, 0) - hist
            lut = ((step // 2 + before) // step).clamp(max=255).to(torch.uint8)
            out[t, :, :, c] = lut[channel.long()]
    return out


def _smooth(frames: torch.Tensor) -> torch.Tensor:
    """PIL's ImageFilter.SMOOTH (3 x 3, centre 5, others 1, / 13); border pixels unchanged."""
    x = frames.permute(0, 3, 1, 2).float().reshape(-1, 1, *frames.shape[1:3])  # [T·3, 1, H, W]
    kernel = torch.ones(1, 1, 3, 3)
    kernel[0, 0, 1, 1] = 5.0
    inner = F.conv2d(x, kernel / 13.0)  # [T·3, 1, H-2, W-2]
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = (inner + 0.5).floor()  # PIL rounds filter results
    return out.reshape(frames.shape[0], 3, *frames.shape[1:3]).permute(0, 2, 3, 1)


def _affine(frames: torch.Tensor, matrix: tuple[float, ...]) -> torch.Tensor:
    """PIL's Image.transform(AFFINE, (a, b, c, d, e, f)), bicubic, grey fill: output pixel centre
    (x, y) samples the input at (a·x + b·y + c, d·x + e·y + f)."""
    T, H, W, _ = frames.shape
    a, b, c, d, e, f = matrix
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    src_x, src_y = a * xs + b * ys + c, d * xs + e * ys + f
    grid = torch.stack([2 * src_x / W - 1, 2 * src_y / H - 1], dim=-1)  # align_corners=False
    x = frames.permute(0, 3, 1, 2).float() - FILL  # outside the frame samples 0, i.e. FILL
    # padding "zeros" (the default): outside the frame samples 0
    out = F.grid_sample(x, grid[None].expand(T, -1, -1, -1), mode="bicubic", align_corners=False)
    inside = F.grid_sample(torch.ones(1, 1, H, W), grid[None], mode="nearest", align_corners=False)
    out = torch.where(inside > 0, out, torch.zeros_like(out)) + FILL
    return out.round().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


def _rotation_matrix(degrees: float, width: int, height: int) -> tuple[float, ...]:
    """PIL's rotate(degrees) (counter-clockwise about the centre) as an inverse affine map."""
    angle = -math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    return (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)


def apply_op(frames: torch.Tensor, op: OpDraw) -> torch.Tensor:
    """One RandAugment op on every frame of a clip: uint8 [T, H, W, 3] -> uint8 [T, H, W, 3]."""
    T, H, W, _ = frames.shape
    name, arg = op.name, op.arg
    if name not in OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; known: {OPS}")
    if name == "AutoContrast":
        return _autocontrast(frames)
    if name == "Equalize":
        return _equalize(frames)
    if name == "Invert":
        return 255 - frames
    if arg is None:  # every op below takes an argument
        raise ValueError(f"RandAugment op {name!r} needs an argument, got None")
    if name == "PosterizeIncreasing":
        bits = int(arg)
        return frames if bits >= 8 else frames & ((0xFF << (8 - bits)) & 0xFF)
    if name == "SolarizeIncreasing":
        return torch.where(frames >= int(arg), 255 - frames, frames)
    if name == "SolarizeAdd":
        added = (frames.int() + int(arg)).clamp(max=255).to(torch.uint8)
        return torch.where(frames < 128, added, frames)
    if name == "ColorIncreasing":
        return _blend(_luma(frames)[..., None].expand_as(frames), frames, arg)
    if name == "ContrastIncreasing":
        mean = (_luma(frames).float().mean(dim=(1, 2)) + 0.5).floor()  # per frame, as PIL
        return _blend(mean.view(T, 1, 1, 1).expand_as(frames), frames, arg)
    if name == "BrightnessIncreasing":
        return _blend(torch.zeros_like(frames), frames, arg)
    if name == "SharpnessIncreasing":
        return _blend(_smooth(frames), frames, arg)
    if name == "Rotate":
        return _affine(frames, _rotation_matrix(arg, W, H))
    if name == "ShearX":
        return _affine(frames, (1, arg, 0, 0, 1, 0))
    if name == "ShearY":
        return _affine(frames, (1, 0, 0, arg, 1, 0))
    if name == "TranslateXRel":
        return _affine(frames, (1, 0, arg * W, 0, 1, 0))
    if name == "TranslateYRel":
        return _affine(frames, (1, 0, 0, 0, 1, arg * H))
    raise AssertionError(f"RandAugment op {name!r} is in OPS but has no branch in apply_op")


# ---------------------------------------------------------------------------- one clip


def augment_clip(
    frames: np.ndarray | torch.Tensor,
    draw: ClipDraw,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """The reference's training view of one clip: native uint8 frames [T, H, W, 3] -> normalised
    float32 [3, T, size, size] (RandAugment, normalise, random-resized crop, cube erasing)."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    for op in draw.ops:
        x = apply_op(x, op)
    mean_t = torch.tensor(mean).view(3, 1, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1, 1)
    top, left, h, w = draw.crop
    crop = x[:, top : top + h, left : left + w].permute(3, 0, 1, 2).float()  # [3, T, h, w]
    crop = (crop / 255.0 - mean_t) / std_t
    out = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
    if draw.erase is not None:
        top, left, h, w = draw.erase
        noise = torch.Generator().manual_seed(draw.noise_seed)
        T = out.shape[1]  # every frame erased in the same box, each with its own noise
        values = torch.randn((T, 3, h, w), generator=noise)
        out[:, :, top : top + h, left : left + w] = values.transpose(0, 1)
    return out.contiguous()


def augment_video_clips(
    native: np.ndarray,
    clip_frames: np.ndarray,
    video_id: str,
    copies: int,
    seed: int,
    size: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> torch.Tensor:
    """`copies` augmented copies of a video's training clips, copy by copy:
    native frames uint8 [U, H, W, 3] (the frames the clips use, in index order), clip_frames
    int [8, 16] indices into them -> float32 [copies · 8, 3, 16, size, size]."""
    H, W = native.shape[1:3]
    out = []
    for copy in range(copies):
        for k, indices in enumerate(clip_frames):
            draw = draw_clip(clip_rng(seed, video_id, copy, k), H, W, size)
            out.append(augment_clip(native[indices], draw, size, mean, std))
    return torch.stack(out)
