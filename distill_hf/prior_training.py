"""Training a Distill prior (a GPT-2 over code sequences) with `transformers.Trainer`.

1. `extract_code_sequences` runs a frozen VQ-VAE (eval mode, batched, no gradients) over audio chunks and flattens
   each code grid into a token sequence (`codes_to_sequence`, the original's order);
2. `get_adaptive_prior_config` sizes a GPT-2 prior from the number of training sequences (`PRIOR_TIERS`);
3. `train_prior` trains it with a stock `Trainer` (causal LM loss, AdamW, cosine schedule, evaluation every epoch,
   best epoch by validation loss restored at the end) while `PriorPerplexityCallback` reports training and validation
   perplexity each epoch (both measured the same way, in eval mode) and warns when validation perplexity runs away
   from training perplexity: the prior is memorising its few training sequences (the original flagged this too);
4. the result is saved as `prior/` of the model folder (`save_prior`), which `distill-hf generate` then uses.

Example::

    from distill_hf import DistillFeatureExtractor, DistillVQVAEModel
    from distill_hf.prior_training import train_prior

    model = DistillVQVAEModel.from_pretrained("my-model")
    feature_extractor = DistillFeatureExtractor.from_pretrained("my-model")
    result = train_prior(model, feature_extractor, "my_sounds/", save_to="my-model")
    print(result.tier, result.eval_perplexity, result.memorisation_warned)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from numbers import Integral, Real
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from transformers import GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments, default_data_collator
from transformers import set_seed as transformers_set_seed
from transformers.utils import logging

from .file_utils import write_text_atomic
from .prior import codes_to_sequence, gpt2_prior_config, prior_generation_config, save_prior

logger = logging.get_logger(__name__)

# Prior size by number of training sequences (one sequence = one chunk of `chunk_duration_s`, 1 s by default).
# The middle tier is the original Distill's prior default; the tiny tier is what the original bundled with a model
# trained on 9 files (hidden 64, 2 layers, 4 heads), with more dropout here because tiny sets are memorised quickly.
PRIOR_TIERS = (
    # (most sequences, tier, hidden_size, num_layers, num_heads, dropout)
    (49, "tiny", 64, 2, 4, 0.2),
    (499, "small", 128, 3, 4, 0.1),
    (4999, "middle", 256, 4, 4, 0.1),
    (None, "large", 384, 6, 6, 0.1),
)
# The original's prior training fields (`prior_config` of a `.distill` file).
PRIOR_TRAINING_DEFAULTS = {
    "max_epochs": 100,
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "gradient_clip_norm": 1.0,
    "batch_size": 32,
    "val_fraction": 0.2,
}
MEMORISATION_RATIO = 1.5  # warn when validation perplexity exceeds training perplexity by this factor


def adaptive_prior_settings(num_sequences: int) -> dict:
    """
    The prior size for `num_sequences` training sequences (`PRIOR_TIERS`):

    | training sequences | tier   | hidden_size | num_layers | num_heads | dropout |
    |--------------------|--------|-------------|------------|-----------|---------|
    | < 50               | tiny   | 64          | 2          | 4         | 0.2     |
    | 50-499             | small  | 128         | 3          | 4         | 0.1     |
    | 500-4999           | middle | 256         | 4          | 4         | 0.1     |
    | >= 5000            | large  | 384         | 6          | 6         | 0.1     |
    """
    if isinstance(num_sequences, bool) or not isinstance(num_sequences, Integral) or num_sequences < 1:
        raise ValueError(f"`num_sequences` must be a positive integer, got {num_sequences!r}.")
    for most, tier, hidden_size, num_layers, num_heads, dropout in PRIOR_TIERS:
        if most is None or num_sequences <= most:
            return {"tier": tier, "hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads,
                    "dropout": dropout}
    raise AssertionError("unreachable")


def get_adaptive_prior_config(
    num_sequences: int, *, vocab_size: int, seq_len: int, num_quantizers: int, grid_height: int | None = None,
    **overrides,
):
    """A `GPT2Config` for a prior sized by `adaptive_prior_settings`; `overrides` (`hidden_size`, `num_layers`,
    `num_heads`, `dropout`) replace the tier's values."""
    settings = adaptive_prior_settings(num_sequences)
    settings.pop("tier")
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"unknown prior settings {sorted(unknown)}; expected some of {sorted(settings)}")
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return gpt2_prior_config(
        vocab_size=vocab_size, seq_len=seq_len, num_quantizers=num_quantizers, grid_height=grid_height, **settings
    )


