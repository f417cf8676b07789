"""README examples run as written, and the `distill-hf` command works on real files."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import distill_hf
from distill_hf.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_examples_run(converted_dir, tmp_path, monkeypatch):
    """Every ```python block of README.md, executed in a folder laid out as after `make run`."""
    (tmp_path / "outputs" / "distill-train").mkdir(parents=True)
    shutil.copytree(converted_dir, tmp_path / "outputs" / "distill-train" / "model")  # stands in for `make run`
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    audio, rate = soundfile.read(tmp_path / "outputs" / "roundtrip.wav")
    assert rate == 48000 and audio.shape == (48000,) and np.abs(audio).max() > 0.01
    trained = distill_hf.DistillVQVAEModel.from_pretrained(tmp_path / "outputs" / "trainer-example" / "model")
    assert trained.config.val_fraction == 0.0 and all(bool(layer.initted) for layer in trained.quantizer.layers)


def test_readme_commands_are_what_ci_runs():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()


def test_reconstruct_command(converted_dir, tmp_path, capsys):
    # A 0.6 s stereo 44.1 kHz clip: mixed to mono and resampled to 48 kHz on the way in.
    t = np.arange(int(0.6 * 44100)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)], axis=1)
    source = tmp_path / "clip.flac"
    soundfile.write(source, stereo, 44100)
    output, heard = tmp_path / "out" / "recon.wav", tmp_path / "heard.wav"
    assert main(["reconstruct", str(source), "--model", str(converted_dir), "--output", str(output),
                 "--save-input", str(heard)]) == 0
    assert "codes 3 x 8 x 4" in capsys.readouterr().out  # 28800 samples -> 57 frames -> 4 positions
    for path in (output, heard):
        info = soundfile.info(path)
        assert info.samplerate == 48000 and info.channels == 1 and info.frames == 28800
    assert [p.name for p in output.parent.iterdir()] == ["recon.wav"]  # no temporary files left


def test_reconstruct_command_errors(converted_dir, tmp_path, capsys):
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    assert main(["reconstruct", str(not_audio), "--model", str(converted_dir), "--output", str(tmp_path / "o.wav")]) == 1
    assert "cannot read audio file" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "absent.wav"), "--model", str(converted_dir),
                 "--output", str(tmp_path / "o.wav")]) == 1
    assert "audio file not found" in capsys.readouterr().err
    assert not (tmp_path / "o.wav").exists()


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "distill_hf.cli", "--help"], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0 and "reconstruct" in result.stdout and "convert" in result.stdout


def test_load_and_save_audio(tmp_path):
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * torch.arange(16000) / 16000)
    path = distill_hf.save_audio(tmp_path / "tone.wav", tone, 16000)
    loaded = distill_hf.load_audio(path, 16000)
    torch.testing.assert_close(loaded, tone, atol=1e-4, rtol=0)  # 16-bit PCM
    assert distill_hf.load_audio(path, 48000).shape == (48000,)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    with pytest.raises(ValueError, match="contains no samples"):
        distill_hf.load_audio(empty, 16000)
    with pytest.raises(ValueError, match="unsupported audio format"):
        distill_hf.save_audio(tmp_path / "tone.xyz", tone, 16000)
    with pytest.raises(ValueError, match="non-empty mono"):
        distill_hf.save_audio(tmp_path / "stereo.wav", torch.zeros(2, 100), 16000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.wav", "tone.wav"]
