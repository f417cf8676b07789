"""The main job: `distill-hf train` on a folder and on the embedded corpus, writing every promised file."""

import json

import numpy as np
import soundfile
import torch

from distill_hf import DistillVQVAEModel
from distill_hf.cli import main
from distill_hf.corpus import CLIP_SECONDS, generate_default_corpus
from tests.conftest import synthetic_audio

PROMISED = ["original.wav", "reconstruction.wav", "loss_curves.png", "mel_comparison.png", "code_grid.png",
            "codebook_usage.png"]
MODEL_FILES = ["config.json", "model.safetensors", "preprocessor_config.json", "README.md", "distill_metadata.json",
               "configuration_distill.py", "modeling_distill.py", "quantization_distill.py",
               "feature_extraction_distill.py"]


def test_train_command_on_a_folder(tmp_path, capsys):
    audio_dir = tmp_path / "sounds"
    (audio_dir / "nested").mkdir(parents=True)
    clips = synthetic_audio(4, 48000, 48000, seed=3)
    for index, clip in enumerate(clips):
        folder = audio_dir / "nested" if index % 2 else audio_dir
        soundfile.write(folder / f"clip{index}.wav", clip.numpy(), 48000)
    (audio_dir / "notes.txt").write_text("not audio")
    output = tmp_path / "run"
    assert main(["train", "--audio-dir", str(audio_dir), "--output-dir", str(output), "--epochs", "2",
                 "--codebook-size", "16", "--augmentation-expansion", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "trained on 4 files for 2 epochs" in printed

    for name in PROMISED:
        assert (output / name).is_file(), name
    model_dir = output / "model"
    for name in MODEL_FILES:
        assert (model_dir / name).is_file(), name
    assert not (model_dir / "training_args.bin").exists()

    model = DistillVQVAEModel.from_pretrained(model_dir)
    assert model.config.codebook_size == 16 and model.config.max_epochs == 2
    metadata = json.loads((model_dir / "distill_metadata.json").read_text())
    assert metadata["metadata"]["dataset_file_count"] == 4
    assert metadata["metadata"]["dataset_total_duration_s"] == 4.0
    assert len(metadata["loss_curve_history"]["train_losses"]) == 2
    assert set(metadata["codebook_health_snapshot"]) == {"level_0", "level_1", "level_2"}
    card = (model_dir / "README.md").read_text()
    assert "| level | utilization | perplexity | dead codes |" in card
    assert f"{metadata['codebook_health_snapshot']['level_0']['perplexity']:.2f}" in card

    original, rate = soundfile.read(output / "original.wav")
    reconstruction, _ = soundfile.read(output / "reconstruction.wav")
    assert rate == 48000 and original.shape == reconstruction.shape == (48000,)
    assert np.isfinite(reconstruction).all()


def test_train_command_defaults_to_the_embedded_corpus(tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["train", "--output-dir", str(output), "--epochs", "1", "--augmentation-expansion", "0",
                 "--no-progress"]) == 0
    assert "trained on 10 files for 1 epochs" in capsys.readouterr().out
    metadata = json.loads((output / "model" / "distill_metadata.json").read_text())
    assert metadata["metadata"]["dataset_total_duration_s"] == 10 * CLIP_SECONDS
    assert "demo" in metadata["metadata"]["tags"]
    for name in PROMISED:
        assert (output / name).is_file(), name


def test_train_command_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--audio-dir", str(empty), "--output-dir", str(tmp_path / "o")]) == 1
    assert "no audio files" in capsys.readouterr().err.lower()


def test_embedded_corpus_is_deterministic_and_varied():
    first, second = generate_default_corpus(16000), generate_default_corpus(16000)
    assert list(first) == list(second) and len(first) == 10
    for name, clip in first.items():
        assert torch.equal(clip, second[name]), name
        assert clip.shape == (int(CLIP_SECONDS * 16000),) and clip.abs().max() <= 0.8 + 1e-6
    spectra = torch.stack([torch.fft.rfft(clip).abs()[:4000] for clip in first.values()])
    centroids = (spectra * torch.arange(4000)).sum(-1) / spectra.sum(-1)
    assert centroids.max() > 3 * centroids.min()  # material ranges from bass tones to hi-hat noise
