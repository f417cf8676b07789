"""Training the Distill RVQ-VAE with `transformers.Trainer`.

The model trains with a stock `Trainer`: its forward computes the loss without labels (`return_loss=True`), the
EMA codebooks are buffers saved with the weights (so checkpoints and `resume_from_checkpoint` restore them), and
the quantizer keeps float32 under bf16 autocast. This module adds the pieces that are specific to Distill:

* `adaptive_training_arguments` — `TrainingArguments` from the original's size-adaptive tiers;
* `codebook_health` — per-level utilization, perplexity and dead codes of a model over a dataloader;
* `CodebookHealthCallback` — logs that health at every evaluation and warns about collapsing codebooks.

Example::

    config = get_adaptive_vqvae_config(file_count)
    args = adaptive_training_arguments(file_count, "runs/my-sounds")
    trainer = Trainer(model=DistillVQVAEModel(config), args=args, train_dataset=train, eval_dataset=val)
    trainer.add_callback(CodebookHealthCallback(trainer))
    trainer.train()
"""

from __future__ import annotations

import os
import warnings

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging

from .configuration_distill import get_adaptive_vqvae_config

logger = logging.get_logger(__name__)

LOW_UTILIZATION = 0.30  # below this share of codes in use, a level is collapsing


def adaptive_training_arguments(file_count: int, output_dir: str, **overrides) -> TrainingArguments:
    """
    `TrainingArguments` for a dataset of `file_count` audio files, following the original Distill's tiers (see
    [`get_adaptive_vqvae_config`]): per-device batch size, epochs, learning rate, weight decay, gradient clipping
    (`max_grad_norm` = `gradient_clip_norm`) and checkpoint retention (`save_total_limit` = `max_checkpoints`),
    with AdamW, a cosine schedule, evaluation and saving every epoch, and the best checkpoint by `eval_loss`
    restored at the end. `overrides` replace any of these (e.g. `num_train_epochs=5, report_to="tensorboard"`).

    Started by `torchrun` on a machine without CUDA, the arguments select CPU data parallelism (`use_cpu=True`,
    gloo backend); otherwise Transformers would fall back to one process per rank, each training alone.
    """
    config = get_adaptive_vqvae_config(file_count)
    values = {
        **config.training_arguments_kwargs(),
        "optim": "adamw_torch",
        "lr_scheduler_type": "cosine",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "logging_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
    }
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        values.update(use_cpu=True, ddp_backend="gloo")
    values.update(overrides)
    return TrainingArguments(output_dir=str(output_dir), **values)


@torch.no_grad()
def codebook_health(model, dataloader, max_batches: int | None = None) -> dict[str, dict[str, float]]:
    """
    Per-level codebook usage of `model` over the batches of `dataloader` (dicts with `input_features`), in eval
    mode: `{"level_0": {"utilization", "perplexity", "dead_codes"}, ...}` as [`DistillVQVAEModel.codebook_usage`]
    reports it. The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        codes = []
        for index, batch in enumerate(dataloader):
            if max_batches is not None and index >= max_batches:
                break
            features = batch["input_features"].to(model.device)
            codes.append(model.encode(features).audio_codes.cpu())
    finally:
        model.train(was_training)
    if not codes:
        raise ValueError("`dataloader` yielded no batches: cannot measure codebook health on no data.")
    # Grids of different widths cannot be concatenated; usage only needs the codes of each level.
    flat = torch.cat([c.permute(1, 0, 2, 3).reshape(c.shape[1], 1, 1, -1) for c in codes], dim=-1)  # (Q, 1, 1, N)
    return model.codebook_usage(flat.permute(1, 0, 2, 3))  # (1, Q, 1, N)


def health_metrics(health: dict[str, dict[str, float]], prefix: str = "eval_") -> dict[str, float]:
    """Flatten a health report to log keys such as `eval_codebook_level_0_utilization`."""
    return {
        f"{prefix}codebook_{level}_{name}": float(value)
        for level, stats in health.items()
        for name, value in stats.items()
    }


class CodebookHealthCallback(TrainerCallback):
    """
    Logs per-level codebook utilization, perplexity and dead codes on the evaluation data at every evaluation
    (and, with `on_logging_steps=True`, at every logging step), and warns when a level's utilization drops below
    `low_utilization` (30% by default) — the sign of codebook collapse.

    The metrics are written through `trainer.log`, so every `report_to` integration (TensorBoard, ...) and
    `trainer.state.log_history` receive them; they are also added to the dict `trainer.evaluate()` returns.

    Args:
        trainer (`Trainer`): the trainer whose logs receive the metrics; add the callback with
            `trainer.add_callback(CodebookHealthCallback(trainer))`.
        on_logging_steps (`bool`, *optional*, defaults to `False`): also measure at every training logging step.
        low_utilization (`float`, *optional*, defaults to 0.3): warning threshold on utilization.
        max_batches (`int`, *optional*): measure on at most this many evaluation batches.
    """

    def __init__(
        self,
        trainer: Trainer,
        *,
        on_logging_steps: bool = False,
        low_utilization: float = LOW_UTILIZATION,
        max_batches: int | None = None,
    ):
        if not isinstance(trainer, Trainer):
            raise ValueError(f"`trainer` must be a transformers.Trainer, got {type(trainer).__name__}.")
        if not 0 <= low_utilization <= 1:
            raise ValueError(f"`low_utilization` must lie in [0, 1], got {low_utilization}.")
        self.trainer = trainer
        self.on_logging_steps = on_logging_steps
        self.low_utilization = low_utilization
        self.max_batches = max_batches
        self.last_health: dict[str, dict[str, float]] | None = None
        self._logging = False  # guards against measuring again for our own log call
        self._warned: set[str] = set()  # levels already reported as collapsing (until they recover)

    def _measure(self, model) -> dict[str, dict[str, float]] | None:
        if self.trainer.eval_dataset is None:
            return None
        dataloader = self.trainer.get_eval_dataloader()
        health = codebook_health(model, dataloader, max_batches=self.max_batches)
        self.last_health = health
        self._warn_if_collapsing(health)
        return health

    def _warn_if_collapsing(self, health: dict[str, dict[str, float]]) -> None:
        """Warn once when a level drops below the line, and again only after it has recovered and dropped anew."""
        for level, stats in health.items():
            if stats["utilization"] >= self.low_utilization:
                self._warned.discard(level)
            elif level not in self._warned:
                self._warned.add(level)
                message = (
                    f"Codebook {level.replace('_', ' ')} uses only {stats['utilization']:.0%} of its codes "
                    f"({int(stats['dead_codes'])} never used, below the {self.low_utilization:.0%} warning line): "
                    "the codebook is collapsing. Try a smaller codebook_size, a lower decay, more data or "
                    "augmentation, or keep threshold_ema_dead_code > 0 so unused codes get replaced."
                )
                logger.warning(message)
                warnings.warn(message, UserWarning, stacklevel=2)

    def _log(self, metrics: dict[str, float]) -> None:
        self._logging = True
        try:
            self.trainer.log(metrics)
        finally:
            self._logging = False

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        health = self._measure(model)
        if health is None:
            return
        values = health_metrics(health, prefix="eval_")
        if metrics is not None:
            metrics.update(values)
        self._log(values)

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):
        if not self.on_logging_steps or self._logging or logs is None or "loss" not in logs:
            return
        health = self._measure(model)
        if health is not None:
            self._log(health_metrics(health, prefix="train_step_"))
