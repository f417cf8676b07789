"""distill-hf: the Distill RVQ-VAE audio model as a Hugging Face Transformers model.

Importing the package registers the configuration, model and feature extractor with `AutoConfig`, `AutoModel`
and `AutoFeatureExtractor` (model type ``"distill_vqvae"``).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .audio_io import load_audio, save_audio
from .configuration_distill import DistillVQVAEConfig, get_adaptive_vqvae_config
from .editing import EncodedAudio, blend_encodings, positions_per_second, seconds_to_positions, swap_codes
from .feature_extraction_distill import DistillFeatureExtractor
from .long_audio import compute_features, decode_audio, decode_features, encode_audio, encode_features, vocode_features
from .modeling_distill import (
    DistillVQVAEDecoderOutput,
    DistillVQVAEEncoderOutput,
    DistillVQVAEModel,
    DistillVQVAEOutput,
    DistillVQVAEPreTrainedModel,
    multi_scale_mel_loss,
    vqvae_loss,
)
from .prior import DistillGenerationOutput, codes_to_sequence, generate_audio, load_prior, sequence_to_codes

__version__ = "0.1.0"

AutoConfig.register(DistillVQVAEConfig.model_type, DistillVQVAEConfig, exist_ok=True)
AutoModel.register(DistillVQVAEConfig, DistillVQVAEModel, exist_ok=True)
AutoFeatureExtractor.register(DistillVQVAEConfig, DistillFeatureExtractor, exist_ok=True)

# Folders written by `save_pretrained` also carry the configuration, modeling (with its quantization helper) and
# feature-extraction modules plus `auto_map` entries, so they load with stock Transformers and
# `trust_remote_code=True` where this package is not installed.
DistillVQVAEConfig.register_for_auto_class()
DistillVQVAEModel.register_for_auto_class("AutoModel")
DistillFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "DistillFeatureExtractor",
    "DistillGenerationOutput",
    "DistillVQVAEConfig",
    "DistillVQVAEDecoderOutput",
    "DistillVQVAEEncoderOutput",
    "DistillVQVAEModel",
    "DistillVQVAEOutput",
    "DistillVQVAEPreTrainedModel",
    "EncodedAudio",
    "blend_encodings",
    "codes_to_sequence",
    "compute_features",
    "decode_audio",
    "decode_features",
    "encode_audio",
    "encode_features",
    "generate_audio",
    "get_adaptive_vqvae_config",
    "load_audio",
    "load_prior",
    "multi_scale_mel_loss",
    "positions_per_second",
    "save_audio",
    "seconds_to_positions",
    "sequence_to_codes",
    "swap_codes",
    "vocode_features",
    "vqvae_loss",
]
