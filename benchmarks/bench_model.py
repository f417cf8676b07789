#!/usr/bin/env python
"""Timing of the `distill_hf` implementation against a bare-PyTorch baseline doing the same work.

Run by hand (it is not a test):

    python benchmarks/bench_model.py                 # full run, 20 repeats per row
    python benchmarks/bench_model.py --quick         # fewer repeats, for a quick look
    python benchmarks/bench_model.py --json out.json # also write the results as JSON

Every row times "ours" and a baseline in the same process, on the same inputs and with the same weights, and
reports the ratio of their median times (ours / baseline). The two are interleaved (ours and baseline alternate,
with the order of each pair flipped every repeat, A B B A A B ...) so that drift and noise on the machine hit both
sides alike.

Baseline ("the same layers as plain nn.Sequential with the same weights"):

* encoder: `nn.Sequential` of (Conv2d, BatchNorm2d, ReLU, Dropout2d) x 4 + 1x1 Conv2d projection;
* decoder: `nn.Sequential` of 1x1 Conv2d projection, (ConvTranspose2d, BatchNorm2d, ReLU, Dropout2d) x 3, a final
  ConvTranspose2d and Softplus;
* both load the tensors of our model's state dict (renamed), so they compute the same function;
* a plain residual VQ over the codebooks of our model (copied after its k-means initialisation): for each level,
  `torch.cdist` -> argmin -> embedding lookup -> residual subtraction; straight-through estimator in training;
* the same multi-scale mel loss (MSE at full resolution and after 2x and 4x average pooling, mean of the three).

Rows:

* eval forward B=1 and B=32 (one-second clips, features [B, 1, 128, 94]), with the loss (our default
  `model(features)`) and without (`return_loss=False`), under `torch.inference_mode()` with both in eval mode;
* training step B=16: zero_grad + forward + loss + backward + AdamW step, both in train mode. Ours also runs the EMA
  codebook update, dead-code replacement and the rotation trick, which the plain-VQ baseline does not, so that row
  has no target;
* feature extraction B=32: raw audio [32, 48000] float32 -> log-mel features, ours
  (`DistillFeatureExtractor.__call__`) against `torchaudio.transforms.MelSpectrogram` (built once) + `torch.log1p`.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel  # noqa: E402


SAMPLING_RATE = 48000
EVAL_TARGET = 1.10
FEATURE_TARGET = 1.10


# --------------------------------------------------------------------------------------------------- baseline
def build_baseline_encoder(config: DistillVQVAEConfig) -> nn.Sequential:
    widths = [1, *config.encoder_channels]
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers += [
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1),
            nn.BatchNorm2d(widths[i + 1]),
            nn.ReLU(),
            nn.Dropout2d(config.dropout),
        ]
    layers.append(nn.Conv2d(widths[-1], config.codebook_dim, 1))
    return nn.Sequential(*layers)


def build_baseline_decoder(config: DistillVQVAEConfig) -> nn.Sequential:
    widths = [*reversed(config.encoder_channels), 1]
    layers: list[nn.Module] = [nn.Conv2d(config.codebook_dim, widths[0], 1)]
    for i in range(len(widths) - 2):
        layers += [
            nn.ConvTranspose2d(widths[i], widths[i + 1], 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(widths[i + 1]),
            nn.ReLU(),
            nn.Dropout2d(config.dropout),
        ]
    layers += [nn.ConvTranspose2d(widths[-2], 1, 3, stride=2, padding=1, output_padding=1), nn.Softplus()]
    return nn.Sequential(*layers)


def copy_weights_into_baseline(model: DistillVQVAEModel, encoder: nn.Sequential, decoder: nn.Sequential) -> None:
    """Load our model's conv/BatchNorm tensors into the Sequential modules (strict: every tensor must map)."""
    ours = model.state_dict()
    num_encoder_blocks = len(model.encoder.blocks)
    num_decoder_blocks = len(model.decoder.blocks)

    def take(prefix: str, target_prefix: str, into: dict) -> None:
        for key, value in ours.items():
            if key.startswith(prefix + "."):
                into[target_prefix + key[len(prefix):]] = value.detach().clone()

    encoder_state: dict[str, torch.Tensor] = {}
    for i in range(num_encoder_blocks):
        take(f"encoder.blocks.{i}.conv", f"{4 * i}", encoder_state)
        take(f"encoder.blocks.{i}.norm", f"{4 * i + 1}", encoder_state)
    take("encoder.projection", f"{4 * num_encoder_blocks}", encoder_state)
    encoder.load_state_dict(encoder_state, strict=True)

    decoder_state: dict[str, torch.Tensor] = {}
    take("decoder.projection", "0", decoder_state)
    for i in range(num_decoder_blocks):
        take(f"decoder.blocks.{i}.conv", f"{1 + 4 * i}", decoder_state)
        take(f"decoder.blocks.{i}.norm", f"{2 + 4 * i}", decoder_state)
    take("decoder.output_conv", f"{1 + 4 * num_decoder_blocks}", decoder_state)
    decoder.load_state_dict(decoder_state, strict=True)


