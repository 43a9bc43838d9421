"""Image foundation models frame by frame (encoders/image.py): tiny random DINOv2, DINOv3, CLIP
and SigLIP vision models saved as real Hugging Face directories (with the family's own image
processor config), loaded through the registry; tokens and `--layers` equal the library's forward
per frame; strict loading; extract -> probe end to end on decoded video."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import encoder_pipeline, run_cli
from vjfer.encoders import ENCODERS, load_encoder
from vjfer.encoders.image import FAMILIES, frame_flops
from vjfer.errors import CheckpointError, ConfigError

transformers = pytest.importorskip("transformers")

SIZES = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=16
)
MEAN, STD = (
    [0.5, 0.4, 0.3],
    [0.2, 0.25, 0.3],
)  # not ImageNet's: read from the file or the test fails


# The image processors' classes, as in the hub repositories' preprocessor_config.json (the sizes
# keys in each one's own layout; transformers' processors themselves need torchvision to save).
PROCESSORS = {
    "dinov2": "BitImageProcessor",
    "dinov3": "DINOv3ViTImageProcessorFast",
    "clip": "CLIPImageProcessor",
    "siglip": "SiglipImageProcessor",
}


def save_family(directory, family: str, *, seed: int = 0, full: bool = False):
    """A tiny random model of `family` + its image processor's config, as a HF directory; `full`:
    the whole CLIP / SigLIP model (text tower too), as the hub's repositories hold it."""
    T = transformers
    torch.manual_seed(seed)
    if family == "dinov2":
        model = T.Dinov2Model(T.Dinov2Config(**SIZES, mlp_ratio=2))
        pre = {"size": {"shortest_edge": 36}, "crop_size": {"height": 32, "width": 32}}
    elif family == "dinov3":
        model = T.DINOv3ViTModel(
            T.DINOv3ViTConfig(**SIZES, intermediate_size=64, num_register_tokens=2)
        )
        pre = {"size": {"height": 32, "width": 32}}
    elif family == "clip":
        vision = dict(SIZES, intermediate_size=64)
        if full:
            text = dict(
                hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
            )
            model = T.CLIPModel(
                T.CLIPConfig(vision_config=vision, text_config=text, projection_dim=8)
            )
        else:
            model = T.CLIPVisionModel(T.CLIPVisionConfig(**vision))
        pre = {"size": 32, "crop_size": 32, "do_center_crop": True}  # openai's: plain ints
    else:
        vision = dict(SIZES, intermediate_size=64)
        if full:
            text = dict(
                hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
            )
            model = T.SiglipModel(T.SiglipConfig(vision_config=vision, text_config=text))
        else:
            model = T.SiglipVisionModel(T.SiglipVisionConfig(**vision))
        pre = {"size": {"height": 32, "width": 32}}
    model.save_pretrained(directory)
    processor = PROCESSORS[family]
    pre = {"image_processor_type": processor, "image_mean": MEAN, "image_std": STD, **pre}
    (directory / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return directory


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return {f: save_family(tmp_path_factory.mktemp(f), f) for f in FAMILIES}


def reference(directory, family: str, x: torch.Tensor):
    """The library's own forward on every frame: (last_hidden_state, hidden_states), [B·T, S, D]."""
    model_class = getattr(transformers, FAMILIES[family].model_class)
    model = model_class.from_pretrained(directory, local_files_only=True).eval()
    B, C, T, H, W = x.shape
    with torch.inference_mode():
        out = model(
            pixel_values=x.transpose(1, 2).reshape(B * T, C, H, W), output_hidden_states=True
        )
    return model, out


@pytest.mark.parametrize("family", list(FAMILIES))
def test_tokens_and_layers_equal_library_forward_per_frame(dirs, family):
    x = torch.randn(2, 3, 16, 32, 32)
    model, out = reference(dirs[family], family, x)
    prefix = 1 + (2 if family == "dinov3" else 0) if FAMILIES[family].has_cls else 0
    last = out.last_hidden_state.reshape(2, 16, prefix + 4, 32)
    names = [n for n in ENCODERS if n == family or n.startswith(family + "-")]
    assert names == (
        [family] if family == "siglip" else [family, f"{family}-cls", f"{family}-both"]
    )
    for name in names:
        encoder = load_encoder(name, checkpoint=dirs[family])
        assert (encoder.resolution, encoder.embed_dim) == (32, 32)
        assert (list(encoder.mean), list(encoder.std)) == (MEAN, STD)  # preprocessor_config.json
        kept = {
            family: last[:, :, prefix:],  # patches; DINOv3's 2 registers dropped
            f"{family}-cls": last[:, :, :1],
            f"{family}-both": torch.cat([last[:, :, :1], last[:, :, prefix:]], dim=2),
        }[name]
        assert encoder.grid == {family: (16, 2, 2), f"{family}-cls": (16, 1, 1)}.get(
            name, (16, 1, 5)
        )
        tokens = encoder.encode(x)
        torch.testing.assert_close(tokens, kept.reshape(2, -1, 32), atol=1e-5, rtol=1e-5)
    # --layers: every block's output (hidden_states[i + 1]) through the family's final norm
    encoder = load_encoder(family, checkpoint=dirs[family])
    layers = encoder.encode(x, encoder.resolve_layers((-2, -1)))
    norm = FAMILIES[family].norm
    assert encoder.layer_norm == ("none" if norm is None else "final")
    for i in (0, 1):
        hidden = out.hidden_states[i + 1]
        if norm is not None:
            with torch.inference_mode():
                hidden = getattr(model, norm)(hidden)
        want = hidden.reshape(2, 16, prefix + 4, 32)[:, :, prefix:].reshape(2, 64, 32)
        torch.testing.assert_close(layers[:, i], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layers[:, 1], encoder.encode(x), atol=1e-5, rtol=1e-5)


def test_fingerprint_and_full_clip_siglip_checkpoints(dirs, tmp_path):
    fp = load_encoder("dinov3-both", checkpoint=dirs["dinov3"]).fingerprint
    assert (fp["frame_model"], fp["tokens"], fp["registers"], fp["patch_size"]) == (
        "dinov3",
        "both",
        2,
        16,
    )
    assert (fp["grid"], fp["weights"], fp["frames"]) == ([16, 1, 5], "hf-directory", 16)
    other = load_encoder("dinov3-both", checkpoint=save_family(tmp_path / "s1", "dinov3", seed=1))
    assert other.fingerprint["checkpoint_sha256"] != fp["checkpoint_sha256"]
    for family in ("clip", "siglip"):  # the hub's whole model: the text tower is not used
        full = save_family(tmp_path / f"{family}-full", family, full=True)
        encoder = load_encoder(family, checkpoint=full)
        tower = getattr(transformers, FAMILIES[family].model_class).from_pretrained(full).eval()
        x = torch.randn(1, 3, 16, 32, 32)
        with torch.inference_mode():
            ref = tower(pixel_values=x[0].transpose(0, 1)).last_hidden_state
        start = 1 if family == "clip" else 0
        torch.testing.assert_close(
            encoder.encode(x)[0], ref[:, start:].reshape(64, 32), atol=1e-5, rtol=1e-5
        )


def test_flops_vit_b16_per_clip():
    """DINOv2-B/14 at 224 (16×16 patches + CLS), 16 frames; CLIP-B/16 likewise with 196 + 1."""
    from vjfer.encoders.image import ImageSpec

    def spec(family, side, patch):
        return ImageSpec(
            family, "patch", side, side, patch, 768, 12, 3072, 2, 0, False, (0.5,) * 3, (0.5,) * 3
        )

    S, D = 257, 768
    block = 2 * S * (4 * D * D + 2 * D * 3072) + 4 * S * S * D
    dino = spec("dinov2", 224, 14)
    assert frame_flops(dino) == 2 * 256 * 3 * 14 * 14 * D + 12 * block
    assert dino.flops == 16 * frame_flops(dino) and dino.grid == (16, 16, 16)
    assert round(spec("clip", 224, 16).flops / 1e12, 2) == 0.56  # 16 × 35.1 GFLOP


def test_config_costs_equal_the_loaded_models(dirs):
    """`config_costs` (vjfer bench's GFLOPs and params, from config.json alone) equals what the
    loaded model has: its spec's FLOPs and its parameter count."""
    from vjfer.encoders.image import config_costs, load_image_encoder

    for name, family in (("dinov2", "dinov2"), ("dinov3-both", "dinov3"), ("siglip", "siglip")):
        frames, _ = load_image_encoder(name, dirs[family])
        params = sum(p.numel() for p in frames.model.parameters())
        assert config_costs(name, dirs[family]) == {
            "params": params,
            "gflops": frames.spec.flops / 1e9,
        }


def test_strict_loading_errors(dirs, tmp_path):
    d = dirs["dinov2"]
    with pytest.raises(ConfigError, match="dinov2 needs a local Hugging Face directory"):
        load_encoder("dinov2")
    with pytest.raises(ConfigError, match="random weights .* not clip"):
        load_encoder("clip", random_weights=True)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_encoder("dinov2", checkpoint=tmp_path)
    # another architecture's directory: one line naming what it holds
    with pytest.raises(CheckpointError, match="model_type 'clip_vision_model', expected 'dinov2'"):
        load_encoder("dinov2", checkpoint=dirs["clip"])
    with pytest.raises(CheckpointError, match="expected 'siglip' or 'siglip_vision_model'"):
        load_encoder("siglip", checkpoint=dirs["dinov3"])
    weights = load_file(d / "model.safetensors")

    def broken(name, change):
        out = tmp_path / name
        out.mkdir()
        for f in ("config.json", "preprocessor_config.json"):
            (out / f).write_bytes((d / f).read_bytes())
        save_file(change(dict(weights)), out / "model.safetensors", metadata={"format": "pt"})
        return out

    partial = broken("partial", lambda w: {k: v for k, v in w.items() if "layer.1." not in k})
    with pytest.raises(
        CheckpointError,
        match=r"partial .*: \d+ Dinov2Model weights missing, first \['encoder.layer.1",
    ):
        load_encoder("dinov2", checkpoint=partial)
    shape = broken("shape", lambda w: {**w, "layernorm.bias": torch.zeros(7)})
    with pytest.raises(
        CheckpointError,
        match=r"1 weights of the wrong shape .* layernorm.bias: \[7\] in the file, \[32\]",
    ):
        load_encoder("dinov2", checkpoint=shape)
    extra = broken("extra", lambda w: {**w, "head.weight": torch.zeros(2)})
    with pytest.raises(
        CheckpointError, match=r"1 weights Dinov2Model does not have .*\['head.weight'\]"
    ):
        load_encoder("dinov2", checkpoint=extra)
    for err_dir in (partial, shape, extra):
        try:
            load_encoder("dinov2", checkpoint=err_dir)
        except CheckpointError as err:
            assert "\n" not in str(err)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(CheckpointError, match="no preprocessor_config.json; .*image_mean"):
        load_encoder("dinov2", checkpoint=partial)
    clip = tmp_path / "clip-48"
    clip.mkdir()
    for f in ("config.json", "model.safetensors"):
        (clip / f).write_bytes((dirs["clip"] / f).read_bytes())
    pre = json.loads((dirs["clip"] / "preprocessor_config.json").read_text())
    (clip / "preprocessor_config.json").write_text(json.dumps({**pre, "crop_size": 48}))
    with pytest.raises(CheckpointError, match="input side 48 differs from image_size 32"):
        load_encoder("clip", checkpoint=clip)


def test_encoders_lists_image_families():
    out = run_cli("encoders")
    for name in ("dinov2", "dinov2-cls", "dinov3-both", "clip", "siglip"):
        assert f"\n{name} " in out
    assert "facebook/dinov2-base" in out and "google/siglip-base-patch16-224" in out


@pytest.mark.slow
def test_dinov2_extract_probe_cross_report_predict(dirs, tmp_path):
    data = encoder_pipeline(tmp_path, "dinov2-both", dirs["dinov2"], "--layers", "-2,-1")
    settings = data["manifest"]["settings"]
    assert settings["encoder_fingerprint"]["tokens"] == "both"
    assert (settings["mean"], settings["std"]) == (MEAN, STD)
    assert data["manifest"]["layout"]["num_tokens"] == 2 * 16 * 5  # 2 blocks, 16 × (CLS + 4)


def test_a_side_the_patch_does_not_divide_runs_at_the_models_own_size(tmp_path):
    """SigLIP so400m/14 at 384 px: 27 × 27 patches, its convolution leaving 6 pixels out. At the
    model's own image_size vjfer takes it as the library does (here 36 px, patch 16: 2 × 2)."""
    T = transformers
    torch.manual_seed(3)
    vision = dict(SIZES, image_size=36, intermediate_size=64)
    T.SiglipVisionModel(T.SiglipVisionConfig(**vision)).save_pretrained(tmp_path)
    pre = {"image_processor_type": "SiglipImageProcessor", "image_mean": MEAN, "image_std": STD}
    pre["size"] = {"height": 36, "width": 36}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    encoder = load_encoder("siglip", checkpoint=tmp_path)
    assert (encoder.resolution, encoder.grid) == (36, (16, 2, 2))
    x = torch.randn(1, 3, 16, 36, 36)
    _, out = reference(tmp_path, "siglip", x)
    want = out.last_hidden_state.reshape(1, 16 * 4, 32)
    torch.testing.assert_close(encoder.encode(x), want, atol=1e-5, rtol=1e-5)
