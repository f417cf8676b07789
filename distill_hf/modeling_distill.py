"""The Distill RVQ-VAE: a convolutional VQ-VAE over log-mel spectrograms with a residual vector quantizer.

Architecture (from the original Distill v1.1 model):

* encoder: four stride-2 3x3 convolution blocks (conv -> BatchNorm -> ReLU -> Dropout2d) with widths
  `encoder_channels`, then a 1x1 projection to `codebook_dim` channels;
* quantizer: `num_quantizers` EMA codebooks on the residual (see `quantization_distill.py`);
* decoder: a 1x1 projection back to the widest channel count, mirrored stride-2 transposed-convolution blocks,
  and a last transposed convolution to one channel with a Softplus (spectrogram values are `log1p` of power,
  so non-negative).

The spectrogram is zero-padded at the bottom/right to a multiple of the 16x downsampling and the output is
cropped back, so any number of frames works. The training loss (`vqvae_loss`) is a multi-scale mel MSE plus the
commitment term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_distill import DistillVQVAEConfig
from .quantization_distill import DistillCodebook, DistillResidualVectorQuantizer


def multi_scale_mel_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """
    Mean of the MSE between `reconstruction` and `target` (both `(batch_size, 1, n_mels, num_frames)`) at full
    resolution and after 2x and 4x average pooling, so coarse spectral shape and fine detail both count.
    """
    losses = [F.mse_loss(reconstruction, target)]
    for factor in (2, 4):
        losses.append(F.mse_loss(F.avg_pool2d(reconstruction, factor), F.avg_pool2d(target, factor)))
    return sum(losses) / len(losses)


def vqvae_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    commit_loss: torch.Tensor | float,
    commitment_weight: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    The Distill training objective.

    Args:
        reconstruction (`torch.FloatTensor` of shape `(batch_size, 1, n_mels, num_frames)`): decoder output.
        target (`torch.FloatTensor` of the same shape): the input features.
        commit_loss (`torch.FloatTensor` scalar or of shape `(num_quantizers,)`, or `float`): the quantizer's
            commitment terms (summed over levels).
        commitment_weight (`float`, *optional*, defaults to 0.25): weight applied to the summed commitment.

    Returns:
        `(total, recon_loss, weighted_commit)` with `total = recon_loss + weighted_commit`.
    """
    recon_loss = multi_scale_mel_loss(reconstruction, target)
    if not torch.is_tensor(commit_loss):
        commit_loss = torch.tensor(float(commit_loss), device=recon_loss.device)
    weighted_commit = commit_loss.sum() * commitment_weight
    return recon_loss + weighted_commit, recon_loss, weighted_commit


@dataclass
class DistillVQVAEEncoderOutput(ModelOutput):
    """
    Args:
        audio_codes (`torch.LongTensor` of shape `(batch_size, num_quantizers, height, width)`):
            code indices; `height = n_mels / 16` frequency bands, `width = ceil(num_frames / 16)` time positions.
        quantized_representation (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`):
            sum of the code vectors of all levels (what the decoder consumes).
        latents (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`):
            encoder output before quantization.
        commit_loss (`torch.FloatTensor` of shape `(num_quantizers,)`):
            per-level commitment MSE times `commitment_weight` (zeros outside training).
    """

    audio_codes: torch.LongTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    commit_loss: torch.FloatTensor | None = None


@dataclass
class DistillVQVAEDecoderOutput(ModelOutput):
    """
    Args:
        reconstruction (`torch.FloatTensor` of shape `(batch_size, 1, n_mels, num_frames)`):
            decoded log-mel spectrogram.
    """

    reconstruction: torch.FloatTensor | None = None


