"""vjfer.prepare: view geometry, the frame buffer, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vjfer.errors import ConfigError
from vjfer.prepare import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameBuffer,
    crop_views,
    normalize_clips,
    num_views,
    view_geometry,
)

# ---------------------------------------------------------------------------- views


@pytest.mark.parametrize(
    "size,R,views,resized,offsets",
    [
        ((1280, 720), 224, "center", (455, 256), [(16, 116)]),  # Python round(115.5) = 116
        ((480, 360), 224, "center", (341, 256), [(16, 58)]),  # round(58.5) = 58 (half to even)
        ((1280, 720), 384, "center", (778, 438), [(27, 197)]),  # short side int(438.86) = 438
        ((720, 1280), 224, "center", (256, 455), [(116, 16)]),
        ((1280, 720), 224, "3crop", (398, 224), [(0, 0), (0, 87), (0, 174)]),
        ((480, 360), 224, "3crop", (298, 224), [(0, 0), (0, 37), (0, 74)]),
        ((360, 480), 224, "3crop", (224, 298), [(0, 0), (37, 0), (74, 0)]),
        ((224, 224), 224, "3crop", (224, 224), [(0, 0)] * 3),
        ((256, 256), 224, "whole", (224, 224), [(0, 0)]),  # the whole frame, nothing cropped
        ((1280, 720), 160, "whole", (160, 160), [(0, 0)]),  # not square: squashed, as the peers
        ((100, 140), 224, "whole", (224, 224), [(0, 0)]),  # smaller: enlarged
    ],
)
def test_view_geometry(size, R, views, resized, offsets):
    geo = view_geometry(*size, R, views)
    assert (geo.width, geo.height) == resized and list(geo.offsets) == offsets
    image = np.zeros((geo.height, geo.width, 3), np.uint8)
    assert crop_views(image, geo).shape == (num_views(views), R, R, 3)


def test_views_validated():
    assert (num_views("center"), num_views("3crop"), num_views("whole")) == (1, 3, 1)
    with pytest.raises(ConfigError, match="unknown views 'five'"):
        num_views("five")
    geo = view_geometry(64, 48, 32, "center")
    with pytest.raises(ValueError, match="geometry expects"):
        crop_views(np.zeros((10, 10, 3), np.uint8), geo)


def test_frame_buffer_grows_and_returns_the_written_frames():
    buffer = FrameBuffer(views=3, resolution=2, capacity=4)
    for t in range(9):
        buffer.next_slot()[:] = t
    frames = buffer.frames()
    assert buffer.data.shape[1] == 16 and frames.shape == (3, 9, 2, 2, 3)
    np.testing.assert_array_equal(frames[:, :, 0, 0, 0], np.tile(np.arange(9), (3, 1)))
    assert np.shares_memory(frames, buffer.data)  # a view: unwritten capacity is never touched


def test_normalize_clips():
    clips = torch.randint(0, 256, (2, 16, 8, 8, 3), dtype=torch.uint8)
    x = normalize_clips(clips)
    assert x.shape == (2, 3, 16, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    expected = ((clips.float() / 255 - mean) / std).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(x, expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="expected uint8 clips"):
        normalize_clips(clips.float())


@pytest.mark.cuda  # skipped by conftest.py without a GPU
def test_normalize_clips_on_gpu():
    clips = torch.randint(0, 256, (1, 16, 8, 8, 3), dtype=torch.uint8)
    x = normalize_clips(clips.cuda())
    assert x.device.type == "cuda"
    torch.testing.assert_close(x.cpu(), normalize_clips(clips))
