"""Configuration of the Distill RVQ-VAE.

The fields mirror the original Distill tool's ``VQVAEConfig`` (model and training fields) and its
``spectrogram_config`` (the log-mel front end the model was trained on). Training fields are kept on
the config so that a converted or adaptively chosen configuration carries everything the original
knew; `DistillVQVAEConfig.training_arguments_kwargs` maps them onto `transformers.TrainingArguments`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from transformers import PreTrainedConfig


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"`{name}` must be an integer, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value}.")


def _check_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value}.")
    return float(value)


def _check_range(name: str, value, low: float, high: float, low_open: bool, high_open: bool) -> None:
    value = _check_real(name, value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"`{name}` must lie in {interval}, got {value}.")


def _check_positive(name: str, value, allow_zero: bool = False) -> None:
    value = _check_real(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be {bound}, got {value}.")


class DistillVQVAEConfig(PreTrainedConfig):
    r"""
    Configuration of a [`DistillVQVAEModel`]: a convolutional VQ-VAE over log-mel spectrograms with an EMA residual
    vector quantizer. Defaults reproduce the original Distill v1.1 `VQVAEConfig`.

    Model:
        codebook_dim (`int`, *optional*, defaults to 128):
            Channels of the latent grid, and dimension of every codebook vector.
        codebook_size (`int`, *optional*, defaults to 256):
            Number of codes in each codebook (>= 2).
        num_quantizers (`int`, *optional*, defaults to 3):
            Number of residual quantizer levels.
        decay (`float`, *optional*, defaults to 0.95):
            EMA decay of the codebook statistics, in (0, 1).
        commitment_weight (`float`, *optional*, defaults to 0.25):
            Weight of each level's commitment MSE; [`vqvae_loss`] applies it once more to the sum.
        threshold_ema_dead_code (`int`, *optional*, defaults to 2):
            Codes whose EMA assignment count falls below this are replaced by batch vectors during training
            (0 disables replacement).
        kmeans_init (`bool`, *optional*, defaults to `True`):
            Initialise each codebook by k-means on the first batch it sees.
        kmeans_iters (`int`, *optional*, defaults to 10):
            Lloyd iterations of that k-means.
        dropout (`float`, *optional*, defaults to 0.2):
            `Dropout2d` probability after every hidden convolution block, in [0, 1).
        encoder_channels (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Output channels of the stride-2 encoder blocks; the decoder mirrors them. The code grid is
            `2 ** len(encoder_channels)` times smaller than the spectrogram on each axis.

    Spectrogram (must match the feature extractor the model was trained with):
        sampling_rate (`int`, *optional*, defaults to 48000), n_fft (`int`, *optional*, defaults to 2048),
        hop_length (`int`, *optional*, defaults to 512), n_mels (`int`, *optional*, defaults to 128),
        f_min (`float`, *optional*, defaults to 0.0), f_max (`float`, *optional*, defaults to `None` = Nyquist),
        power (`float`, *optional*, defaults to 2.0).

    Training (the original's training fields; see `training_arguments_kwargs` and the README table):
        gradient_clip_norm (`float`, defaults to 1.0), batch_size (`int`, defaults to 32), max_epochs (`int`,
        defaults to 200), learning_rate (`float`, defaults to 1e-3), weight_decay (`float`, defaults to 0.01),
        chunk_duration_s (`float`, defaults to 1.0), val_fraction (`float`, defaults to 0.2),
        augmentation_expansion (`int`, defaults to 10), checkpoint_interval (`int`, defaults to 10),
        preview_interval (`int`, defaults to 20), max_checkpoints (`int`, defaults to 3).

    Example:

    ```python
    >>> from distill_hf import DistillVQVAEConfig, DistillVQVAEModel
    >>> config = DistillVQVAEConfig(codebook_size=64)
    >>> model = DistillVQVAEModel(config)
    ```
    """

    model_type = "distill_vqvae"

    # --- model ---
    codebook_dim: int = 128  # latent channels == codebook vector size
    codebook_size: int = 256  # codes per level
    num_quantizers: int = 3  # residual levels
    decay: float = 0.95  # EMA decay of cluster sizes and summed vectors
    commitment_weight: float = 0.25  # per-level commitment weight (applied again by vqvae_loss)
    threshold_ema_dead_code: int = 2  # replace codes whose EMA count is below this (0: never)
    kmeans_init: bool = True  # k-means initialisation on the first batch
    kmeans_iters: int = 10  # Lloyd iterations of that k-means
    dropout: float = 0.2  # Dropout2d probability in encoder and decoder blocks
    encoder_channels: list[int] | tuple[int, ...] = (32, 64, 128, 256)  # stride-2 block widths

    # --- spectrogram front end ---
    sampling_rate: int = 48000  # Hz
    n_fft: int = 2048  # FFT size == window length
    hop_length: int = 512  # samples between frames
    n_mels: int = 128  # mel bands == spectrogram height
    f_min: float = 0.0  # lowest mel filter frequency (Hz)
    f_max: float | None = None  # highest mel filter frequency (Hz); None = sampling_rate / 2
    power: float = 2.0  # exponent of the magnitude spectrogram (2 = power)

    # --- training (the original's fields; mapped onto TrainingArguments by training_arguments_kwargs) ---
    gradient_clip_norm: float = 1.0  # -> max_grad_norm
    batch_size: int = 32  # -> per_device_train_batch_size / per_device_eval_batch_size
    max_epochs: int = 200  # -> num_train_epochs
    learning_rate: float = 1e-3  # -> learning_rate
    weight_decay: float = 0.01  # -> weight_decay
    chunk_duration_s: float = 1.0  # seconds per training chunk (data pipeline)
    val_fraction: float = 0.2  # share of files held out for validation (data pipeline)
    augmentation_expansion: int = 10  # augmented copies per file (data pipeline)
    checkpoint_interval: int = 10  # epochs between checkpoints -> save_steps (in epochs)
    preview_interval: int = 20  # epochs between audio previews (training job)
    max_checkpoints: int = 3  # -> save_total_limit

    def __post_init__(self, **kwargs):
        self._validate()
        self.encoder_channels = [int(c) for c in self.encoder_channels]
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        _check_int("codebook_dim", self.codebook_dim, 1)
        _check_int("codebook_size", self.codebook_size, 2)
        _check_int("num_quantizers", self.num_quantizers, 1)
        _check_range("decay", self.decay, 0.0, 1.0, low_open=True, high_open=True)
        _check_positive("commitment_weight", self.commitment_weight, allow_zero=True)
        _check_int("threshold_ema_dead_code", self.threshold_ema_dead_code, 0)
        if not isinstance(self.kmeans_init, bool):
            raise ValueError(f"`kmeans_init` must be a bool, got {self.kmeans_init!r}.")
        _check_int("kmeans_iters", self.kmeans_iters, 0)
        _check_range("dropout", self.dropout, 0.0, 1.0, low_open=False, high_open=True)
        if not isinstance(self.encoder_channels, (list, tuple)) or len(self.encoder_channels) == 0:
            raise ValueError(
                f"`encoder_channels` must be a non-empty list of positive integers, got {self.encoder_channels!r}."
            )
        for index, channels in enumerate(self.encoder_channels):
            _check_int(f"encoder_channels[{index}]", channels, 1)

        _check_int("sampling_rate", self.sampling_rate, 1)
        _check_int("n_fft", self.n_fft, 1)
        _check_int("hop_length", self.hop_length, 1)
        _check_int("n_mels", self.n_mels, 1)
        _check_positive("f_min", self.f_min, allow_zero=True)
        if self.f_max is not None:
            _check_range("f_max", self.f_max, float(self.f_min), self.sampling_rate / 2, low_open=True, high_open=False)
        _check_positive("power", self.power)

        _check_positive("gradient_clip_norm", self.gradient_clip_norm)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("max_epochs", self.max_epochs, 1)
        _check_positive("learning_rate", self.learning_rate)
        _check_positive("weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("chunk_duration_s", self.chunk_duration_s)
        _check_range("val_fraction", self.val_fraction, 0.0, 1.0, low_open=False, high_open=True)
        _check_int("augmentation_expansion", self.augmentation_expansion, 0)
        _check_int("checkpoint_interval", self.checkpoint_interval, 1)
        _check_int("preview_interval", self.preview_interval, 1)
        _check_int("max_checkpoints", self.max_checkpoints, 1)

    @property
    def downsampling_factor(self) -> int:
        """How many spectrogram bins/frames one code covers on each axis (16 for four encoder blocks)."""
        return 2 ** len(self.encoder_channels)

    @property
    def frames_per_second(self) -> float:
        """Spectrogram frames per second of audio."""
        return self.sampling_rate / self.hop_length

    def code_grid_shape(self, num_frames: int) -> tuple[int, int]:
        """`(height, width)` of the code grid for a spectrogram of `num_frames` frames."""
        factor = self.downsampling_factor
        return math.ceil(self.n_mels / factor), math.ceil(num_frames / factor)

    def training_arguments_kwargs(self) -> dict:
        """
        Keyword arguments for `transformers.TrainingArguments` derived from the training fields: batch sizes,
        epochs, learning rate, weight decay, gradient clipping and checkpoint retention. Fields that belong to the
        data pipeline (`chunk_duration_s`, `val_fraction`, `augmentation_expansion`) or the training job
        (`checkpoint_interval`, `preview_interval`) have no `TrainingArguments` equivalent and stay on the config.
        """
        return {
            "per_device_train_batch_size": self.batch_size,
            "per_device_eval_batch_size": self.batch_size,
            "num_train_epochs": self.max_epochs,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.gradient_clip_norm,
            "save_total_limit": self.max_checkpoints,
        }


# The original's data-size tiers: (largest file count, codebook_size, decay, dropout, epochs, lr, augmentation).
_ADAPTIVE_TIERS = (
    (20, 64, 0.8, 0.4, 100, 5e-4, 15),
    (100, 128, 0.9, 0.2, 200, 1e-3, 10),
    (None, 256, 0.95, 0.1, 300, 1e-3, 5),
)


def _adaptive_val_fraction(file_count: int) -> float:
    if file_count < 10:
        return 0.5
    if file_count < 50:
        return 0.3
    if file_count < 200:
        return 0.2
    return 0.1


def get_adaptive_vqvae_config(file_count: int, **overrides) -> DistillVQVAEConfig:
    """
    The original Distill's size-adaptive configuration for a dataset of `file_count` audio files.

    Small collections get smaller codebooks, faster EMA, more dropout and more augmentation:

    | files   | codebook_size | decay | dropout | max_epochs | learning_rate | augmentation_expansion |
    |---------|---------------|-------|---------|------------|---------------|------------------------|
    | <= 20   | 64            | 0.8   | 0.4     | 100        | 5e-4          | 15                     |
    | 21-100  | 128           | 0.9   | 0.2     | 200        | 1e-3          | 10                     |
    | > 100   | 256           | 0.95  | 0.1     | 300        | 1e-3          | 5                      |

    `val_fraction` is 0.5 below 10 files, 0.3 below 50, 0.2 below 200, else 0.1; `batch_size` is
    `min(32, max(1, file_count * 5 // 4))`. Every other field keeps its default; `overrides` replace any field.
    """
    if isinstance(file_count, bool) or not isinstance(file_count, Integral) or file_count < 1:
        raise ValueError(f"`file_count` must be a positive integer (number of audio files), got {file_count!r}.")
    for max_files, codebook_size, decay, dropout, max_epochs, learning_rate, augmentation in _ADAPTIVE_TIERS:
        if max_files is None or file_count <= max_files:
            break
    values = {
        "codebook_size": codebook_size,
        "decay": decay,
        "dropout": dropout,
        "max_epochs": max_epochs,
        "learning_rate": learning_rate,
        "augmentation_expansion": augmentation,
        "val_fraction": _adaptive_val_fraction(file_count),
        "batch_size": min(32, max(1, file_count * 5 // 4)),
    }
    values.update(overrides)
    return DistillVQVAEConfig(**values)


__all__ = ["DistillVQVAEConfig", "get_adaptive_vqvae_config"]
