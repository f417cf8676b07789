"""Parity with the original Distill implementation, against the outputs it produced (tests/fixtures/distill-v2).

The fixture's codes use the original layout `[B, H*W, Q]` (positions row-major over (H, W)); ours is
`[B, Q, H, W]`. Everything else compares tensor for tensor.
"""

import pytest
import torch

from conversion.convert_distill_checkpoint import convert_state_dict
from distill_hf import DistillFeatureExtractor, DistillVQVAEModel


def to_our_layout(original_codes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    batch_size, _, num_quantizers = original_codes.shape
    # [B, H*W, Q] -> [B, H, W, Q] -> [B, Q, H, W]
    return original_codes.reshape(batch_size, height, width, num_quantizers).permute(0, 3, 1, 2)


def assert_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    actual, expected = actual.reshape(-1).double(), expected.reshape(-1).double()
    assert torch.allclose(actual, expected, rtol=rtol, atol=0), f"{actual} != {expected} (rtol {rtol})"


@pytest.fixture(scope="module")
def eval_model(converted_dir):
    return DistillVQVAEModel.from_pretrained(converted_dir).eval()


@pytest.mark.parametrize("suffix", ["", "_odd"])
def test_feature_parity(converted_dir, expected_eval, suffix):
    extractor = DistillFeatureExtractor.from_pretrained(converted_dir)
    waveform = expected_eval[f"waveform{suffix}"]  # [B, 1, samples]
    features = extractor(waveform, sampling_rate=48000, return_tensors="pt").input_features
    torch.testing.assert_close(features, expected_eval[f"input_features{suffix}"], atol=1e-4, rtol=0)


def test_eval_parity(eval_model, expected_eval):
    features = expected_eval["input_features"]
    with torch.no_grad():
        output = eval_model(features)
        decoded = eval_model.decode(
            to_our_layout(expected_eval["audio_codes"], 8, 6), target_length=features.shape[-1]
        ).reconstruction

    torch.testing.assert_close(output.reconstruction, expected_eval["reconstruction"], atol=1e-5, rtol=0)
    torch.testing.assert_close(output.latents, expected_eval["encoder_output"], atol=1e-5, rtol=0)
    torch.testing.assert_close(decoded, expected_eval["decoded_from_codes"], atol=1e-5, rtol=0)
    assert output.audio_codes.dtype == torch.long
    assert torch.equal(output.audio_codes, to_our_layout(expected_eval["audio_codes"], 8, 6))
    assert_relative(output.loss, expected_eval["loss"], 1e-6)
    assert_relative(output.recon_loss, expected_eval["recon_loss"], 1e-6)
    assert output.commit_loss.item() == 0.0  # no commitment term in eval mode


def test_eval_parity_odd_length(eval_model, expected_eval):
    features = expected_eval["input_features_odd"]  # 73 frames: padded to 80 inside, cropped back
    with torch.no_grad():
        output = eval_model(features)
    assert output.reconstruction.shape == features.shape
    torch.testing.assert_close(output.reconstruction, expected_eval["reconstruction_odd"], atol=1e-5, rtol=0)
    assert torch.equal(output.audio_codes, to_our_layout(expected_eval["audio_codes_odd"], 8, 5))


def test_training_step_parity(converted_dir, expected_train_step):
    """One training step under the fixture's conditions: dropout 0, no dead-code replacement."""
    expected = expected_train_step
    model = DistillVQVAEModel.from_pretrained(converted_dir, dropout=0.0, threshold_ema_dead_code=0)
    model.train()
    output = model(expected["input_features"])
    output.loss.backward()

    torch.testing.assert_close(output.reconstruction, expected["reconstruction"], atol=1e-5, rtol=0)
    assert torch.equal(output.audio_codes, to_our_layout(expected["audio_codes"], 8, 6))
    assert_relative(output.loss, expected["loss"], 1e-5)
    assert_relative(output.recon_loss, expected["recon_loss"], 1e-5)
    assert_relative(output.commit_loss, expected["weighted_commit_loss"], 1e-5)
    torch.testing.assert_close(output.loss, output.recon_loss + output.commit_loss, atol=0, rtol=0)

    after = convert_state_dict({k.removeprefix("after."): v for k, v in expected.items() if k.startswith("after.")})
    state = model.state_dict()
    assert len(after) == 3 * 4 + 7 * 3  # 3 levels x 4 codebook buffers, 7 BatchNorms x 3 statistics
    for name, value in after.items():
        if value.is_floating_point():
            torch.testing.assert_close(state[name], value, atol=1e-5, rtol=0, msg=f"buffer {name}")
        else:
            assert torch.equal(state[name], value), f"buffer {name}"

    grads = convert_state_dict({k.removeprefix("grad."): v for k, v in expected.items() if k.startswith("grad.")})
    parameters = dict(model.named_parameters())
    assert set(grads) == set(parameters)
    for name, expected_grad in grads.items():
        grad = parameters[name].grad
        if _feeds_training_batchnorm(name):
            # A bias added right before a training-mode BatchNorm is removed by the mean subtraction: its exact
            # gradient is 0 and both implementations hold only rounding noise (< 1e-7 here). Check that both are
            # noise next to the weight gradient of the same conv, rather than comparing noise with noise.
            scale = parameters[name.replace(".bias", ".weight")].grad.abs().max()
            assert grad.abs().max() < 1e-4 * scale and expected_grad.abs().max() < 1e-4 * scale, name
            continue
        error = (grad - expected_grad).abs().max()
        assert error <= 1e-4 * expected_grad.abs().max(), f"gradient {name}: max error {error}"


def _feeds_training_batchnorm(name: str) -> bool:
    return name.endswith(".conv.bias") and ".blocks." in name
