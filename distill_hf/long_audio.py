"""Recordings of any length: encode and decode in chunks, in bounded memory, with the codes of one full pass.

Why chunking can be exact. In eval mode every layer of the model works position by position or through a small
neighbourhood (3x3 convolutions with zero padding, BatchNorm with its running statistics, a per-position quantizer),
and the features are centred STFT frames. So a chunk reproduces the full pass wherever it sees the same input in the
whole receptive field of what it keeps:

* features: frame `t` depends on samples `[t * hop - n_fft / 2, t * hop + n_fft / 2)` (reflect padding only at the
  ends of the recording). A chunk of frames is computed from the samples it needs plus at least `n_fft / 2` of
  context on each side (rounded up to whole hops), and only frames whose window lies in that span (or reaches a true
  end) are kept;
* encoder: four stride-2 3x3 convolutions (padding 1) map frame-aligned chunks of `16 * k` frames to `k` code
  positions. Code position `i` reads frames `[16 i - 15, 16 i + 15]` (each layer widens the reach by its input stride:
  1 + 2 + 4 + 8 = 15 frames each side), and because every layer's input size is even, a stride-2 convolution never
  reads its right padding. A chunk starting at frame `16 s` therefore gets every code from position `s + 1` on
  right, and a chunk ending at frame `16 e` every code up to `e - 1`: margins of **1 code position on the left and 0
  on the right** (`ENCODER_MARGINS`). The last chunk ends where the recording ends, so it sees the same zero padding
  to a multiple of 16 frames as the full pass;
* decoder: each stride-2 transposed convolution (kernel 3, padding 1, output padding 1) makes output `o` from inputs
  `floor(o / 2)` and `ceil(o / 2)`, so after four of them frame `o` depends on code positions `floor(o / 16)` and
  `ceil(o / 16)`: margins of **0 on the left and 1 on the right** (`DECODER_MARGINS`);
* vocoder: Griffin-Lim is a global iteration and cannot be chunked exactly. Pieces of `chunk_seconds` overlap by
  `overlap_frames` frames; each piece starts from the phases the previous one ended with in the overlap (and
  phase-gradient integration after it), its edges inside the recording are left free (no reflection), and the pieces
  are joined by a raised-cosine crossfade over the middle of the overlap, away from the free edges.

The model may sit on any device (each window is moved there); features, codes and audio come back on the CPU.

The margins above are verified in `tests/test_long_audio.py` (the codes of a 60-second recording equal one full pass
for chunk sizes that do and do not divide its length, and one position less of margin breaks that). Memory is
bounded by the chunk size (plus the waveform, features and codes of the whole recording, ~0.4 KB per millisecond of
audio), and time grows linearly with the length (`benchmarks/bench_long_audio.py`).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torchaudio

from .feature_extraction_distill import DEFAULT_GRIFFIN_LIM_ITERATIONS, DEFAULT_NNLS_ITERATIONS


DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_OVERLAP_FRAMES = 32

# Receptive-field margins in code positions (left, right), derived in the module docstring.
ENCODER_MARGINS = (1, 0)
DECODER_MARGINS = (0, 1)


def _progress(iterable, enabled: bool, description: str, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, total=total, unit="chunk", leave=False)


@contextlib.contextmanager
def _eval_mode(model):
    """Run `model` in eval mode (BatchNorm statistics, no dropout, no codebook updates), restoring its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _check_chunk_seconds(chunk_seconds) -> float:
    if isinstance(chunk_seconds, bool) or not isinstance(chunk_seconds, (int, float)) or not chunk_seconds > 0:
        raise ValueError(f"`chunk_seconds` must be a positive number of seconds, got {chunk_seconds!r}.")
    if not math.isfinite(chunk_seconds):
        raise ValueError(f"`chunk_seconds` must be finite, got {chunk_seconds!r}.")
    return float(chunk_seconds)


