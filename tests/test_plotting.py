"""Pictures: each plot writes a real PNG atomically; bad shapes are refused."""

import pytest
import torch

pytest.importorskip("matplotlib")
from matplotlib.image import imread  # noqa: E402

from distill_hf.plotting import plot_code_grid, plot_codebook_usage, plot_loss_curves, plot_spectrograms  # noqa: E402


def assert_png(path, min_width=200):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)
    assert image.shape[1] >= min_width and image.std() > 0  # something was drawn
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_all_plots(tmp_path):
    codes = torch.randint(0, 16, (2, 3, 8, 6))
    assert_png(plot_code_grid(codes[:1], tmp_path / "grid.png", codebook_size=16))
    assert_png(plot_code_grid(codes[0], tmp_path / "grid0.png"))
    features = torch.rand(1, 1, 32, 40)
    assert_png(plot_spectrograms(features, features * 0.9, tmp_path / "mel.png", title="clip"))
    assert_png(plot_codebook_usage(codes, 16, tmp_path / "usage.png"))
    assert_png(plot_loss_curves({"train": [3.0, 2.0, 1.5], "validation": [None, 2.5, float("nan")]},
                                tmp_path / "loss.png"))


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="one clip"):
        plot_code_grid(torch.zeros(2, 3, 8, 6, dtype=torch.long), tmp_path / "a.png")
    with pytest.raises(ValueError, match="one spectrogram"):
        plot_spectrograms(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), tmp_path / "b.png")
    with pytest.raises(ValueError, match="batch_size, num_quantizers"):
        plot_codebook_usage(torch.zeros(3, 8, 6, dtype=torch.long), 16, tmp_path / "c.png")
    with pytest.raises(ValueError, match="no non-empty"):
        plot_loss_curves({"train": [], "validation": [None]}, tmp_path / "d.png")
    assert list(tmp_path.iterdir()) == []
