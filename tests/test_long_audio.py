"""Recordings of any length: chunked features, codes and decoding equal one full pass; the vocoder joins are seamless."""

import pytest
import torch
from conftest import synthetic_audio

from distill_hf import (
    DistillFeatureExtractor,
    DistillVQVAEModel,
    compute_features,
    decode_audio,
    decode_features,
    encode_audio,
    encode_features,
    vocode_features,
)
from distill_hf.long_audio import DECODER_MARGINS, ENCODER_MARGINS


SR = 48000
HOP = 512


pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.single_thread


@pytest.fixture(scope="module")
def model(converted_dir):
    return DistillVQVAEModel.from_pretrained(converted_dir).eval()


@pytest.fixture(scope="module")
def extractor(converted_dir):
    return DistillFeatureExtractor.from_pretrained(converted_dir)


@pytest.fixture(scope="module")
def recording(expected_eval):
    """60 s of varied material + an odd tail: recorded speech, tones with vibrato and noise bursts, a chirp, silence."""
    speech = expected_eval["waveform"][:3, 0].reshape(-1)  # 3 s of recorded speech
    t = torch.arange(4 * SR) / SR
    chirp = 0.3 * torch.sin(2 * torch.pi * (100 * t + 1500 * t**2))
    parts = [speech, synthetic_audio(1, 9 * SR, SR, seed=1)[0], torch.zeros(2 * SR), chirp, speech,
             synthetic_audio(1, 12 * SR, SR, seed=2)[0], 0.05 * torch.randn(3 * SR, generator=torch.Generator().manual_seed(3)),
             speech, synthetic_audio(1, 21 * SR, SR, seed=4)[0]]
    audio = torch.cat(parts)
    assert audio.numel() == 60 * SR
    return torch.cat([audio, 0.1 * torch.sin(2 * torch.pi * 440 * torch.arange(12345) / SR)])  # 60.26 s


@pytest.fixture(scope="module")
def full_pass(model, extractor, recording):
    """What one pass over the whole recording gives."""
    features = extractor(recording, sampling_rate=SR).input_features
    with torch.inference_mode():
        encoded = model.encode(features)
        reconstruction = model.decode(encoded.audio_codes, target_length=features.shape[-1]).reconstruction
    return {"features": features, "codes": encoded.audio_codes, "reconstruction": reconstruction}


# ----------------------------------------------------------------------------------------------------------------
# Encoding: identical codes
# ----------------------------------------------------------------------------------------------------------------