# -------------------------------------------------------------------------------------------- data
def _codebooks_ready(model) -> bool:
    return all(bool(codebook.initted) for codebook in model.quantizer.layers)


@torch.no_grad()
def extract_code_sequences(model, data, batch_size: int = 32) -> torch.LongTensor:
    """
    Token sequences `[num_items, height * width * num_quantizers]` of `data` through a frozen VQ-VAE: `model` runs
    in eval mode (restored afterwards) without gradients, `batch_size` items at a time.

    `data`: features `[N, 1, n_mels, frames]` (or `[N, n_mels, frames]`), or a dataset of
    `{"input_features": [1, n_mels, frames]}` items such as `DistillAudioDataset`. All items must give the same code
    grid (the same number of frames).
    """
    if not _codebooks_ready(model):
        raise ValueError("the VQ-VAE's codebooks are not initialised: train the VQ-VAE before its prior")
    if torch.is_tensor(data):
        batches = (data[start : start + batch_size] for start in range(0, data.shape[0], batch_size))
    else:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=default_data_collator)
        batches = (batch["input_features"] for batch in loader)
    was_training = model.training
    model.eval()
    sequences = []
    try:
        for features in batches:
            codes = model.encode(features.to(model.device)).audio_codes
            sequences.append(codes_to_sequence(codes).cpu())
    finally:
        model.train(was_training)
    if not sequences:
        raise ValueError("no audio to extract codes from")
    lengths = {s.shape[1] for s in sequences}
    if len(lengths) > 1:
        raise ValueError(f"items give code sequences of different lengths {sorted(lengths)}: use equal-length chunks")
    return torch.cat(sequences)


class CodeSequenceDataset(Dataset):
    """Token sequences `[N, L]` as causal-LM items `{"input_ids": [L], "labels": [L]}` (GPT-2 shifts the labels)."""

    def __init__(self, sequences: torch.Tensor):
        if not torch.is_tensor(sequences) or sequences.dim() != 2 or sequences.shape[0] == 0:
            raise ValueError("`sequences` must be a non-empty tensor [num_sequences, length]")
        self.sequences = sequences.long()

    def __len__(self) -> int:
        return self.sequences.shape[0]

    def __getitem__(self, index: int) -> dict:
        sequence = self.sequences[index]
        return {"input_ids": sequence, "labels": sequence}


@torch.no_grad()
def sequence_perplexity(prior, sequences: torch.Tensor, batch_size: int = 32) -> float:
    """`exp` of the mean next-token negative log-likelihood of `sequences` under `prior`, in eval mode (restored)."""
    was_training = prior.training
    prior.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, sequences.shape[0], batch_size):
            batch = sequences[start : start + batch_size].to(prior.device)
            logits = prior(input_ids=batch).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(nll)
            count += batch[:, 1:].numel()
    finally:
        prior.train(was_training)
    return math.exp(total / count)


