#!/usr/bin/env python
"""Tokens per second of prior generation with the KV cache against without it (cache off), in one run.

Run by hand (it is not a test):

    python benchmarks/bench_prior.py              # 5 interleaved repeats per row
    python benchmarks/bench_prior.py --quick      # 2 repeats
    python benchmarks/bench_prior.py --threads 2  # torch threads (default 1, see below)

Rows: one full prior window (143 tokens after a uniformly drawn first one) sampled with `generate()` and the
original's defaults (temperature 1.0, top-p 0.9), once with `use_cache=True` (each step feeds one token and reuses
the keys and values of the previous ones) and once with `use_cache=False` (each step recomputes the whole prefix).
Both sides use the same seed and are interleaved (cache, no cache, no cache, cache, ...) so machine noise hits both
alike; the table gives the median time per side, tokens/s (batch x new tokens / time) and the speed-up. The priors:
the bundled fixture prior converted to GPT-2 (hidden 64, 2 layers), and randomly initialised priors of the "small"
(hidden 128, 3 layers) and "middle" (hidden 256, 4 layers, the original's default) tiers.

Sampled tokens of the two sides are compared too: the cached and uncached logits differ only by rounding, so the
sequences agree unless a draw falls exactly on a rounding-sized boundary.

Default one thread: token-by-token generation of small models is many tiny matrix products, which gain nothing from
more threads and, on a shared machine, lose a lot to OpenMP synchronisation.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_hf.prior import convert_original_prior, prior_generation_config  # noqa: E402
from distill_hf.prior_training import get_adaptive_prior_config  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "distill-v2" / "model.distill"


def fixture_prior() -> GPT2LMHeadModel:
    checkpoint = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    codebook_size = checkpoint["vqvae_config"]["codebook_size"]
    return convert_original_prior(checkpoint["prior_state_dict"], checkpoint["prior_config"], codebook_size, 8)


def tier_prior(num_sequences: int) -> GPT2LMHeadModel:
    config = get_adaptive_prior_config(num_sequences, vocab_size=256, seq_len=144, num_quantizers=3, grid_height=8)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    model.generation_config = prior_generation_config(144)
    return model


def generate(prior, first, use_cache: bool, seed: int) -> tuple[float, torch.Tensor]:
    torch.manual_seed(seed)
    start = time.perf_counter()
    tokens = prior.generate(first, use_cache=use_cache, max_length=prior.config.n_positions)
    return time.perf_counter() - start, tokens


def bench_row(name, prior, batch, repeats, warmup, seed) -> dict:
    first = torch.randint(prior.config.vocab_size, (batch, 1), generator=torch.Generator().manual_seed(seed))
    new_tokens = prior.config.n_positions - 1
    for _ in range(warmup):
        generate(prior, first, True, seed)
        generate(prior, first, False, seed)
    times = {True: [], False: []}
    agree = []
    for repeat in range(repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        outputs = {}
        for use_cache in order:
            elapsed, outputs[use_cache] = generate(prior, first, use_cache, seed + repeat)
            times[use_cache].append(elapsed)
        agree.append((outputs[True] == outputs[False]).float().mean().item())
    cached, uncached = statistics.median(times[True]), statistics.median(times[False])
    return {
        "name": name,
        "batch": batch,
        "new_tokens": new_tokens,
        "cache_s": cached,
        "no_cache_s": uncached,
        "cache_tps": batch * new_tokens / cached,
        "no_cache_tps": batch * new_tokens / uncached,
        "speedup": uncached / cached,
        "agreement": statistics.mean(agree),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side and row (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side before timing (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 1 warm-up run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started = time.perf_counter()

    rows = []
    fixture = fixture_prior()
    rows.append(bench_row("fixture prior (h64, 2 layers)", fixture, 1, repeats, warmup, args.seed))
    rows.append(bench_row("fixture prior (h64, 2 layers)", fixture, 8, repeats, warmup, args.seed))
    rows.append(bench_row("small tier (h128, 3 layers)", tier_prior(100), 1, repeats, warmup, args.seed))
    rows.append(bench_row("middle tier (h256, 4 layers)", tier_prior(1000), 1, repeats, warmup, args.seed))

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(f"threads: {torch.get_num_threads()} (cpu_count {os.cpu_count()}); 1-min load average {load:.2f} at start")
    print(f"one window of 144 tokens (143 generated), sampling, top-p 0.9; median of {repeats} interleaved repeats")
    print()
    header = (f"{'prior':<31} {'batch':>5} {'cache tok/s':>12} {'no cache tok/s':>15} {'speed-up':>9} "
              f"{'same tokens':>12}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['name']:<31} {row['batch']:>5} {row['cache_tps']:>12.0f} {row['no_cache_tps']:>15.0f} "
              f"{row['speedup']:>8.2f}x {row['agreement'] * 100:>11.1f}%")
    print()
    print(f"total benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