def _mono_waveform(waveform, feature_extractor, sampling_rate: int | None) -> torch.Tensor:
    """Any `(num_samples,)`, `(1, num_samples)` or `(channels, num_samples)` array -> mono float32 at the model rate."""
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    if not isinstance(waveform, torch.Tensor):
        raise ValueError(f"`waveform` must be a torch.Tensor or numpy array, got {type(waveform).__name__}.")
    waveform = waveform.detach()
    if not waveform.is_floating_point():
        raise ValueError(f"`waveform` must hold float samples in [-1, 1], got dtype {waveform.dtype}.")
    if waveform.dim() == 2:
        if waveform.shape[0] > waveform.shape[1]:
            raise ValueError(
                f"`waveform` must be laid out (channels, num_samples), got {tuple(waveform.shape)} (transpose it)."
            )
        waveform = waveform.mean(dim=0)
    if waveform.dim() != 1:
        raise ValueError(
            "`waveform` must have shape (num_samples,) or (channels, num_samples), got "
            f"{tuple(waveform.shape)}."
        )
    waveform = waveform.float().cpu()
    if sampling_rate is not None and sampling_rate != feature_extractor.sampling_rate:
        waveform = torchaudio.functional.resample(waveform, sampling_rate, feature_extractor.sampling_rate)
    minimum = feature_extractor.n_fft // 2 + 1
    if waveform.numel() < minimum:
        raise ValueError(f"`waveform` is too short: {waveform.numel()} samples, the features need at least {minimum}.")
    if not torch.isfinite(waveform.sum()):  # one pass (an elementwise `isfinite` costs several copies of the signal)
        raise ValueError("`waveform` has NaN or infinite samples (or samples far outside [-1, 1]).")
    return waveform


