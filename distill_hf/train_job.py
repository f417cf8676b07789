"""The main job: train a Distill RVQ-VAE on a folder of audio (or the embedded corpus) and write a Hub-ready model.

`run_training` is what `distill-hf train` runs. It picks the original's size-adaptive settings from the number of
files, trains with `transformers.Trainer` (progress bar with loss and codebook health, evaluation and
checkpoints every epoch, best model by validation loss), and writes into `output_dir`:

* `model/` — the Hub-ready folder: weights, config, feature extractor, remote code, `README.md` model card,
  `distill_metadata.json` (training summary) and `loss_curve.png`;
* `original.wav` and `reconstruction.wav` — a held-out clip and its round trip through the model;
* `loss_curves.png`, `mel_comparison.png`, `code_grid.png`, `codebook_usage.png` — pictures (need matplotlib);
* `checkpoints/` — the Trainer's checkpoints (`--resume` continues from the latest).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from .audio_io import save_audio
from .configuration_distill import get_adaptive_vqvae_config
from .corpus import write_default_corpus
from .data import build_datasets, find_audio_files
from .feature_extraction_distill import DistillFeatureExtractor
from .file_utils import write_text_atomic
from .modeling_distill import DistillVQVAEModel
from .training import CodebookHealthCallback, adaptive_training_arguments, codebook_health

# The embedded corpus is a demo: train it for a fixed small budget (a few minutes on two CPU cores) unless told
# otherwise, instead of the adaptive tier's 100 epochs meant for real collections.
DEMO_EPOCHS = 15
DEMO_AUGMENTATION_EXPANSION = 2


@dataclass
class TrainingRunResult:
    """What `run_training` produced."""

    output_dir: Path
    model_dir: Path
    num_files: int
    epochs: int
    final_train_loss: float | None
    final_eval_loss: float | None
    codebook_health: dict | None
    files: list[Path] = field(default_factory=list)


class _EpochCallback(TrainerCallback):
    """
    Tells the training dataset which epoch it serves, so every epoch sees fresh augmentations. The Trainer does
    this itself in a single process; under Accelerate with a distributed sampler it only sets the sampler's epoch.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


class _HealthProgressCallback(ProgressCallback):
    """The Trainer's progress bar, with the latest loss and per-level codebook utilization as its postfix."""

    def __init__(self):
        super().__init__()
        self.postfix: dict[str, str] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.3f}"
        if "eval_loss" in logs:
            self.postfix["eval"] = f"{logs['eval_loss']:.3f}"
        levels = sorted(k for k in logs if k.startswith("eval_codebook_") and k.endswith("_utilization"))
        if levels:
            self.postfix["codes used"] = "/".join(f"{logs[k]:.0%}" for k in levels)
        self.training_bar.set_postfix(self.postfix, refresh=True)


def _epoch_series(log_history: list[dict], key: str) -> list[float | None]:
    """One value per epoch (the last logged in that epoch) of `key` from the Trainer's log history."""
    by_epoch: dict[int, float] = {}
    for entry in log_history:
        if key in entry and "epoch" in entry:
            by_epoch[max(1, math.ceil(entry["epoch"] - 1e-9))] = entry[key]
    if not by_epoch:
        return []
    return [by_epoch.get(epoch) for epoch in range(1, max(by_epoch) + 1)]


