#!/usr/bin/env python
"""Steps per second of `transformers.Trainer` against a plain PyTorch training loop on the same model and data.

Run by hand (it is not a test):

    python benchmarks/bench_training.py                 # full run: 9 rounds per side, 30 timed steps each
    python benchmarks/bench_training.py --quick         # 3 rounds per side, 10 timed steps each
    python benchmarks/bench_training.py --json out.json # also write the results as JSON

The question is how much the stock `Trainer` costs on top of the training work itself (target: Trainer time per
step <= 1.10x the plain loop's). Both sides do the same work in the same process:

* model: `DistillVQVAEConfig(codebook_size=64)`, i.e. the default widths (encoder_channels [32, 64, 128, 256],
  codebook_dim 128, 3 quantizers, dropout 0.2, EMA codebooks with dead-code replacement) with the codebook size of
  the original's smallest data tier, so that a round takes seconds rather than minutes. It is built once and its
  first forward (eval mode, no grad, over the whole dataset) runs the k-means initialisation; every round then
  trains a `copy.deepcopy` of these initial weights, so both sides start from identical weights each time;
* data: 64 one-second clips of synthetic 48 kHz audio (harmonic tones, a sweep and noise), turned once into log-mel
  features with `DistillFeatureExtractor` and held in an in-memory `torch.utils.data.Dataset` of
  `{"input_features": [1, 128, 94]}`; batch size 8, so a batch is [8, 1, 128, 94] and an epoch is 8 steps (a run
  crosses epoch boundaries on both sides);
* Trainer: a stock `Trainer(model, args, train_dataset, data_collator=default_data_collator)` with
  `TrainingArguments(max_steps=warmup + steps, per_device_train_batch_size=8, learning_rate=config.learning_rate,
  weight_decay=config.weight_decay, max_grad_norm=config.gradient_clip_norm (1.0), report_to="none",
  disable_tqdm=True, logging_steps=10**6, save_strategy="no", eval_strategy="no", dataloader_num_workers=0,
  dataloader_pin_memory=False, use_cpu=True)`. Everything else is Trainer's default: its optimizer
  (`adamw_torch_fused` on torch >= 2.8), the linear schedule without warm-up, its default callbacks (the printer
  callback's output is swallowed; it only acts on logging, which does not happen inside the timed window);
* plain loop: `DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=default_data_collator, num_workers=0)`
  -> `model(**batch).loss` -> `backward()` -> `clip_grad_norm_(model.parameters(), 1.0)` -> `optimizer.step()` ->
  `scheduler.step()` -> `optimizer.zero_grad(set_to_none=True)`, the loss accumulated as a detached tensor. The
  optimizer is the same `torch.optim.AdamW` with the same keyword arguments (lr, betas, eps, fused) and the same two
  parameter groups (weight decay on all but biases and norm weights, Trainer's rule); the schedule is a `LambdaLR`
  with Trainer's linear decay to 0 over the same number of steps. Both are checked against the Trainer's own after
  its first round (printed as "sanity").

Timing: each side records `time.perf_counter()` at the end of every optimizer step (Trainer: a `TrainerCallback`'s
`on_step_end`; loop: right after `zero_grad`). A round's time is the window from the end of step `warmup` (5) to
the end of step `warmup + steps`: `steps` whole steps, including data loading and all per-step bookkeeping, but
neither the one-time setup (building `TrainingArguments`, `Trainer`, optimizer, `DataLoader`, the model copy) nor
the first `warmup` steps (optimizer-state allocation, iterator start-up) nor what `train()` does after its last
step. Rounds are interleaved with the order flipped every round (Trainer, loop, loop, Trainer, Trainer, loop, ...)
so that drift and other processes on the machine hit both sides alike, and each round starts afresh (new Trainer or
optimizer, new copy of the initial weights, same seed).

Reported: per side, the median over rounds of steps/s and ms/step, the best round, the median duration of a single
step over all timed steps of all rounds, and the median steps/s over the quiet windows (see below). The overhead ratio (Trainer time per step / loop time per step,
target <= 1.10x) is taken within each round, whose Trainer and loop windows run back to back, and the verdict is
the median of these per-round ratios. On a shared machine other users' load comes and goes within seconds and can
slow a whole window several-fold (two torch threads on two busy cores), which a ratio within a round cancels far
better than a ratio of the two sides' medians. Each timed window also records how many cores other processes kept
busy meanwhile (from `/proc/stat`, less this process's own CPU time); a round is "quiet" when both of its windows
saw at most 0.25 such cores, and the verdict uses the quiet rounds only when there are at least 3 of them (else all
rounds). The ratio over all rounds, the ratio of the medians, of the single-step medians and of the best rounds are
printed too; on an idle machine they agree.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers  # noqa: E402
from transformers import Trainer, TrainerCallback, TrainingArguments, default_data_collator  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel  # noqa: E402


SAMPLING_RATE = 48000
OVERHEAD_TARGET = 1.10
QUIET_CORES = 0.25  # a timed window is "quiet" when other processes kept at most this many cores busy
MIN_QUIET_PAIRS = 3  # judge on the quiet rounds when at least this many rounds had both windows quiet
# Trainer.get_decay_parameter_names: no weight decay on parameters whose name matches one of these (or that
# belong to a LayerNorm, of which this model has none).
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


# ------------------------------------------------------------------------------------------------------- data
def synthetic_audio(num_clips: int, num_samples: int, seed: int) -> torch.Tensor:
    """Clips of a few harmonic tones, a sine sweep and noise, peak-normalised to 0.5: [num_clips, num_samples]."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / SAMPLING_RATE
    clips = []
    for _ in range(num_clips):
        base = 80.0 + 700.0 * torch.rand((), generator=generator, dtype=torch.float64)
        clip = torch.zeros(num_samples, dtype=torch.float64)
        for harmonic in range(1, 6):
            phase = 2 * math.pi * torch.rand((), generator=generator, dtype=torch.float64)
            clip += torch.sin(2 * math.pi * base * harmonic * t + phase) / harmonic
        start, stop = 200.0, 200.0 + 8000.0 * torch.rand((), generator=generator, dtype=torch.float64)
        clip += 0.5 * torch.sin(2 * math.pi * (start * t + (stop - start) * t**2 / 2))
        clip += 0.3 * torch.randn(num_samples, generator=generator, dtype=torch.float64)
        clips.append(0.5 * clip / clip.abs().max())
    return torch.stack(clips).float()


