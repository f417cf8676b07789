"""Editing helpers: swapping a time region of codes, blending encodings, and the codes file."""

import numpy as np
import pytest
import torch

from distill_hf import (
    DistillFeatureExtractor,
    DistillVQVAEConfig,
    DistillVQVAEModel,
    EncodedAudio,
    blend_encodings,
    decode_audio,
    positions_per_second,
    seconds_to_positions,
    swap_codes,
)


@pytest.fixture(scope="module")
def model(converted_dir):
    return DistillVQVAEModel.from_pretrained(converted_dir).eval()


def random_codes(width, seed, levels=3, height=8, size=64):
    return torch.randint(0, size, (1, levels, height, width), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------
# swap_codes
# ----------------------------------------------------------------------------------------------------------------


def test_swap_replaces_the_region_of_the_chosen_levels():
    target, source = random_codes(20, 0), random_codes(30, 1)
    edited = swap_codes(target, source, 5, 9, levels=[0, 2])
    assert edited.shape == target.shape and edited.dtype == torch.long
    assert torch.equal(edited[:, [0, 2], :, 5:9], source[:, [0, 2], :, 5:9])
    assert torch.equal(edited[:, 1], target[:, 1])  # level 1 untouched
    assert torch.equal(edited[..., :5], target[..., :5]) and torch.equal(edited[..., 9:], target[..., 9:])
    assert not torch.equal(edited, target) and torch.equal(target, random_codes(20, 0))  # a copy; input unchanged


def test_swap_all_levels_from_another_time_and_layouts():
    target, source = random_codes(20, 0), random_codes(30, 1)
    edited = swap_codes(target[0], source[0], 0, 20, source_start=10, codebook_size=64)  # (Q, H, W) in and out
    assert edited.shape == (3, 8, 20) and torch.equal(edited, source[0, ..., 10:30])
    assert torch.equal(swap_codes(target, source, 3, 4, levels=1)[:, 1, :, 3], source[:, 1, :, 3])
    assert torch.equal(swap_codes(target.numpy(), source, 0, 1), swap_codes(target, source, 0, 1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 5, "end": 5}, r"Invalid region \[5, 5\)"),
        ({"start": -1, "end": 3}, r"Invalid region"),
        ({"start": 15, "end": 21}, r"need 0 <= start < end <= 20"),
        ({"start": 0, "end": 5, "source_start": 26}, r"Invalid source region \[26, 31\)"),
        ({"start": 0, "end": 5, "source_start": -2}, r"Invalid source region"),
        ({"start": 0.5, "end": 5}, r"`start` must be an integer code position"),
        ({"start": 0, "end": 5, "levels": [3]}, r"`levels` must be indices in \[0, 3\)"),
        ({"start": 0, "end": 5, "levels": [0, 0]}, r"repeated"),
        ({"start": 0, "end": 5, "levels": []}, r"empty"),
        ({"start": 0, "end": 5, "codebook_size": 32}, r"outside the codebook of size 32"),
    ],
)
def test_swap_rejects_invalid_requests(kwargs, match):
    with pytest.raises(ValueError, match=match):
        swap_codes(random_codes(20, 0), random_codes(30, 1), **kwargs)


def test_swap_rejects_mismatched_grids():
    with pytest.raises(ValueError, match="Mismatched levels: `target_codes` has 3 .* `source_codes` 2"):
        swap_codes(random_codes(20, 0), random_codes(20, 1, levels=2), 0, 5)
    with pytest.raises(ValueError, match="Mismatched frequency bands"):
        swap_codes(random_codes(20, 0), random_codes(20, 1, height=4), 0, 5)
    with pytest.raises(ValueError, match="integer code indices"):
        swap_codes(random_codes(20, 0).float(), random_codes(20, 1), 0, 5)
    with pytest.raises(ValueError, match="codes of one recording"):
        swap_codes(random_codes(20, 0).expand(2, -1, -1, -1), random_codes(20, 1), 0, 5)


def test_seconds_to_positions(model):
    config = model.config
    assert positions_per_second(config) == pytest.approx(48000 / 512 / 16)  # 5.86
    assert seconds_to_positions(0, 1.0, config) == (0, 6)  # positions overlapping [0 s, 1 s)
    assert seconds_to_positions(1.0, 2.0, config) == (5, 12)
    assert seconds_to_positions(512 * 16 / 48000, 2 * 512 * 16 / 48000, config) == (1, 2)  # exact boundaries
    with pytest.raises(ValueError, match="must end after it starts"):
        seconds_to_positions(2.0, 1.0, config)
    with pytest.raises(ValueError, match="`start_seconds` must be"):
        seconds_to_positions(-1, 1.0, config)


# ----------------------------------------------------------------------------------------------------------------
# blend_encodings
# ----------------------------------------------------------------------------------------------------------------


