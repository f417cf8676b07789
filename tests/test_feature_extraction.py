"""Tests of `DistillFeatureExtractor`: parity with the original Distill features, input conventions, errors,
fuzzing, serialization and the Griffin-Lim inverse."""

import os


os.environ["HF_HUB_OFFLINE"] = "1"

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from distill_hf.feature_extraction_distill import DistillFeatureExtractor


FIXTURE = Path(__file__).parent / "fixtures" / "distill-v2" / "expected_eval.safetensors"
SR = 48000
HOP = 512
ATOL = 1e-4

EXTRACTOR = DistillFeatureExtractor()


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE)


pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.single_thread


def features(raw, **kwargs):
    kwargs.setdefault("sampling_rate", SR)
    return EXTRACTOR(raw, **kwargs)["input_features"]


def speech(expected, num_samples=48000):
    """The first fixture speech clip, cut to `num_samples`, as float32 numpy."""
    return expected["waveform"][0, 0, :num_samples].numpy()


def max_abs_error(actual, reference):
    return (torch.as_tensor(actual) - torch.as_tensor(reference)).abs().max().item()


# ----------------------------------------------------------------------------------------------------------------
# Parity with the original tool
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["batch_2d", "batch_3d"])
def test_parity_with_original_features(expected, layout):
    waveform = expected["waveform"]
    raw = waveform[:, 0] if layout == "batch_2d" else waveform
    output = EXTRACTOR(raw, sampling_rate=SR)
    assert output["input_features"].shape == (4, 1, 128, 94)
    assert output["input_features"].dtype == torch.float32
    assert max_abs_error(output["input_features"], expected["input_features"]) <= ATOL  # measured: 0.0
    assert output["attention_mask"].shape == (4, 94)
    assert output["attention_mask"].dtype == torch.long
    assert bool((output["attention_mask"] == 1).all())


@pytest.mark.parametrize("layout", ["1d", "3d"])
def test_parity_odd_length_clip(expected, layout):
    waveform = expected["waveform_odd"]
    raw = waveform[0, 0] if layout == "1d" else waveform
    output = features(raw)
    assert output.shape == (1, 1, 128, 73)  # 37000 // 512 + 1
    assert max_abs_error(output, expected["input_features_odd"]) <= ATOL  # measured: 0.0


def test_parity_with_numpy_output(expected):
    output = EXTRACTOR(expected["waveform"].numpy(), sampling_rate=SR, return_tensors="np")
    assert isinstance(output["input_features"], np.ndarray) and output["input_features"].dtype == np.float32
    assert isinstance(output["attention_mask"], np.ndarray)
    assert max_abs_error(output["input_features"], expected["input_features"]) <= ATOL
    assert isinstance(EXTRACTOR(speech(expected), sampling_rate=SR, return_tensors=None)["input_features"], np.ndarray)


# ----------------------------------------------------------------------------------------------------------------
# Input conventions
# ----------------------------------------------------------------------------------------------------------------


