"""Shared fixtures. Tests never reach the Hub: they run offline on synthetic audio and the bundled fixture."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "distill-v2"
CHECKPOINT = FIXTURE_DIR / "model.distill"


@pytest.fixture(scope="session")
def expected_eval() -> dict:
    return load_file(FIXTURE_DIR / "expected_eval.safetensors")


@pytest.fixture(scope="session")
def expected_train_step() -> dict:
    return load_file(FIXTURE_DIR / "expected_train_step.safetensors")


@pytest.fixture(scope="session")
def converted_dir(tmp_path_factory) -> Path:
    """The fixture checkpoint converted once per session with the real converter."""
    from conversion.convert_distill_checkpoint import convert_checkpoint

    return convert_checkpoint(CHECKPOINT, tmp_path_factory.mktemp("converted") / "distill-v2")


@pytest.fixture(scope="module")
def single_thread():
    """
    One intra-op thread for a module of small-tensor tests (restored afterwards). Small convolutions, STFTs and
    token-by-token generation are fastest on one thread, and on a busy 2-core machine OpenMP threads waiting for
    each other made them 5-70x slower. Modules opt in with `pytestmark = pytest.mark.usefixtures("single_thread")`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_config():
    """A small configuration for fast unit tests: 2 encoder blocks (4x downsampling), 32 mel bands."""
    from distill_hf import DistillVQVAEConfig

    return DistillVQVAEConfig(
        codebook_dim=8,
        codebook_size=16,
        num_quantizers=2,
        encoder_channels=[4, 8],
        n_mels=32,
        n_fft=512,
        hop_length=128,
        sampling_rate=16000,
        dropout=0.0,
    )


def synthetic_audio(num_clips: int, num_samples: int, sampling_rate: int, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with vibrato and a noise burst, different per clip: `(num_clips, num_samples)`."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / sampling_rate
    clips = []
    for _ in range(num_clips):
        f0 = 80 + 600 * torch.rand((), generator=generator)
        vibrato = 1 + 0.02 * torch.sin(2 * torch.pi * 5 * t)
        phase = 2 * torch.pi * torch.cumsum(f0 * vibrato, 0) / sampling_rate
        tone = sum(torch.sin(k * phase) / k for k in range(1, 6))
        envelope = torch.exp(-3 * t * torch.rand((), generator=generator))
        noise = 0.1 * torch.randn(num_samples, generator=generator) * (t > t[-1] / 2)
        clips.append(0.3 * tone * envelope + noise)
    return torch.stack(clips)
