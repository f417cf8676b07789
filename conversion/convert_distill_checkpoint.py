"""Convert an original Distill `.distill` (format version 2) VQ-VAE checkpoint to a `save_pretrained` folder.

    python -m conversion.convert_distill_checkpoint --checkpoint model.distill --output-dir distill-hf-model

The file is read with `torch.load(..., weights_only=True)` only: a pickle that tries to run code is refused by
torch's restricted unpickler, never executed. The output folder holds the model (`config.json`,
`model.safetensors`, and the model code for `trust_remote_code`), the feature extractor
(`preprocessor_config.json`), the model card (`README.md`), `distill_metadata.json` (the original's `metadata`,
`codebook_health_snapshot`, `loss_curve_history`, `training_config`, whether a prior was bundled with its
`prior_config`/`prior_metadata`, and where the file came from) and, when matplotlib is installed and a loss
history was recorded, `loss_curve.png`. It is built in a temporary folder beside the destination and renamed into
place, so a failed conversion leaves nothing behind.

A bundled prior is converted to a stock GPT-2 (`GPT2LMHeadModel`, see `distill_hf.prior`) in the `prior/` subfolder
(`config.json`, `model.safetensors`, `generation_config.json` with the original's sampling defaults), loadable with
`AutoModelForCausalLM.from_pretrained(folder, subfolder="prior")`. Files without a prior get no `prior/`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import torch

from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel
from distill_hf.file_utils import atomic_folder, give_normal_permissions
from distill_hf.prior import PRIOR_SUBFOLDER, convert_original_prior, write_prior
from distill_hf.model_card import (
    LOSS_CURVE_FILENAME,
    METADATA_FILENAME,
    save_loss_curve,
    to_jsonable,
    write_model_card,
)

EXPECTED_FORMAT = "distill_model"
SUPPORTED_VERSIONS = (2,)
EXPECTED_MODEL_TYPE = "vqvae"

# Original `VQVAEConfig` fields that become `DistillVQVAEConfig` fields under the same name.
CONFIG_FIELDS = (
    "codebook_dim",
    "codebook_size",
    "num_quantizers",
    "decay",
    "commitment_weight",
    "threshold_ema_dead_code",
    "kmeans_init",
    "kmeans_iters",
    "dropout",
    "gradient_clip_norm",
    "batch_size",
    "max_epochs",
    "learning_rate",
    "weight_decay",
    "chunk_duration_s",
    "val_fraction",
    "augmentation_expansion",
    "checkpoint_interval",
    "preview_interval",
    "max_checkpoints",
)
# Original `spectrogram_config` keys -> our config/feature-extractor names.
SPECTROGRAM_FIELDS = {
    "sample_rate": "sampling_rate",
    "n_fft": "n_fft",
    "hop_length": "hop_length",
    "n_mels": "n_mels",
    "f_min": "f_min",
    "f_max": "f_max",
    "power": "power",
}
# Machine-specific original fields with no config home (see README: they map onto TrainingArguments).
IGNORED_TRAINING_FIELDS = ("device", "num_workers")

# The original model has four encoder and four decoder blocks. In `nn.Sequential` index terms block `i` starts
# at index 4 * i: (conv, BatchNorm, ReLU, Dropout2d); the decoder's last block is (conv, Softplus).
NUM_BLOCKS = 4
_CODEBOOK_BUFFERS = ("embed", "embed_avg", "cluster_size")

_RULES = (
    (re.compile(r"^encoder\.convs\.(\d+)\.(.+)$"), "encoder"),
    (re.compile(r"^decoder\.deconvs\.(\d+)\.(.+)$"), "decoder"),
    (re.compile(r"^encoder\.proj\.(weight|bias)$"), "encoder_projection"),
    (re.compile(r"^decoder\.proj\.(weight|bias)$"), "decoder_projection"),
    (re.compile(r"^quantizer\.rvq\.layers\.(\d+)\._codebook\.(embed|embed_avg|cluster_size|initted)$"), "codebook"),
)


class ConversionError(ValueError):
    """A `.distill` file that cannot be converted; the message says what is wrong."""


def convert_key(original_key: str, num_blocks: int = NUM_BLOCKS) -> str:
    """Our parameter/buffer name for one original state-dict name; `ConversionError` for an unknown name."""
    for pattern, kind in _RULES:
        match = pattern.match(original_key)
        if match is None:
            continue
        if kind == "encoder_projection":
            return f"encoder.projection.{match.group(1)}"
        if kind == "decoder_projection":
            return f"decoder.projection.{match.group(1)}"
        if kind == "codebook":
            return f"quantizer.layers.{match.group(1)}.{match.group(2)}"
        index, leaf = int(match.group(1)), match.group(2)
        block, position = divmod(index, 4)
        if block < num_blocks:
            is_output_conv = kind == "decoder" and block == num_blocks - 1
            if is_output_conv and position == 0:
                return f"decoder.output_conv.{leaf}"
            if not is_output_conv and position in (0, 1):
                return f"{kind}.blocks.{block}.{'conv' if position == 0 else 'norm'}.{leaf}"
        break
    raise ConversionError(f"unexpected key in the original state dict: {original_key!r}")


def convert_state_dict(original_state_dict: dict, num_blocks: int = NUM_BLOCKS) -> dict:
    """
    Map original Distill VQ-VAE tensors onto `DistillVQVAEModel` names, key by key.

    Works for any subset of the original keys and for any tensors stored under them (weights, buffers, gradients):
    the codebook tensors lose the original's leading heads axis of size 1 (`[1, K, D] -> [K, D]`,
    `[1, K] -> [K]`); everything else is renamed only. Unknown keys raise `ConversionError`.
    """
    converted = {}
    for original_key, tensor in original_state_dict.items():
        key = convert_key(original_key, num_blocks)
        if key.rsplit(".", 1)[-1] in _CODEBOOK_BUFFERS:
            if tensor.dim() == 0 or tensor.shape[0] != 1:
                raise ConversionError(
                    f"{original_key}: expected a leading heads axis of size 1, got shape {tuple(tensor.shape)}"
                )
            tensor = tensor.squeeze(0)
        elif key.endswith(".initted"):
            tensor = tensor.reshape(()).bool()
        converted[key] = tensor
    return converted


def load_original_checkpoint(checkpoint_path: str | os.PathLike) -> dict:
    """Read a `.distill` file safely and check its `format`, `version` and `model_type`."""
    path = Path(checkpoint_path)
    if not path.is_file():
        raise ConversionError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(
            f"{path} is not a loadable .distill checkpoint (only plain tensors and containers are accepted, "
            f"and the file must be complete): {first_line}"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{path}: expected a dict at the top level, got {type(checkpoint).__name__}")
    checks = (("format", EXPECTED_FORMAT), ("model_type", EXPECTED_MODEL_TYPE))
    for key, expected in checks:
        if checkpoint.get(key) != expected:
            raise ConversionError(f"{path}: expected {key} {expected!r}, got {checkpoint.get(key)!r}")
    if checkpoint.get("version") not in SUPPORTED_VERSIONS:
        raise ConversionError(
            f"{path}: unsupported version {checkpoint.get('version')!r} (supported: {list(SUPPORTED_VERSIONS)})"
        )
    for key in ("model_state_dict", "vqvae_config", "spectrogram_config"):
        if not isinstance(checkpoint.get(key), dict):
            raise ConversionError(f"{path}: missing or malformed {key!r}")
    return checkpoint


def config_from_checkpoint(checkpoint: dict) -> DistillVQVAEConfig:
    """Build our config from the checkpoint's `vqvae_config` and `spectrogram_config`."""
    vqvae_config, spectrogram_config = checkpoint["vqvae_config"], checkpoint["spectrogram_config"]
    unknown = set(vqvae_config) - set(CONFIG_FIELDS) - set(IGNORED_TRAINING_FIELDS)
    if unknown:
        raise ConversionError(f"unknown vqvae_config fields: {sorted(unknown)}")
    values = {key: vqvae_config[key] for key in CONFIG_FIELDS if key in vqvae_config}
    for original_key, key in SPECTROGRAM_FIELDS.items():
        if original_key in spectrogram_config:
            values[key] = spectrogram_config[original_key]
    try:
        return DistillVQVAEConfig(**values)
    except ValueError as error:
        raise ConversionError(f"invalid configuration in checkpoint: {error}") from None


