"""Pictures of what the model does: code grids, spectrograms, codebook usage and loss curves.

matplotlib is an optional dependency (`pip install "distill-hf[plot]"`); every function raises an `ImportError`
that says so when it is missing. Figures are drawn with matplotlib's object-oriented API on an Agg canvas (no
pyplot state, no global backend change) and written atomically (temporary file, then rename), so a failed plot
never leaves a half-written PNG.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .file_utils import atomic_path


def _is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - exercised only without matplotlib
        raise ImportError('Plotting needs matplotlib: pip install "distill-hf[plot]"') from error
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", bbox_inches="tight")
    return Path(path)


def plot_code_grid(audio_codes: torch.Tensor, path, codebook_size: int | None = None, title: str | None = None) -> Path:
    """
    One panel per quantizer level: frequency band (rows, low at the bottom) x time position, colour = code index.

    Args:
        audio_codes (`torch.LongTensor` of shape `(num_quantizers, height, width)` or `(1, num_quantizers, height,
            width)`): the codes of one clip.
        path: PNG file to write.
        codebook_size (`int`, *optional*): fixes the colour scale to `[0, codebook_size)`.
    """
    codes = torch.as_tensor(audio_codes).detach().cpu()
    if codes.dim() == 4 and codes.shape[0] == 1:
        codes = codes[0]
    if codes.dim() != 3:
        raise ValueError(
            f"`audio_codes` must have shape (num_quantizers, height, width) for one clip, got {tuple(codes.shape)}."
        )
    levels = codes.shape[0]
    figure = _figure(3.2 * levels, 2.8)
    axes = figure.subplots(1, levels, squeeze=False)
    vmax = (codebook_size - 1) if codebook_size else int(codes.max())
    for level, axis in enumerate(axes[0]):
        image = axis.imshow(codes[level].numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=vmax,
                            interpolation="nearest")
        axis.set_title(f"level {level}")
        axis.set_xlabel("time position")
        axis.set_ylabel("frequency band" if level == 0 else "")
    figure.colorbar(image, ax=axes[0].tolist(), label="code index")
    if title:
        figure.suptitle(title, y=1.04)  # clear of the panel titles
    return _save(figure, path)


def plot_spectrograms(input_features: torch.Tensor, reconstruction: torch.Tensor, path, title: str | None = None) -> Path:
    """
    Input vs reconstructed log-mel spectrogram of one clip, side by side with a shared colour scale.

    Args:
        input_features, reconstruction (`torch.FloatTensor` of shape `(n_mels, num_frames)`, or with leading
            singleton batch/channel axes).
    """
    panels = []
    for name, tensor in (("input", input_features), ("reconstruction", reconstruction)):
        array = torch.as_tensor(tensor).detach().float().cpu()
        while array.dim() > 2 and array.shape[0] == 1:
            array = array[0]
        if array.dim() != 2:
            raise ValueError(f"`{name}` must be one spectrogram (n_mels, num_frames), got {tuple(array.shape)}.")
        panels.append((name, array))
    low = min(float(array.min()) for _, array in panels)
    high = max(float(array.max()) for _, array in panels)
    figure = _figure(10, 3.4)
    axes = figure.subplots(1, 2, sharey=True)
    for axis, (name, array) in zip(axes, panels):
        image = axis.imshow(array.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high)
        axis.set_title(name)
        axis.set_xlabel("frame")
    axes[0].set_ylabel("mel band")
    figure.colorbar(image, ax=list(axes), label="log1p(mel power)")
    if title:
        figure.suptitle(title, y=1.04)  # clear of the panel titles
    return _save(figure, path)


def plot_codebook_usage(audio_codes: torch.Tensor, codebook_size: int, path, title: str | None = None) -> Path:
    """
    Per-level histogram of code use over `audio_codes` `(batch_size, num_quantizers, height, width)`: how often each
    code index occurs, with utilization and perplexity in each panel's title.
    """
    codes = torch.as_tensor(audio_codes).detach().cpu()
    if codes.dim() != 4:
        raise ValueError(
            f"`audio_codes` must have shape (batch_size, num_quantizers, height, width), got {tuple(codes.shape)}."
        )
    levels = codes.shape[1]
    figure = _figure(8, 1.9 * levels)
    axes = figure.subplots(levels, 1, squeeze=False, sharex=True)
    for level, axis in enumerate(axes[:, 0]):
        counts = torch.bincount(codes[:, level].reshape(-1), minlength=codebook_size).double()
        probabilities = counts / counts.sum()
        nonzero = probabilities[probabilities > 0]
        perplexity = float(torch.exp(-(nonzero * nonzero.log()).sum()))
        used = int((counts > 0).sum())
        axis.bar(range(codebook_size), counts.numpy(), width=1.0, color="tab:blue")
        axis.set_title(f"level {level}: {used}/{codebook_size} codes used, perplexity {perplexity:.1f}", fontsize=9)
        axis.set_ylabel("count")
    axes[-1, 0].set_xlabel("code index")
    if title:
        figure.suptitle(title, y=1.04)  # clear of the panel titles
    return _save(figure, path)


def plot_loss_curves(history: dict[str, list[float]], path, title: str | None = None) -> Path:
    """
    Loss curves per epoch from a dict of named lists (e.g. `{"train": [...], "validation": [...]}`); entries that
    are not finite numbers (e.g. `None` for an epoch without evaluation) are left out, empty series skipped.
    """
    series = {}
    for name, values in history.items():
        points = [(epoch, float(v)) for epoch, v in enumerate(values or [], start=1) if _is_finite_number(v)]
        if points:
            series[name] = points
    if not series:
        raise ValueError("`history` has no non-empty loss series to plot.")
    figure = _figure(6.4, 3.6)
    axis = figure.subplots()
    for name, points in series.items():
        epochs, values = zip(*points)
        axis.plot(epochs, values, marker="o", markersize=3, label=name)
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    axis.legend()
    if title:
        axis.set_title(title)
    return _save(figure, path)
