"""Frozen video encoders: V-JEPA 1 (own ViT), V-JEPA 2, VideoMAE and image models per frame
(transformers), tiny.

from vjfer.encoders import load_encoder
encoder = load_encoder("vjepa-h16-384", checkpoint="vith16-384.pth.tar", device="cuda")
tokens = encoder.encode(clips)  # [B, 3, 16, 384, 384] normalised -> [B, 4608, 1280]
"""

from vjfer.encoders.registry import ENCODERS, Encoder, EncoderSpec, list_encoders, load_encoder

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "list_encoders", "load_encoder"]
