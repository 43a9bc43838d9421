"""Intermediate encoder layers (`extract --layers`): each encoder's outputs of chosen blocks equal
the model's own intermediate outputs — V-JEPA 1 against its blocks run by hand, V-JEPA 2 and
VideoMAE against transformers' `output_hidden_states` — through the final norm where the encoder
has one (vjepa2's multilevel eval wrapper: `outs.append(self.norm(x))`)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_vjepa2

from vjfer.encoders import load_encoder
from vjfer.encoders.vjepa import ViTConfig
from vjfer.errors import ConfigError

THREE_BLOCKS = ViTConfig(embed_dim=32, depth=3, num_heads=2, img_size=32)


@pytest.fixture
def three_block_tiny(monkeypatch):
    """The tiny encoder with 3 blocks (the registry's spec, patched for this test)."""
    from vjfer.encoders import registry

    spec = registry.ENCODERS["tiny"]
    monkeypatch.setitem(
        registry.ENCODERS,
        "tiny",
        type(spec)("tiny", spec.factory, spec.weights_source, THREE_BLOCKS),
    )
    return load_encoder("tiny", seed=3)


def _clips(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 16, size, size, generator=torch.Generator().manual_seed(1))


def test_resolve_layers_counts_from_the_end_and_sorts(three_block_tiny):
    enc = three_block_tiny
    assert enc.depth == 3 and enc.layer_norm == "final"
    assert enc.resolve_layers((-1,)) == (2,)
    assert enc.resolve_layers((-1, 0, -2)) == (0, 1, 2)
    with pytest.raises(ConfigError, match=r"--layers 3: \[3\] outside tiny's 3 blocks"):
        enc.resolve_layers((3,))
    with pytest.raises(ConfigError, match=r"--layers -1,2 names a block twice"):
        enc.resolve_layers((-1, 2))
    with pytest.raises(ConfigError, match="at least one block"):
        enc.resolve_layers(())


def test_vjepa1_layers_equal_its_blocks_run_by_hand(three_block_tiny):
    enc = three_block_tiny
    vit = enc.module
    x = _clips(32)
    with torch.inference_mode():
        h = vit.patch_embed(x) + vit.pos_embed  # [B, N, D]
        by_hand = []
        for block in vit.blocks:
            h = block(h)
            by_hand.append(vit.norm(h))
    got = enc.encode(x, (0, 1, 2))
    assert got.shape == (2, 3, enc.num_tokens, 32)
    for i in range(3):
        torch.testing.assert_close(got[:, i], by_hand[i], atol=0, rtol=0)
    # the last block alone is today's output; the middle one is not
    torch.testing.assert_close(enc.encode(x, (2,))[:, 0], enc.encode(x), atol=0, rtol=0)
    assert not torch.allclose(got[:, 1], got[:, 2])
    torch.testing.assert_close(enc.encode(x, (1,))[:, 0], got[:, 1], atol=0, rtol=0)


transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def vjepa2_dir(tmp_path_factory):
    return tiny_vjepa2(tmp_path_factory.mktemp("vjepa2-3"), layers=3)


def test_vjepa2_layers_equal_hidden_states_through_the_final_norm(vjepa2_dir):
    enc = load_encoder("vjepa2", checkpoint=vjepa2_dir)
    assert (enc.depth, enc.layer_norm) == (3, "final")
    x = _clips(32)
    model = transformers.VJEPA2Model.from_pretrained(vjepa2_dir, local_files_only=True).eval()
    with torch.inference_mode():
        out = model(
            pixel_values_videos=x.transpose(1, 2), skip_predictor=True, output_hidden_states=True
        )
        # hidden_states[0] is the embedding output, [i + 1] block i's (before the final norm)
        want = torch.stack([model.encoder.layernorm(out.hidden_states[i + 1]) for i in (0, 2)], 1)
    got = enc.encode(x, enc.resolve_layers((0, -1)))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[:, 1], out.last_hidden_state, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("use_mean_pooling", [False, True])
def test_videomae_layers_equal_hidden_states(tmp_path, use_mean_pooling):
    from tests.test_videomae import save_videomae

    directory = save_videomae(tmp_path, num_hidden_layers=3, use_mean_pooling=use_mean_pooling)
    enc = load_encoder("videomae", checkpoint=directory)
    # a fine-tuned layout (use_mean_pooling) has no final norm: its layers are cached as they are
    assert enc.layer_norm == ("none" if use_mean_pooling else "final")
    x = _clips(32)
    model = transformers.VideoMAEModel.from_pretrained(directory, local_files_only=True).eval()
    with torch.inference_mode():
        states = model(pixel_values=x.transpose(1, 2), output_hidden_states=True).hidden_states
        norm = model.layernorm or torch.nn.Identity()
        want = torch.stack([norm(states[i + 1]) for i in (1, 2)], 1)
    got = enc.encode(x, (1, 2))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got[:, 0], got[:, 1])