def baseline_multi_scale_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    full = F.mse_loss(reconstruction, target)
    half = F.mse_loss(F.avg_pool2d(reconstruction, 2), F.avg_pool2d(target, 2))
    quarter = F.mse_loss(F.avg_pool2d(reconstruction, 4), F.avg_pool2d(target, 4))
    return (full + half + quarter) / 3


class BaselineVQVAE:
    """Bare-PyTorch pipeline: pad -> encoder -> plain residual VQ -> decoder -> crop (-> loss)."""

    def __init__(self, encoder: nn.Sequential, decoder: nn.Sequential, codebooks: list[torch.Tensor],
                 factor: int, commitment_weight: float):
        self.encoder = encoder
        self.decoder = decoder
        self.codebooks = codebooks
        self.factor = factor
        self.commitment_weight = commitment_weight

    def parameters(self):
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def train(self, mode: bool = True) -> BaselineVQVAE:
        self.encoder.train(mode)
        self.decoder.train(mode)
        return self

    def eval(self) -> BaselineVQVAE:
        return self.train(False)

    def forward(self, features: torch.Tensor, with_loss: bool = True, straight_through: bool = False):
        n_mels, num_frames = features.shape[-2:]
        padded = F.pad(features, (0, -num_frames % self.factor, 0, -n_mels % self.factor))
        latents = self.encoder(padded)
        batch_size, dim, height, width = latents.shape
        residual = latents.permute(0, 2, 3, 1).reshape(-1, dim)
        quantized_sum = torch.zeros_like(residual)
        codes, commit = [], []
        for codebook in self.codebooks:
            indices = torch.cdist(residual.detach(), codebook).argmin(dim=-1)
            quantized = F.embedding(indices, codebook)
            if straight_through:
                commit.append(F.mse_loss(quantized, residual) * self.commitment_weight)
                quantized_sum = quantized_sum + (residual + (quantized - residual).detach())
            else:
                quantized_sum = quantized_sum + quantized
            residual = residual - quantized
            codes.append(indices)
        # Made contiguous (NCHW) like ours, so both decoders run the same kernels on the same layout.
        quantized_map = quantized_sum.reshape(batch_size, height, width, dim).permute(0, 3, 1, 2).contiguous()
        reconstruction = self.decoder(quantized_map)[:, :, :n_mels, :num_frames]
        loss = None
        if with_loss:
            loss = baseline_multi_scale_loss(reconstruction, features)
            if commit:
                loss = loss + torch.stack(commit).sum() * self.commitment_weight
        return reconstruction, torch.stack(codes, dim=-1), loss


