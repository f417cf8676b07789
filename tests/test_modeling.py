"""Behaviour of a freshly built model: shapes, training dynamics of the quantizer, determinism, I/O, bad input."""

import pytest
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from distill_hf import (
    DistillFeatureExtractor,
    DistillVQVAEConfig,
    DistillVQVAEModel,
    DistillVQVAEOutput,
    multi_scale_mel_loss,
    vqvae_loss,
)
from tests.conftest import synthetic_audio


def features_for(config, num_clips=4, seconds=1.0, seed=0):
    extractor = DistillFeatureExtractor.from_model_config(config)
    audio = synthetic_audio(num_clips, int(seconds * config.sampling_rate), config.sampling_rate, seed=seed)
    return extractor(audio, sampling_rate=config.sampling_rate, return_tensors="pt").input_features


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return DistillVQVAEModel(tiny_config)


def test_output_shapes_and_types(tiny_model, tiny_config):
    features = features_for(tiny_config, num_clips=3)  # [3, 1, 32, 126]
    output = tiny_model(features)
    assert isinstance(output, DistillVQVAEOutput)
    height, width = tiny_config.code_grid_shape(features.shape[-1])
    assert output.reconstruction.shape == features.shape
    assert output.audio_codes.shape == (3, tiny_config.num_quantizers, height, width)
    assert output.audio_codes.dtype == torch.long
    assert output.quantized_representation.shape == (3, tiny_config.codebook_dim, height, width)
    assert output.latents.shape == output.quantized_representation.shape
    assert output.loss.ndim == 0 and torch.isfinite(output.loss)
    torch.testing.assert_close(output.loss, output.recon_loss + output.commit_loss, atol=0, rtol=0)
    assert (output.reconstruction >= 0).all()  # Softplus output, like log1p features

    three_dim = tiny_model(features[:, 0])  # [B, n_mels, T] is accepted too
    assert three_dim.reconstruction.shape == features.shape

    as_tuple = tiny_model(features, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert tiny_model(features, return_loss=False).loss is None


def test_kmeans_initialises_on_first_batch(tiny_model, tiny_config):
    layers = tiny_model.quantizer.layers
    assert not any(bool(layer.initted) for layer in layers)
    assert all(layer.embed.abs().sum() == 0 for layer in layers)
    tiny_model.eval()
    with torch.no_grad():
        tiny_model(features_for(tiny_config))  # initialisation happens in any mode
    for layer in layers:
        assert bool(layer.initted)
        assert layer.embed.abs().sum() > 0
        assert torch.isclose(layer.cluster_size.sum(), torch.tensor(float(4 * 8 * 32)))  # one count per vector
        torch.testing.assert_close(layer.embed_avg, layer.embed * layer.cluster_size[:, None])


def test_eval_mode_freezes_codebooks_and_is_deterministic(tiny_model, tiny_config):
    features = features_for(tiny_config)
    tiny_model.eval()
    with torch.no_grad():
        tiny_model(features)  # k-means init
        state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
        first = tiny_model(features)
        second = tiny_model(features)
    assert torch.equal(first.audio_codes, second.audio_codes)
    assert torch.equal(first.reconstruction, second.reconstruction)
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_training_updates_ema_buffers(tiny_model, tiny_config):
    features = features_for(tiny_config)
    tiny_model.train()
    tiny_model(features)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items() if "quantizer" in k}
    tiny_model(features)
    changed = [k for k, v in tiny_model.state_dict().items() if "quantizer" in k and not torch.equal(v, before[k])]
    assert any(k.endswith("cluster_size") for k in changed)
    assert any(k.endswith(".embed") for k in changed)


