"""A small deterministic corpus of musical material, generated in code, for training without any audio files.

Ten three-second clips (30 s in all) at the model's sampling rate: harmonic tones with attack/decay envelopes and
vibrato, a chord, exponential chirps, Karplus-Strong plucked strings and band-limited noise bursts. The same
seed always gives the same samples, so a demo run is reproducible on any machine.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

CLIP_SECONDS = 3.0


def _time(num_samples: int, sampling_rate: int) -> torch.Tensor:
    return torch.arange(num_samples, dtype=torch.float64) / sampling_rate


def _envelope(t: torch.Tensor, attack: float, decay: float) -> torch.Tensor:
    """Linear attack to 1, then exponential decay with time constant `decay` seconds."""
    return torch.clamp(t / attack, max=1.0) * torch.exp(-torch.clamp(t - attack, min=0.0) / decay)


def harmonic_tone(t, f0, num_harmonics, brightness, vibrato_hz=5.0, vibrato_depth=0.006):
    """Sum of harmonics with amplitudes brightness**k and a slow vibrato."""
    sampling_period = float(t[1] - t[0])
    frequency = f0 * (1 + vibrato_depth * torch.sin(2 * math.pi * vibrato_hz * t))
    phase = 2 * math.pi * torch.cumsum(frequency, 0) * sampling_period
    return sum(brightness**k * torch.sin((k + 1) * phase) for k in range(num_harmonics))


def chirp(t, f_start, f_end):
    """Exponential sweep from `f_start` to `f_end` Hz over the clip."""
    duration = float(t[-1])
    rate = math.log(f_end / f_start) / duration
    return torch.sin(2 * math.pi * f_start * (torch.exp(rate * t) - 1) / rate)


def plucked_string(num_samples, sampling_rate, f0, generator, damping=0.996):
    """Karplus-Strong: a noise burst circulating in a delay line of one period, low-pass averaged each pass."""
    period = max(2, round(sampling_rate / f0))
    line = torch.rand(period, generator=generator, dtype=torch.float64) * 2 - 1
    blocks = []
    for _ in range(math.ceil(num_samples / period)):
        blocks.append(line)
        # Each output sample averages the sample one period back and its neighbour: a per-block recurrence.
        line = damping * 0.5 * (line + torch.roll(line, -1))
    return torch.cat(blocks)[:num_samples]


def noise_burst(t, generator, centre_hz, bandwidth_hz, sampling_rate, burst_times):
    """Band-pass noise (an FFT mask) gated by short decaying bursts."""
    noise = torch.randn(len(t), generator=generator, dtype=torch.float64)
    spectrum = torch.fft.rfft(noise)
    frequencies = torch.fft.rfftfreq(len(t), 1 / sampling_rate)
    spectrum = spectrum * torch.exp(-(((frequencies - centre_hz) / bandwidth_hz) ** 2))
    band = torch.fft.irfft(spectrum, n=len(t))
    band = band / band.abs().max()
    gate = sum(_envelope(torch.clamp(t - start, min=0.0), 0.005, 0.08) * (t >= start) for start in burst_times)
    return band * gate


def generate_default_corpus(sampling_rate: int = 48000, seed: int = 0) -> dict[str, torch.Tensor]:
    """
    The embedded corpus as `{name: waveform}`, each waveform a float32 tensor `(samples,)` of `CLIP_SECONDS`
    seconds at `sampling_rate`, peak-normalised to 0.8.
    """
    generator = torch.Generator().manual_seed(seed)
    num_samples = round(CLIP_SECONDS * sampling_rate)
    t = _time(num_samples, sampling_rate)
    clips = {
        "tone_a2_warm": harmonic_tone(t, 110.0, 8, 0.6) * _envelope(t, 0.05, 1.2),
        "tone_e4_bright": harmonic_tone(t, 329.6, 12, 0.8, vibrato_hz=6.0) * _envelope(t, 0.01, 0.6),
        "tone_c5_soft": harmonic_tone(t, 523.3, 4, 0.4, vibrato_depth=0.01) * _envelope(t, 0.3, 2.0),
        "chord_c_major": sum(harmonic_tone(t, f, 6, 0.5) for f in (261.6, 329.6, 392.0)) * _envelope(t, 0.02, 1.5),
        "chirp_up": chirp(t, 80.0, 8000.0) * _envelope(t, 0.05, 10.0),
        "chirp_down": chirp(t, 6000.0, 100.0) * _envelope(t, 0.05, 10.0),
        "pluck_g3": plucked_string(num_samples, sampling_rate, 196.0, generator),
        "pluck_d4_then_a4": torch.cat([
            plucked_string(num_samples // 2, sampling_rate, 293.7, generator),
            plucked_string(num_samples - num_samples // 2, sampling_rate, 440.0, generator),
        ]),
        "noise_hats": noise_burst(t, generator, 8000.0, 3000.0, sampling_rate, [0.1 + 0.25 * k for k in range(11)]),
        "noise_snare_and_bass": noise_burst(t, generator, 1500.0, 800.0, sampling_rate, [0.5, 1.5, 2.5])
        + 0.7 * harmonic_tone(t, 55.0, 5, 0.5) * _envelope(torch.remainder(t, 1.0), 0.01, 0.3),
    }
    return {name: (0.8 * clip / clip.abs().max()).float() for name, clip in clips.items()}


def write_default_corpus(folder: str | os.PathLike, sampling_rate: int = 48000, seed: int = 0) -> list[Path]:
    """Write the embedded corpus as 16-bit wav files into `folder` and return their paths."""
    from .audio_io import save_audio

    folder = Path(folder)
    return [
        save_audio(folder / f"{name}.wav", waveform, sampling_rate)
        for name, waveform in generate_default_corpus(sampling_rate, seed).items()
    ]