class FeatureDataset(Dataset):
    """Precomputed features in memory: item i is `{"input_features": [1, n_mels, num_frames]}`."""

    def __init__(self, features: torch.Tensor):
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_features": self.features[index]}


# ------------------------------------------------------------------------------------------------- optimizer
def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups as Trainer builds them: weight decay on all but biases and norm weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = any(re.search(pattern, name.lower()) for pattern in NO_DECAY_PATTERNS)
        (no_decay if skip else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def optimizer_signature(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict:
    """What must match between the two sides: class, keyword arguments and the parameter groups, by name."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # unwrap accelerate's AcceleratedOptimizer
    names = {id(p): n for n, p in model.named_parameters()}
    keys = ("lr", "betas", "eps", "amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused")
    groups = sorted(
        [g["weight_decay"], sorted(names[id(p)] for p in g["params"])] for g in optimizer.param_groups if g["params"]
    )
    return {
        "class": type(optimizer).__module__ + "." + type(optimizer).__name__,
        "defaults": {k: optimizer.defaults.get(k) for k in keys},
        "groups": groups,
    }


def linear_schedule(total_steps: int):
    """Trainer's default `lr_scheduler_type="linear"` with no warm-up: factor (total - step) / total, floored at 0."""
    return lambda step: max(0.0, (total_steps - step) / max(1, total_steps))


# ----------------------------------------------------------------------------------------------------- sides
class Stopwatch:
    """Time stamp and learning rate at the end of every optimizer step, and the other processes' load in the window."""

    def __init__(self, warmup: int, steps: int):
        self.warmup = warmup
        self.steps = steps
        self.stamps: list[float] = []
        self.lrs: list[float] = []
        self.other_load: OtherLoad | None = None
        self.window_load: float | None = None

    def tick(self, lr: float) -> None:
        self.stamps.append(time.perf_counter())
        self.lrs.append(lr)
        if len(self.stamps) == self.warmup:
            self.other_load = OtherLoad()
        elif len(self.stamps) == self.warmup + self.steps and self.other_load is not None:
            self.window_load = self.other_load.cores()

    def result(self) -> dict:
        seconds, durations = window(self.stamps, self.warmup, self.steps)
        return {"seconds": seconds, "step_seconds": durations, "other_load": self.window_load, "lrs": self.lrs}


class StepClock(TrainerCallback):
    """Feeds a `Stopwatch` at the end of every Trainer optimizer step; notes the torch thread count there."""

    def __init__(self, stopwatch: Stopwatch):
        self.stopwatch = stopwatch
        self.threads: set[int] = set()

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        self.stopwatch.tick(optimizer.param_groups[0]["lr"])
        self.threads.add(torch.get_num_threads())


def window(stamps: list[float], warmup: int, steps: int) -> tuple[float, list[float]]:
    """Seconds from the end of step `warmup` to the end of step `warmup + steps`, and each step's duration."""
    if warmup < 1:
        raise ValueError("warmup must be >= 1 (the window starts at the end of a step)")
    if len(stamps) < warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} steps, got {len(stamps)}")
    timed = stamps[warmup - 1: warmup + steps]
    durations = [b - a for a, b in zip(timed, timed[1:])]
    return timed[-1] - timed[0], durations


def run_trainer(initial_model, dataset, settings: dict) -> dict:
    total = settings["warmup"] + settings["steps"]
    output_dir = tempfile.mkdtemp(prefix="bench_training_")
    try:
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=total,
            per_device_train_batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            weight_decay=settings["weight_decay"],
            max_grad_norm=settings["max_grad_norm"],
            seed=settings["seed"],
            report_to="none",
            disable_tqdm=True,
            logging_steps=10**6,
            save_strategy="no",
            eval_strategy="no",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            use_cpu=True,
        )
        clock = StepClock(Stopwatch(settings["warmup"], settings["steps"]))
        trainer = Trainer(
            model=copy.deepcopy(initial_model),
            args=args,
            train_dataset=dataset,
            data_collator=default_data_collator,
            callbacks=[clock],
        )
        with contextlib.redirect_stdout(io.StringIO()):  # the printer callback's end-of-training metrics
            output = trainer.train()
        return {
            **clock.stopwatch.result(),
            "mean_loss": output.training_loss,
            "threads": sorted(clock.threads),
            "optim": str(getattr(args.optim, "value", args.optim)),
            "optimizer": optimizer_signature(trainer.optimizer, trainer.model),
        }
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)