def compute_features(
    feature_extractor,
    waveform,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    sampling_rate: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """
    Log-mel features of a whole recording, computed chunk by chunk and equal to `feature_extractor(waveform)`.

    Args:
        feature_extractor ([`DistillFeatureExtractor`]): the model's extractor.
        waveform (`torch.Tensor` or `np.ndarray` of shape `(num_samples,)` or `(channels, num_samples)`): float
            samples at `sampling_rate` (default: the extractor's); channels are averaged.
        chunk_seconds (`float`, *optional*, defaults to 10): frames computed per chunk.
        sampling_rate (`int`, *optional*): rate of `waveform`; resampled to the extractor's if different.
        progress (`bool`, *optional*, defaults to `False`): show a progress bar.

    Returns:
        `torch.FloatTensor` of shape `(1, 1, n_mels, num_samples // hop_length + 1)`.
    """
    chunk_seconds = _check_chunk_seconds(chunk_seconds)
    waveform = _mono_waveform(waveform, feature_extractor, sampling_rate)
    return _features(feature_extractor, waveform, chunk_seconds, progress)


def _features(feature_extractor, waveform: torch.Tensor, chunk_seconds: float, progress: bool) -> torch.Tensor:
    hop, half, rate = feature_extractor.hop_length, feature_extractor.n_fft // 2, feature_extractor.sampling_rate
    num_samples = waveform.numel()
    num_frames = num_samples // hop + 1
    chunk_frames = max(1, round(chunk_seconds * rate / hop))
    context = -(-half // hop) + 1  # frames of context on each side: the STFT window's half, and one hop to spare
    features = torch.empty(1, 1, feature_extractor.n_mels, num_frames)
    starts = range(0, num_frames, chunk_frames)
    for first in _progress(starts, progress, "features", len(starts)):
        last = min(num_frames, first + chunk_frames)
        begin = max(0, (first - context) * hop)
        end = min(num_samples, (last - 1) * hop + half + hop)
        piece = feature_extractor(
            waveform[begin:end], sampling_rate=rate, return_tensors="pt", return_attention_mask=False
        ).input_features
        offset = first - begin // hop
        features[..., first:last] = piece[..., offset : offset + last - first]
    return features


def encode_features(
    model,
    input_features: torch.Tensor,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    progress: bool = False,
    margins: tuple[int, int] = ENCODER_MARGINS,
) -> torch.LongTensor:
    """
    Codes of a whole spectrogram `(1, 1, n_mels, num_frames)` -> `(1, num_quantizers, height, width)`, encoded in
    windows of `chunk_seconds` with `margins` (left, right) code positions of receptive-field context; identical to
    `model.encode(input_features).audio_codes`. The model runs in eval mode.
    """
    chunk_seconds = _check_chunk_seconds(chunk_seconds)
    config = model.config
    if input_features.dim() == 3:
        input_features = input_features.unsqueeze(1)
    if input_features.dim() != 4 or input_features.shape[0] != 1:
        raise ValueError(
            "`input_features` must be one spectrogram (1, 1, n_mels, num_frames), got "
            f"{tuple(input_features.shape)}."
        )
    factor = config.downsampling_factor
    num_frames = input_features.shape[-1]
    width = -(-num_frames // factor)
    chunk_codes = max(1, round(chunk_seconds * config.sampling_rate / (config.hop_length * factor)))
    left, right = margins
    codes = None
    starts = range(0, width, chunk_codes)
    with _eval_mode(model):
        for first in _progress(starts, progress, "encoding", len(starts)):
            last = min(width, first + chunk_codes)
            window_first, window_last = max(0, first - left), min(width, last + right)
            window = input_features[..., window_first * factor : min(num_frames, window_last * factor)]
            piece = model.encode(window.to(model.device), return_dict=True).audio_codes.cpu()
            if codes is None:
                codes = torch.empty(1, piece.shape[1], piece.shape[2], width, dtype=torch.long)
            codes[..., first:last] = piece[..., first - window_first : last - window_first]
    return codes


def encode_audio(
    model,
    feature_extractor,
    waveform,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    sampling_rate: int | None = None,
    progress: bool = False,
) -> torch.LongTensor:
    """
    Encode a recording of any length to codes, chunk by chunk, identical to one full-length pass.

    Args:
        model ([`DistillVQVAEModel`]): the model (run in eval mode; its mode is restored after).
        feature_extractor ([`DistillFeatureExtractor`]): its feature extractor.
        waveform (`torch.Tensor` or `np.ndarray` of shape `(num_samples,)` or `(channels, num_samples)`): float
            samples in [-1, 1]; channels are averaged.
        chunk_seconds (`float`, *optional*, defaults to 10): audio per chunk. Memory grows with it, not with the
            length of the recording; any value gives the same codes.
        sampling_rate (`int`, *optional*): rate of `waveform`; resampled to the model's if different.
        progress (`bool`, *optional*, defaults to `False`): show progress bars.

    Returns:
        `torch.LongTensor` of shape `(1, num_quantizers, height, width)` with `height = n_mels / 16` and
        `width = ceil(num_frames / 16)`, `num_frames = num_samples // hop_length + 1` (num_samples at the model rate),
        equal to `model.encode(feature_extractor(waveform).input_features).audio_codes`.
    """
    chunk_seconds = _check_chunk_seconds(chunk_seconds)
    waveform = _mono_waveform(waveform, feature_extractor, sampling_rate)
    features = _features(feature_extractor, waveform, chunk_seconds, progress)
    return encode_features(model, features, chunk_seconds, progress)


def decode_features(
    model,
    audio_codes: torch.LongTensor | None = None,
    num_frames: int | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    quantized_representation: torch.FloatTensor | None = None,
    progress: bool = False,
    margins: tuple[int, int] = DECODER_MARGINS,
) -> torch.FloatTensor:
    """
    Decode codes (or quantized latents) of any length to a spectrogram, in windows of `chunk_seconds` with `margins`
    (left, right) code positions of receptive-field context; equal to `model.decode(...)` up to float rounding.

    Args:
        audio_codes (`torch.LongTensor` of shape `(1, num_quantizers, height, width)`, *optional*): the codes.
        num_frames (`int`, *optional*): frames to return, at most `16 * width` (default: `16 * width`).
        quantized_representation (`torch.FloatTensor` of shape `(1, codebook_dim, height, width)`, *optional*):
            decoded instead of `audio_codes` (e.g. a blend, see `distill_hf.editing`).

    Returns:
        `torch.FloatTensor` of shape `(1, 1, n_mels, num_frames)`.
    """
    chunk_seconds = _check_chunk_seconds(chunk_seconds)
    if (audio_codes is None) == (quantized_representation is None):
        raise ValueError("Pass exactly one of `audio_codes` or `quantized_representation`.")
    grid = audio_codes if audio_codes is not None else quantized_representation
    if not isinstance(grid, torch.Tensor):
        raise ValueError(f"The codes must be a torch.Tensor, got {type(grid).__name__}.")
    if grid.dim() == 3:
        grid = grid.unsqueeze(0)
    if grid.dim() != 4 or grid.shape[0] != 1:
        raise ValueError(
            "Decode one recording at a time: expected shape (1, channels, height, width), got "
            f"{tuple(grid.shape)}."
        )
    config = model.config
    factor = config.downsampling_factor
    width = grid.shape[-1]
    if width == 0:
        raise ValueError("The code grid is empty (width 0).")
    if num_frames is None:
        num_frames = width * factor
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or not 0 < num_frames <= width * factor:
        raise ValueError(
            f"`num_frames` must be an integer in [1, {width * factor}] for {width} code positions, got "
            f"{num_frames!r}."
        )
    if audio_codes is not None:
        grid = model._check_codes(grid)  # one check of levels and value range for the whole recording
    chunk_codes = max(1, round(chunk_seconds * config.sampling_rate / (config.hop_length * factor)))
    left, right = margins
    output = torch.empty(1, 1, config.n_mels, num_frames)
    starts = range(0, width, chunk_codes)
    with _eval_mode(model):
        for first in _progress(starts, progress, "decoding", len(starts)):
            last = min(width, first + chunk_codes)
            window_first, window_last = max(0, first - left), min(width, last + right)
            window = grid[..., window_first:window_last].to(model.device)
            if audio_codes is not None:
                piece = model.decode(audio_codes=window, return_dict=True).reconstruction
            else:
                piece = model.decode(quantized_representation=window, return_dict=True).reconstruction
            piece = piece.float().cpu()
            frame_first, frame_last = first * factor, min(num_frames, last * factor)
            if frame_first >= num_frames:
                break
            offset = (first - window_first) * factor
            output[..., frame_first:frame_last] = piece[..., offset : offset + frame_last - frame_first]
    return output


def vocode_features(
    feature_extractor,
    input_features: torch.Tensor,
    num_samples: int | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    n_iter: int = DEFAULT_GRIFFIN_LIM_ITERATIONS,
    momentum: float = 0.99,
    nnls_iter: int = DEFAULT_NNLS_ITERATIONS,
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
    progress: bool = False,
) -> torch.Tensor:
    """
    Waveform of a spectrogram of any length, `(1, 1, n_mels, num_frames)` -> `(num_samples,)`: the extractor's
    `features_to_waveform` in overlapping pieces of `chunk_seconds` joined without clicks (see the module docstring).
    A spectrogram that fits in one piece is inverted in one call, exactly as `features_to_waveform` does.

    Args:
        num_samples (`int`, *optional*): output length, at most `(num_frames - 1) * hop_length + n_fft / 2 - 1`
            (default: `(num_frames - 1) * hop_length`).
        n_iter, momentum, nnls_iter: as for `features_to_waveform`.
        overlap_frames (`int`, *optional*, defaults to 32): frames shared by consecutive pieces (at least
            `2 * ceil(n_fft / 2 / hop_length) + 2`); the crossfade spans its middle.
    """
    chunk_seconds = _check_chunk_seconds(chunk_seconds)
    extractor = feature_extractor
    if input_features.dim() == 3:
        input_features = input_features.unsqueeze(1)
    if input_features.dim() != 4 or input_features.shape[:2] != (1, 1):
        raise ValueError(
            "`input_features` must be one spectrogram (1, 1, n_mels, num_frames), got "
            f"{tuple(input_features.shape)}."
        )
    hop, half = extractor.hop_length, extractor.n_fft // 2
    num_frames = input_features.shape[-1]
    edge = -(-half // hop)  # frames at a free piece edge whose samples are not fully constrained
    if isinstance(overlap_frames, bool) or not isinstance(overlap_frames, int) or overlap_frames < 2 * edge + 2:
        raise ValueError(f"`overlap_frames` must be an integer >= {2 * edge + 2}, got {overlap_frames!r}.")
    chunk_frames = max(round(chunk_seconds * extractor.sampling_rate / hop), 2 * overlap_frames)
    kwargs = {"n_iter": n_iter, "momentum": momentum, "nnls_iter": nnls_iter}
    if num_frames <= chunk_frames + overlap_frames:
        return extractor.features_to_waveform(input_features, length=num_samples, **kwargs)[0].cpu()

    total = (num_frames - 1) * hop if num_samples is None else num_samples
    longest = (num_frames - 1) * hop + half - 1
    if isinstance(total, bool) or not isinstance(total, int) or not half < total <= longest:
        raise ValueError(
            f"`num_samples` must be an integer in ({half}, {longest}] for {num_frames} frames, got "
            f"{total!r}."
        )
    for name, value in (("n_iter", n_iter), ("nnls_iter", nnls_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must lie in [0, 1), got {momentum!r}.")

    output = torch.zeros(total)
    fade = (overlap_frames - 1 - 2 * edge) * hop
    ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(fade, dtype=torch.float64) + 0.5) / fade)
    ramp = ramp.float()
    starts = []
    start = 0
    while True:
        starts.append(start)
        end = start + chunk_frames
        if end + overlap_frames >= num_frames:  # the rest fits in this piece: no tiny last piece
            break
        start = end - overlap_frames
    known_phase = None
    with torch.no_grad():
        for index in _progress(range(len(starts)), progress, "vocoding", len(starts)):
            start = starts[index]
            last_piece = index == len(starts) - 1
            end = num_frames if last_piece else start + chunk_frames
            mel_power = torch.expm1(input_features[0, :, :, start:end].float()).clamp_min_(0.0)
            if not torch.isfinite(mel_power).all():
                raise ValueError("`input_features` contains NaN or infinite values, or values too large for `expm1`.")
            linear = extractor._mel_to_linear(mel_power, nnls_iter)
            magnitude = linear.sqrt_() if extractor.power == 2.0 else linear.pow_(1.0 / extractor.power)
            initial_phase = extractor._phase_gradient_init(magnitude, known_phase)
            length = total - start * hop if last_piece else (end - start - 1) * hop
            piece, phase = extractor._griffin_lim(
                magnitude, n_iter, float(momentum), length, initial_phase=initial_phase,
                reflect=(start == 0, last_piece), return_phase=True,
                fixed_frames=0 if known_phase is None else overlap_frames - edge,
            )
            piece = piece[0].cpu()
            offset = start * hop
            if index == 0:
                output[: piece.numel()] = piece
            else:
                fade_start = offset + edge * hop
                fade_end = fade_start + fade
                output[fade_start:fade_end].mul_(1 - ramp).add_(piece[edge * hop : edge * hop + fade] * ramp)
                output[fade_end : offset + piece.numel()] = piece[fade_end - offset :]
            known_phase = phase[:, -overlap_frames:]
    return output


def decode_audio(
    model,
    feature_extractor,
    audio_codes: torch.LongTensor | None = None,
    num_samples: int | None = None,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    quantized_representation: torch.FloatTensor | None = None,
    n_iter: int = DEFAULT_GRIFFIN_LIM_ITERATIONS,
    momentum: float = 0.99,
    nnls_iter: int = DEFAULT_NNLS_ITERATIONS,
    progress: bool = False,
) -> torch.Tensor:
    """
    Decode codes of any length to a waveform, chunked for the decoder and the vocoder.

    Args:
        model ([`DistillVQVAEModel`]): the model (run in eval mode; its mode is restored after).
        feature_extractor ([`DistillFeatureExtractor`]): its feature extractor (the vocoder).
        audio_codes (`torch.LongTensor` of shape `(1, num_quantizers, height, width)`): e.g. from `encode_audio`.
        num_samples (`int`, *optional*): length of the recording the codes came from; the output has exactly this
            many samples (default: `(16 * width - 1) * hop_length`).
        chunk_seconds (`float`, *optional*, defaults to 10): audio per chunk; bounds the memory.
        quantized_representation (`torch.FloatTensor` of shape `(1, codebook_dim, height, width)`, *optional*):
            decoded instead of `audio_codes` (e.g. `distill_hf.blend_encodings`).
        n_iter, momentum, nnls_iter: Griffin-Lim settings, as for `features_to_waveform`.
        progress (`bool`, *optional*, defaults to `False`): show progress bars.

    Returns:
        `torch.FloatTensor` of shape `(num_samples,)`.
    """
    grid = audio_codes if audio_codes is not None else quantized_representation
    width = grid.shape[-1] if isinstance(grid, torch.Tensor) else 0
    factor = model.config.downsampling_factor
    num_frames = None
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}.")
        num_frames = num_samples // model.config.hop_length + 1
        if width and num_frames > width * factor:
            raise ValueError(
                f"`num_samples` = {num_samples} needs {num_frames} frames, but {width} code positions decode to at "
                f"most {width * factor}."
            )
    features = decode_features(
        model, audio_codes, num_frames=num_frames, chunk_seconds=chunk_seconds,
        quantized_representation=quantized_representation, progress=progress,
    )
    return vocode_features(
        feature_extractor, features, num_samples, chunk_seconds, n_iter=n_iter, momentum=momentum,
        nnls_iter=nnls_iter, progress=progress,
    )


__all__ = [
    "DEFAULT_CHUNK_SECONDS",
    "compute_features",
    "decode_audio",
    "decode_features",
    "encode_audio",
    "encode_features",
    "vocode_features",
]
