#!/usr/bin/env python
"""Memory and time of `encode_audio` + `decode_audio` on long files: bounded peak RSS, time linear in the length.

Run by hand (it is not a test):

    python benchmarks/bench_long_audio.py                     # 1, 2.5, 5 and 10 minutes
    python benchmarks/bench_long_audio.py --minutes 10        # just the 10-minute file
    python benchmarks/bench_long_audio.py --json out.json     # also write the results as JSON

For each length, a 48 kHz 16-bit mono WAV of varied material (recorded speech from the test fixture, tones with
vibrato, noise bursts, a chirp and silence, in a repeating pattern) is written to a temporary folder, and a fresh
Python process per stage does what the command line does with the bundled checkpoint (converted once):

* encode (`distill-hf encode`): `load_audio` -> `encode_audio` -> codes file;
* decode (`distill-hf decode`): codes file -> `decode_audio` -> `save_audio`;
* round trip in one process (`distill-hf reconstruct`): both, the input waveform let go after encoding.

Peak resident set size is the kernel's own figure, `ru_maxrss` of the finished child as `os.wait4` returns it; the
baseline is a process that only imports the package and loads the model (most of it is the CUDA build of torch).
Times come from the round-trip process (model loading excluded), the median of `--repeats` round trips; "total" is
encode + decode + file I/O (reading the WAV, writing the output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLING_RATE = 48000
RSS_LIMIT_MB = 1536  # 1.5 GB for the 10-minute file


def write_recording(path: Path, seconds: float) -> None:
    """Varied material written block by block (the parent never holds the whole recording)."""
    import numpy as np
    import soundfile
    from safetensors.torch import load_file

    speech = load_file(ROOT / "tests" / "fixtures" / "distill-v2" / "expected_eval.safetensors")["waveform"][:3, 0]
    speech = speech.reshape(-1).numpy()
    rng = np.random.default_rng(0)
    t = np.arange(10 * SAMPLING_RATE) / SAMPLING_RATE
    f0 = 110.0
    tone = sum(np.sin(2 * np.pi * k * f0 * (t + 0.002 * np.sin(2 * np.pi * 5 * t))) / k for k in range(1, 6))
    pattern = np.concatenate([
        speech,  # 3 s recorded speech
        0.25 * tone * np.exp(-0.3 * t),  # 10 s harmonic tone with vibrato
        0.1 * rng.standard_normal(2 * SAMPLING_RATE),  # 2 s noise
        np.zeros(SAMPLING_RATE),  # 1 s silence
        0.3 * np.sin(2 * np.pi * (100 * t[: 4 * SAMPLING_RATE] + 1000 * t[: 4 * SAMPLING_RATE] ** 2)),  # 4 s chirp
    ]).astype(np.float32)  # 20 s
    total = int(seconds * SAMPLING_RATE)
    with soundfile.SoundFile(path, "w", SAMPLING_RATE, 1, subtype="PCM_16") as file:
        written = 0
        while written < total:
            block = pattern[: total - written] * (0.6 + 0.4 * rng.random())
            file.write(block)
            written += block.size


def worker(args) -> None:
    """The measured process (one stage, as `distill-hf encode` / `decode` / `reconstruct` run it): prints one JSON
    line of timings."""
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    import distill_hf
    from distill_hf import DistillFeatureExtractor, DistillVQVAEModel, EncodedAudio

    model = DistillVQVAEModel.from_pretrained(args.model).eval()
    extractor = DistillFeatureExtractor.from_pretrained(args.model)
    result = {"setup_s": time.perf_counter() - start}

    def timed(name, function, *arguments, **keywords):
        begin = time.perf_counter()
        value = function(*arguments, **keywords)
        result.setdefault(name + "_all", []).append(time.perf_counter() - begin)
        return value

    repeats = args.repeats if args.stage == "roundtrip" else 1
    for _ in range(repeats):  # the round trip is timed `repeats` times (the median is reported)
        if args.stage in ("encode", "roundtrip"):
            waveform = timed("io_s", distill_hf.load_audio, args.audio, extractor.sampling_rate)
            codes = timed("encode_s", distill_hf.encode_audio, model, extractor, waveform,
                          chunk_seconds=args.chunk_seconds)
            encoded = EncodedAudio.from_model(model, codes, waveform.numel())
            del waveform  # as `distill-hf reconstruct` does once the features exist
            if args.stage == "encode":
                timed("io_s", encoded.save, args.codes)
        if args.stage == "decode":
            encoded = timed("io_s", EncodedAudio.load, args.codes)
        if args.stage in ("decode", "roundtrip"):
            audio = timed("decode_s", distill_hf.decode_audio, model, extractor, encoded.audio_codes,
                          num_samples=encoded.num_samples, chunk_seconds=args.chunk_seconds)
            timed("io_s", distill_hf.save_audio, args.output, audio, extractor.sampling_rate)
            result["samples_out"] = audio.numel()
            del audio
    if args.stage != "baseline":
        result["samples_in"] = encoded.num_samples
        result["codes_shape"] = list(encoded.audio_codes.shape)
    print(json.dumps(result))


def measure(script_args: list[str], log: Path) -> tuple[dict, float]:
    """Run a worker; return its JSON and its peak RSS in MB (the kernel's ru_maxrss of the finished child)."""
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, __file__, "--worker", *script_args], stdout=out,
                                   stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    if process.returncode != 0:
        raise RuntimeError(f"worker failed ({process.returncode}):\n{text}")
    result = json.loads(text.strip().splitlines()[-1])
    return result, usage.ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 2.5, 5, 10])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3, help="timed round trips per length (default: 3)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--codes", help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=["baseline", "encode", "decode", "roundtrip"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    from conversion.convert_distill_checkpoint import convert_checkpoint

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model_dir = convert_checkpoint(ROOT / "tests" / "fixtures" / "distill-v2" / "model.distill", folder / "model")
        common = ["--model", str(model_dir), "--threads", str(args.threads), "--chunk-seconds", str(args.chunk_seconds)]
        baseline, baseline_rss = measure([*common, "--stage", "baseline"], folder / "baseline.log")
        print(f"baseline (import, load the model): peak RSS {baseline_rss:.0f} MB")
        print("\n| audio | encode (s) | decode (s) | file I/O (s) | total (s) | s per audio minute | real-time factor | "
              "peak RSS: encode / decode / round trip in one process (MB) |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for minutes in args.minutes:
            audio, codes = folder / f"input_{minutes:g}min.wav", folder / "codes.npz"
            write_recording(audio, minutes * 60)
            files = ["--audio", str(audio), "--codes", str(codes), "--output", str(folder / "out.wav")]
            encoded, encode_rss = measure([*common, *files, "--stage", "encode"], folder / "encode.log")
            decoded, decode_rss = measure([*common, *files, "--stage", "decode"], folder / "decode.log")
            both, both_rss = measure([*common, *files, "--stage", "roundtrip", "--repeats", str(args.repeats)],
                                     folder / "roundtrip.log")
            samples = int(minutes * 60 * SAMPLING_RATE)
            assert encoded["samples_in"] == decoded["samples_out"] == both["samples_out"] == samples
            # Time: the round-trip process, median of its repeats (load + encode + decode + save, model loaded once).
            median = {key: statistics.median(both[key + "_all"]) for key in ("encode_s", "decode_s")}
            io = statistics.median([sum(both["io_s_all"][2 * i : 2 * i + 2]) for i in range(args.repeats)])
            total = median["encode_s"] + median["decode_s"] + io
            row = {"minutes": minutes, **median, "io_s": io, "total_s": total, "s_per_minute": total / minutes,
                   "real_time_factor": minutes * 60 / total, "codes_shape": encoded["codes_shape"],
                   "peak_rss_mb": {"encode": encode_rss, "decode": decode_rss, "roundtrip": both_rss},
                   "repeats": {key: both[key + "_all"] for key in ("encode_s", "decode_s", "io_s")}}
            rows.append(row)
            print(f"| {minutes:g} min | {row['encode_s']:.1f} | {row['decode_s']:.1f} | {row['io_s']:.1f} | {total:.1f} | "
                  f"{total / minutes:.2f} | {minutes * 60 / total:.1f}x | "
                  f"{encode_rss:.0f} / {decode_rss:.0f} / {both_rss:.0f} |")
            audio.unlink()

    per_minute = [row["s_per_minute"] for row in rows]
    print(f"\n{args.threads} threads, chunks of {args.chunk_seconds:g} s, torch {__import__('torch').__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible.")
    if len(rows) > 1:
        # Linear time: seconds per audio minute stay flat across lengths; least-squares fit total = a + b * minutes.
        n = len(rows)
        xs, ys = [row["minutes"] for row in rows], [row["total_s"] for row in rows]
        mean_x, mean_y = sum(xs) / n, sum(ys) / n
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
        intercept = mean_y - slope * mean_x
        spread = max(per_minute) / min(per_minute)
        print(f"time: {slope:.2f} s per audio minute + {intercept:.2f} s (least squares); seconds per minute range "
              f"over a factor {spread:.2f} across lengths.")
    longest = max(rows, key=lambda row: row["minutes"])
    peak = max(longest["peak_rss_mb"].values())
    print(f"{longest['minutes']:g} minutes: highest peak RSS {peak:.0f} MB "
          f"({'within' if peak < RSS_LIMIT_MB else 'OVER'} the {RSS_LIMIT_MB} MB bound; {baseline_rss:.0f} MB of it "
          "is importing torch + transformers and loading the model).")
    summary = {"threads": args.threads, "chunk_seconds": args.chunk_seconds, "baseline_rss_mb": baseline_rss,
               "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
