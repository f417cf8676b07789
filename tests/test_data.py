"""The audio data pipeline: discovery, decoding, chunking, splitting, augmentation and the `datasets` recipe."""

import math

import numpy as np
import pytest
import soundfile
import torch
from transformers import default_data_collator

from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel
from distill_hf import data
from distill_hf.data import (
    AugmentationParams,
    DistillAudioDataset,
    apply_augmentation,
    augment_chunk,
    build_datasets,
    change_speed,
    decode_audio_item,
    draw_augmentation,
    find_audio_files,
    pitch_shift,
    prepare_hf_dataset,
    split_files,
)

from tests.conftest import synthetic_audio

RATE = 16000
MP3 = "MP3" in soundfile.available_formats()  # libsndfile >= 1.1 writes mp3; older ones cannot


@pytest.fixture
def extractor():
    return DistillFeatureExtractor(sampling_rate=RATE, n_fft=512, hop_length=128, n_mels=32)


def write(path, num_samples, rate=RATE, channels=1, seed=0, **kwargs):
    """Writes synthetic audio (`channels` different clips) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = synthetic_audio(channels, num_samples, rate, seed=seed).T.numpy()  # (samples, channels)
    soundfile.write(str(path), audio, rate, **kwargs)
    return path


def sine(frequency, num_samples, rate=RATE, amplitude=0.5):
    return amplitude * torch.sin(2 * math.pi * frequency * torch.arange(num_samples) / rate)


def peak_frequency(waveform, rate=RATE):
    spectrum = torch.fft.rfft(waveform * torch.hann_window(waveform.shape[-1])).abs()
    return float(spectrum.argmax()) * rate / waveform.shape[-1]


# --- discovery and decoding ----------------------------------------------------------------------------------------


def test_find_audio_files_recursive_mixed_case_and_formats(tmp_path):
    expected = [
        write(tmp_path / "a.wav", 1000),
        write(tmp_path / "nested" / "deeper" / "b.FLAC", 1000, format="FLAC"),
        write(tmp_path / "nested" / "c.Ogg", 4000, format="OGG", subtype="VORBIS"),
    ] + ([write(tmp_path / "d.Mp3", 4000, format="MP3")] if MP3 else [])
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "nested" / "cover.jpg").write_bytes(b"\xff\xd8")
    write(tmp_path / ".hidden" / "e.wav", 1000)  # hidden folders are ignored
    write(tmp_path / "._a.wav", 1000)  # macOS resource fork
    assert find_audio_files(tmp_path) == sorted(expected)


def test_every_format_decodes_to_mono_at_the_model_rate(tmp_path, extractor):
    files = [
        write(tmp_path / "a.wav", 8000),
        write(tmp_path / "b.flac", 8000),
        write(tmp_path / "c.ogg", 8000, format="OGG", subtype="VORBIS"),
    ] + ([write(tmp_path / "d.mp3", 8000, format="MP3")] if MP3 else [])
    dataset = DistillAudioDataset(files, extractor, chunk_duration_s=0.25)
    assert dataset.files == files and dataset.skipped_files == []
    for waveform in dataset._waveforms:
        assert waveform.dim() == 1 and waveform.dtype == torch.float32
        assert abs(waveform.shape[0] - 8000) <= 2000  # mp3 adds encoder delay/padding
    assert dataset[0]["input_features"].shape == (1, 32, 4000 // 128 + 1)


def test_stereo_is_mixed_to_mono(tmp_path, extractor):
    path = write(tmp_path / "stereo.wav", 4000, channels=2, subtype="FLOAT")
    stereo = soundfile.read(str(path), dtype="float32")[0]
    dataset = DistillAudioDataset([path], extractor, chunk_duration_s=0.25)
    torch.testing.assert_close(dataset.chunk_waveform(0), torch.from_numpy(stereo.mean(axis=1)))


def test_other_rates_are_resampled_and_chunk_counts_follow(tmp_path, extractor):
    path = write(tmp_path / "cd.wav", 44100, rate=44100)  # 1 s at 44.1 kHz -> 16000 samples
    dataset = DistillAudioDataset([path], extractor, chunk_duration_s=0.3)  # 4800-sample chunks
    assert dataset._waveforms[0].shape[0] == 16000
    assert dataset.num_chunks == len(dataset) == math.ceil(16000 / 4800) == 4


def test_files_are_decoded_once_and_the_cache_can_be_shared(tmp_path, extractor, monkeypatch):
    path = write(tmp_path / "a.wav", 4000)
    calls = []
    real_load = data.load_audio
    monkeypatch.setattr(data, "load_audio", lambda *args: calls.append(args) or real_load(*args))
    cache = {}
    first = DistillAudioDataset([path], extractor, chunk_duration_s=0.1, cache=cache)
    for index in range(len(first)):
        first[index]
    DistillAudioDataset([path], extractor, chunk_duration_s=0.2, cache=cache)
    assert len(calls) == 1 and len(cache) == 1


# --- chunking --------------------------------------------------------------------------------------------------------


def test_chunks_cover_the_file_and_the_last_is_zero_padded(tmp_path, extractor):
    path = write(tmp_path / "a.wav", 10000, subtype="FLOAT")
    samples = torch.from_numpy(soundfile.read(str(path), dtype="float32")[0])
    dataset = DistillAudioDataset([path], extractor, chunk_duration_s=0.25)  # 4000 samples
    assert dataset.chunk_samples == 4000 and len(dataset) == 3
    torch.testing.assert_close(torch.cat([dataset.chunk_waveform(i) for i in range(3)])[:10000], samples)
    last = dataset.chunk_waveform(2)
    assert last.shape == (4000,) and torch.all(last[2000:] == 0) and last[:2000].abs().sum() > 0
    assert dataset.item_source(2) == {"file": path, "start_s": 0.5, "augmented_copy": None}
    assert dataset[-1]["input_features"].shape == (1, 32, 4000 // 128 + 1)


def test_short_file_gives_one_padded_chunk(tmp_path, extractor):
    dataset = DistillAudioDataset([write(tmp_path / "short.wav", 700)], extractor, chunk_duration_s=0.5)
    assert len(dataset) == 1
    chunk = dataset.chunk_waveform(0)
    assert chunk.shape == (8000,) and torch.all(chunk[700:] == 0)
    with pytest.raises(IndexError):
        dataset[1]


def test_chunk_shorter_than_the_stft_is_refused(tmp_path, extractor):
    with pytest.raises(ValueError, match="chunk_duration_s"):
        DistillAudioDataset([write(tmp_path / "a.wav", 1000)], extractor, chunk_duration_s=0.01)


# --- splitting -------------------------------------------------------------------------------------------------------


def test_split_is_by_file_deterministic_and_clamped(tmp_path):
    files = [tmp_path / f"{i:02d}.wav" for i in range(10)]
    train, val = split_files(files, 0.3, seed=0)
    assert len(val) == 3 and len(train) == 7
    assert not set(train) & set(val) and sorted(train + val) == files
    assert split_files(list(reversed(files)), 0.3, seed=0) == (train, val)  # order of the input does not matter
    assert any(split_files(files, 0.3, seed=s)[1] != val for s in range(1, 6))
    assert split_files(files, 0.0) == (files, [])
    assert len(split_files(files[:2], 0.01)[1]) == 1  # a positive fraction holds out at least one file
    assert len(split_files(files[:2], 0.9)[0]) == 1  # training keeps a file
    assert split_files(files[:1], 0.5) == (files[:1], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_files(files, 1.0)


def test_build_datasets_splits_by_file(tmp_path, extractor, tiny_config):
    for i in range(6):
        write(tmp_path / f"f{i}.wav", 6000 + 1000 * i, seed=i)
    tiny_config.chunk_duration_s, tiny_config.val_fraction, tiny_config.augmentation_expansion = 0.25, 0.34, 2
    train, val, info = build_datasets(tmp_path, extractor, tiny_config, seed=3)
    assert len(val.files) == 2 and len(train.files) == 4 and not set(train.files) & set(val.files)
    assert train.augment and train.augmentation_expansion == 2 and not val.augment
    assert len(train) == 3 * train.num_chunks and len(val) == val.num_chunks
    assert (info.num_files, info.num_train_files, info.num_val_files) == (6, 4, 2)
    assert info.total_duration_s == pytest.approx(sum(6000 + 1000 * i for i in range(6)) / RATE)
    assert (info.num_train_items, info.num_val_items, info.skipped_files) == (len(train), len(val), [])
    assert build_datasets(tmp_path, extractor, tiny_config, seed=3)[1].files == val.files

    tiny_config.val_fraction = 0.0
    train, val, info = build_datasets(tmp_path, extractor, tiny_config, augment=False)
    assert val is None and len(train.files) == 6 and len(train) == train.num_chunks and info.num_val_files == 0

    with pytest.raises(ValueError, match="sampling_rate"):
        build_datasets(tmp_path, DistillFeatureExtractor(n_mels=32), tiny_config)


# --- errors ----------------------------------------------------------------------------------------------------------


def test_unreadable_files_are_skipped_with_a_warning(tmp_path, extractor, tiny_config):
    good = [write(tmp_path / f"good{i}.wav", 4000, seed=i) for i in range(3)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    empty = tmp_path / "sub" / "empty.flac"
    empty.parent.mkdir()
    soundfile.write(str(empty), np.zeros((0, 1), dtype=np.float32), RATE, format="FLAC")
    with pytest.warns(UserWarning) as record:
        dataset = DistillAudioDataset(good + [broken, empty], extractor, chunk_duration_s=0.25)
    messages = " ".join(str(w.message) for w in record)
    assert str(broken) in messages and str(empty) in messages
    assert dataset.files == good and dataset.skipped_files == [broken, empty]

    tiny_config.chunk_duration_s, tiny_config.val_fraction = 0.25, 0.5
    with pytest.warns(UserWarning) as record:
        train, val, info = build_datasets(tmp_path, extractor, tiny_config)
    messages = [str(w.message).split(":")[0] for w in record]
    assert messages == [f"Skipping unreadable audio file {broken}", f"Skipping unreadable audio file {empty}"]
    assert info.num_files == 5 and info.skipped_files == [broken, empty]
    assert sorted(train.files + val.files) == good  # only readable files are split


def test_empty_folder_non_audio_folder_and_missing_folder(tmp_path, extractor, tiny_config):
    with pytest.raises(ValueError, match=r"No audio files found in .*\.wav, \.flac, \.ogg, \.mp3"):
        find_audio_files(tmp_path)
    (tmp_path / "readme.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.aiff").write_bytes(b"")
    with pytest.raises(ValueError, match=f"No audio files found in {tmp_path}"):
        build_datasets(tmp_path, extractor, tiny_config)
    with pytest.raises(ValueError, match="not found"):
        find_audio_files(tmp_path / "missing")


def test_all_files_unreadable_is_an_error(tmp_path, extractor, tiny_config):
    for name in ("a.wav", "b.mp3"):
        (tmp_path / name).write_bytes(b"garbage" * 10)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="None of the 2 audio files"):
        build_datasets(tmp_path, extractor, tiny_config)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="could be read"):
        DistillAudioDataset([tmp_path / "a.wav"], extractor)


# --- augmentation ----------------------------------------------------------------------------------------------------


def test_augmentation_probabilities():
    generator = torch.Generator().manual_seed(1234)
    draws = [draw_augmentation(generator) for _ in range(4000)]
    applied = [d for d in draws if d.applied]
    assert all(d.transforms == () for d in draws if not d.applied)

    def assert_rate(count, n, p):
        assert abs(count / n - p) < 4 * math.sqrt(p * (1 - p) / n), (count, n, p)

    assert_rate(len(applied), len(draws), data.AUGMENT_PROBABILITY)
    for name, p in [
        ("pitch_semitones", data.PITCH_SHIFT_PROBABILITY),
        ("speed_factor", data.SPEED_PROBABILITY),
        ("noise_snr_db", data.NOISE_PROBABILITY),
        ("gain", data.GAIN_PROBABILITY),
    ]:
        values = [getattr(d, name) for d in applied if getattr(d, name) is not None]
        assert_rate(len(values), len(applied), p)
    speeds = [d.speed_factor for d in applied if d.speed_factor is not None]
    assert set(speeds) == set(data.SPEED_FACTORS)
    assert_rate(speeds.count(1.0), len(speeds), 2 / 6)
    assert_rate(speeds.count(0.9), len(speeds), 1 / 6)
    pitches = np.array([d.pitch_semitones for d in applied if d.pitch_semitones is not None])
    snrs = np.array([d.noise_snr_db for d in applied if d.noise_snr_db is not None])
    gains = np.array([d.gain for d in applied if d.gain is not None])
    for values, low, high in [(pitches, -2, 2), (snrs, 15, 40), (gains, 0.7, 1.3)]:
        assert values.min() >= low and values.max() <= high
        assert abs(values.mean() - (low + high) / 2) < 0.05 * (high - low)  # uniform: centred ...
        assert values.min() < low + 0.05 * (high - low) and values.max() > high - 0.05 * (high - low)  # ... and spread
    # the transforms fire independently of each other
    both = sum(d.pitch_semitones is not None and d.gain is not None for d in applied)
    assert_rate(both, len(applied), data.PITCH_SHIFT_PROBABILITY * data.GAIN_PROBABILITY)


def test_gain_and_noise_effects():
    chunk = sine(440, 8000)
    for gain in (0.7, 1.0, 1.3):
        out = apply_augmentation(chunk, RATE, AugmentationParams(applied=True, gain=gain))
        torch.testing.assert_close(out, chunk * gain)
    generator = torch.Generator().manual_seed(0)
    for snr in (15.0, 27.5, 40.0):
        out = apply_augmentation(chunk, RATE, AugmentationParams(applied=True, noise_snr_db=snr), generator)
        measured = 10 * math.log10(chunk.pow(2).mean() / (out - chunk).pow(2).mean())
        assert measured == pytest.approx(snr, abs=1e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):  # randomly drawn gains and SNRs stay in range
        params = draw_augmentation(generator)
        if params.gain is not None and params.transforms == ("gain",):
            ratio = apply_augmentation(chunk, RATE, params).abs().max() / chunk.abs().max()
            assert 0.7 <= ratio <= 1.3


def test_speed_change_keeps_the_length_and_scales_frequency():
    chunk = sine(500, 8000)
    for factor in data.SPEED_FACTORS:
        out = change_speed(chunk, factor)
        assert out.shape == chunk.shape
        assert peak_frequency(out[: int(8000 / 1.1)]) == pytest.approx(500 * factor, abs=25)
    faster = change_speed(chunk, 1.1)
    assert torch.all(faster[math.ceil(8000 / 1.1) :] == 0)  # re-cut: zero-padded to length
    assert change_speed(chunk, 0.9).abs()[-100:].max() > 0.3  # slowed down: cropped, no padding


def test_pitch_shift_keeps_the_length_and_moves_the_pitch():
    chunk = sine(500, 8000)
    for semitones in (-2.0, -0.7, 1.3, 2.0):
        out = pitch_shift(chunk, RATE, semitones)
        assert out.shape == chunk.shape
        expected = 500 * 2 ** (semitones / 12)
        assert peak_frequency(out[1000:-1000]) == pytest.approx(expected, abs=8)
    # the default rate, one second: the phase vocoder window scales with the rate
    chunk48 = sine(1000, 48000, rate=48000)
    out = pitch_shift(chunk48, 48000, 2.0)
    assert out.shape == (48000,) and peak_frequency(out, 48000) == pytest.approx(1000 * 2 ** (2 / 12), abs=5)


def test_augment_chunk_keeps_length_and_is_reproducible():
    chunk = sine(300, 4000) + 0.01
    outputs = [augment_chunk(chunk, RATE, torch.Generator().manual_seed(s)) for s in range(20)]
    assert all(o.shape == chunk.shape and torch.isfinite(o).all() for o in outputs)
    assert sum(torch.equal(o, chunk) for o in outputs) >= 3  # the 0.5 gate leaves some untouched
    assert sum(not torch.equal(o, chunk) for o in outputs) >= 3
    torch.testing.assert_close(augment_chunk(chunk, RATE, torch.Generator().manual_seed(7)), outputs[7])


def test_dataset_augmentation_items_and_epochs(tmp_path, extractor):
    files = [write(tmp_path / f"{i}.wav", 6000, seed=i) for i in range(2)]
    dataset = DistillAudioDataset(files, extractor, chunk_duration_s=0.25, augment=True, augmentation_expansion=3)
    assert dataset.num_chunks == 4 and len(dataset) == 16
    assert dataset.item_source(13) == {"file": files[0], "start_s": 0.25, "augmented_copy": 2}
    # originals are untouched
    plain = DistillAudioDataset(files, extractor, chunk_duration_s=0.25, augmentation_expansion=3)
    assert len(plain) == 4
    for i in range(4):
        assert torch.equal(dataset.chunk_waveform(i), plain.chunk_waveform(i))
    # same (seed, epoch, index) -> same audio; another epoch or seed -> other audio
    epoch0 = [dataset.chunk_waveform(i) for i in range(4, 16)]
    assert all(torch.equal(a, dataset.chunk_waveform(i)) for i, a in zip(range(4, 16), epoch0))
    assert any(not torch.equal(a, plain.chunk_waveform(i % 4)) for i, a in zip(range(4, 16), epoch0))
    dataset.set_epoch(1)
    epoch1 = [dataset.chunk_waveform(i) for i in range(4, 16)]
    assert any(not torch.equal(a, b) for a, b in zip(epoch0, epoch1))
    dataset.set_epoch(0)
    assert all(torch.equal(a, dataset.chunk_waveform(i)) for i, a in zip(range(4, 16), epoch0))
    other_seed = DistillAudioDataset(
        files, extractor, chunk_duration_s=0.25, augment=True, augmentation_expansion=3, seed=1
    )
    assert any(not torch.equal(a, other_seed.chunk_waveform(i)) for i, a in zip(range(4, 16), epoch0))
    features = dataset[15]["input_features"]
    assert features.shape == (1, 32, 4000 // 128 + 1) and torch.isfinite(features).all()


# --- batching and the model ------------------------------------------------------------------------------------------


def test_default_collator_batches_feed_the_model(tmp_path, extractor, tiny_config):
    files = [write(tmp_path / f"{i}.wav", 9000, seed=i) for i in range(2)]
    dataset = DistillAudioDataset(files, extractor, chunk_duration_s=0.5, augment=True, augmentation_expansion=1)
    batch = default_data_collator([dataset[i] for i in range(len(dataset))])
    assert set(batch) == {"input_features"}
    assert batch["input_features"].shape == (8, 1, 32, 8000 // 128 + 1)
    assert batch["input_features"].dtype == torch.float32
    model = DistillVQVAEModel(tiny_config).eval()
    with torch.no_grad():
        output = model(**batch)
    assert output.reconstruction.shape == batch["input_features"].shape and torch.isfinite(output.loss)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=default_data_collator)
    assert [b["input_features"].shape[0] for b in loader] == [3, 3, 2]


def test_trainer_runs_and_sets_the_epoch(tmp_path, extractor, tiny_config, monkeypatch):
    from transformers import Trainer, TrainingArguments

    for i in range(3):
        write(tmp_path / "audio" / f"{i}.wav", 4000, seed=i)
    tiny_config.chunk_duration_s, tiny_config.val_fraction, tiny_config.augmentation_expansion = 0.25, 0.34, 1
    train, val, info = build_datasets(tmp_path / "audio", extractor, tiny_config)
    assert (len(train), len(val)) == (4, 1)
    epochs = []
    real_set_epoch = DistillAudioDataset.set_epoch

    def spy(self, epoch):
        if self is train:
            epochs.append(epoch)
        real_set_epoch(self, epoch)

    monkeypatch.setattr(DistillAudioDataset, "set_epoch", spy)
    args = TrainingArguments(
        str(tmp_path / "out"), per_device_train_batch_size=4, num_train_epochs=2, use_cpu=True, report_to=[],
        save_strategy="no", disable_tqdm=True,
    )
    trainer = Trainer(model=DistillVQVAEModel(tiny_config), args=args, train_dataset=train, eval_dataset=val)
    assert trainer.train().global_step == 2
    assert math.isfinite(trainer.evaluate()["eval_loss"])
    assert sorted(set(epochs)) == [0, 1] and train.epoch == 1


def test_defaults_at_48_khz(tmp_path):
    config = DistillVQVAEConfig()
    extractor = DistillFeatureExtractor()
    write(tmp_path / "a.wav", 48000 + 12000, rate=48000)
    write(tmp_path / "b.flac", 30000, rate=44100)
    train, val, info = build_datasets(tmp_path, extractor, config)
    assert info.num_train_files == 1 and info.num_val_files == 1
    assert len(train) == train.num_chunks * (1 + config.augmentation_expansion)
    item = train[len(train) - 1]["input_features"]
    assert item.shape == (1, 128, 48000 // 512 + 1) == (1, 128, 94)
    assert val[0]["input_features"].shape == (1, 128, 94)


# --- the `datasets` recipe -------------------------------------------------------------------------------------------


def test_prepare_hf_dataset_from_arrays(extractor, tiny_config):
    datasets = pytest.importorskip("datasets")
    clips = synthetic_audio(2, 10000, RATE)
    dataset = datasets.Dataset.from_dict(
        {
            "audio": [
                {"array": clips[0].numpy(), "sampling_rate": RATE},
                {"array": clips[1].numpy(), "sampling_rate": RATE},
                {"array": synthetic_audio(1, 22050, 44100)[0].numpy(), "sampling_rate": 44100},  # 0.5 s
            ],
            "label": [0, 1, 2],
        }
    )
    prepared = prepare_hf_dataset(dataset, extractor, chunk_duration_s=0.25, batch_size=2)
    assert prepared.column_names == ["input_features"]
    assert len(prepared) == 3 + 3 + 2  # 10000 samples -> 3 chunks; 0.5 s resampled to 8000 -> 2
    first = prepared[0]["input_features"]
    assert isinstance(first, torch.Tensor) and first.shape == (1, 32, 4000 // 128 + 1)
    expected = extractor(clips[0][:4000], sampling_rate=RATE, return_tensors="pt").input_features[0]
    torch.testing.assert_close(first, expected)
    padded = torch.zeros(4000)
    padded[:2000] = clips[1][8000:]
    expected = extractor(padded, sampling_rate=RATE, return_tensors="pt").input_features[0]
    torch.testing.assert_close(prepared[5]["input_features"], expected)  # last chunk of a row, zero-padded
    batch = default_data_collator([prepared[i] for i in range(4)])
    assert batch["input_features"].shape == (4, 1, 32, 32)
    with torch.no_grad():
        assert torch.isfinite(DistillVQVAEModel(tiny_config).eval()(**batch).loss)
    with pytest.raises(ValueError, match="Column 'sound' not found"):
        prepare_hf_dataset(dataset, extractor, audio_column="sound")


def test_decode_audio_item_forms():
    clip = synthetic_audio(1, 3000, RATE)[0]
    stereo = {"array": np.stack([clip.numpy(), -clip.numpy()]) + 0.25, "sampling_rate": RATE}  # channels first
    torch.testing.assert_close(decode_audio_item(stereo, RATE), torch.full((3000,), 0.25))
    pcm = {"array": np.array([0, 16384, -32768], dtype=np.int16), "sampling_rate": RATE}
    torch.testing.assert_close(decode_audio_item(pcm, RATE), torch.tensor([0.0, 0.5, -1.0]))
    assert decode_audio_item({"array": clip.numpy(), "sampling_rate": 8000}, RATE).shape == (6000,)
    with pytest.raises(ValueError, match="AudioDecoder"):
        decode_audio_item("just a string", RATE)
    with pytest.raises(ValueError, match="cannot read audio"):
        decode_audio_item({"bytes": b"not audio", "path": None}, RATE)


def test_prepare_hf_dataset_from_an_audio_column(tmp_path, extractor):
    datasets = pytest.importorskip("datasets")
    paths = [
        str(write(tmp_path / "a.wav", 44100, rate=44100)),  # 1 s -> 16000 samples -> 4 chunks of 0.25 s
        str(write(tmp_path / "b.flac", 5000, format="FLAC")),  # -> 2 chunks
    ]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nope")
    dataset = datasets.Dataset.from_dict({"audio": paths + [str(broken)]})
    dataset = dataset.cast_column("audio", datasets.Audio(sampling_rate=48000))  # decoding needs no torchcodec here
    with pytest.warns(UserWarning, match="broken.wav"):
        prepared = prepare_hf_dataset(dataset, extractor, chunk_duration_s=0.25)
    assert len(prepared) == 6 and prepared[5]["input_features"].shape == (1, 32, 32)
    # what `Audio(decode=False)` holds, as a plain column (encoding into an `Audio` column needs torchcodec)
    bytes_dataset = datasets.Dataset.from_dict({"audio": [{"bytes": open(paths[1], "rb").read(), "path": None}]})
    torch.testing.assert_close(
        prepare_hf_dataset(bytes_dataset, extractor, chunk_duration_s=0.25)[:]["input_features"],
        prepared[4:]["input_features"],
    )
