"""Run under `torchrun --nproc_per_node 2`: exercises the quantizer's cross-process synchronisation (gloo, CPU).

    torchrun --nproc_per_node 2 tests/helpers/ddp_worker.py SCENARIO OUT_DIR

Scenarios (each rank writes OUT_DIR/<scenario>_rank<r>.pt):

* ``half-batch``: a residual quantizer with identical initialised codebooks on every rank takes one training step
  on its half of a fixed batch of latents (dead-code replacement off). The test compares the buffers with one
  process stepping on the whole batch.
* ``model-steps``: the whole model, wrapped in DistributedDataParallel with ``broadcast_buffers=False`` (so DDP
  itself never copies buffers between ranks), starts from an uninitialised codebook (k-means runs on the first
  batch) and trains several AdamW steps with dead-code replacement on, each rank on different data. The test
  checks that the codebook buffers are bit-identical across ranks.
* ``trainer``: `transformers.Trainer` under torchrun (gloo) trains a few steps with dead-code replacement on and
  ``ddp_broadcast_buffers=False``; each rank saves its codebooks for the same bit-identity check.
"""

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distill_hf import DistillVQVAEConfig, DistillVQVAEModel  # noqa: E402
from distill_hf.quantization_distill import DistillResidualVectorQuantizer  # noqa: E402

TINY = dict(codebook_dim=8, codebook_size=16, num_quantizers=2, encoder_channels=[4, 8], n_mels=32, dropout=0.0)


def half_batch_latents() -> torch.Tensor:
    return torch.randn(4, 8, 8, 5, generator=torch.Generator().manual_seed(1))


def initialised_quantizer(threshold: int) -> DistillResidualVectorQuantizer:
    """Codebooks initialised deterministically (same on every process), then put in training mode."""
    config = DistillVQVAEConfig(**TINY, threshold_ema_dead_code=threshold)
    quantizer = DistillResidualVectorQuantizer(config)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in quantizer.layers:
            layer.embed.copy_(torch.randn(16, 8, generator=generator))
            layer.cluster_size.copy_(torch.rand(16, generator=generator) * 4)
            layer.embed_avg.copy_(layer.embed * layer.cluster_size[:, None])
            layer.initted.fill_(True)
    return quantizer.train()


def quantizer_buffers(quantizer) -> dict:
    return {name: tensor.clone() for name, tensor in quantizer.state_dict().items()}


def run_half_batch(rank: int, world_size: int) -> dict:
    latents = half_batch_latents().chunk(world_size)[rank]
    quantizer = initialised_quantizer(threshold=0)
    quantizer(latents)
    return quantizer_buffers(quantizer)


def run_model_steps(rank: int) -> dict:
    torch.manual_seed(0)  # same initial weights on every rank
    config = DistillVQVAEConfig(**TINY, threshold_ema_dead_code=2)
    model = DistillVQVAEModel(config).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-2)
    torch.manual_seed(100 + rank)  # different data and different local random draws on each rank
    for _ in range(4):
        features = torch.rand(2, 1, 32, 20) * 3
        loss = ddp(features).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return quantizer_buffers(model.quantizer)


def run_trainer(rank: int, out_dir: Path) -> dict:
    import tempfile

    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    class RandomFeatures(Dataset):
        def __init__(self):
            self.features = torch.rand(16, 1, 32, 20, generator=torch.Generator().manual_seed(5)) * 3

        def __len__(self):
            return len(self.features)

        def __getitem__(self, index):
            return {"input_features": self.features[index]}

    torch.manual_seed(0)
    model = DistillVQVAEModel(DistillVQVAEConfig(**TINY, threshold_ema_dead_code=2))
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(dir=out_dir), per_device_train_batch_size=2, max_steps=4, learning_rate=1e-2,
        use_cpu=True, ddp_backend="gloo", ddp_broadcast_buffers=False, report_to="none", save_strategy="no",
        disable_tqdm=True, dataloader_pin_memory=False, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=RandomFeatures())
    assert trainer.args.world_size == 2 and trainer.args.parallel_mode.value == "distributed"
    trainer.train()
    return quantizer_buffers(model.quantizer)


def main() -> None:
    scenario, out_dir = sys.argv[1], Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if scenario == "half-batch":
        result = run_half_batch(rank, world_size)
    elif scenario == "model-steps":
        result = run_model_steps(rank)
    elif scenario == "trainer":
        result = run_trainer(rank, out_dir)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    torch.save(result, out_dir / f"{scenario}_rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