# --------------------------------------------------------------------------------------- callback
class PriorPerplexityCallback(TrainerCallback):
    """
    Reports training and validation perplexity of the prior at every evaluation (each epoch with
    `eval_strategy="epoch"`), both measured in eval mode (no dropout) so they compare, and warns when validation
    perplexity exceeds training perplexity by more than `memorisation_ratio`: the prior is memorising its training
    sequences rather than learning the codes' statistics. The warning repeats only after the ratio has recovered.

    Values go to `trainer.log` (`train_perplexity`, `eval_perplexity`, `perplexity_ratio`), into the metrics
    `evaluate()` returns, and into `history` (one dict per evaluation, plus the untrained baseline as epoch 0).

    Args:
        trainer (`Trainer`): the trainer (its `eval_dataset` must be a `CodeSequenceDataset`).
        train_sequences (`torch.Tensor`): the training sequences (at most `max_sequences` are measured).
        memorisation_ratio (`float`, *optional*, defaults to 1.5).
        max_sequences (`int`, *optional*, defaults to 512): cap on sequences measured per side.
    """

    def __init__(
        self,
        trainer: Trainer,
        train_sequences: torch.Tensor,
        *,
        memorisation_ratio: float = MEMORISATION_RATIO,
        max_sequences: int = 512,
    ):
        if not isinstance(memorisation_ratio, Real) or memorisation_ratio < 1:
            raise ValueError(f"`memorisation_ratio` must be a number >= 1, got {memorisation_ratio!r}.")
        self.trainer = trainer
        self.train_sequences = train_sequences[:max_sequences]
        eval_dataset = trainer.eval_dataset
        self.eval_sequences = eval_dataset.sequences[:max_sequences] if eval_dataset is not None else None
        self.memorisation_ratio = float(memorisation_ratio)
        self.history: list[dict] = []
        self.warned = False  # a memorisation warning was issued at least once
        self._warning_active = False
        self._batch_size = trainer.args.per_device_eval_batch_size

    def measure(self, model) -> dict:
        values = {"train_perplexity": sequence_perplexity(model, self.train_sequences, self._batch_size)}
        if self.eval_sequences is not None:
            values["eval_perplexity"] = sequence_perplexity(model, self.eval_sequences, self._batch_size)
            values["perplexity_ratio"] = values["eval_perplexity"] / values["train_perplexity"]
        return values

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.history and model is not None:
            self.history.append({"epoch": 0.0, **self.measure(model)})

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        values = self.measure(model)
        self.history.append({"epoch": float(state.epoch or 0.0), **values})
        if metrics is not None:
            metrics.update(values)
        self.trainer.log(dict(values))
        ratio = values.get("perplexity_ratio")
        if ratio is None:
            return
        if ratio <= self.memorisation_ratio:
            self._warning_active = False
        elif not self._warning_active:
            self._warning_active = self.warned = True
            message = (
                f"Prior validation perplexity {values['eval_perplexity']:.2f} is {ratio:.1f}x its training perplexity "
                f"{values['train_perplexity']:.2f} (epoch {state.epoch or 0:.0f}): the prior is memorising its "
                "training sequences. Use more audio, a smaller prior, more dropout or fewer epochs."
            )
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)


# --------------------------------------------------------------------------------------- training
@dataclass
class PriorTrainingResult:
    """What `train_prior` returns; perplexities are measured in eval mode on the final (best) prior."""

    prior: GPT2LMHeadModel
    tier: str
    num_train_sequences: int
    num_eval_sequences: int
    epochs: int
    train_perplexity: float
    eval_perplexity: float | None
    best_eval_perplexity: float | None
    memorisation_warned: bool
    history: list[dict] = field(default_factory=list)
    prior_dir: Path | None = None


def _audio_sequences(model, feature_extractor, audio_dir, val_fraction, chunk_duration_s, augmentation_expansion,
                     seed, batch_size):
    from .data import DistillAudioDataset, decode_files, find_audio_files, split_files

    if feature_extractor is None:
        raise ValueError("`feature_extractor` is needed to read audio")
    files = find_audio_files(audio_dir)
    cache: dict = {}
    readable, _ = decode_files(files, feature_extractor.sampling_rate, cache)
    if not readable:
        raise ValueError(f"none of the {len(files)} audio files in {audio_dir} could be read")
    train_files, val_files = split_files(readable, val_fraction, seed=seed)
    chunk = chunk_duration_s if chunk_duration_s is not None else model.config.chunk_duration_s
    train = DistillAudioDataset(train_files, feature_extractor, chunk_duration_s=chunk, cache=cache,
                                augment=augmentation_expansion > 0, augmentation_expansion=augmentation_expansion,
                                seed=seed)
    train_sequences = extract_code_sequences(model, train, batch_size)
    eval_sequences = None
    if val_files:
        val = DistillAudioDataset(val_files, feature_extractor, chunk_duration_s=chunk, cache=cache)
        eval_sequences = extract_code_sequences(model, val, batch_size)
    return train_sequences, eval_sequences, len(readable)