def run_loop(initial_model, dataset, settings: dict, optimizer_kwargs: dict) -> dict:
    total = settings["warmup"] + settings["steps"]
    torch.manual_seed(settings["seed"])  # Trainer seeds the global RNG too (dropout, dead-code replacement)
    model = copy.deepcopy(initial_model).train()
    optimizer = torch.optim.AdamW(optimizer_groups(model, settings["weight_decay"]), **optimizer_kwargs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total))
    loader = DataLoader(
        dataset,
        batch_size=settings["batch_size"],
        shuffle=True,
        collate_fn=default_data_collator,
        num_workers=0,
        pin_memory=False,
        generator=torch.Generator().manual_seed(settings["seed"]),
    )
    max_grad_norm = settings["max_grad_norm"]
    stopwatch = Stopwatch(settings["warmup"], settings["steps"])
    running_loss = torch.zeros(())
    step = 0
    while step < total:
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running_loss += loss.detach()
            step += 1
            stopwatch.tick(optimizer.param_groups[0]["lr"])  # as the Trainer-side callback reads it: after the step
            if step == total:
                break
    return {
        **stopwatch.result(),
        "mean_loss": running_loss.item() / total,
        "optimizer": optimizer_signature(optimizer, model),
    }


# -------------------------------------------------------------------------------------------- machine load
def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (Linux `/proc/stat`), None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class OtherLoad:
    """Average number of cores kept busy by other processes between construction and `cores()`."""

    def __init__(self):
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.busy = busy_cpu_seconds()

    def cores(self) -> float | None:
        busy = busy_cpu_seconds()
        if busy is None or self.busy is None:
            return None
        wall = time.perf_counter() - self.wall
        return max(0.0, (busy - self.busy - (time.process_time() - self.own)) / wall)


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds per side (default 9)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per round (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each round (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 rounds per side of 10 timed steps")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--clips", type=int, default=64, help="one-second clips in the dataset (default 64)")
    parser.add_argument("--codebook-size", type=int, default=64, help="codebook size (default 64)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    steps = 10 if args.quick else args.steps
    if repeats < 1 or steps < 1 or args.warmup < 1 or args.batch_size < 1 or args.clips < args.batch_size:
        parser.error("--repeats, --steps, --warmup and --batch-size must be >= 1, and --clips >= --batch-size")

    hf_logging.set_verbosity_error()
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    wall_start = time.perf_counter()
    load_start = load_average()
    other_load = OtherLoad()

    config = DistillVQVAEConfig(codebook_size=args.codebook_size)
    extractor = DistillFeatureExtractor.from_model_config(config)
    audio = synthetic_audio(args.clips, SAMPLING_RATE, args.seed)
    features = extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features.contiguous()
    dataset = FeatureDataset(features)

    initial_model = DistillVQVAEModel(config).eval()
    with torch.no_grad():
        initial_model(features)  # k-means initialisation of the codebooks
    assert all(bool(layer.initted) for layer in initial_model.quantizer.layers)
    initial_model.train()

    settings = {
        "warmup": args.warmup,
        "steps": steps,
        "batch_size": args.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.gradient_clip_norm,
        "seed": args.seed,
    }
    # The loop's AdamW keyword arguments, as Trainer's default optimizer takes them (checked after round 1).
    reference = TrainingArguments(output_dir=tempfile.gettempdir(), use_cpu=True, report_to="none")
    optimizer_kwargs = {
        "lr": config.learning_rate,
        "betas": (reference.adam_beta1, reference.adam_beta2),
        "eps": reference.adam_epsilon,
        "fused": str(getattr(reference.optim, "value", reference.optim)) == "adamw_torch_fused",
    }

    trainer_runs: list[dict] = []
    loop_runs: list[dict] = []
    for round_index in range(repeats):
        order = ["Trainer", "loop"] if round_index % 2 == 0 else ["loop", "Trainer"]
        for side in order:
            if side == "Trainer":
                trainer_runs.append(run_trainer(initial_model, dataset, settings))
            else:
                loop_runs.append(run_loop(initial_model, dataset, settings, optimizer_kwargs))
        t, lp = trainer_runs[-1], loop_runs[-1]
        print(f"  round {round_index + 1}/{repeats}: Trainer {steps / t['seconds']:.2f} steps/s (others "
              f"{fmt(t['other_load'])} cores), loop {steps / lp['seconds']:.2f} steps/s (others "
              f"{fmt(lp['other_load'])} cores), ratio {t['seconds'] / lp['seconds']:.3f}x", file=sys.stderr, flush=True)

    total_s = time.perf_counter() - wall_start
    foreign_cores = other_load.cores()

    # ------------------------------------------------------------------------------------------------ results
    def is_quiet(run: dict) -> bool:
        return run["other_load"] is not None and run["other_load"] <= QUIET_CORES

    def summary(runs: list[dict]) -> dict:
        ms_per_step = [r["seconds"] / steps * 1e3 for r in runs]
        single = [d * 1e3 for r in runs for d in r["step_seconds"]]
        quiet = [steps / r["seconds"] for r in runs if is_quiet(r)]
        return {
            "steps_per_s": statistics.median(steps / r["seconds"] for r in runs),
            "quiet_steps_per_s": statistics.median(quiet) if quiet else None,
            "quiet_windows": len(quiet),
            "ms_per_step": statistics.median(ms_per_step),
            "best_ms_per_step": min(ms_per_step),
            "single_step_median_ms": statistics.median(single),
            "rounds_ms_per_step": ms_per_step,
            "mean_loss": statistics.median(r["mean_loss"] for r in runs),
        }

    trainer_summary = summary(trainer_runs)
    loop_summary = summary(loop_runs)
    pairs = list(zip(trainer_runs, loop_runs))
    pair_ratios = [t["seconds"] / lp["seconds"] for t, lp in pairs]
    quiet_ratios = [t["seconds"] / lp["seconds"] for t, lp in pairs if is_quiet(t) and is_quiet(lp)]
    all_pairs_ratio = statistics.median(pair_ratios)
    quiet_ratio = statistics.median(quiet_ratios) if quiet_ratios else None
    ratio_of_medians = trainer_summary["ms_per_step"] / loop_summary["ms_per_step"]
    single_ratio = trainer_summary["single_step_median_ms"] / loop_summary["single_step_median_ms"]
    best_ratio = trainer_summary["best_ms_per_step"] / loop_summary["best_ms_per_step"]
    use_quiet = len(quiet_ratios) >= MIN_QUIET_PAIRS
    ratio = quiet_ratio if use_quiet else all_pairs_ratio
    ok = ratio <= OVERHEAD_TARGET

    same_optimizer = trainer_runs[0]["optimizer"] == loop_runs[0]["optimizer"]
    same_lrs = len(trainer_runs[0]["lrs"]) == len(loop_runs[0]["lrs"]) and all(
        math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15) for a, b in zip(trainer_runs[0]["lrs"], loop_runs[0]["lrs"])
    )
    trainer_threads = sorted({t for r in trainer_runs for t in r["threads"]})
    groups = trainer_runs[0]["optimizer"]["groups"]
    group_text = ", ".join(f"{len(names)} tensors wd {wd:g}" for wd, names in groups)
    defaults = trainer_runs[0]["optimizer"]["defaults"]

    print()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, python {platform.python_version()}")
    print(f"threads: {torch.get_num_threads()} (cpu_count {os.cpu_count()}), interop "
          f"{torch.get_num_interop_threads()}; torch threads seen inside Trainer steps: {trainer_threads}")
    print(f"machine load: 1-min load average {fmt(load_start)} before the run; other processes kept "
          f"{fmt(foreign_cores)} of {os.cpu_count()} cores busy on average during it; {len(quiet_ratios)} of "
          f"{len(pairs)} rounds quiet (others <= {QUIET_CORES} cores in both timed windows)")
    if foreign_cores is not None and foreign_cores > QUIET_CORES:
        print("WARNING: other processes were using the CPU, so these timings are noisy; rerun on an idle machine"
              + (", or compare with --threads 1" if torch.get_num_threads() > 1 else ""))
    print(f"model: codebook_size {config.codebook_size}, num_quantizers {config.num_quantizers}, codebook_dim "
          f"{config.codebook_dim}, encoder_channels {list(config.encoder_channels)}, dropout {config.dropout}, "
          f"{sum(p.numel() for p in initial_model.parameters()):,} parameters")
    print(f"data: {args.clips} one-second clips, batch {list((args.batch_size, *features.shape[1:]))}, "
          f"{math.ceil(args.clips / args.batch_size)} steps per epoch")
    print(f"optimizer: Trainer optim={trainer_runs[0]['optim']} -> AdamW(lr {defaults['lr']:g}, betas "
          f"{tuple(defaults['betas'])}, eps {defaults['eps']:g}, fused {defaults['fused']}) on {group_text}; "
          f"max_grad_norm {config.gradient_clip_norm}, linear schedule over {args.warmup + steps} steps")
    print(f"sanity: loop optimizer same class, arguments and groups as Trainer's: {'yes' if same_optimizer else 'NO'}; "
          f"same learning rate at every step: {'yes' if same_lrs else 'NO'}; mean training loss "
          f"Trainer {trainer_summary['mean_loss']:.4f}, loop {loop_summary['mean_loss']:.4f} (close, not equal: "
          f"the two shuffle and draw dropout masks from different random streams)")
    print(f"timing: {repeats} interleaved rounds per side, each {steps} timed steps after {args.warmup} warm-up steps; "
          f"medians over rounds")
    print()
    header = (f"{'side':<12} {'steps/s':>8} {'ms/step':>9} {'best ms/step':>13} {'single-step median ms':>22} "
              f"{'quiet steps/s (windows)':>24}")
    print(header)
    print("-" * len(header))
    for name, s in (("Trainer", trainer_summary), ("plain loop", loop_summary)):
        quiet = "n/a" if s["quiet_steps_per_s"] is None else f"{s['quiet_steps_per_s']:.2f}"
        print(f"{name:<12} {s['steps_per_s']:>8.2f} {s['ms_per_step']:>9.2f} {s['best_ms_per_step']:>13.2f} "
              f"{s['single_step_median_ms']:>22.2f} {quiet + ' (' + str(s['quiet_windows']) + ')':>24}")
    print()
    target = f"<={OVERHEAD_TARGET:.2f}x"
    verdict = "ok" if ok else "OVER"
    header = f"{'overhead (Trainer / loop time per step)':<46} {'ratio':>7} {'target':>8}  verdict"
    print(header)
    print("-" * len(header))
    rows = [
        (f"median of per-round ratios, {len(quiet_ratios)} quiet rounds", quiet_ratio, use_quiet),
        (f"median of per-round ratios, all {len(pairs)} rounds", all_pairs_ratio, not use_quiet),
        ("ratio of the median ms/step", ratio_of_medians, False),
        ("ratio of the single-step medians", single_ratio, False),
        ("ratio of the best rounds", best_ratio, False),
    ]
    for name, value, judged in rows:
        shown = "n/a" if value is None else f"{value:.3f}x"
        print(f"{name:<46} {shown:>7} {target if judged else '-':>8}  {verdict if judged else '(report only)'}")
    print()
    print(f"verdict on the quiet rounds when there are at least {MIN_QUIET_PAIRS}, else on all rounds; a round's "
          f"ratio compares its back-to-back Trainer and loop windows")
    print(f"total benchmark time: {total_s:.1f} s")

    if args.json:
        def strip(runs):
            return [{k: v for k, v in r.items() if k not in ("optimizer", "lrs")} for r in runs]

        payload = {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load_start,
            "foreign_busy_cores": foreign_cores,
            "repeats": repeats,
            "steps": steps,
            "warmup": args.warmup,
            "batch_size": args.batch_size,
            "clips": args.clips,
            "codebook_size": config.codebook_size,
            "optimizer": trainer_runs[0]["optimizer"],
            "sanity": {"same_optimizer": same_optimizer, "same_lrs": same_lrs, "trainer_threads": trainer_threads},
            "trainer": {**trainer_summary, "rounds": strip(trainer_runs)},
            "loop": {**loop_summary, "rounds": strip(loop_runs)},
            "ratio": ratio,
            "ratio_basis": "quiet rounds" if use_quiet else "all rounds",
            "quiet_rounds_ratio": quiet_ratio,
            "quiet_rounds": len(quiet_ratios),
            "all_rounds_ratio": all_pairs_ratio,
            "round_ratios": pair_ratios,
            "ratio_of_medians": ratio_of_medians,
            "single_step_ratio": single_ratio,
            "best_ratio": best_ratio,
            "target": OVERHEAD_TARGET,
            "ok": ok,
            "total_seconds": total_s,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
