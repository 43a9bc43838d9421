"""vjfer.augment: the reference's training augmentation on real decoded frames: determinism, one
draw shared by a clip's frames, the op semantics, the crop and erase draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vjfer import augment as A
from vjfer.clips import plan_clips, video_key
from vjfer.decode import decode_native, decode_video
from vjfer.prepare import IMAGENET_MEAN, IMAGENET_STD
from vjfer.synthetic import make_ravdess

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

R = 32


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A real generated RAVDESS video (H.264, 160 x 90): its training clips' native frames."""
    root = tmp_path_factory.mktemp("aug")
    (path,) = make_ravdess(root, actors=(1,), emotions=(3,), modalities=(2,), vocal_channels=(1,))
    n = decode_video(path, 16).n_frames
    train = plan_clips(n, "reference-train")
    used = np.unique(train)
    return decode_native(path, used), np.searchsorted(used, train)


def _clips(native, video="01-x", copies=2, seed=0):
    frames, local = native
    return A.augment_video_clips(frames, local, video, copies, seed, R, IMAGENET_MEAN, IMAGENET_STD)


def test_native_frames_are_the_frames_the_views_come_from(native, tmp_path):
    frames, _ = native
    assert frames.dtype == np.uint8 and frames.shape[1:] == (90, 160, 3)


def test_same_seed_same_pixels_and_copies_differ(native):
    a, b = _clips(native), _clips(native)
    assert a.shape == (2 * 8, 3, 16, R, R) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a[:8], a[8:])  # copy 0 vs copy 1
    assert not torch.equal(a, _clips(native, seed=1))
    assert not torch.equal(a, _clips(native, video="01-y"))
    boxes = {A.draw_clip(A.clip_rng(0, "01-x", copy, 0), 90, 160, R).crop for copy in range(4)}
    assert len(boxes) == 4  # each copy its own crop box


def test_every_frame_of_a_clip_gets_the_same_ops_and_box(native):
    frames, _ = native
    still = np.repeat(frames[:1], 16, axis=0)  # 16 identical frames: any per-frame draw shows
    rng = np.random.default_rng(3)
    for _ in range(20):
        draw = A.draw_clip(rng, 90, 160, R)
        out = A.augment_clip(
            still, A.ClipDraw(draw.ops, draw.crop, None, 0), R, IMAGENET_MEAN, IMAGENET_STD
        )
        assert (out == out[:, :1]).all(), draw  # [3, T, R, R]: every frame the same
        erased = A.augment_clip(still, draw, R, IMAGENET_MEAN, IMAGENET_STD)
        changed = (erased != out).any(dim=0)  # [T, R, R]
        if draw.erase is None:
            assert not changed.any()
            continue
        top, left, h, w = draw.erase
        box = torch.zeros(R, R, dtype=torch.bool)
        box[top : top + h, left : left + w] = True
        assert (changed == box).all()  # the same box in every frame (a cube)
        assert not torch.equal(erased[:, 0][:, box], erased[:, 1][:, box])  # fresh noise per frame