def train_prior(
    model,
    feature_extractor=None,
    audio_dir: str | os.PathLike | None = None,
    *,
    train_sequences: torch.Tensor | None = None,
    eval_sequences: torch.Tensor | None = None,
    prior_config=None,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    dropout: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    max_grad_norm: float | None = None,
    val_fraction: float | None = None,
    chunk_duration_s: float | None = None,
    augmentation_expansion: int = 0,
    seed: int = 0,
    memorisation_ratio: float = MEMORISATION_RATIO,
    save_to: str | os.PathLike | None = None,
    output_dir: str | os.PathLike | None = None,
    report_to: str | list[str] = "none",
    progress: bool = False,
    **training_arguments,
) -> PriorTrainingResult:
    """
    Train a GPT-2 prior over `model`'s codes with `Trainer`.

    Data: either `audio_dir` (files split by file with `val_fraction`, default 0.2; cut into chunks of
    `chunk_duration_s`, default the model's, optionally with `augmentation_expansion` augmented copies; encoded by the
    frozen `model`), or ready `train_sequences` / `eval_sequences` `[N, L]` (from `extract_code_sequences`).

    The prior is sized from the number of training sequences (`adaptive_prior_settings`) unless `prior_config` (a
    `GPT2Config`) or `hidden_size` / `num_layers` / `num_heads` / `dropout` say otherwise. Training follows the
    original's prior settings by default (`PRIOR_TRAINING_DEFAULTS`: 100 epochs, learning rate 1e-3, weight decay
    0.01, gradient clipping 1.0, batch size 32) with AdamW and a cosine schedule; with validation data it evaluates
    every epoch, reports perplexities (`PriorPerplexityCallback`, memorisation warning beyond
    `memorisation_ratio`) and restores the epoch with the best validation loss. `training_arguments` override any
    `TrainingArguments` field. With `save_to` (a model folder) the prior is written as its `prior/` (replacing any),
    `distill_metadata.json` records it and the model card is refreshed.
    """
    defaults = PRIOR_TRAINING_DEFAULTS
    val_fraction = defaults["val_fraction"] if val_fraction is None else val_fraction
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    num_files = None
    if audio_dir is not None:
        if train_sequences is not None:
            raise ValueError("pass either `audio_dir` or `train_sequences`, not both")
        train_sequences, eval_sequences, num_files = _audio_sequences(
            model, feature_extractor, audio_dir, val_fraction, chunk_duration_s, augmentation_expansion, seed,
            batch_size,
        )
    if train_sequences is None:
        raise ValueError("no training data: pass `audio_dir` or `train_sequences`")
    train_dataset = CodeSequenceDataset(train_sequences)
    eval_dataset = CodeSequenceDataset(eval_sequences) if eval_sequences is not None and len(eval_sequences) else None
    if eval_dataset is not None and eval_dataset.sequences.shape[1] != train_dataset.sequences.shape[1]:
        raise ValueError("training and validation sequences differ in length")
    seq_len = train_dataset.sequences.shape[1]
    config = model.config
    grid_height = math.ceil(config.n_mels / config.downsampling_factor)
    if seq_len % (config.num_quantizers * grid_height):
        raise ValueError(f"sequences of {seq_len} tokens are not whole code grids of this model")
    if int(train_dataset.sequences.max()) >= config.codebook_size or int(train_dataset.sequences.min()) < 0:
        raise ValueError(f"sequences hold tokens outside [0, {config.codebook_size})")

    tier = "custom"
    if prior_config is None:
        tier = adaptive_prior_settings(len(train_dataset))["tier"]
        prior_config = get_adaptive_prior_config(
            len(train_dataset), vocab_size=config.codebook_size, seq_len=seq_len,
            num_quantizers=config.num_quantizers, grid_height=grid_height,
            hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout,
        )
        if any(value is not None for value in (hidden_size, num_layers, num_heads, dropout)):
            tier += " (adjusted)"
    if prior_config.vocab_size != config.codebook_size or prior_config.n_positions < seq_len:
        raise ValueError(
            "`prior_config` does not fit: vocab_size must be codebook_size and n_positions >= sequence length"
        )
    if eval_dataset is None:
        warnings.warn("No validation data (one file, or val_fraction=0): the prior's memorisation cannot be checked.",
                      UserWarning, stacklevel=2)

    transformers_set_seed(seed)
    prior = GPT2LMHeadModel(prior_config)
    temporary = output_dir is None
    output_dir = Path(tempfile.mkdtemp(prefix="distill-prior-")) if temporary else Path(output_dir)
    has_eval = eval_dataset is not None
    values = {
        "num_train_epochs": epochs if epochs is not None else defaults["max_epochs"],
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "learning_rate": defaults["learning_rate"] if learning_rate is None else learning_rate,
        "weight_decay": defaults["weight_decay"] if weight_decay is None else weight_decay,
        "max_grad_norm": defaults["gradient_clip_norm"] if max_grad_norm is None else max_grad_norm,
        "optim": "adamw_torch",
        "lr_scheduler_type": "cosine",
        "eval_strategy": "epoch" if has_eval else "no",
        "save_strategy": "epoch" if has_eval else "no",
        "logging_strategy": "epoch",
        "save_total_limit": 1 if has_eval else None,
        "save_only_model": True,
        "load_best_model_at_end": has_eval,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "report_to": report_to,
        "disable_tqdm": not progress,
        "seed": seed,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    values.update(training_arguments)
    args = TrainingArguments(output_dir=str(output_dir), **values)
    trainer = Trainer(model=prior, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      data_collator=default_data_collator)
    callback = PriorPerplexityCallback(trainer, train_dataset.sequences, memorisation_ratio=memorisation_ratio)
    trainer.add_callback(callback)
    try:
        trainer.train()
    finally:
        if temporary:
            shutil.rmtree(output_dir, ignore_errors=True)
    prior = trainer.model.eval()
    prior.generation_config = prior_generation_config(seq_len)
    final = callback.measure(prior)
    evals = [entry["eval_perplexity"] for entry in callback.history[1:] if "eval_perplexity" in entry]
    result = PriorTrainingResult(
        prior=prior,
        tier=tier,
        num_train_sequences=len(train_dataset),
        num_eval_sequences=len(eval_dataset) if eval_dataset is not None else 0,
        epochs=int(math.ceil(trainer.state.epoch or 0)),
        train_perplexity=final["train_perplexity"],
        eval_perplexity=final.get("eval_perplexity"),
        best_eval_perplexity=min(evals) if evals else None,
        memorisation_warned=callback.warned,
        history=callback.history,
    )
    if save_to is not None:
        result.prior_dir = save_prior(prior, save_to)
        record_prior(save_to, result, num_files=num_files, learning_rate=values["learning_rate"],
                     batch_size=batch_size)
    return result


# ----------------------------------------------------------------------------- folder metadata and card
def record_prior(model_dir, result: PriorTrainingResult, **training_fields) -> None:
    """
    Record a trained prior in `distill_metadata.json` of the model folder (`has_prior`, `prior_config`,
    `prior_metadata`, in the original's key names) and re-render the model card `README.md` when the folder has one
    (keeping its model id).
    """
    from .model_card import CARD_FILENAME, METADATA_FILENAME, to_jsonable, write_model_card

    model_dir = Path(model_dir)
    config = result.prior.config
    path = model_dir / METADATA_FILENAME
    record = {}
    if path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            record = {}
    record["has_prior"] = True
    record["prior_config"] = {
        "hidden_size": config.n_embd,
        "num_layers": config.n_layer,
        "num_heads": config.n_head,
        "dropout": config.resid_pdrop,
        "seq_len": config.n_positions,
        "num_quantizers": getattr(config, "num_quantizers", None),
        "tier": result.tier,
        **{key: value for key, value in training_fields.items() if value is not None},
    }
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["prior_metadata"] = {
        "epochs_trained": result.epochs,
        "final_perplexity": result.eval_perplexity if result.eval_perplexity is not None else result.train_perplexity,
        "best_perplexity": result.best_eval_perplexity,
        "train_perplexity": result.train_perplexity,
        "num_train_sequences": result.num_train_sequences,
        "num_eval_sequences": result.num_eval_sequences,
        "memorisation_warned": result.memorisation_warned,
        "training_date": now,
        "trained_with": "distill-hf train-prior",
    }
    write_text_atomic(path, json.dumps(to_jsonable(record), indent=2, allow_nan=False) + "\n")
    card = model_dir / CARD_FILENAME
    if card.is_file() and (model_dir / "config.json").is_file():
        match = re.search(r'^model_id = ("(?:[^"\\]|\\.)*")', card.read_text(encoding="utf-8"), flags=re.M)
        repo_id = json.loads(match.group(1)) if match else None
        try:
            write_model_card(model_dir, repo_id=repo_id)
        except (FileNotFoundError, ValueError) as error:  # no template outside a source checkout
            warnings.warn(f"model card not updated: {error}", UserWarning, stacklevel=2)


__all__ = [
    "MEMORISATION_RATIO",
    "PRIOR_TIERS",
    "PRIOR_TRAINING_DEFAULTS",
    "CodeSequenceDataset",
    "PriorPerplexityCallback",
    "PriorTrainingResult",
    "adaptive_prior_settings",
    "extract_code_sequences",
    "get_adaptive_prior_config",
    "record_prior",
    "sequence_perplexity",
    "train_prior",
]