def test_dead_codes_are_replaced(tiny_config):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config).train()
    features = features_for(tiny_config)
    model(features)  # k-means init; EMA step follows in the same call
    codebook = model.quantizer.layers[0]
    with torch.no_grad():
        codebook.cluster_size[:4] = 0.0  # four codes fall "dead"
        codebook.embed[:4] = 1e6  # far from every input, never chosen
        codebook.embed_avg[:4] = 1e6
    model(features)
    threshold = tiny_config.threshold_ema_dead_code
    assert (codebook.embed[:4].abs() < 1e3).all()  # replaced by batch vectors
    assert (codebook.cluster_size >= threshold * tiny_config.decay - 1e-6).all()

    # With replacement off, dead codes stay as they are.
    config_off = DistillVQVAEConfig(**{**tiny_config.to_diff_dict(), "threshold_ema_dead_code": 0})
    torch.manual_seed(0)
    model_off = DistillVQVAEModel(config_off).train()
    model_off(features)
    codebook_off = model_off.quantizer.layers[0]
    with torch.no_grad():
        codebook_off.cluster_size[:4] = 0.0
        codebook_off.embed[:4] = 1e6
        codebook_off.embed_avg[:4] = 1e6
    model_off(features)
    assert (codebook_off.cluster_size[:4] < threshold).all()


def test_loss_falls_with_adamw(tiny_config):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config).train()
    features = features_for(tiny_config, num_clips=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model(features).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_batch_equals_items_one_by_one(tiny_model, tiny_config):
    features = features_for(tiny_config, num_clips=4)
    tiny_model.eval()
    with torch.no_grad():
        tiny_model(features)  # k-means init
        batch_codes = tiny_model.encode(features).audio_codes
        single_codes = torch.cat([tiny_model.encode(features[i : i + 1]).audio_codes for i in range(4)])
    assert torch.equal(batch_codes, single_codes)


def test_decode_of_encode_equals_forward(tiny_model, tiny_config):
    features = features_for(tiny_config)[..., :101]  # a frame count that is not a multiple of the stride
    tiny_model.eval()
    with torch.no_grad():
        output = tiny_model(features)
        encoded = tiny_model.encode(features)
        from_latents = tiny_model.decode(quantized_representation=encoded.quantized_representation, target_length=101)
        from_codes = tiny_model.decode(encoded.audio_codes, target_length=101)
    assert torch.equal(encoded.audio_codes, output.audio_codes)
    assert torch.equal(from_latents.reconstruction, output.reconstruction)
    # Codes decode through the same arithmetic up to float summation order / kernel layout.
    torch.testing.assert_close(from_codes.reconstruction, output.reconstruction, atol=1e-5, rtol=1e-5)
    # Decoding codes reproduces the quantized representation exactly (sum of code vectors).
    torch.testing.assert_close(
        tiny_model.quantizer.decode_codes(encoded.audio_codes), encoded.quantized_representation, atol=1e-6, rtol=0
    )


def test_codebook_usage():
    config = DistillVQVAEConfig(codebook_size=4, num_quantizers=2, codebook_dim=4, encoder_channels=[4], n_mels=8)
    model = DistillVQVAEModel(config)
    codes = torch.tensor([[[[0, 0], [1, 1]], [[2, 2], [2, 2]]]])  # [1, 2, 2, 2]
    usage = model.codebook_usage(codes)
    assert usage["level_0"] == {"utilization": 0.5, "perplexity": pytest.approx(2.0), "dead_codes": 2}
    assert usage["level_1"] == {"utilization": 0.25, "perplexity": pytest.approx(1.0), "dead_codes": 3}


def test_losses():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 16, 20)
    reconstruction = target + 0.1 * torch.randn_like(target)
    expected = (
        torch.nn.functional.mse_loss(reconstruction, target)
        + torch.nn.functional.mse_loss(
            reconstruction[..., :16, :20].unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2)),
            target.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2)),
        )
        + torch.nn.functional.mse_loss(
            reconstruction.unfold(2, 4, 4).unfold(3, 4, 4).mean((-1, -2)),
            target.unfold(2, 4, 4).unfold(3, 4, 4).mean((-1, -2)),
        )
    ) / 3
    torch.testing.assert_close(multi_scale_mel_loss(reconstruction, target), expected)

    per_level = torch.tensor([0.04, 0.02, 0.01])
    total, recon, commit = vqvae_loss(reconstruction, target, per_level, commitment_weight=0.25)
    torch.testing.assert_close(commit, torch.tensor(0.07 * 0.25))
    torch.testing.assert_close(total, recon + commit)
    _, _, commit_scalar = vqvae_loss(reconstruction, target, 0.07, commitment_weight=0.25)
    torch.testing.assert_close(commit_scalar, commit)


