"""Reading and writing audio files: soundfile for the formats, torchaudio for resampling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from .file_utils import atomic_path


def load_audio(path: str | os.PathLike, sampling_rate: int) -> torch.Tensor:
    """
    Read an audio file (wav, flac, ogg, mp3, ... whatever libsndfile reads), mix it to mono and resample it.

    Args:
        path (`str` or `os.PathLike`): the file.
        sampling_rate (`int`): the rate to return, e.g. the model's 48000.

    Returns:
        `torch.FloatTensor` of shape `(num_samples,)` in [-1, 1].

    Raises:
        `ValueError` naming the file when it is missing, unreadable, empty or not audio.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"audio file not found: {path}")
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as error:  # soundfile raises LibsndfileError/RuntimeError/TypeError for bad files
        raise ValueError(f"cannot read audio file {path}: {error}") from None
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} contains no samples")
    waveform = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # mono, (samples,)
    if file_rate != sampling_rate:
        waveform = torchaudio.functional.resample(waveform, file_rate, sampling_rate)
    return waveform


def save_audio(path: str | os.PathLike, waveform, sampling_rate: int, subtype: str = "PCM_16") -> Path:
    """
    Write a mono waveform `(num_samples,)` (or `(1, num_samples)`) to `path`, atomically: the file is written
    beside its destination under a temporary name and renamed, so a failure never leaves a half-written file.
    The format follows the extension (`.wav`, `.flac`, `.ogg`). Samples are clipped to [-1, 1].
    """
    path = Path(path)
    samples = torch.as_tensor(waveform).detach().float().cpu()
    if samples.dim() == 2 and samples.shape[0] == 1:
        samples = samples[0]
    if samples.dim() != 1 or samples.numel() == 0:
        raise ValueError(f"`waveform` must be a non-empty mono signal of shape (num_samples,), got {tuple(samples.shape)}")
    format_name = path.suffix.lstrip(".").upper()
    if format_name not in soundfile.available_formats():
        raise ValueError(f"unsupported audio format for {path}: use .wav, .flac or .ogg")
    if format_name == "OGG":
        subtype = "VORBIS"
    with atomic_path(path) as temporary:
        soundfile.write(temporary, samples.clamp(-1, 1).numpy(), sampling_rate, subtype=subtype, format=format_name)
    return path