def test_blend_interpolates_quantized_representations(model):
    codes_a, codes_b = random_codes(12, 0), random_codes(12, 1)
    with torch.no_grad():
        quantized_a, quantized_b = model.quantizer.decode_codes(codes_a), model.quantizer.decode_codes(codes_b)
    blend = blend_encodings(model, codes_a, codes_b, alpha=0.25)
    assert blend.shape == (1, 128, 8, 12) and blend.dtype == torch.float32
    torch.testing.assert_close(blend, 0.75 * quantized_a + 0.25 * quantized_b)
    torch.testing.assert_close(blend_encodings(model, codes_a, codes_b, alpha=0.0), quantized_a.contiguous())
    torch.testing.assert_close(blend_encodings(model, codes_a[0], codes_b[0], alpha=1), quantized_b.contiguous())
    ramp = torch.linspace(0, 1, 12)  # a morph from a to b, one weight per position
    morph = blend_encodings(model, codes_a, codes_b, alpha=ramp)
    torch.testing.assert_close(morph[..., 0], quantized_a[..., 0])
    torch.testing.assert_close(morph[..., -1], quantized_b[..., -1])
    spectrogram = model.decode(quantized_representation=blend).reconstruction
    assert spectrogram.shape == (1, 1, 128, 192) and torch.isfinite(spectrogram).all()


def test_blend_of_different_lengths_and_decoding(model, converted_dir):
    extractor = DistillFeatureExtractor.from_pretrained(converted_dir)
    codes_a, codes_b = random_codes(12, 0), random_codes(9, 1)
    with pytest.raises(ValueError, match="different widths .* `truncate=True`"):
        blend_encodings(model, codes_a, codes_b)
    blend = blend_encodings(model, codes_a, codes_b, truncate=True)
    assert blend.shape[-1] == 9
    audio = decode_audio(model, extractor, quantized_representation=blend, num_samples=9 * 16 * 512 - 100)
    assert audio.shape == (9 * 16 * 512 - 100,) and torch.isfinite(audio).all()


@pytest.mark.parametrize(
    ("codes_b", "kwargs", "match"),
    [
        (random_codes(12, 1, levels=2), {}, "Mismatched levels: `codes_b` has 2 quantizer levels but the model has 3"),
        (random_codes(12, 1, size=256), {}, "outside the codebook of size 64"),
        (random_codes(12, 1, height=4), {}, "Mismatched frequency bands"),
        (random_codes(12, 1), {"alpha": 1.5}, r"`alpha` must lie in \[0, 1\]"),
        (random_codes(12, 1), {"alpha": float("nan")}, r"`alpha` must lie in \[0, 1\]"),
        (random_codes(12, 1), {"alpha": [0.5, 0.5]}, "must have 12 values"),
        (random_codes(12, 1), {"alpha": "half"}, "`alpha` must be a number"),
    ],
)
def test_blend_rejects_invalid_input(model, codes_b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        blend_encodings(model, random_codes(12, 0), codes_b, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The codes file
# ----------------------------------------------------------------------------------------------------------------


def test_codes_file_round_trip(model, tmp_path):
    codes = random_codes(7, 3)
    encoded = EncodedAudio.from_model(model, codes, num_samples=50000)
    path = encoded.save(tmp_path / "sub" / "codes.npz")
    assert sorted(p.name for p in path.parent.iterdir()) == ["codes.npz"]  # written atomically, nothing left over
    loaded = EncodedAudio.load(path)
    assert torch.equal(loaded.audio_codes, codes) and loaded.audio_codes.dtype == torch.long
    assert (loaded.num_samples, loaded.sampling_rate, loaded.codebook_size, loaded.num_quantizers) == (50000, 48000, 64, 3)
    assert loaded.num_frames == 50000 // 512 + 1 and loaded.seconds == pytest.approx(50000 / 48000)
    loaded.check_model(model)
    with np.load(path) as data:  # plain arrays, readable without distill_hf
        assert data["audio_codes"].shape == (1, 3, 8, 7) and int(data["codebook_size"]) == 64


def test_codes_file_refuses_a_mismatched_model(model):
    encoded = EncodedAudio.from_model(model, random_codes(7, 3), num_samples=50000)
    config = DistillVQVAEConfig(**{**model.config.to_dict(), "codebook_size": 128})
    other = DistillVQVAEModel(config)
    with pytest.raises(ValueError, match="made by a model with codebook size 64, but this model has codebook size 128"):
        encoded.check_model(other, name="song.npz")
    third = EncodedAudio.from_model(other, random_codes(7, 3, size=128), num_samples=50000)
    with pytest.raises(ValueError, match="come from different models \\(codebook size 64 vs 128\\)"):
        encoded.check_compatible(third)


def test_codes_file_errors(tmp_path):
    with pytest.raises(ValueError, match="codes file not found"):
        EncodedAudio.load(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="cannot read codes file .*text.npz"):
        EncodedAudio.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", audio_codes=np.zeros((1, 3, 8, 2)))
    with pytest.raises(ValueError, match="other.npz is not a distill-hf codes file"):
        EncodedAudio.load(tmp_path / "other.npz")
