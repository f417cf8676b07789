#!/usr/bin/env python
"""Speed and quality of `DistillFeatureExtractor.features_to_waveform` against the original tool's vocoder, in one run.

Run by hand (it is not a test; `tests/test_vocoder.py` checks the quality bound):

    python benchmarks/bench_vocoder.py                 # full run
    python benchmarks/bench_vocoder.py --quick         # fewer repeats
    python benchmarks/bench_vocoder.py --json out.json # also write the results as JSON

Material: recorded speech, as log-mel features, inverted one batch per set:

* the three speech clips of `tests/fixtures/distill-v2/expected_eval.safetensors` (`waveform` 0-2, 1 s each at
  48 kHz; what `tests/test_vocoder.py` checks);
* if Debian's alsa-utils is installed (`apt-get install alsa-utils`), its eight voice recordings in
  `/usr/share/sounds/alsa` (48 kHz; `Noise.wav` left out), cut to the shortest (1.31 s).

Rows:

* the reference, what the original Distill tool did: `torchaudio.transforms.InverseMelScale` (least squares,
  clamped at 0) + `torchaudio.transforms.GriffinLim(n_iter=128, momentum=0.99)` with its default random start
  (seeded);
* the same with torchaudio's default 32 iterations (this package's previous default, from zero phase);
* `ours, defaults`: `features_to_waveform(features)`, and other `n_iter` (speed/quality trade-off);
* ours doing the original's work (no non-negative solve, zero phase, 32 iterations): the speed of the Griffin-Lim
  loop itself against torchaudio's.

Quality: the output is re-analysed with the same feature extractor; "mel SC" is the spectral convergence of the mel
magnitude spectrogram, `||M_out - M_in||_F / ||M_in||_F` with `M = sqrt(mel power)`, per clip; "log-mel SC" is the
same on the `log1p` features the model sees. Lower is better; "Δ" is ours minus the 128-iteration reference (the
bound is +0.01 on every clip).

Speed: median wall time of interleaved repeats (every row once per round, the order rotated each round), reported
as the real-time factor (seconds of audio per second of compute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchaudio
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_hf import DistillFeatureExtractor, load_audio  # noqa: E402


FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "distill-v2" / "expected_eval.safetensors"
SAMPLING_RATE = 48000
QUALITY_BOUND = 0.01
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")  # Debian's alsa-utils: eight recorded voices (and Noise.wav)


def speech_material(extractor: DistillFeatureExtractor, alsa: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Name -> (waveforms [clips, samples], features): the fixture's speech and, if asked and installed, ALSA's."""
    material = {}
    waveform = load_file(FIXTURE)["waveform"][:3, 0]  # clip 3 is silence
    material["fixture speech (3 x 1 s)"] = waveform
    files = sorted(path for path in ALSA_SOUNDS.glob("*.wav") if path.stem != "Noise") if alsa else []
    if files:
        clips = [load_audio(path, SAMPLING_RATE) for path in files]
        shortest = min(clip.numel() for clip in clips)
        material[f"alsa-utils speech ({len(clips)} x {shortest / SAMPLING_RATE:.2f} s)"] = torch.stack(
            [clip[:shortest] for clip in clips]
        )
    return {name: (audio, extractor(audio, sampling_rate=SAMPLING_RATE).input_features) for name, audio in material.items()}


def spectral_convergence(extractor, audio: torch.Tensor, features: torch.Tensor) -> dict[str, list[float]]:
    """Per-clip spectral convergence of the re-analysed mel magnitude and log-mel spectrograms."""
    refeatured = extractor(audio, sampling_rate=SAMPLING_RATE).input_features
    magnitude_out, magnitude_in = torch.expm1(refeatured).sqrt(), torch.expm1(features).sqrt()
    mel, log_mel = [], []
    for index in range(features.shape[0]):
        mel.append(float((magnitude_out[index] - magnitude_in[index]).norm() / magnitude_in[index].norm()))
        log_mel.append(float((refeatured[index] - features[index]).norm() / features[index].norm()))
    return {"mel_sc": mel, "log_mel_sc": log_mel}


