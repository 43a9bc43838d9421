"""Per-clip roles in stage 2: the `reference` plan's exact training clips train, its evaluation
windows evaluate, augmented copies (`--augment K`) are drawn one per clip and epoch and never
evaluated; caches without `clip_role` read as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GRID, make_entries

from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.clips import ROLE_AUGMENTED, ROLE_EVAL, ROLE_TRAIN, clip_roles, plan_clips
from vjfer.errors import ConfigError
from vjfer.probe.config import TrainConfig
from vjfer.probe.evaluate import score_videos
from vjfer.probe.head import Head
from vjfer.probe.reader import ClipReader
from vjfer.probe.samples import augmented_clips, draw_copies, fixed_clips
from vjfer.probe.train import train_heads

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny shapes: one thread is fastest

COPIES = 2
CFG = TrainConfig(epochs=3, batch_size=4, num_heads=4, num_workers=0, device="cpu", in_memory="no")


def _with_roles(entry: VideoEntry, copies: int) -> VideoEntry:
    """The entry as the `reference` plan with `copies` augmented copies would store it."""
    frames = plan_clips(entry.n_frames, "reference")
    roles = clip_roles(entry.n_frames, "reference")
    frames = np.concatenate([frames, *[frames[roles == ROLE_TRAIN]] * copies])
    roles = np.concatenate(
        [roles, *[np.full(8, ROLE_AUGMENTED + c, np.uint8) for c in range(copies)]]
    )
    rng = np.random.default_rng(len(entry.video_id))
    base = entry.tokens[:1].astype(np.float32)  # the class signal of the video
    tokens = base + rng.normal(size=(len(frames), *entry.tokens.shape[1:])) * 0.1
    return VideoEntry(
        entry.video_id,
        entry.label,
        entry.actor,
        entry.fold,
        entry.n_frames,
        entry.fps,
        frames,
        tokens.astype(np.float16),
        clip_role=roles,
    )


@pytest.fixture(scope="module")
def cache(tiny_cache):
    entries = [_with_roles(e, COPIES) for e in make_entries(actors=range(1, 7))]
    settings = {"e": "roles", "plan": "reference", "augment": COPIES}
    return open_cache(tiny_cache(entries=entries, settings=settings, shard_size=16))


def _spy_requests(monkeypatch) -> list[list[tuple[str, np.ndarray]]]:
    """Every `ClipReader.stream` call's requests, in order."""
    calls: list = []
    stream = ClipReader.stream

    def spy(self, requests):
        requests = list(requests)
        calls.append(requests)
        return stream(self, requests)

    monkeypatch.setattr(ClipReader, "stream", spy)
    return calls


def test_roles_are_stored_and_old_caches_read_as_evaluation_windows(cache, tmp_path):
    vid = cache.videos["video_id"][0]
    n = int(cache.videos["n_frames"][0])
    roles = cache.clip_roles(vid)
    assert roles.dtype == np.uint8
    assert roles.tolist() == clip_roles(n, "reference").tolist() + [2] * 8 + [3] * 8
    assert augmented_clips(roles).shape == (8, COPIES)
    plain = open_cache(
        build_cache(
            tmp_path / "plain", {"e": "x"}, make_entries(actors=[1]), dataset="ravdess", grid=GRID
        )
    )
    first = plain.videos["video_id"][0]
    assert (plain.clip_roles(first) == ROLE_EVAL).all()
    assert len(plain.clip_roles(first)) == int(plain.videos["n_clips"][0])


def test_reference_choice_takes_the_exact_training_clips(cache):
    rows = np.arange(len(cache.videos))
    fixed = fixed_clips(cache, rows)
    for i in rows:
        roles = cache.clip_roles(cache.videos.at[i, "video_id"])
        assert fixed[i].tolist() == np.flatnonzero(roles == ROLE_TRAIN).tolist()


def test_augmented_training_draws_one_stored_copy_per_clip(cache, monkeypatch):
    calls = _spy_requests(monkeypatch)
    config = TrainConfig(**{**CFG.__dict__, "train_view": "augmented"})
    rows = np.flatnonzero(cache.videos["actor"] != 1)
    head = Head("h", config, rows, cache, torch.device("cpu"))
    train_heads(cache, [head], config, progress=False)
    assert len(calls) == config.epochs
    seen = set()
    for epoch, requests in enumerate(calls):
        choice = draw_copies(len(cache.videos), COPIES, config.seed, epoch)
        for vid, clips in requests:
            roles = cache.clip_roles(vid)
            assert (roles[clips] >= ROLE_AUGMENTED).all()  # never a plain clip
            i = int(np.flatnonzero(cache.videos["video_id"] == vid)[0])
            expected = augmented_clips(roles)[np.arange(8), choice[i]]
            assert clips.tolist() == sorted(set(expected.tolist()))
            seen.add(tuple(choice[i]))
    assert len(seen) > 1  # copies differ between videos and epochs


def test_augmented_heads_do_not_depend_on_each_other(cache):
    config = TrainConfig(**{**CFG.__dict__, "train_view": "augmented", "epochs": 2})
    rows = np.flatnonzero(cache.videos["actor"] != 1)
    other = np.flatnonzero(cache.videos["actor"] != 2)
    alone = Head("a", config, rows, cache, torch.device("cpu"))
    train_heads(cache, [alone], config, progress=False)
    pair = [
        Head("a", config, rows, cache, torch.device("cpu")),
        Head("b", TrainConfig(**{**config.__dict__, "seed": 5}), other, cache, torch.device("cpu")),
    ]
    train_heads(cache, pair, config, progress=False)
    for name, tensor in alone.probe.state_dict().items():
        assert torch.equal(tensor, pair[0].probe.state_dict()[name]), name


def test_evaluation_reads_only_the_evaluation_windows(cache, monkeypatch):
    calls = _spy_requests(monkeypatch)
    probe = Head("h", CFG, np.arange(4), cache, torch.device("cpu")).probe
    rows = np.arange(len(cache.videos))[:6]
    tables = score_videos(cache, {"h": (probe, rows)})
    (requests,) = calls
    for vid, clips in requests:
        roles = cache.clip_roles(vid)
        assert clips.tolist() == np.flatnonzero(roles == ROLE_EVAL).tolist()
        table = tables["h"][tables["h"]["video_id"] == vid]
        assert table["start_frame"].tolist() == cache.clip_frames(vid)[clips, 0].tolist()


def test_augmented_view_needs_copies_and_the_reference_choice(tmp_path):
    with pytest.raises(ConfigError, match="needs clip_choice='reference'"):
        TrainConfig(train_view="augmented", clip_choice="random")
    plain = open_cache(
        build_cache(
            tmp_path / "plain",
            {"e": "x"},
            make_entries(actors=[1, 2]),
            dataset="ravdess",
            grid=GRID,
        )
    )
    config = TrainConfig(**{**CFG.__dict__, "train_view": "augmented"})
    head = Head("h", config, np.arange(4), plain, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"re-extract it with `vjfer extract --augment K`"):
        train_heads(plain, [head], config, progress=False)
