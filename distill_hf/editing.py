"""Editing encoded audio: swap a time region of codes between recordings, blend two encodings, and the codes file.

Shapes (one recording; a leading batch axis of 1 is optional everywhere, and results keep the layout they were given):

* codes `(1, num_quantizers, height, width)` int64: level x frequency band x time position, e.g. from
  `distill_hf.encode_audio`; one time position is `16 * hop_length` samples (`positions_per_second`);
* quantized representation `(1, codebook_dim, height, width)` float: the sum of the levels' code vectors, what the
  decoder reads (`model.decode(quantized_representation=...)` or `distill_hf.decode_audio(...,
  quantized_representation=...)`).

`swap_codes` works on code indices (any subset of levels: level 0 carries the coarse content, later levels refine
it); `blend_encodings` interpolates in the decoder's input space. Invalid regions, mismatched levels, bands or
codebook sizes raise `ValueError`.

`EncodedAudio` is what `distill-hf encode` writes (`.npz`): the codes, the recording's length and sampling rate, and the
model's codebook size, number of levels and spectrogram settings, so that a mismatched model is refused before
decoding.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch

from .file_utils import atomic_path


CODES_FORMAT = "distill-codes"
CODES_VERSION = 1


def positions_per_second(config) -> float:
    """Code positions per second of audio: `sampling_rate / (hop_length * downsampling_factor)` (5.86 at 48 kHz)."""
    return config.sampling_rate / (config.hop_length * config.downsampling_factor)


def seconds_to_positions(start_seconds: float, end_seconds: float, config) -> tuple[int, int]:
    """
    A time region in seconds -> code positions `[start, end)`: every position that overlaps the region (the start
    rounded down, the end up). `config` is the model's configuration (or anything with `sampling_rate`,
    `hop_length` and `downsampling_factor`).
    """
    for name, value in (("start_seconds", start_seconds), ("end_seconds", end_seconds)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number of seconds >= 0, got {value!r}.")
    if not end_seconds > start_seconds:
        raise ValueError(f"The region must end after it starts, got {start_seconds} s to {end_seconds} s.")
    rate = positions_per_second(config)
    return math.floor(start_seconds * rate + 1e-9), math.ceil(end_seconds * rate - 1e-9)


def _as_grid(codes, name: str) -> tuple[torch.Tensor, bool]:
    """`(Q, H, W)` or `(1, Q, H, W)` integer codes -> `(1, Q, H, W)` and whether a batch axis was given."""
    if isinstance(codes, np.ndarray):
        codes = torch.from_numpy(codes)
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of codes, got {type(codes).__name__}.")
    batched = codes.dim() == 4
    if codes.dim() == 3:
        codes = codes.unsqueeze(0)
    if codes.dim() != 4 or codes.shape[0] != 1:
        raise ValueError(
            f"`{name}` must be the codes of one recording, (1, num_quantizers, height, width) or (num_quantizers, "
            f"height, width), got {tuple(codes.shape)}."
        )
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer code indices, got dtype {codes.dtype}.")
    if codes.shape[-1] == 0:
        raise ValueError(f"`{name}` is empty (width 0).")
    return codes.long(), batched


def _check_values(codes: torch.Tensor, name: str, codebook_size: int | None) -> None:
    if codebook_size is None:
        if codes.min() < 0:
            raise ValueError(f"`{name}` has negative code indices.")
        return
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise ValueError(
            f"`{name}` holds code indices in [{int(codes.min())}, {int(codes.max())}], outside the codebook of size "
            f"{codebook_size}: the codes come from a model with a different codebook size."
        )


def _check_levels(levels, num_quantizers: int) -> list[int]:
    if levels is None:
        return list(range(num_quantizers))
    if isinstance(levels, Integral) and not isinstance(levels, bool):
        levels = [levels]
    try:
        levels = list(levels)
    except TypeError:
        raise ValueError(f"`levels` must be a list of level indices, got {levels!r}.") from None
    if not levels:
        raise ValueError("`levels` is empty: choose at least one quantizer level.")
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, Integral) or not 0 <= level < num_quantizers:
            raise ValueError(f"`levels` must be indices in [0, {num_quantizers}) (the codes' levels), got {levels!r}.")
    if len(set(levels)) != len(levels):
        raise ValueError(f"`levels` has repeated entries: {levels!r}.")
    return sorted(int(level) for level in levels)


def _check_position(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer code position, got {value!r}.")
    return int(value)


def swap_codes(
    target_codes: torch.LongTensor,
    source_codes: torch.LongTensor,
    start: int,
    end: int,
    levels=None,
    source_start: int | None = None,
    codebook_size: int | None = None,
) -> torch.LongTensor:
    """
    Replace a time region of one recording's codes with another's.

    Args:
        target_codes (`torch.LongTensor` of shape `(1, num_quantizers, height, width_t)` or without the batch axis):
            the codes to edit (not modified; a copy is returned).
        source_codes (`torch.LongTensor` of shape `(1, num_quantizers, height, width_s)` or without the batch axis):
            where the new codes come from: same number of levels and bands (same model).
        start, end (`int`): the region of `target_codes`, code positions `[start, end)` with
            `0 <= start < end <= width_t` (see `seconds_to_positions`).
        levels (`int` or list of `int`, *optional*): the levels to replace (default: all). `[0]` swaps the coarse
            content and keeps the target's finer levels.
        source_start (`int`, *optional*): first position of the region in `source_codes` (default: `start`); the
            source region `[source_start, source_start + end - start)` must lie within `width_s`.
        codebook_size (`int`, *optional*): the model's codebook size; both code grids must lie in
            `[0, codebook_size)`.

    Returns:
        `torch.LongTensor` shaped like `target_codes`.

    Raises:
        `ValueError`: regions outside the grids, mismatched levels or bands, bad level indices, code indices outside
        the codebook.
    """
    target, batched = _as_grid(target_codes, "target_codes")
    source, _ = _as_grid(source_codes, "source_codes")
    if target.shape[1] != source.shape[1]:
        raise ValueError(
            f"Mismatched levels: `target_codes` has {target.shape[1]} quantizer levels and `source_codes` "
            f"{source.shape[1]}; swap codes of the same model."
        )
    if target.shape[2] != source.shape[2]:
        raise ValueError(
            f"Mismatched frequency bands: `target_codes` has height {target.shape[2]} and `source_codes` "
            f"{source.shape[2]}; swap codes of the same model."
        )
    if codebook_size is not None and (
        isinstance(codebook_size, bool) or not isinstance(codebook_size, Integral) or codebook_size < 1
    ):
        raise ValueError(f"`codebook_size` must be a positive integer, got {codebook_size!r}.")
    _check_values(target, "target_codes", codebook_size)
    _check_values(source, "source_codes", codebook_size)
    start, end = _check_position("start", start), _check_position("end", end)
    width_t, width_s = target.shape[-1], source.shape[-1]
    if not 0 <= start < end <= width_t:
        raise ValueError(f"Invalid region [{start}, {end}): need 0 <= start < end <= {width_t} (the target's width).")
    source_start = start if source_start is None else _check_position("source_start", source_start)
    source_end = source_start + (end - start)
    if not 0 <= source_start or source_end > width_s:
        raise ValueError(
            f"Invalid source region [{source_start}, {source_end}): it must lie within [0, {width_s}] (the source's "
            "width)."
        )
    levels = _check_levels(levels, target.shape[1])
    edited = target.clone()
    edited[:, levels, :, start:end] = source[:, levels, :, source_start:source_end]
    return edited if batched else edited[0]


def blend_encodings(model, codes_a: torch.LongTensor, codes_b: torch.LongTensor, alpha=0.5, truncate: bool = False):
    """
    Blend two encodings in the decoder's input space: `(1 - alpha) * q_a + alpha * q_b`, where `q` is the quantized
    representation (the sum of the levels' code vectors) of each code grid.

    Args:
        model ([`DistillVQVAEModel`]): the model both encodings come from.
        codes_a, codes_b (`torch.LongTensor` of shape `(1, num_quantizers, height, width)` or without the batch axis).
        alpha (`float` in [0, 1], or a sequence/tensor of `width` such values, *optional*, defaults to 0.5): weight
            of `codes_b`; a sequence gives one weight per time position (e.g. `torch.linspace(0, 1, width)` morphs
            from a to b).
        truncate (`bool`, *optional*, defaults to `False`): blend recordings of different widths over the shorter
            one (otherwise that is a `ValueError`).

    Returns:
        `torch.FloatTensor` of shape `(1, codebook_dim, height, width)`: decode it with
        `model.decode(quantized_representation=...)` or `distill_hf.decode_audio(model, feature_extractor,
        quantized_representation=...)`.

    Raises:
        `ValueError`: codes that do not fit the model (levels, codebook size), mismatched bands or widths, `alpha`
        outside [0, 1] or of the wrong length.
    """
    grids = []
    for name, codes in (("codes_a", codes_a), ("codes_b", codes_b)):
        grid, _ = _as_grid(codes, name)
        config = model.config
        if grid.shape[1] != config.num_quantizers:
            raise ValueError(
                f"Mismatched levels: `{name}` has {grid.shape[1]} quantizer levels but the model has "
                f"{config.num_quantizers}."
            )
        _check_values(grid, name, config.codebook_size)
        grids.append(grid)
    grid_a, grid_b = grids
    if grid_a.shape[2] != grid_b.shape[2]:
        raise ValueError(f"Mismatched frequency bands: height {grid_a.shape[2]} and {grid_b.shape[2]}.")
    width = min(grid_a.shape[-1], grid_b.shape[-1])
    if grid_a.shape[-1] != grid_b.shape[-1]:
        if not truncate:
            raise ValueError(
                f"The encodings have different widths ({grid_a.shape[-1]} and {grid_b.shape[-1]} positions); pass "
                "`truncate=True` to blend over the shorter one."
            )
        grid_a, grid_b = grid_a[..., :width], grid_b[..., :width]

    if isinstance(alpha, Real) and not isinstance(alpha, bool):
        weights = torch.tensor(float(alpha))
    else:
        try:
            weights = torch.as_tensor(alpha, dtype=torch.float32).detach().cpu()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"`alpha` must be a number or a sequence of numbers, got {alpha!r}.") from None
        if weights.dim() != 1 or weights.numel() != width:
            raise ValueError(
                f"A per-position `alpha` must have {width} values (one per time position), got shape "
                f"{tuple(weights.shape)}."
            )
    if not torch.isfinite(weights).all() or weights.min() < 0 or weights.max() > 1:
        raise ValueError(f"`alpha` must lie in [0, 1], got {alpha!r}.")
    with torch.no_grad():
        quantized_a = model.quantizer.decode_codes(grid_a.to(model.device))
        quantized_b = model.quantizer.decode_codes(grid_b.to(model.device))
        weights = weights.to(quantized_a.device, quantized_a.dtype)
        return (quantized_a * (1 - weights) + quantized_b * weights).contiguous()


@dataclass
class EncodedAudio:
    """
    The codes of one recording with what is needed to decode them correctly (the `distill-hf encode` file).

    Attributes:
        audio_codes (`torch.LongTensor` of shape `(1, num_quantizers, height, width)`).
        num_samples (`int`): length of the encoded recording at `sampling_rate`.
        sampling_rate, hop_length, n_mels (`int`): the model's spectrogram settings.
        codebook_size (`int`): the model's codes per level.
        downsampling_factor (`int`): frames per code position (16).
    """

    audio_codes: torch.LongTensor
    num_samples: int
    sampling_rate: int
    hop_length: int
    n_mels: int
    codebook_size: int
    downsampling_factor: int = 16

    @property
    def num_quantizers(self) -> int:
        return int(self.audio_codes.shape[1])

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sampling_rate

    @classmethod
    def from_model(cls, model, audio_codes: torch.LongTensor, num_samples: int) -> EncodedAudio:
        config = model.config
        grid, _ = _as_grid(audio_codes, "audio_codes")
        return cls(grid.cpu(), int(num_samples), config.sampling_rate, config.hop_length, config.n_mels,
                   config.codebook_size, config.downsampling_factor)

    def check_model(self, model, name: str = "the codes") -> None:
        """`ValueError` (naming `name`) unless `model` can decode these codes: same levels, codebook and spectrogram."""
        config = model.config
        ours = {"levels": self.num_quantizers, "codebook size": self.codebook_size, "sampling rate": self.sampling_rate,
                "hop length": self.hop_length, "mel bands": self.n_mels, "downsampling": self.downsampling_factor}
        theirs = {"levels": config.num_quantizers, "codebook size": config.codebook_size,
                  "sampling rate": config.sampling_rate, "hop length": config.hop_length, "mel bands": config.n_mels,
                  "downsampling": config.downsampling_factor}
        wrong = [key for key in ours if ours[key] != theirs[key]]
        if wrong:
            made = ", ".join(f"{key} {ours[key]}" for key in wrong)
            model_has = ", ".join(f"{key} {theirs[key]}" for key in wrong)
            raise ValueError(
                f"{name} were made by a model with {made}, but this model has {model_has}: decode them with the model "
                "that encoded them."
            )
        _check_values(self.audio_codes, str(name), config.codebook_size)

    def check_compatible(
        self, other: EncodedAudio, names: tuple[str, str] = ("the first codes", "the second codes")
    ) -> None:
        """`ValueError` unless both come from models with the same levels, codebook and spectrogram settings."""
        for key in ("num_quantizers", "codebook_size", "sampling_rate", "hop_length", "n_mels", "downsampling_factor"):
            if getattr(self, key) != getattr(other, key):
                raise ValueError(
                    f"{names[0]} and {names[1]} come from different models ({key.replace('_', ' ')} "
                    f"{getattr(self, key)} vs {getattr(other, key)})."
                )

    def save(self, path: str | os.PathLike) -> Path:
        """Write a `.npz` file (atomically: a temporary file beside it, then renamed)."""
        path = Path(path)
        codes = self.audio_codes.cpu().numpy()
        dtype = np.int16 if self.codebook_size <= np.iinfo(np.int16).max + 1 else np.int32
        arrays = {
            "format": np.array(CODES_FORMAT),
            "version": np.array(CODES_VERSION),
            "audio_codes": codes.astype(dtype),
            "num_samples": np.array(self.num_samples, dtype=np.int64),
            "sampling_rate": np.array(self.sampling_rate, dtype=np.int64),
            "hop_length": np.array(self.hop_length, dtype=np.int64),
            "n_mels": np.array(self.n_mels, dtype=np.int64),
            "codebook_size": np.array(self.codebook_size, dtype=np.int64),
            "num_quantizers": np.array(self.num_quantizers, dtype=np.int64),
            "downsampling_factor": np.array(self.downsampling_factor, dtype=np.int64),
        }
        with atomic_path(path) as temporary, open(temporary, "wb") as file:
            np.savez(file, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> EncodedAudio:
        """Read a file written by `save`; `ValueError` naming the file if it is missing or not a codes file."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"codes file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in data.files}
        except Exception as error:  # zipfile/pickle/format errors of a file that is not a .npz
            raise ValueError(f"cannot read codes file {path}: {error}") from None
        if str(fields.get("format", "")) != CODES_FORMAT:
            raise ValueError(f"{path} is not a distill-hf codes file (written by `distill-hf encode`)")
        if int(fields.get("version", -1)) != CODES_VERSION:
            raise ValueError(
                f"{path} has codes file version {fields.get('version')}, this distill-hf reads "
                f"{CODES_VERSION}"
            )
        try:
            codes = torch.from_numpy(fields["audio_codes"].astype(np.int64))
            encoded = cls(
                codes,
                *(int(fields[key]) for key in ("num_samples", "sampling_rate", "hop_length", "n_mels", "codebook_size",
                                                "downsampling_factor")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is an incomplete codes file: {error}") from None
        if codes.dim() != 4 or codes.shape[0] != 1 or int(fields.get("num_quantizers", -1)) != codes.shape[1]:
            raise ValueError(
                f"{path} holds codes of shape {tuple(codes.shape)}, not (1, num_quantizers, height, "
                "width)"
            )
        _check_values(codes, str(path), encoded.codebook_size)
        if encoded.num_samples < 1 or encoded.num_frames > codes.shape[-1] * encoded.downsampling_factor:
            raise ValueError(f"{path}: {encoded.num_samples} samples do not fit {codes.shape[-1]} code positions")
        return encoded


__all__ = [
    "EncodedAudio",
    "blend_encodings",
    "positions_per_second",
    "seconds_to_positions",
    "swap_codes",
]