def original_vocoder(extractor: DistillFeatureExtractor, n_iter: int):
    """The original tool's inverse: torchaudio InverseMelScale + GriffinLim (random start, seeded per call)."""
    inverse_mel = torchaudio.transforms.InverseMelScale(
        n_stft=extractor.n_fft // 2 + 1, n_mels=extractor.n_mels, sample_rate=extractor.sampling_rate,
        f_min=extractor.f_min, f_max=extractor.f_max,
    )
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=extractor.n_fft, hop_length=extractor.hop_length, power=extractor.power, n_iter=n_iter, momentum=0.99
    )

    def run(features: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        with torch.no_grad():
            return griffin_lim(inverse_mel(torch.expm1(features[:, 0])))

    return run


def run_material(extractor, name, waveform, features, repeats) -> list[dict]:
    seconds = waveform.numel() / SAMPLING_RATE
    rows = {
        "original: InverseMelScale + GriffinLim, 128 iterations (reference)": original_vocoder(extractor, 128),
        "original, 32 iterations (torchaudio default, our previous default)": original_vocoder(extractor, 32),
        "ours, defaults (n_iter=20)": lambda f: extractor.features_to_waveform(f),
        "ours, n_iter=12": lambda f: extractor.features_to_waveform(f, n_iter=12),
        "ours, n_iter=32": lambda f: extractor.features_to_waveform(f, n_iter=32),
        "ours as the original (nnls_iter=0, zero phase, 32 iterations)": lambda f: extractor.features_to_waveform(
            f, n_iter=32, nnls_iter=0, phase_init="zero"
        ),
    }
    outputs = {row: run(features) for row, run in rows.items()}  # warm-up, and the audio that is scored
    times = {row: [] for row in rows}
    names = list(rows)
    for round_ in range(repeats):
        for row in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            rows[row](features)
            times[row].append(time.perf_counter() - start)

    reference = spectral_convergence(extractor, outputs[names[0]], features)
    print(f"\n{name}, {seconds:.1f} s of audio as one batch\n")
    print("| vocoder | real-time factor | mel SC, mean | worst clip vs reference | log-mel SC, mean | worst clip vs reference |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = []
    for row in names:
        quality = spectral_convergence(extractor, outputs[row], features)
        median = statistics.median(times[row])
        worst = {key: max(q - r for q, r in zip(quality[key], reference[key])) for key in quality}
        results.append({"material": name, "name": row, "median_s": median, "real_time_factor": seconds / median,
                        **quality, "worst_delta_mel_sc": worst["mel_sc"], "worst_delta_log_mel_sc": worst["log_mel_sc"]})
        print(
            f"| {row} | {seconds / median:.1f}x | {statistics.mean(quality['mel_sc']):.4f} | {worst['mel_sc']:+.4f} | "
            f"{statistics.mean(quality['log_mel_sc']):.4f} | {worst['log_mel_sc']:+.4f} |"
        )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 9")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    parser.add_argument("--no-alsa", action="store_true", help="skip /usr/share/sounds/alsa even if installed")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 9

    extractor = DistillFeatureExtractor()
    results = []
    for name, (waveform, features) in speech_material(extractor, alsa=not args.no_alsa).items():
        results += run_material(extractor, name, waveform, features, repeats)
    print(
        f"\nMedian of {repeats} interleaved repeats, {args.threads} threads, torch {torch.__version__}, torchaudio "
        f"{torchaudio.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible."
    )
    for row in results:
        if row["name"].startswith("ours, defaults"):
            reference = next(r for r in results if r["material"] == row["material"])
            worst = max(row["worst_delta_mel_sc"], row["worst_delta_log_mel_sc"])
            print(
                f"{row['material']}: defaults {row['real_time_factor']:.1f}x real time, "
                f"{row['real_time_factor'] / reference['real_time_factor']:.1f}x the reference's speed; worst clip "
                f"{worst:+.4f} vs the reference (bound +{QUALITY_BOUND}): "
                f"{'PASS' if worst <= QUALITY_BOUND else 'FAIL'}"
            )
    summary = {"threads": args.threads, "repeats": repeats, "rows": results}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