def _check_and_load(model: DistillVQVAEModel, state_dict: dict) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ConversionError(f"state dict does not match the model: missing {missing}, unexpected {unexpected}")
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ConversionError(
                f"shape mismatch for {key}: checkpoint {tuple(tensor.shape)}, model {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state_dict, strict=True)


# Top-level checkpoint entries copied into distill_metadata.json as they are (JSON-safe).
RECORDED_FIELDS = ("metadata", "codebook_health_snapshot", "loss_curve_history", "training_config")


def distill_metadata(checkpoint: dict, source_name: str) -> dict:
    """
    What `distill_metadata.json` holds: the original's `metadata`, `codebook_health_snapshot`,
    `loss_curve_history` and `training_config` (each `None` when absent), `spectrogram_config`, `has_prior`
    (the flag, or whether prior weights are present when the flag is missing) with `prior_config` and
    `prior_metadata` (the prior's weights go to `prior/`, not here), and `source` (file name, format, version,
    model type).
    All values are plain JSON (tensors become numbers or lists, non-finite floats `null`).
    """
    if "has_prior" in checkpoint:
        has_prior = bool(checkpoint["has_prior"])
    else:
        has_prior = bool(checkpoint.get("prior_state_dict"))
    record = {
        "source": {
            "file": source_name,
            "format": checkpoint.get("format"),
            "version": checkpoint.get("version"),
            "model_type": checkpoint.get("model_type"),
        },
        **{key: checkpoint.get(key) for key in RECORDED_FIELDS},
        "spectrogram_config": checkpoint.get("spectrogram_config"),
        "has_prior": has_prior,
        "prior_config": checkpoint.get("prior_config"),
        "prior_metadata": checkpoint.get("prior_metadata"),
    }
    return to_jsonable(record)


def convert_bundled_prior(checkpoint: dict, config: DistillVQVAEConfig, checkpoint_path):
    """
    The checkpoint's prior (`prior_state_dict`, `prior_config`) as a `GPT2LMHeadModel` whose vocabulary is the
    VQ-VAE's codebook; `ConversionError` when it is missing, malformed or does not fit the VQ-VAE. Checks that
    the level count matches and, on a dummy sequence, that the model runs and gives `[1, seq_len, codebook_size]`
    logits (the logits themselves are checked against the original's in the tests).
    """
    prior_config = checkpoint.get("prior_config")
    try:
        levels = prior_config.get("num_quantizers", config.num_quantizers) if isinstance(prior_config, dict) else None
        if levels is not None and levels != config.num_quantizers:
            raise ValueError(
                f"prior_config has num_quantizers {prior_config['num_quantizers']}, the VQ-VAE {config.num_quantizers}"
            )
        grid_height = config.code_grid_shape(1)[0]
        prior = convert_original_prior(
            checkpoint.get("prior_state_dict"), prior_config, config.codebook_size, grid_height=grid_height
        )
        seq_len = prior.config.n_positions
        with torch.no_grad():
            logits = prior(input_ids=torch.zeros(1, seq_len, dtype=torch.long)).logits
        if tuple(logits.shape) != (1, seq_len, config.codebook_size):
            raise ValueError(f"the converted prior gives logits of shape {tuple(logits.shape)}")
    except ValueError as error:
        raise ConversionError(f"{checkpoint_path}: cannot convert the bundled prior: {error}") from None
    return prior


def convert_checkpoint(checkpoint_path, output_dir, overwrite: bool = False, repo_id: str | None = None) -> Path:
    """
    Convert `checkpoint_path` (`.distill`) into a `save_pretrained` folder at `output_dir` and return its path.

    Besides the model and feature extractor, writes the bundled prior as a GPT-2 in `prior/` (when there is one),
    `distill_metadata.json`, `loss_curve.png` (when matplotlib is installed and a loss history was recorded) and
    the model card `README.md`, whose usage snippet loads from `repo_id` (default: a placeholder path).

    Raises `ConversionError` (a `ValueError`) with a one-line reason for any invalid input; nothing is written
    unless conversion succeeds. An existing `output_dir` is refused unless `overwrite=True`.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise ConversionError(f"output folder {output_dir} already exists (pass --overwrite to replace it)")
    checkpoint = load_original_checkpoint(checkpoint_path)
    config = config_from_checkpoint(checkpoint)
    try:
        state_dict = convert_state_dict(checkpoint["model_state_dict"], num_blocks=len(config.encoder_channels))
    except ConversionError as error:
        raise ConversionError(f"{checkpoint_path}: {error}") from None
    model = DistillVQVAEModel(config)
    _check_and_load(model, state_dict)
    model.eval()
    feature_extractor = DistillFeatureExtractor.from_model_config(config)
    record = distill_metadata(checkpoint, Path(checkpoint_path).name)
    prior = convert_bundled_prior(checkpoint, config, checkpoint_path) if record["has_prior"] else None

    with atomic_folder(output_dir) as staging:
        model.save_pretrained(staging)
        feature_extractor.save_pretrained(staging)
        if prior is not None:
            write_prior(prior, staging / PRIOR_SUBFOLDER)
        (staging / METADATA_FILENAME).write_text(
            json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        save_loss_curve(record["loss_curve_history"], staging / LOSS_CURVE_FILENAME)
        write_model_card(staging, repo_id=repo_id)
        for file in staging.iterdir():  # some writers create 0600 files; give them the usual permissions
            if file.is_file():
                give_normal_permissions(file)
    return output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="original .distill file")
    parser.add_argument("--output-dir", required=True, help="folder to write (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--repo-id", help="Hub repository id the model card's usage snippet loads from")
    args = parser.parse_args(argv)
    try:
        output_dir = convert_checkpoint(
            args.checkpoint, args.output_dir, overwrite=args.overwrite, repo_id=args.repo_id
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"converted {args.checkpoint} -> {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
