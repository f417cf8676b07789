"""distill-hf: the Distill RVQ-VAE audio model as a Hugging Face Transformers model.

Importing the package registers the configuration, model and feature extractor with `AutoConfig`, `AutoModel`
and `AutoFeatureExtractor` (model type ``"distill_vqvae"``).
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from .audio_io import load_audio, save_audio
from .configuration_distill import DistillVQVAEConfig, get_adaptive_vqvae_config
from .feature_extraction_distill import DistillFeatureExtractor
from .modeling_distill import (
    DistillVQVAEDecoderOutput,
    DistillVQVAEEncoderOutput,
    DistillVQVAEModel,
    DistillVQVAEOutput,
    DistillVQVAEPreTrainedModel,
    multi_scale_mel_loss,
    vqvae_loss,
)

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
    "DistillVQVAEConfig",
    "DistillVQVAEDecoderOutput",
    "DistillVQVAEEncoderOutput",
    "DistillVQVAEModel",
    "DistillVQVAEOutput",
    "DistillVQVAEPreTrainedModel",
    "get_adaptive_vqvae_config",
    "load_audio",
    "multi_scale_mel_loss",
    "save_audio",
    "vqvae_loss",
]