def test_ops_do_what_pil_does(native):
    frames, _ = native
    x = torch.from_numpy(frames[:2].copy())
    op = A.apply_op
    assert torch.equal(op(x, A.OpDraw("Invert", None)), 255 - x)
    solar = op(x, A.OpDraw("SolarizeIncreasing", 100.0))
    assert torch.equal(solar, torch.where(x >= 100, 255 - x, x))
    assert (op(x, A.OpDraw("PosterizeIncreasing", 2.0)) % 64 == 0).all()  # 2 bits kept
    added = op(x, A.OpDraw("SolarizeAdd", 50.0))
    assert torch.equal(added[x >= 128], x[x >= 128]) and (added[x < 128] >= x[x < 128]).all()
    stretched = op(x, A.OpDraw("AutoContrast", None))
    channel = x[0, :, :, 1].numpy()  # PIL's lookup table: int(i * scale + offset), float64
    lo, hi = int(channel.min()), int(channel.max())
    lut = [
        min(255, max(0, int(i * (255.0 / (hi - lo)) - lo * (255.0 / (hi - lo)))))
        for i in range(256)
    ]
    assert stretched[0, :, :, 1].numpy().tolist() == np.array(lut)[channel].tolist()
    assert (stretched.amin(dim=(1, 2)) == 0).all() and (stretched.amax(dim=(1, 2)) >= 254).all()
    for name in (
        "ColorIncreasing",
        "ContrastIncreasing",
        "BrightnessIncreasing",
        "SharpnessIncreasing",
    ):
        assert torch.equal(op(x, A.OpDraw(name, 1.0)), x), name  # factor 1: unchanged
    assert op(x, A.OpDraw("BrightnessIncreasing", 0.1)).float().mean() < x.float().mean() * 0.2
    gray = op(x, A.OpDraw("ColorIncreasing", 0.0))
    assert torch.equal(gray[..., 0], gray[..., 1]) and torch.equal(gray[..., 1], gray[..., 2])
    # a whole-pixel translation moves the content and fills with grey 128
    moved = op(x, A.OpDraw("TranslateXRel", 16 / 160))  # output x samples input x + 16
    assert torch.equal(moved[:, :, 2:-20], x[:, :, 18:-4])
    assert (moved[:, :, -14:] == A.FILL).all()
    assert torch.equal(op(x, A.OpDraw("Rotate", 0.0)), x)
    square = x[:, :, 35:125]  # 90 x 90
    turned = op(square, A.OpDraw("Rotate", 90.0))  # counter-clockwise, as PIL
    expected = torch.rot90(square, 1, dims=(1, 2))
    assert (turned[:, 3:-3, 3:-3].int() - expected[:, 3:-3, 3:-3].int()).abs().max() <= 1
    eq = op(x, A.OpDraw("Equalize", None))
    hist = np.bincount(channel.ravel(), minlength=256)  # ImageOps.equalize's table, in Python
    step = (int(hist.sum()) - int(hist[hist > 0][-1])) // 255
    lut, n = [], step // 2
    for i in range(256):
        lut.append(min(255, n // step))
        n += int(hist[i])
    assert eq[0, :, :, 1].numpy().tolist() == np.array(lut)[channel].tolist()
    with pytest.raises(ValueError, match="unknown RandAugment op 'Flip'"):
        op(x, A.OpDraw("Flip", None))


def test_draws_follow_the_reference_ranges():
    rng = np.random.default_rng(0)
    fired, erased = [], 0
    for _ in range(2000):
        ops = A.draw_ops(rng)
        fired.append(len(ops))
        assert all(o.name in A.OPS for o in ops) and len(ops) <= A.NUM_OPS
        for o in ops:
            if o.name == "Rotate":
                assert abs(o.arg) <= 30.0
            if o.name in ("ShearX", "ShearY"):
                assert abs(o.arg) <= 0.3
        top, left, h, w = A.draw_crop(rng, 720, 1280)
        assert 0 <= top <= 720 - h and 0 <= left <= 1280 - w
        assert 0.08 * 0.95 <= h * w / (720 * 1280) <= 1.0
        assert 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02
        box = A.draw_erase(rng, 384)
        if box is not None:
            erased += 1
            top, left, h, w = box
            assert 0.02 * 0.9 <= h * w / 384**2 <= 1 / 3 * 1.1 and top + h <= 384
    assert abs(np.mean(fired) - A.NUM_OPS * A.OP_PROB) < 0.1  # 4 ops at p 0.5: 2 on average
    assert abs(erased / 2000 - A.ERASE_PROB) < 0.03
    assert A.draw_crop(np.random.default_rng(0), 1, 1000) == (0, 499, 1, 1)  # centre fallback
    assert math.isclose(A._op_arg("PosterizeIncreasing", 7.0, rng), 2.0)  # 4 - int(2.8)
    assert video_key("a") == video_key("a") != video_key("b")