@dataclass
class DistillVQVAEOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` scalar, returned when `return_loss=True`):
            `recon_loss + commit_loss`, the [`vqvae_loss`] total.
        recon_loss (`torch.FloatTensor` scalar, returned when `return_loss=True`):
            multi-scale mel reconstruction MSE.
        commit_loss (`torch.FloatTensor` scalar, returned when `return_loss=True`):
            the commitment term as added to the total (weighted twice by `commitment_weight`; 0 in eval mode).
        reconstruction (`torch.FloatTensor` of shape `(batch_size, 1, n_mels, num_frames)`):
            decoded spectrogram, cropped to the input shape.
        audio_codes (`torch.LongTensor` of shape `(batch_size, num_quantizers, height, width)`): code indices.
        quantized_representation (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`):
            quantized latents.
        latents (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`): encoder output.
    """

    loss: torch.FloatTensor | None = None
    recon_loss: torch.FloatTensor | None = None
    commit_loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    quantized_representation: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None


class DistillConvBlock(nn.Module):
    """Stride-2 3x3 (transposed) convolution -> BatchNorm -> ReLU -> Dropout2d: halves or doubles height and width."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, transposed: bool = False):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.activation(self.norm(self.conv(hidden_states))))


class DistillEncoder(nn.Module):
    """Spectrogram `(B, 1, n_mels, T)` -> latents `(B, codebook_dim, n_mels / 16, T / 16)` (sizes padded to 16)."""

    def __init__(self, config: DistillVQVAEConfig):
        super().__init__()
        widths = [1, *config.encoder_channels]
        self.blocks = nn.ModuleList(
            DistillConvBlock(widths[i], widths[i + 1], config.dropout) for i in range(len(widths) - 1)
        )
        self.projection = nn.Conv2d(widths[-1], config.codebook_dim, 1)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        hidden_states = input_features
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return self.projection(hidden_states)


class DistillDecoder(nn.Module):
    """Quantized latents `(B, codebook_dim, H, W)` -> spectrogram `(B, 1, 16 H, 16 W)`, non-negative."""

    def __init__(self, config: DistillVQVAEConfig):
        super().__init__()
        widths = [*reversed(config.encoder_channels), 1]
        self.projection = nn.Conv2d(config.codebook_dim, widths[0], 1)
        self.blocks = nn.ModuleList(
            DistillConvBlock(widths[i], widths[i + 1], config.dropout, transposed=True)
            for i in range(len(widths) - 2)
        )
        self.output_conv = nn.ConvTranspose2d(widths[-2], 1, 3, stride=2, padding=1, output_padding=1)
        self.output_activation = nn.Softplus()

    def forward(self, quantized_representation: torch.Tensor) -> torch.Tensor:
        hidden_states = self.projection(quantized_representation)
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return self.output_activation(self.output_conv(hidden_states))


class DistillVQVAEPreTrainedModel(PreTrainedModel):
    config_class = DistillVQVAEConfig
    base_model_prefix = "distill_vqvae"
    main_input_name = "input_features"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.reset_parameters()
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
        elif isinstance(module, DistillCodebook):
            module.reset_parameters()


class DistillVQVAEModel(DistillVQVAEPreTrainedModel):
    """
    The Distill RVQ-VAE: log-mel spectrogram -> residual-quantized code grid -> spectrogram.

    Use [`DistillFeatureExtractor`] to turn audio into `input_features` and back. (Not a
    `PreTrainedAudioTokenizerBase`: that contract encodes raw `input_values` and decodes to audio, while this model
    works on spectrograms and leaves the vocoding to the feature extractor.)
    """

    def __init__(self, config: DistillVQVAEConfig):
        super().__init__(config)
        self.encoder = DistillEncoder(config)
        self.quantizer = DistillResidualVectorQuantizer(config)
        self.decoder = DistillDecoder(config)
        self.post_init()

    # ----------------------------------------------------------------------------------------------- checks
    def _check_features(self, input_features) -> torch.Tensor:
        n_mels = self.config.n_mels
        expected = f"(batch_size, 1, {n_mels}, num_frames) or (batch_size, {n_mels}, num_frames)"
        if not torch.is_tensor(input_features):
            raise ValueError(f"`input_features` must be a torch.Tensor of shape {expected}, got {type(input_features)}.")
        if input_features.dim() == 3:
            input_features = input_features.unsqueeze(1)  # (B, n_mels, T) -> (B, 1, n_mels, T)
        if input_features.dim() != 4 or input_features.shape[1] != 1 or input_features.shape[2] != n_mels:
            raise ValueError(
                f"`input_features` must have shape {expected}, got {tuple(input_features.shape)}."
            )
        if input_features.shape[0] == 0 or input_features.shape[3] == 0:
            raise ValueError(f"`input_features` is empty: got shape {tuple(input_features.shape)}.")
        if not input_features.is_floating_point():
            raise ValueError(f"`input_features` must be a floating-point tensor, got {input_features.dtype}.")
        return input_features

    def _check_codes(self, audio_codes) -> torch.Tensor:
        config = self.config
        expected = f"(batch_size, {config.num_quantizers}, height, width)"
        if not torch.is_tensor(audio_codes) or audio_codes.dim() != 4:
            shape = tuple(audio_codes.shape) if torch.is_tensor(audio_codes) else type(audio_codes)
            raise ValueError(f"`audio_codes` must be a LongTensor of shape {expected}, got {shape}.")
        if audio_codes.shape[1] != config.num_quantizers:
            raise ValueError(
                f"`audio_codes` has {audio_codes.shape[1]} quantizer levels but the model has "
                f"{config.num_quantizers}: expected shape {expected}, got {tuple(audio_codes.shape)}."
            )
        if audio_codes.is_floating_point() or audio_codes.is_complex() or audio_codes.dtype == torch.bool:
            raise ValueError(f"`audio_codes` must hold integer code indices, got dtype {audio_codes.dtype}.")
        if audio_codes.numel() and (audio_codes.min() < 0 or audio_codes.max() >= config.codebook_size):
            raise ValueError(
                f"`audio_codes` must lie in [0, {config.codebook_size}) (codebook_size), got values in "
                f"[{int(audio_codes.min())}, {int(audio_codes.max())}]."
            )
        return audio_codes.long()

    def _pad_to_grid(self, input_features: torch.Tensor) -> torch.Tensor:
        """Zero-pad mel bins (bottom) and frames (right) up to multiples of the downsampling factor."""
        factor = self.config.downsampling_factor
        n_mels, num_frames = input_features.shape[-2:]
        pad_frames = -num_frames % factor
        pad_mels = -n_mels % factor
        if pad_frames or pad_mels:
            input_features = F.pad(input_features, (0, pad_frames, 0, pad_mels))
        return input_features

    def _encode(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked features -> (latents, quantized_representation, audio_codes, commit_loss)."""
        latents = self.encoder(self._pad_to_grid(input_features))
        return (latents, *self.quantizer(latents))

    def _decode(self, quantized_representation: torch.Tensor, target_length: int | None) -> torch.Tensor:
        """Quantized latents -> spectrogram cropped to `n_mels` bands and `target_length` frames."""
        reconstruction = self.decoder(quantized_representation)
        return reconstruction[:, :, : self.config.n_mels, :target_length]

    # ------------------------------------------------------------------------------------------ public API
    def encode(self, input_features: torch.Tensor, return_dict: bool | None = None):
        """
        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, 1, n_mels, num_frames)` or
                `(batch_size, n_mels, num_frames)`): log-mel spectrogram from [`DistillFeatureExtractor`].
            return_dict (`bool`, *optional*): return a [`DistillVQVAEEncoderOutput`] instead of a tuple.

        Returns:
            [`DistillVQVAEEncoderOutput`] with `audio_codes` `(batch_size, num_quantizers, height, width)`,
            `quantized_representation` and `latents` `(batch_size, codebook_dim, height, width)`, `commit_loss`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        latents, quantized_representation, audio_codes, commit_loss = self._encode(self._check_features(input_features))
        output = DistillVQVAEEncoderOutput(
            audio_codes=audio_codes,
            quantized_representation=quantized_representation,
            latents=latents,
            commit_loss=commit_loss,
        )
        return output if return_dict else output.to_tuple()

    def decode(
        self,
        audio_codes: torch.LongTensor | None = None,
        quantized_representation: torch.FloatTensor | None = None,
        target_length: int | None = None,
        return_dict: bool | None = None,
    ):
        """
        Args:
            audio_codes (`torch.LongTensor` of shape `(batch_size, num_quantizers, height, width)`, *optional*):
                code indices in `[0, codebook_size)`.
            quantized_representation (`torch.FloatTensor` of shape `(batch_size, codebook_dim, height, width)`,
                *optional*): used instead of `audio_codes` (e.g. to decode interpolated latents).
            target_length (`int`, *optional*): crop the output to this many frames (default: `16 * width`).
            return_dict (`bool`, *optional*): return a [`DistillVQVAEDecoderOutput`] instead of a tuple.

        Returns:
            [`DistillVQVAEDecoderOutput`] with `reconstruction` `(batch_size, 1, n_mels, num_frames)`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (audio_codes is None) == (quantized_representation is None):
            raise ValueError("Pass exactly one of `audio_codes` or `quantized_representation` to `decode`.")
        if audio_codes is not None:
            quantized_representation = self.quantizer.decode_codes(self._check_codes(audio_codes))
        elif quantized_representation.dim() != 4 or quantized_representation.shape[1] != self.config.codebook_dim:
            raise ValueError(
                f"`quantized_representation` must have shape (batch_size, {self.config.codebook_dim}, height, width),"
                f" got {tuple(quantized_representation.shape)}."
            )
        if target_length is not None:
            max_length = quantized_representation.shape[-1] * self.config.downsampling_factor
            if isinstance(target_length, bool) or not isinstance(target_length, int) or not 0 < target_length <= max_length:
                raise ValueError(
                    f"`target_length` must be an integer in [1, {max_length}] for this code grid, got {target_length!r}."
                )
        reconstruction = self._decode(quantized_representation, target_length)
        output = DistillVQVAEDecoderOutput(reconstruction=reconstruction)
        return output if return_dict else output.to_tuple()

    def forward(
        self,
        input_features: torch.Tensor,
        return_loss: bool = True,
        return_dict: bool | None = None,
    ):
        """
        Encode, quantize and decode a batch of spectrograms.

        Args:
            input_features (`torch.FloatTensor` of shape `(batch_size, 1, n_mels, num_frames)` or
                `(batch_size, n_mels, num_frames)`): log-mel spectrogram from [`DistillFeatureExtractor`].
            return_loss (`bool`, *optional*, defaults to `True`): compute [`vqvae_loss`] against the input
                (no labels needed, so `Trainer` can train and evaluate the model as is).
            return_dict (`bool`, *optional*): return a [`DistillVQVAEOutput`] instead of a tuple.

        Returns:
            [`DistillVQVAEOutput`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        input_features = self._check_features(input_features)
        latents, quantized_representation, audio_codes, quantizer_commit_loss = self._encode(input_features)
        reconstruction = self._decode(quantized_representation, target_length=input_features.shape[-1])

        loss = recon_loss = commit_loss = None
        if return_loss:
            loss, recon_loss, commit_loss = vqvae_loss(
                reconstruction, input_features, quantizer_commit_loss, self.config.commitment_weight
            )
        output = DistillVQVAEOutput(
            loss=loss,
            recon_loss=recon_loss,
            commit_loss=commit_loss,
            reconstruction=reconstruction,
            audio_codes=audio_codes,
            quantized_representation=quantized_representation,
            latents=latents,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def codebook_usage(self, audio_codes: torch.LongTensor) -> dict[str, dict[str, float]]:
        """
        Per-level code statistics over `audio_codes` `(batch_size, num_quantizers, height, width)`.

        Returns:
            `{"level_0": {"utilization": ..., "perplexity": ..., "dead_codes": ...}, ...}` where utilization is
            the share of codes used at least once, perplexity is `exp` of the entropy of the code distribution
            (1 = one code, `codebook_size` = uniform) and dead_codes counts the codes never used — the same
            layout as the original's `codebook_health_snapshot`.
        """
        audio_codes = self._check_codes(audio_codes)
        size = self.config.codebook_size
        usage = {}
        for level in range(self.config.num_quantizers):
            counts = torch.bincount(audio_codes[:, level].reshape(-1), minlength=size).double()
            probabilities = counts / counts.sum().clamp(min=1)
            nonzero = probabilities[probabilities > 0]
            used = int((counts > 0).sum())
            usage[f"level_{level}"] = {
                "utilization": used / size,
                "perplexity": math.exp(float(-(nonzero * nonzero.log()).sum())),
                "dead_codes": size - used,
            }
        return usage


__all__ = [
    "DistillVQVAEModel",
    "DistillVQVAEPreTrainedModel",
    "DistillVQVAEOutput",
    "DistillVQVAEEncoderOutput",
    "DistillVQVAEDecoderOutput",
    "vqvae_loss",
    "multi_scale_mel_loss",
]
