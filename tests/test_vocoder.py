"""The vocoder (`features_to_waveform`): the original's quality on recorded speech with the fast defaults, and the
pieces it is made of (the non-negative mel inverse, the phase-gradient start, the Griffin-Lim loop)."""

import pytest
import torch
import torchaudio

from distill_hf import DistillFeatureExtractor
from distill_hf.feature_extraction_distill import DEFAULT_GRIFFIN_LIM_ITERATIONS, DEFAULT_NNLS_ITERATIONS


SR = 48000
EXTRACTOR = DistillFeatureExtractor()


pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.single_thread


@pytest.fixture(scope="module")
def speech(expected_eval):
    """Clips 0-2 of the fixture: 1 s each of real recorded speech at 48 kHz (clip 3 is silence)."""
    waveform = expected_eval["waveform"][:3, 0]
    return waveform, EXTRACTOR(waveform, sampling_rate=SR).input_features


def spectral_convergence(audio, features):
    """Per clip: (mel magnitude SC, log-mel SC) of the re-analysed output against the input features."""
    refeatured = EXTRACTOR(audio, sampling_rate=SR).input_features
    magnitude_out, magnitude_in = torch.expm1(refeatured).sqrt(), torch.expm1(features).sqrt()
    return [
        (
            ((magnitude_out[i] - magnitude_in[i]).norm() / magnitude_in[i].norm()).item(),
            ((refeatured[i] - features[i]).norm() / features[i].norm()).item(),
        )
        for i in range(features.shape[0])
    ]


def original_vocoder(features, n_iter):
    """The original tool's inverse: torchaudio InverseMelScale + GriffinLim(momentum=0.99), random start (seeded)."""
    torch.manual_seed(0)
    inverse_mel = torchaudio.transforms.InverseMelScale(n_stft=1025, n_mels=128, sample_rate=SR)
    griffin_lim = torchaudio.transforms.GriffinLim(n_fft=2048, hop_length=512, power=2.0, n_iter=n_iter, momentum=0.99)
    return griffin_lim(inverse_mel(torch.expm1(features[:, 0])))


def test_defaults_reach_the_original_quality(speech):
    """
    Defaults within 0.01 of 128 original Griffin-Lim iterations on every clip, in mel magnitude and log-mel spectral
    convergence. Measured: reference 0.0598 / 0.0754 / 0.0546 (mel) and 0.0959 / 0.1331 / 0.0930 (log-mel); defaults
    0.0516 / 0.0322 / 0.0438 and 0.0536 / 0.0548 / 0.0536, better on every clip.
    """
    waveform, features = speech
    assert (DEFAULT_GRIFFIN_LIM_ITERATIONS, DEFAULT_NNLS_ITERATIONS) == (20, 10)
    reference = spectral_convergence(original_vocoder(features, 128), features)
    ours = spectral_convergence(EXTRACTOR.features_to_waveform(features, length=waveform.shape[-1]), features)
    for (mel, log_mel), (reference_mel, reference_log_mel) in zip(ours, reference):
        assert mel <= reference_mel + 0.01
        assert log_mel <= reference_log_mel + 0.01
    # The 32-iteration setting this package used before misses the bound in the mel magnitude measure.
    previous = spectral_convergence(EXTRACTOR.features_to_waveform(features, n_iter=32, nnls_iter=0, phase_init="zero"), features)
    assert max(p[0] - r[0] for p, r in zip(previous, reference)) > 0.01