def test_mono_clip_as_numpy_torch_and_flat_list(expected):
    clip = speech(expected, 20000)
    reference = features(clip)
    assert reference.shape == (1, 1, 128, 20000 // HOP + 1)
    torch.testing.assert_close(features(torch.from_numpy(clip)), reference, rtol=0, atol=0)
    torch.testing.assert_close(features(clip.tolist()), reference, rtol=0, atol=0)
    torch.testing.assert_close(features(clip.astype(np.float64)), reference, rtol=0, atol=1e-6)


def test_batch_2d_equals_clips_one_by_one(expected):
    batch = expected["waveform"][:3, 0, :30000]
    output = features(batch)
    for index in range(3):
        torch.testing.assert_close(output[index : index + 1], features(batch[index]), rtol=0, atol=1e-5)


def test_multichannel_clips_are_averaged_to_mono(expected):
    left = expected["waveform"][:2, 0, :24000]
    right = expected["waveform"][1:3, 0, :24000] * 0.5
    stereo = torch.stack([left, right], dim=1)  # [batch, channels, samples]
    mean = (left + right) / 2
    torch.testing.assert_close(features(stereo), features(mean), rtol=0, atol=1e-6)
    as_list = [stereo[0].numpy(), stereo[1]]  # list items [channels, samples]
    torch.testing.assert_close(features(as_list), features(mean), rtol=0, atol=1e-6)


def test_clips_of_different_lengths_are_padded_with_a_frame_mask(expected):
    lengths = [48000, 37000, 20001, 1500]
    clips = [expected["waveform"][i % 3, 0, :n].numpy() for i, n in enumerate(lengths)]
    output = EXTRACTOR(clips, sampling_rate=SR)
    assert output["input_features"].shape == (4, 1, 128, 94)
    assert output["attention_mask"].sum(dim=1).tolist() == [n // HOP + 1 for n in lengths]  # [94, 73, 40, 3]
    # The longest clip is not padded at all.
    torch.testing.assert_close(output["input_features"][:1], features(clips[0]), rtol=0, atol=1e-5)
    # A padded clip's frames whose window lies inside the real audio match its solo features.
    solo = features(clips[1])
    inside = (37000 - 2048 // 2) // HOP + 1
    torch.testing.assert_close(output["input_features"][1, ..., :inside], solo[0, ..., :inside], rtol=0, atol=1e-5)


def test_nested_python_lists(expected):
    batch = expected["waveform"][:2, 0, :6000]
    torch.testing.assert_close(features(batch.tolist()), features(batch), rtol=0, atol=0)
    ragged = [batch[0, :6000].tolist(), batch[1, :3000].tolist()]
    output = EXTRACTOR(ragged, sampling_rate=SR)
    assert output["attention_mask"].sum(dim=1).tolist() == [6000 // HOP + 1, 3000 // HOP + 1]


@pytest.mark.parametrize(
    ("dtype", "pcm_value", "float_value"),
    [
        (np.int16, 16384, 0.5),
        (np.int32, 2**30, 0.5),
        (np.int8, -64, -0.5),
        (np.uint8, 192, 0.5),  # offset binary: (192 - 128) / 128
        (np.uint8, 128, 0.0),
    ],
)
def test_integer_pcm_is_scaled_to_unit_range(dtype, pcm_value, float_value):
    rng = np.random.default_rng(0)
    pcm = np.full(4000, pcm_value, dtype=dtype)
    pcm[::7] = dtype(pcm_value // 2 if dtype != np.uint8 else 128)  # some structure besides DC
    scaled = pcm.astype(np.float64)
    scaled = (scaled - 128) / 128 if dtype == np.uint8 else scaled / (np.iinfo(dtype).max + 1)
    assert scaled[1] == float_value
    reference = features(scaled.astype(np.float32))
    torch.testing.assert_close(features(pcm), reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(features(torch.from_numpy(pcm)), reference, rtol=0, atol=1e-5)
    noise = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, size=(2, 3000), endpoint=True).astype(dtype)
    assert torch.isfinite(features(noise)).all()


def test_int16_speech_matches_float_speech(expected):
    clip = speech(expected, 30000)
    pcm = np.round(clip * 32767).astype(np.int16)
    torch.testing.assert_close(features(pcm), features(pcm / 32768.0), rtol=0, atol=1e-5)
    assert max_abs_error(features(pcm), features(clip)) < 1e-2  # only quantisation noise differs


def test_resampling_on_request():
    one_second_16k = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    output = EXTRACTOR(one_second_16k, sampling_rate=16000, resample=True)
    assert output["input_features"].shape == (1, 1, 128, 94)  # 48000 // 512 + 1
    assert output["attention_mask"].sum().item() == 94


def test_max_length_padding_and_truncation(expected):
    clip = speech(expected, 10000)
    output = EXTRACTOR(clip, sampling_rate=SR, padding="max_length", max_length=20000)
    assert output["input_features"].shape[-1] == 20000 // HOP + 1
    assert output["attention_mask"].sum().item() == 10000 // HOP + 1
    cut = EXTRACTOR(clip, sampling_rate=SR, padding="max_length", max_length=5000, truncation=True)
    torch.testing.assert_close(cut["input_features"], features(clip[:5000]), rtol=0, atol=0)
    assert "attention_mask" not in EXTRACTOR(clip, sampling_rate=SR, return_attention_mask=False)


def test_missing_sampling_rate_warns_and_assumes_the_configured_rate(expected, caplog):
    clip = speech(expected, 6000)
    with caplog.at_level(logging.WARNING):
        output = EXTRACTOR(clip)
    assert "sampling_rate" in caplog.text
    torch.testing.assert_close(output["input_features"], features(clip), rtol=0, atol=0)


def test_mel_transform_is_built_once(expected):
    extractor = DistillFeatureExtractor()
    extractor(speech(expected, 6000), sampling_rate=SR)
    transform = extractor._mel_transforms["cpu"]
    extractor(speech(expected, 9000), sampling_rate=SR)
    assert extractor._mel_transforms["cpu"] is transform


# ----------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------

CLIP = np.zeros(3000, dtype=np.float32)


@pytest.mark.parametrize(
    ("raw", "kwargs", "match"),
    [
        (CLIP, {"sampling_rate": 16000}, r"16000 Hz.*48000 Hz"),
        (CLIP, {"sampling_rate": 0}, r"`sampling_rate` must be a positive integer"),
        (np.array([], dtype=np.float32), {}, r"empty"),
        (np.zeros((0, 3000), dtype=np.float32), {}, r"empty"),
        ([], {}, r"empty"),
        ([CLIP, np.zeros(0, dtype=np.float32)], {}, r"Clip 1 of `raw_speech` is empty"),
        (np.where(np.arange(3000) == 5, np.nan, 0.0), {}, r"NaN or infinite"),
        (np.where(np.arange(3000) == 5, np.inf, 0.0), {}, r"NaN or infinite"),
        # 1e39 is finite in float64 but not in float32.
        (np.full(3000, 1e39), {}, r"NaN or infinite samples \(or beyond float32\)"),
        (np.full(3000, 1e30, dtype=np.float32), {}, r"overflowed float32"),
        (np.zeros((1, 1, 1, 3000)), {}, r"\[batch, channels, samples\].*\(1, 1, 1, 3000\)"),
        (np.float32(0.5), {}, r"list of clips, got float32"),
        (np.array(0.5), {}, r"got shape \(\)"),
        ([np.zeros((1, 2, 3000))], {}, r"`raw_speech\[0\]` must be \[samples\] or \[channels, samples\], got \(1, 2"),
        ([np.zeros((3000, 2))], {}, r"2 samples.*\[channels, samples\]"),
        ("a string", {}, r"must be a numpy array, torch tensor or list of clips, got str"),
        (["ab", "cd"], {}, r"`raw_speech\[0\]` must be an array of audio samples, got str"),
        (np.array(["ab", "cd"]), {}, r"real audio samples.*dtype <U2"),
        (np.array([CLIP, CLIP[:10]], dtype=object), {}, r"real audio samples.*dtype object"),
        ([[[0.1, 0.2], [0.3]]], {}, r"could not be read as an array"),
        (np.zeros(3000, dtype=np.complex64), {}, r"real audio samples.*got an array of dtype complex64"),
        (torch.zeros(3000, dtype=torch.complex64), {}, r"real audio samples.*complex64"),
        (np.zeros(3000, dtype=bool), {}, r"real audio samples.*bool"),
        (np.zeros(3000, dtype=np.int64), {}, r"dtype int64, which has no PCM convention"),
        ({"array": CLIP}, {}, r"got dict"),
        (np.zeros(1000, dtype=np.float32), {}, r"too short: 1000 samples.*at least 1025"),
        (CLIP, {"return_tensors": "tf"}, r"`return_tensors` must be"),
        (CLIP, {"padding": "sideways"}, r"`padding` must be"),
        (CLIP, {"padding": "max_length"}, r"needs `max_length`"),
        (CLIP, {"padding": "max_length", "max_length": 2000}, r"3000 samples, more than `max_length` = 2000"),
        ([CLIP, CLIP[:2000]], {"padding": False}, r"`padding` must be True, 'longest' or 'max_length'"),
    ],
)
def test_invalid_input_raises_a_clear_value_error(raw, kwargs, match):
    kwargs.setdefault("sampling_rate", SR)
    with pytest.raises(ValueError, match=match):
        EXTRACTOR(raw, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_size": 64, "n_mels": 80}, r"feature_size=64 and n_mels=80"),
        ({"n_fft": 0}, r"`n_fft` must be a positive integer"),
        ({"hop_length": 1.5}, r"`hop_length` must be a positive integer"),
        ({"sampling_rate": True}, r"`sampling_rate` must be a positive integer"),
        ({"n_mels": -1}, r"`n_mels` must be a positive integer"),
        ({"f_min": -1.0}, r"`f_min` must lie in"),
        ({"f_max": 30000.0}, r"`f_max` must be None or lie in \(f_min = 0.0, 24000.0\], got 30000.0"),
        ({"f_min": 100.0, "f_max": 50.0}, r"`f_max` must be None or lie in"),
        ({"power": 0.0}, r"`power` must be > 0"),
        ({"power": float("nan")}, r"`power` must be a finite number"),
        ({"padding_value": "zero"}, r"`padding_value` must be a finite number"),
        ({"return_attention_mask": "yes"}, r"`return_attention_mask` must be a bool"),
        ({"padding_side": "left"}, r"`padding_side` must be 'right'"),
    ],
)
def test_invalid_configuration_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DistillFeatureExtractor(**kwargs)


def test_feature_size_follows_n_mels():
    assert DistillFeatureExtractor(n_mels=80).feature_size == 80
    assert DistillFeatureExtractor(feature_size=64).n_mels == 64
    assert DistillFeatureExtractor().feature_size == DistillFeatureExtractor().n_mels == 128


# ----------------------------------------------------------------------------------------------------------------
# Fuzzing
# ----------------------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=6000), min_size=1, max_size=3),
    channels=st.sampled_from([None, 1, 2]),
    dtype=st.sampled_from(["float32", "float64", "int16", "int32"]),
    scale=st.sampled_from([0.0, 1e-30, 1e-6, 1.0, 1e3, 1e20, 1e30]),
    corruption=st.sampled_from([None, None, None, "nan", "inf"]),
    as_list=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_fuzz_raises_value_error_or_returns_finite_features(
    lengths, channels, dtype, scale, corruption, as_list, seed
):
    rng = np.random.default_rng(seed)
    shape = (lambda n: (n,)) if channels is None else (lambda n: (channels, n))
    clips = [rng.standard_normal(shape(n)) * scale for n in lengths]
    if corruption is not None:
        clips[0].flat[rng.integers(clips[0].size)] = np.nan if corruption == "nan" else np.inf
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        clips = [np.clip(np.nan_to_num(clip), info.min, info.max).astype(dtype) for clip in clips]
    else:
        clips = [clip.astype(dtype) for clip in clips]
    raw = clips if as_list or len(set(lengths)) > 1 else np.stack(clips)

    try:
        output = EXTRACTOR(raw, sampling_rate=SR)
    except (ValueError, TypeError):
        # Only these may be refused: NaN/Inf, audio too loud for float32, a batch shorter than n_fft // 2 + 1.
        corrupt = corruption is not None and not dtype.startswith("int")
        assert corrupt or (scale >= 1e20 and dtype.startswith("float")) or max(lengths) < 1025
        return
    frames = max(lengths) // HOP + 1
    assert output["input_features"].shape == (len(lengths), 1, 128, frames)
    assert torch.isfinite(output["input_features"]).all()
    assert output["attention_mask"].sum(dim=1).tolist() == [n // HOP + 1 for n in lengths]


# ----------------------------------------------------------------------------------------------------------------
# Serialization
# ----------------------------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path, expected):
    extractor = DistillFeatureExtractor(n_mels=64, f_min=20.0, f_max=16000.0, power=1.0, padding_value=0.0)
    clip = speech(expected, 12000)
    before = extractor(clip, sampling_rate=SR)["input_features"]  # fills the caches, which must not be saved
    extractor.features_to_waveform(before, n_iter=1)
    extractor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert not any(key.startswith("_") for key in saved)
    assert saved["feature_extractor_type"] == "DistillFeatureExtractor" and saved["n_mels"] == 64

    reloaded = DistillFeatureExtractor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == extractor.to_dict()
    torch.testing.assert_close(reloaded(clip, sampling_rate=SR)["input_features"], before, rtol=0, atol=0)


def test_from_model_config_duck_typed():
    config = SimpleNamespace(
        sampling_rate=16000, n_fft=1024, hop_length=256, n_mels=80, f_min=20.0, f_max=8000.0, power=1.0
    )
    extractor = DistillFeatureExtractor.from_model_config(config, padding_value=0.0)
    for name in vars(config):
        assert getattr(extractor, name) == getattr(config, name)
    assert extractor.feature_size == 80
    output = extractor(np.zeros(16000, dtype=np.float32), sampling_rate=16000)
    assert output["input_features"].shape == (1, 1, 80, 16000 // 256 + 1)


# ----------------------------------------------------------------------------------------------------------------
# Inverse: features -> waveform
# ----------------------------------------------------------------------------------------------------------------


def spectral_convergence(estimate, reference):
    return (torch.linalg.vector_norm(estimate - reference) / torch.linalg.vector_norm(reference)).item()


def test_features_to_waveform_reproduces_the_spectrogram(expected):
    speech_features = expected["input_features"][:3]  # clip 3 is silence
    waveform = EXTRACTOR.features_to_waveform(speech_features)
    assert waveform.shape == (3, 93 * HOP)  # (frames - 1) * hop_length
    assert waveform.dtype == torch.float32 and torch.isfinite(waveform).all()
    refeatured = features(waveform)
    assert refeatured.shape == speech_features.shape
    # Measured with the defaults (n_iter=20, momentum=0.99, 10 non-negative mel-inverse updates, phase-gradient
    # start): 0.0539, 0.0551, 0.0560 for the three speech clips (the previous defaults, 32 iterations from zero phase
    # on the clamped pseudo-inverse: 0.1005, 0.1389, 0.0990); the bound leaves margin for platform differences.
    # tests/test_vocoder.py compares against the original's 128 iterations.
    for index in range(3):
        assert spectral_convergence(refeatured[index], speech_features[index]) < 0.1
    # Deterministic with the default phase-gradient start.
    torch.testing.assert_close(EXTRACTOR.features_to_waveform(speech_features), waveform, rtol=0, atol=0)


def test_features_to_waveform_accepts_every_layout(expected):
    batch = expected["input_features"][2:]  # a speech clip and the silent one
    reference = EXTRACTOR.features_to_waveform(batch, n_iter=4)
    torch.testing.assert_close(EXTRACTOR.features_to_waveform(batch[:, 0], n_iter=4), reference)
    torch.testing.assert_close(EXTRACTOR.features_to_waveform(batch[:, 0].numpy(), n_iter=4), reference)
    torch.testing.assert_close(EXTRACTOR.features_to_waveform(batch[0, 0], n_iter=4), reference[:1])
    assert reference[1].abs().max().item() < 1e-6  # silence stays silent
    assert EXTRACTOR.features_to_waveform(batch, n_iter=4, length=48000).shape == (2, 48000)


@pytest.mark.parametrize(
    ("features_", "kwargs", "match"),
    [
        (torch.zeros(1, 1, 80, 20), {}, r"\[batch, 1, 128, frames\].*got \(1, 1, 80, 20\)"),
        (torch.zeros(1, 2, 128, 20), {}, r"must have shape.*got \(1, 2, 128, 20\)"),
        (torch.zeros(20), {}, r"must have shape"),
        (torch.zeros(0, 128, 20), {}, r"with batch >= 1, got \(0, 128, 20\)"),
        (np.full((128, 20), "x"), {}, r"real numbers, got dtype <U1"),
        (torch.full((128, 20), float("nan")), {}, r"NaN or infinite"),
        (torch.zeros(128, 20, dtype=torch.complex64), {}, r"real numbers"),
        (torch.zeros(128, 2), {}, r"Cannot invert 2 frames to 512 samples"),
        (torch.zeros(128, 20), {"length": 48000}, r"cover at most 10751"),
        (torch.zeros(128, 20), {"n_iter": -1}, r"`n_iter` must be a non-negative integer"),
        (torch.zeros(128, 20), {"momentum": 1.0}, r"`momentum` must lie in \[0, 1\)"),
    ],
)
def test_features_to_waveform_rejects_bad_input(features_, kwargs, match):
    with pytest.raises(ValueError, match=match):
        EXTRACTOR.features_to_waveform(features_, **kwargs)
