import json

import pytest
from transformers import AutoConfig, TrainingArguments

from distill_hf import DistillVQVAEConfig, get_adaptive_vqvae_config


def test_defaults_mirror_the_original():
    config = DistillVQVAEConfig()
    assert config.model_type == "distill_vqvae"
    assert (config.codebook_dim, config.codebook_size, config.num_quantizers) == (128, 256, 3)
    assert (config.decay, config.commitment_weight, config.threshold_ema_dead_code) == (0.95, 0.25, 2)
    assert (config.kmeans_init, config.kmeans_iters, config.dropout) == (True, 10, 0.2)
    assert (config.sampling_rate, config.n_fft, config.hop_length, config.n_mels) == (48000, 2048, 512, 128)
    assert (config.f_min, config.f_max, config.power) == (0.0, None, 2.0)
    assert config.encoder_channels == [32, 64, 128, 256]
    assert config.downsampling_factor == 16
    assert config.code_grid_shape(94) == (8, 6)
    assert (config.gradient_clip_norm, config.batch_size, config.max_epochs) == (1.0, 32, 200)
    assert (config.learning_rate, config.weight_decay, config.chunk_duration_s) == (1e-3, 0.01, 1.0)
    assert (config.val_fraction, config.augmentation_expansion) == (0.2, 10)
    assert (config.checkpoint_interval, config.preview_interval, config.max_checkpoints) == (10, 20, 3)


@pytest.mark.parametrize(
    "field, value",
    [
        ("codebook_size", 1),
        ("codebook_size", 2.5),
        ("num_quantizers", 0),
        ("decay", 0.0),
        ("decay", 1.0),
        ("dropout", -0.1),
        ("dropout", 1.0),
        ("codebook_dim", 0),
        ("n_mels", 0),
        ("n_fft", -1),
        ("hop_length", 0),
        ("sampling_rate", 0),
        ("encoder_channels", []),
        ("encoder_channels", [32, 0]),
        ("kmeans_iters", -1),
        ("threshold_ema_dead_code", -1),
        ("commitment_weight", -0.5),
        ("power", 0.0),
        ("f_max", 30000.0),
        ("batch_size", 0),
        ("val_fraction", 1.0),
        ("learning_rate", 0.0),
        ("kmeans_init", "yes"),
    ],
)
def test_invalid_values_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"`{field}"):
        DistillVQVAEConfig(**{field: value})


def test_json_round_trip(tmp_path):
    config = DistillVQVAEConfig(codebook_size=64, decay=0.8, encoder_channels=(16, 32))
    config.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "distill_vqvae"
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, DistillVQVAEConfig)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    assert loaded.encoder_channels == [16, 32] and loaded.codebook_size == 64


@pytest.mark.parametrize(
    "file_count, codebook_size, decay, dropout, epochs, lr, augmentation, val_fraction, batch_size",
    [
        (1, 64, 0.8, 0.4, 100, 5e-4, 15, 0.5, 1),
        (9, 64, 0.8, 0.4, 100, 5e-4, 15, 0.5, 11),
        (10, 64, 0.8, 0.4, 100, 5e-4, 15, 0.3, 12),
        (20, 64, 0.8, 0.4, 100, 5e-4, 15, 0.3, 25),
        (21, 128, 0.9, 0.2, 200, 1e-3, 10, 0.3, 26),
        (49, 128, 0.9, 0.2, 200, 1e-3, 10, 0.3, 32),
        (50, 128, 0.9, 0.2, 200, 1e-3, 10, 0.2, 32),
        (100, 128, 0.9, 0.2, 200, 1e-3, 10, 0.2, 32),
        (101, 256, 0.95, 0.1, 300, 1e-3, 5, 0.2, 32),
        (200, 256, 0.95, 0.1, 300, 1e-3, 5, 0.1, 32),
        (500, 256, 0.95, 0.1, 300, 1e-3, 5, 0.1, 32),
    ],
)
def test_adaptive_tiers(file_count, codebook_size, decay, dropout, epochs, lr, augmentation, val_fraction, batch_size):
    config = get_adaptive_vqvae_config(file_count)
    assert (config.codebook_size, config.decay, config.dropout) == (codebook_size, decay, dropout)
    assert (config.max_epochs, config.learning_rate, config.augmentation_expansion) == (epochs, lr, augmentation)
    assert (config.val_fraction, config.batch_size) == (val_fraction, batch_size)
    assert (config.codebook_dim, config.num_quantizers, config.weight_decay) == (128, 3, 0.01)


def test_adaptive_matches_the_fixture_checkpoint_tier():
    """The fixture was trained on 9 files; its stored config is the original's adaptive choice."""
    import torch

    from tests.conftest import CHECKPOINT

    original = torch.load(CHECKPOINT, weights_only=True)["vqvae_config"]
    config = get_adaptive_vqvae_config(9)
    for key in ("codebook_size", "decay", "dropout", "batch_size", "max_epochs", "learning_rate",
                "val_fraction", "augmentation_expansion", "weight_decay", "gradient_clip_norm"):
        assert getattr(config, key) == original[key], key


@pytest.mark.parametrize("file_count", [0, -3, 2.5, "10", True])
def test_adaptive_rejects_bad_file_count(file_count):
    with pytest.raises(ValueError, match="file_count"):
        get_adaptive_vqvae_config(file_count)


def test_training_arguments_mapping(tmp_path):
    config = get_adaptive_vqvae_config(30)
    args = TrainingArguments(output_dir=str(tmp_path), **config.training_arguments_kwargs())
    assert args.per_device_train_batch_size == config.batch_size == 32
    assert args.num_train_epochs == config.max_epochs == 200
    assert args.learning_rate == config.learning_rate
    assert args.weight_decay == config.weight_decay
    assert args.max_grad_norm == config.gradient_clip_norm
    assert args.save_total_limit == config.max_checkpoints