def test_save_load_is_exact(tiny_model, tiny_config, tmp_path):
    tiny_model.train()
    tiny_model(features_for(tiny_config))  # populate EMA buffers, BN statistics and `initted`
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = DistillVQVAEModel.from_pretrained(tmp_path)
    original_state, loaded_state = tiny_model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key in original_state:
        assert original_state[key].dtype == loaded_state[key].dtype, key
        assert torch.equal(original_state[key], loaded_state[key]), key
    assert bool(loaded.quantizer.layers[0].initted)


def test_from_pretrained_honours_overrides(tiny_model, tmp_path):
    tiny_model.config.dropout = 0.3
    tiny_model.save_pretrained(tmp_path)
    loaded = DistillVQVAEModel.from_pretrained(tmp_path, dropout=0.0, threshold_ema_dead_code=0)
    assert loaded.config.dropout == 0.0
    assert all(block.dropout.p == 0.0 for block in loaded.encoder.blocks)
    assert all(layer.threshold_ema_dead_code == 0 for layer in loaded.quantizer.layers)
    assert DistillVQVAEModel.from_pretrained(tmp_path).encoder.blocks[0].dropout.p == 0.3


def test_auto_classes_load_saved_folder(tiny_model, tiny_config, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    DistillFeatureExtractor.from_model_config(tiny_config).save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), DistillVQVAEConfig)
    model = AutoModel.from_pretrained(tmp_path)
    assert isinstance(model, DistillVQVAEModel)
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(extractor, DistillFeatureExtractor)
    assert extractor.sampling_rate == tiny_config.sampling_rate


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 1, 30, 20), "input_features` must have shape"),  # wrong n_mels
        ((2, 2, 32, 20), "input_features` must have shape"),  # two channels
        ((32, 20), "input_features` must have shape"),
        ((1, 1, 1, 32, 20), "input_features` must have shape"),
        ((0, 1, 32, 20), "empty"),
        ((1, 1, 32, 0), "empty"),
    ],
)
def test_bad_feature_shapes(tiny_model, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(torch.zeros(shape))


def test_bad_feature_types(tiny_model):
    with pytest.raises(ValueError, match="torch.Tensor"):
        tiny_model([[0.0]])
    with pytest.raises(ValueError, match="floating-point"):
        tiny_model(torch.zeros(1, 1, 32, 8, dtype=torch.long))


def test_bad_codes(tiny_model, tiny_config):
    good = torch.zeros(1, tiny_config.num_quantizers, 8, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\)"):
        tiny_model.decode(good + 16)
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\)"):
        tiny_model.decode(good - 1)
    with pytest.raises(ValueError, match="3 quantizer levels but the model has 2"):
        tiny_model.decode(torch.zeros(1, 3, 8, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer code indices"):
        tiny_model.decode(good.float())
    with pytest.raises(ValueError, match="shape"):
        tiny_model.decode(good[0])
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model.decode()
    with pytest.raises(ValueError, match="target_length"):
        tiny_model.decode(good, target_length=100)
    with pytest.raises(ValueError, match="quantized_representation"):
        tiny_model.decode(quantized_representation=torch.zeros(1, 3, 8, 2))
    with pytest.raises(ValueError, match=r"must lie in \[0, 16\)"):
        tiny_model.codebook_usage(good + 99)


def test_bf16_autocast_keeps_quantizer_float32(tiny_config):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config).train()
    features = features_for(tiny_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(features)
        assert output.latents.dtype == torch.bfloat16  # the convolutions did run in bf16
        assert output.quantized_representation.dtype == torch.float32
        assert torch.isfinite(output.loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    for layer in model.quantizer.layers:
        for name in ("embed", "embed_avg", "cluster_size"):
            buffer = getattr(layer, name)
            assert buffer.dtype == torch.float32 and torch.isfinite(buffer).all(), name
    assert all(torch.isfinite(p).all() for p in model.parameters())