def test_griffin_lim_loop_computes_what_torchaudio_computes(speech):
    """Without the non-negative solve and from zero phase, the loop is torchaudio's fast Griffin-Lim."""
    _, features = speech
    pseudo_inverse = EXTRACTOR._inverse(torch.device("cpu")).pseudo_inverse
    linear = (pseudo_inverse @ torch.expm1(features[:, 0])).clamp_min(0)
    window = torch.hann_window(2048)
    for length in (None, 48000, 47700):  # natural length, and longer/shorter than it, both 94 frames
        for n_iter in (0, 1, 3):
            expected = torchaudio.functional.griffinlim(linear, window, 2048, 512, 2048, 2.0, n_iter, 0.99, length, False)
            ours = EXTRACTOR.features_to_waveform(features, n_iter=n_iter, nnls_iter=0, phase_init="zero", length=length)
            # Rounding differs (rsqrt of |.|^2 instead of division by |.|), and Griffin-Lim amplifies it where a bin's
            # phase is ill-defined: measured 2e-8 after 0 iterations, 3.6e-5 after 1 and 9e-5 after 3 (peak 0.58).
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-4 if n_iter else 1e-6)
    expected = torchaudio.functional.griffinlim(linear, window, 2048, 512, 2048, 2.0, 32, 0.99, None, False)
    ours = EXTRACTOR.features_to_waveform(features, n_iter=32, nnls_iter=0, phase_init="zero")
    for (mel, log_mel), (mel_t, log_mel_t) in zip(spectral_convergence(ours, features), spectral_convergence(expected, features)):
        assert abs(mel - mel_t) < 2e-3 and abs(log_mel - log_mel_t) < 2e-3


def test_non_negative_inverse_fits_the_mel_spectrum(speech):
    """The clamped pseudo-inverse leaves the mel spectrum ~0.1 off (log-mel SC); 10 KL updates bring it to <0.02."""
    _, features = speech
    mel = torch.expm1(features[:, 0])
    filterbank = torchaudio.functional.melscale_fbanks(1025, 0.0, 24000.0, 128, SR, norm=None, mel_scale="htk")

    def fit(linear):  # linear [batch, frames, n_freqs] -> log-mel SC of its mel spectrum
        remel = torch.log1p(linear @ filterbank).transpose(1, 2)
        return ((remel - features[:, 0]).norm() / features[:, 0].norm()).item()

    clamped, solved = EXTRACTOR._mel_to_linear(mel, 0), EXTRACTOR._mel_to_linear(mel, 10)
    assert (clamped >= 0).all() and (solved >= 0).all()
    assert fit(clamped) > 0.08  # measured 0.109
    assert fit(solved) < 0.02  # measured 0.0072


def test_batch_invariance_and_determinism(speech):
    _, features = speech
    batch = EXTRACTOR.features_to_waveform(features)
    for index in range(3):
        torch.testing.assert_close(EXTRACTOR.features_to_waveform(features[index]), batch[index : index + 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(EXTRACTOR.features_to_waveform(features), batch, rtol=0, atol=0)
    silence = EXTRACTOR.features_to_waveform(torch.zeros(2, 128, 40))
    assert silence.shape == (2, 39 * 512) and silence.abs().max() == 0


def test_phase_gradient_start_beats_zero_phase(speech):
    """Few iterations from the phase-gradient start match more from zero phase."""
    _, features = speech
    start = spectral_convergence(EXTRACTOR.features_to_waveform(features, n_iter=8), features)
    zero = spectral_convergence(EXTRACTOR.features_to_waveform(features, n_iter=16, phase_init="zero"), features)
    assert sum(s[0] for s in start) < sum(z[0] for z in zero)  # measured 0.195 vs 0.249
    randomised = EXTRACTOR.features_to_waveform(features, n_iter=2, phase_init="random")
    assert randomised.shape == (3, 93 * 512) and torch.isfinite(randomised).all()
    with pytest.raises(ValueError, match="`phase_init` must be"):
        EXTRACTOR.features_to_waveform(features, phase_init="pghi")
    with pytest.raises(ValueError, match="`nnls_iter` must be a non-negative integer"):
        EXTRACTOR.features_to_waveform(features, nnls_iter=-1)


def test_other_configurations_invert(expected_eval):
    """A 16 kHz, 80-band, magnitude (power 1) extractor whose n_fft is not a multiple of the hop."""
    extractor = DistillFeatureExtractor(sampling_rate=16000, n_fft=1000, hop_length=300, n_mels=80, power=1.0)
    waveform = torchaudio.functional.resample(expected_eval["waveform"][0, 0], SR, 16000)
    features = extractor(waveform, sampling_rate=16000).input_features
    audio = extractor.features_to_waveform(features, length=waveform.numel())
    refeatured = extractor(audio, sampling_rate=16000).input_features
    assert ((refeatured - features).norm() / features.norm()).item() < 0.15