# ----------------------------------------------------------------------------------------------------- timing
def time_interleaved(ours, baseline, repeats: int, warmup: int) -> dict:
    """Warm both up, then alternate them (order flipped every pair) and return median times in ms."""
    for _ in range(warmup):
        ours()
        baseline()
    ours_times: list[float] = []
    baseline_times: list[float] = []
    for repeat in range(repeats):
        pair = [(ours, ours_times), (baseline, baseline_times)]
        if repeat % 2:
            pair.reverse()
        for function, times in pair:
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    ours_ms = statistics.median(ours_times) * 1e3
    baseline_ms = statistics.median(baseline_times) * 1e3
    pair_ratios = [a / b for a, b in zip(ours_times, baseline_times)]
    return {
        "ours_ms": ours_ms,
        "baseline_ms": baseline_ms,
        "ratio": ours_ms / baseline_ms,
        "median_pair_ratio": statistics.median(pair_ratios),
        "ours_min_ms": min(ours_times) * 1e3,
        "baseline_min_ms": min(baseline_times) * 1e3,
        "ours_times_ms": [t * 1e3 for t in ours_times],
        "baseline_times_ms": [t * 1e3 for t in baseline_times],
    }


def load_average() -> float | None:
    """1-minute load average (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def busy_cpu_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine since boot (Linux `/proc/stat`), None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class ForeignLoad:
    """Average number of cores kept busy by *other* processes between `start()` and `stop()`."""

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.own = time.process_time()
        self.busy = busy_cpu_seconds()

    def stop(self) -> float | None:
        busy = busy_cpu_seconds()
        if busy is None or self.busy is None:
            return None
        wall = time.perf_counter() - self.wall
        own = time.process_time() - self.own
        return max(0.0, (busy - self.busy - own) / wall)


def format_load(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def inference(function):
    def run():
        with torch.inference_mode():
            return function()
    return run


# ------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per side and row (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per side before timing (default 3)")
    parser.add_argument("--quick", action="store_true", help="5 repeats, 2 warm-up runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--json", type=str, default=None, metavar="PATH", help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    warmup = min(args.warmup, 2) if args.quick else args.warmup
    if repeats < 1 or warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    wall_start = time.perf_counter()
    load_start = load_average()
    foreign = ForeignLoad()
    foreign.start()

    config = DistillVQVAEConfig()
    factor = config.downsampling_factor

    # Inputs: one-second clips of noise at 48 kHz and their features.
    generator = torch.Generator().manual_seed(args.seed)
    audio = (torch.randn(32, SAMPLING_RATE, generator=generator) * 0.1).contiguous()
    extractor = DistillFeatureExtractor.from_model_config(config)
    features_32 = extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features.contiguous()
    features_16 = features_32[:16].contiguous()
    features_1 = features_32[:1].contiguous()

    # Our model; its first forward runs the k-means initialisation (done here on the B=32 batch).
    model = DistillVQVAEModel(config).eval()
    with torch.no_grad():
        model(features_32)
    assert all(bool(layer.initted) for layer in model.quantizer.layers)

    encoder = build_baseline_encoder(config)
    decoder = build_baseline_decoder(config)
    copy_weights_into_baseline(model, encoder, decoder)
    codebooks = [layer.embed.detach().clone() for layer in model.quantizer.layers]
    baseline = BaselineVQVAE(encoder, decoder, codebooks, factor, config.commitment_weight).eval()

    # Sanity check: same function (codes may differ only on exact near-ties of the two distance formulas).
    with torch.inference_mode():
        ours_out = model(features_32)
        base_recon, base_codes, base_loss = baseline.forward(features_32)
    code_agreement = (ours_out.audio_codes.permute(0, 2, 3, 1).reshape(-1, config.num_quantizers)
                      == base_codes).float().mean().item()
    recon_diff = (ours_out.reconstruction - base_recon).abs().max().item()
    loss_diff = abs(ours_out.loss.item() - base_loss.item())
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLING_RATE, n_fft=2048, hop_length=512, n_mels=128
    )
    with torch.no_grad():
        feature_diff = (torch.log1p(mel(audio))[:, None] - features_32).abs().max().item()

    rows = []

    def add_row(name: str, target: float | None, ours, base) -> None:
        result = time_interleaved(ours, base, repeats, warmup)
        result.update(name=name, target=target)
        if target is not None:
            result["ok"] = result["ratio"] <= target
        rows.append(result)
        print(f"  done: {name}", file=sys.stderr, flush=True)

    # 1/2. Eval forward, with and without the loss.
    for batch_name, feats in (("B=1", features_1), ("B=32", features_32)):
        add_row(
            f"eval forward {batch_name} (loss)", EVAL_TARGET,
            inference(lambda f=feats: model(f)),
            inference(lambda f=feats: baseline.forward(f, with_loss=True)),
        )
        add_row(
            f"eval forward {batch_name} (no loss)", EVAL_TARGET,
            inference(lambda f=feats: model(f, return_loss=False)),
            inference(lambda f=feats: baseline.forward(f, with_loss=False)),
        )

    # 3. Training step, B=16: separate copies so the eval rows above see unchanged weights.
    train_model = copy.deepcopy(model).train()
    train_baseline = BaselineVQVAE(
        copy.deepcopy(encoder), copy.deepcopy(decoder), [c.clone() for c in codebooks], factor,
        config.commitment_weight,
    ).train()
    ours_optimizer = torch.optim.AdamW(
        train_model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    baseline_optimizer = torch.optim.AdamW(
        train_baseline.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def ours_train_step():
        ours_optimizer.zero_grad(set_to_none=True)
        train_model(features_16).loss.backward()
        ours_optimizer.step()

    def baseline_train_step():
        baseline_optimizer.zero_grad(set_to_none=True)
        _, _, loss = train_baseline.forward(features_16, with_loss=True, straight_through=True)
        loss.backward()
        baseline_optimizer.step()

    add_row("train step B=16 (fwd+bwd+AdamW)", None, ours_train_step, baseline_train_step)

    # 4. Feature extraction, B=32 one-second clips.
    def ours_features():
        return extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt").input_features

    def baseline_features():
        with torch.no_grad():
            return torch.log1p(mel(audio))[:, None]

    add_row("feature extraction B=32", FEATURE_TARGET, ours_features, baseline_features)

    total_s = time.perf_counter() - wall_start
    foreign_cores = foreign.stop()

    # ------------------------------------------------------------------------------------------------ report
    print()
    print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, python {platform.python_version()}")
    print(f"threads: {torch.get_num_threads()} (cpu_count {os.cpu_count()}), interop {torch.get_num_interop_threads()}")
    print(f"config: codebook_size {config.codebook_size}, num_quantizers {config.num_quantizers}, "
          f"codebook_dim {config.codebook_dim}, encoder_channels {list(config.encoder_channels)}")
    print(f"machine load: 1-min load average {format_load(load_start)} before the run; other processes kept "
          f"{format_load(foreign_cores)} of {os.cpu_count()} cores busy on average during it")
    if foreign_cores is not None and foreign_cores > 0.25:
        print("WARNING: other processes were using the CPU, so these timings (multi-threaded ones above all) are "
              "noisy; rerun on an idle machine, or compare with --threads 1")
    print(f"timing: median of {repeats} interleaved repeats after {warmup} warm-up runs per side")
    print(f"sanity (B=32 eval): code agreement {code_agreement * 100:.2f}%, max |recon diff| {recon_diff:.2e}, "
          f"|loss diff| {loss_diff:.2e}; features max |diff| {feature_diff:.2e}")
    print()
    header = f"{'row':<34} {'ours ms':>10} {'base ms':>10} {'ratio':>7} {'pair':>7} {'target':>8}  verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = f"<={row['target']:.2f}x" if row["target"] is not None else "-"
        verdict = ("ok" if row["ok"] else "OVER") if row["target"] is not None else "(report only)"
        print(f"{row['name']:<34} {row['ours_ms']:>10.2f} {row['baseline_ms']:>10.2f} "
              f"{row['ratio']:>6.3f}x {row['median_pair_ratio']:>6.3f}x {target:>8}  {verdict}")
    print()
    print("ratio = median(ours) / median(baseline); pair = median of per-repeat ours/baseline ratios")
    print(f"total benchmark time: {total_s:.1f} s")

    if args.json:
        payload = {
            "torch": torch.__version__,
            "torchaudio": torchaudio.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_start": load_start,
            "foreign_busy_cores": foreign_cores,
            "repeats": repeats,
            "warmup": warmup,
            "sanity": {
                "code_agreement": code_agreement,
                "max_recon_diff": recon_diff,
                "loss_diff": loss_diff,
                "max_feature_diff": feature_diff,
            },
            "total_seconds": total_s,
            "rows": rows,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