def test_full_pass_shapes(full_pass, recording):
    frames = recording.numel() // HOP + 1
    assert full_pass["features"].shape == (1, 1, 128, frames)  # 5650 frames: not a multiple of 16
    assert frames % 16 != 0
    assert full_pass["codes"].shape == (1, 3, 8, -(-frames // 16))


@pytest.mark.parametrize("chunk_seconds", [10.0, 7.3, 1.0])
def test_chunked_features_equal_one_pass(extractor, recording, full_pass, chunk_seconds):
    features = compute_features(extractor, recording, chunk_seconds=chunk_seconds)
    assert features.shape == full_pass["features"].shape
    torch.testing.assert_close(features, full_pass["features"], rtol=0, atol=1e-5)  # measured: 0.0 (bit for bit)


@pytest.mark.parametrize("chunk_seconds", [10.0, 7.3, 3.1, 0.9])
def test_chunked_codes_identical_to_one_pass(model, extractor, recording, full_pass, chunk_seconds):
    """Chunks of 10 s divide 60 s but not 60.26 s; 7.3, 3.1 and 0.9 s divide neither (0.9 s: 5 positions a chunk)."""
    codes = encode_audio(model, extractor, recording, chunk_seconds=chunk_seconds)
    assert codes.dtype == torch.long and codes.shape == full_pass["codes"].shape
    assert torch.equal(codes, full_pass["codes"])


def test_default_chunking_and_layouts(model, extractor, recording, full_pass):
    assert torch.equal(encode_audio(model, extractor, recording), full_pass["codes"])
    stereo = torch.stack([recording, recording])  # (channels, samples): averaged to the same mono signal
    assert torch.equal(encode_audio(model, extractor, stereo.numpy(), chunk_seconds=20), full_pass["codes"])


def test_receptive_field_margins_are_the_derived_ones(model, full_pass):
    """Encoder: 1 position of left context is needed and enough, the right needs none; decoder the other way round."""
    features, codes = full_pass["features"], full_pass["codes"]
    assert ENCODER_MARGINS == (1, 0) and DECODER_MARGINS == (0, 1)
    assert torch.equal(encode_features(model, features, chunk_seconds=2.0, margins=(1, 0)), codes)
    assert not torch.equal(encode_features(model, features, chunk_seconds=2.0, margins=(0, 1)), codes)
    target = full_pass["reconstruction"]
    good = decode_features(model, codes, features.shape[-1], chunk_seconds=2.0, margins=(0, 1))
    assert (good - target).abs().max() < 1e-4
    bad = decode_features(model, codes, features.shape[-1], chunk_seconds=2.0, margins=(1, 0))
    assert (bad - target).abs().max() > 1e-2


def test_model_mode_is_restored(model, extractor, recording, full_pass):
    model.train()
    try:
        codes = encode_audio(model, extractor, recording[: 5 * SR], chunk_seconds=2.0)
        assert model.training
    finally:
        model.eval()
    with torch.inference_mode():
        expected = model.encode(extractor(recording[: 5 * SR], sampling_rate=SR).input_features).audio_codes
    assert torch.equal(codes, expected)


def test_resampling_and_input_errors(model, extractor, recording):
    audio_16k = recording[: 2 * SR : 3]  # 2 s at 16 kHz
    codes = encode_audio(model, extractor, audio_16k, sampling_rate=16000)
    assert codes.shape[-1] == -(-(2 * SR // HOP + 1) // 16)
    with pytest.raises(ValueError, match="too short"):
        encode_audio(model, extractor, torch.zeros(1000))
    with pytest.raises(ValueError, match="float samples"):
        encode_audio(model, extractor, torch.zeros(SR, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(channels, num_samples\)"):
        encode_audio(model, extractor, torch.zeros(SR, 2))
    with pytest.raises(ValueError, match="NaN"):
        encode_audio(model, extractor, torch.full((SR,), float("nan")))
    with pytest.raises(ValueError, match="chunk_seconds"):
        encode_audio(model, extractor, recording[:SR], chunk_seconds=0)


# ----------------------------------------------------------------------------------------------------------------
# Decoding
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_seconds", [10.0, 7.3, 0.9])
def test_chunked_decoding_equals_full_decoding(model, full_pass, chunk_seconds):
    """The decoded spectrogram (mel domain) of chunked decoding is within 1e-4 of one full pass (measured 2.4e-6)."""
    frames = full_pass["features"].shape[-1]
    spectrogram = decode_features(model, full_pass["codes"], frames, chunk_seconds=chunk_seconds)
    assert spectrogram.shape == full_pass["reconstruction"].shape
    assert (spectrogram - full_pass["reconstruction"]).abs().max() < 1e-4


def test_decoding_quantized_representation(model, full_pass):
    codes = full_pass["codes"][..., :100]
    with torch.inference_mode():
        quantized = model.quantizer.decode_codes(codes)
    from_codes = decode_features(model, codes, chunk_seconds=3.0)
    from_latents = decode_features(model, quantized_representation=quantized, chunk_seconds=3.0)
    assert from_codes.shape == (1, 1, 128, 1600)
    assert (from_codes - from_latents).abs().max() < 1e-5


def local_spectral_flux(audio):
    """Mean absolute change of the log-magnitude spectrum from one 64-sample hop to the next (a click is a spike)."""
    spectrum = torch.stft(audio, 512, 64, window=torch.hann_window(512), return_complex=True).abs()
    log_spectrum = torch.log(spectrum + 1e-3)
    return (log_spectrum[:, 1:] - log_spectrum[:, :-1]).abs().mean(dim=0)


def mel_spectral_convergence(extractor, audio, features):
    refeatured = torch.expm1(extractor(audio, sampling_rate=SR).input_features).sqrt()
    reference = torch.expm1(features).sqrt()
    return ((refeatured - reference).norm() / reference.norm()).item()


def test_chunked_vocoder_is_seamless(extractor, full_pass):
    """
    Griffin-Lim in overlapping pieces: at every join the local spectral flux stays what one whole-signal pass has
    there (a click or a phase jump would be a broadband spike), and the quality matches the whole-signal pass.
    """
    features = full_pass["reconstruction"][..., : 24 * SR // HOP]  # the decoded spectrogram of the first 24 s
    num_samples = (features.shape[-1] - 1) * HOP
    chunk_seconds, overlap = 2.0, 32
    chunked = vocode_features(extractor, features, num_samples, chunk_seconds=chunk_seconds, overlap_frames=overlap)
    whole = extractor.features_to_waveform(features, length=num_samples)[0]
    assert chunked.shape == whole.shape == (num_samples,)
    assert torch.isfinite(chunked).all()

    chunk_frames = round(chunk_seconds * SR / HOP)
    joins = list(range(chunk_frames - overlap, features.shape[-1] - chunk_frames, chunk_frames - overlap))
    assert len(joins) >= 10
    flux_chunked, flux_whole = local_spectral_flux(chunked), local_spectral_flux(whole)
    ratios = []
    for start in joins:  # the crossfade spans frames [start + 2, start + overlap - 3] (2 = n_fft / 2 / hop)
        window = slice((start + 2) * HOP // 64 - 8, (start + overlap - 3) * HOP // 64 + 8)
        ratios.append((flux_chunked[window].max() / flux_whole[window].max()).item())
    # Measured: 0.93 to 1.07 at the 13 joins; 0.88 to 1.12 for windows anywhere (two Griffin-Lim runs differ that
    # much). Mel spectral convergence: 0.1514 chunked, 0.1513 whole.
    assert max(ratios) < 1.5, ratios
    assert flux_chunked.max() < 1.5 * flux_whole.max()
    # Waveform continuity: no sample step at a join beyond the largest step of the whole-signal pass.
    assert chunked.diff().abs().max() < 1.5 * whole.diff().abs().max()
    quality_chunked = mel_spectral_convergence(extractor, chunked, features)
    quality_whole = mel_spectral_convergence(extractor, whole, features)
    assert quality_chunked < quality_whole + 0.02, (quality_chunked, quality_whole)


def test_decode_audio_end_to_end(model, extractor, recording, full_pass):
    codes = full_pass["codes"][..., :120]  # the first 120 positions, ~20.5 s
    num_samples = 20 * SR + 77
    audio = decode_audio(model, extractor, codes, num_samples=num_samples, chunk_seconds=5.0)
    assert audio.shape == (num_samples,) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and audio.abs().max() > 0.01
    features = full_pass["reconstruction"][..., : num_samples // HOP + 1]
    whole = extractor.features_to_waveform(features, length=num_samples)[0]
    quality, quality_whole = (mel_spectral_convergence(extractor, a, features) for a in (audio, whole))
    assert quality < quality_whole + 0.02, (quality, quality_whole)
    default = decode_audio(model, extractor, codes[..., :10])
    assert default.shape == ((16 * 10 - 1) * HOP,)


def test_short_input_is_one_features_to_waveform_call(extractor, full_pass):
    features = full_pass["reconstruction"][..., :200]
    torch.testing.assert_close(
        vocode_features(extractor, features, 150 * HOP), extractor.features_to_waveform(features, length=150 * HOP)[0],
        rtol=0, atol=0,
    )


def test_decode_errors(model, extractor, full_pass):
    codes = full_pass["codes"][..., :10]
    with pytest.raises(ValueError, match="needs 161 frames, but 10 code positions decode to at most 160"):
        decode_audio(model, extractor, codes, num_samples=160 * HOP)
    with pytest.raises(ValueError, match="one recording at a time"):
        decode_audio(model, extractor, codes.expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="exactly one of"):
        decode_audio(model, extractor)
    with pytest.raises(ValueError, match=r"must lie in \[0, 64\)"):
        decode_audio(model, extractor, codes + 64)
    with pytest.raises(ValueError, match="overlap_frames"):
        vocode_features(extractor, full_pass["reconstruction"], overlap_frames=4)
    with pytest.raises(ValueError, match="momentum"):
        vocode_features(extractor, full_pass["reconstruction"], chunk_seconds=2.0, momentum=1.0)