def run_training(
    audio_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike = "outputs/distill-train",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    codebook_size: int | None = None,
    augmentation_expansion: int | None = None,
    val_fraction: float | None = None,
    augment: bool = True,
    seed: int = 0,
    report_to: str | list[str] = "none",
    resume: bool = False,
    name: str | None = None,
    progress: bool = True,
) -> TrainingRunResult:
    """
    Train on `audio_dir` (recursively: wav, flac, ogg, mp3) or, when it is `None`, on the embedded corpus
    (`distill_hf.corpus`, trained for `DEMO_EPOCHS` epochs with `DEMO_AUGMENTATION_EXPANSION` augmented copies
    unless `epochs`/`augmentation_expansion` say otherwise). Settings not given come from
    [`get_adaptive_vqvae_config`] for the number of files. See the module docstring for what is written.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="distill-corpus-") as corpus_dir:
        demo = audio_dir is None
        if demo:
            write_default_corpus(corpus_dir)
            audio_dir = corpus_dir
            epochs = DEMO_EPOCHS if epochs is None else epochs
            augmentation_expansion = DEMO_AUGMENTATION_EXPANSION if augmentation_expansion is None else augmentation_expansion
        files = find_audio_files(audio_dir)

        overrides = {
            "max_epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "codebook_size": codebook_size,
            "augmentation_expansion": augmentation_expansion,
            "val_fraction": val_fraction,
        }
        config = get_adaptive_vqvae_config(len(files), **{k: v for k, v in overrides.items() if v is not None})
        feature_extractor = DistillFeatureExtractor.from_model_config(config)
        train_dataset, eval_dataset, info = build_datasets(audio_dir, feature_extractor, config, augment=augment, seed=seed)

        args = adaptive_training_arguments(
            len(files),
            str(output_dir / "checkpoints"),
            **config.training_arguments_kwargs(),
            report_to=report_to,
            seed=seed,
            disable_tqdm=True,  # the progress bar below replaces the default one
            dataloader_pin_memory=torch.cuda.is_available(),
            **({} if eval_dataset is not None else {"eval_strategy": "no", "load_best_model_at_end": False}),
        )
        torch.manual_seed(seed)
        model = DistillVQVAEModel(config)
        trainer = Trainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset)
        trainer.add_callback(_EpochCallback(train_dataset))
        if eval_dataset is not None:
            trainer.add_callback(CodebookHealthCallback(trainer))
        trainer.remove_callback(PrinterCallback)  # raw log dicts; the progress bar shows what matters
        if progress:
            trainer.add_callback(_HealthProgressCallback())
        last_checkpoint = get_last_checkpoint(args.output_dir) if resume and Path(args.output_dir).is_dir() else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is collapsing.*")  # already logged by the callback
            trainer.train(resume_from_checkpoint=last_checkpoint)

        if not trainer.is_world_process_zero():
            return TrainingRunResult(output_dir, output_dir / "model", len(files), config.max_epochs, None, None, None)
        return _write_outputs(trainer, model, feature_extractor, config, train_dataset, eval_dataset, info, files,
                              output_dir, name or ("Distill demo corpus" if demo else Path(audio_dir).name), demo)


def _write_outputs(trainer, model, feature_extractor, config, train_dataset, eval_dataset, info, files, output_dir,
                   name, demo) -> TrainingRunResult:
    from .model_card import write_model_card

    model.eval()
    history = trainer.state.log_history
    train_losses = _epoch_series(history, "loss")
    val_losses = _epoch_series(history, "eval_loss")
    health_dataset = eval_dataset if eval_dataset is not None else train_dataset
    health_loader = torch.utils.data.DataLoader(health_dataset, batch_size=config.batch_size)
    health = codebook_health(model, health_loader)

    model_dir = output_dir / "model"
    trainer.save_model(str(model_dir))
    (model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle of local settings: not for the Hub
    feature_extractor.save_pretrained(model_dir)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary = {
        "metadata": {
            "name": name,
            "description": "Distill RVQ-VAE trained with distill-hf"
            + (" on the embedded demo corpus." if demo else "."),
            "dataset_name": None if demo else name,
            "dataset_file_count": len(files),
            "dataset_total_duration_s": info.total_duration_s,
            "training_date": now,
            "save_date": now,
            "training_epochs": int(math.ceil(trainer.state.epoch or 0)),
            "final_train_loss": next((v for v in reversed(train_losses) if v is not None), None),
            "final_val_loss": next((v for v in reversed(val_losses) if v is not None), None),
            "tags": ["demo"] if demo else [],
        },
        "codebook_health_snapshot": health,
        "loss_curve_history": {"train_losses": train_losses, "val_losses": val_losses},
        "training_config": {**config.to_diff_dict(), "max_epochs": config.max_epochs},
        "has_prior": False,
    }
    write_text_atomic(model_dir / "distill_metadata.json", json.dumps(summary, indent=2) + "\n")
    written = [model_dir]
    try:
        written.append(write_model_card(model_dir))
    except FileNotFoundError as error:  # the card template ships with a source checkout only
        warnings.warn(f"No model card written: {error}")

    written += _write_examples(model, feature_extractor, health_dataset, health_loader, summary, output_dir)
    return TrainingRunResult(
        output_dir=output_dir,
        model_dir=model_dir,
        num_files=len(files),
        epochs=summary["metadata"]["training_epochs"],
        final_train_loss=summary["metadata"]["final_train_loss"],
        final_eval_loss=summary["metadata"]["final_val_loss"],
        codebook_health=health,
        files=written,
    )


@torch.no_grad()
def _write_examples(model, feature_extractor, dataset, loader, summary, output_dir) -> list[Path]:
    """A held-out clip and its reconstruction as audio, and the pictures (when matplotlib is installed)."""
    waveform = dataset.chunk_waveform(0)
    features = feature_extractor(waveform, sampling_rate=feature_extractor.sampling_rate).input_features
    output = model(features)
    audio = feature_extractor.features_to_waveform(output.reconstruction, length=waveform.shape[-1])[0]
    written = [
        save_audio(output_dir / "original.wav", waveform, feature_extractor.sampling_rate),
        save_audio(output_dir / "reconstruction.wav", audio, feature_extractor.sampling_rate),
    ]
    try:
        from .plotting import plot_code_grid, plot_codebook_usage, plot_loss_curves, plot_spectrograms
    except ImportError:  # pragma: no cover
        return written
    try:
        history = summary["loss_curve_history"]
        if any(v is not None for v in history["train_losses"] + history["val_losses"]):
            written.append(plot_loss_curves({"train": history["train_losses"], "validation": history["val_losses"]},
                                            output_dir / "loss_curves.png", title="Training and validation loss"))
        written.append(plot_spectrograms(features[0, 0], output.reconstruction[0, 0], output_dir / "mel_comparison.png",
                                         title="held-out clip: input vs reconstruction"))
        written.append(plot_code_grid(output.audio_codes[0], output_dir / "code_grid.png",
                                      codebook_size=model.config.codebook_size))
        codes = torch.cat([model.encode(batch["input_features"]).audio_codes for batch in loader])
        written.append(plot_codebook_usage(codes, model.config.codebook_size, output_dir / "codebook_usage.png",
                                           title="code use over the evaluation data"))
    except ImportError as error:
        warnings.warn(f"No pictures written: {error}")
    return written
