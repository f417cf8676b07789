"""Codebooks under data parallelism: two gloo processes started with torchrun, compared with one process."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.helpers.ddp_worker import half_batch_latents, initialised_quantizer, quantizer_buffers

WORKER = Path(__file__).parent / "helpers" / "ddp_worker.py"


def torchrun(scenario: str, out_dir: Path) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), scenario, str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [torch.load(out_dir / f"{scenario}_rank{rank}.pt") for rank in range(2)]


def test_two_half_batches_equal_one_whole_batch(tmp_path):
    rank0, rank1 = torchrun("half-batch", tmp_path)

    single = initialised_quantizer(threshold=0)
    before = quantizer_buffers(single)
    single(half_batch_latents())
    whole = quantizer_buffers(single)

    assert any(not torch.equal(before[k], whole[k]) for k in whole)  # the step did move the statistics
    for name, expected in whole.items():
        torch.testing.assert_close(rank0[name], expected, rtol=1e-5, atol=1e-6, msg=f"rank 0 {name}")
        assert torch.equal(rank0[name], rank1[name]), name


def test_codebooks_stay_identical_across_ranks_with_dead_code_replacement(tmp_path):
    rank0, rank1 = torchrun("model-steps", tmp_path)
    assert all(bool(rank0[f"layers.{level}.initted"]) for level in range(2))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_trainer_runs_ddp_and_keeps_codebooks_identical(tmp_path):
    rank0, rank1 = torchrun("trainer", tmp_path)
    assert all(bool(rank0[f"layers.{level}.initted"]) for level in range(2))
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
