"""Trainer integration: training, evaluation without labels, checkpoints and resume, bf16, codebook health."""

import warnings

import pytest
import torch
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments

from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel
from distill_hf.training import CodebookHealthCallback, adaptive_training_arguments, codebook_health
from tests.conftest import synthetic_audio


class FeatureDataset(Dataset):
    """Precomputed `input_features` items, as the audio pipeline yields them: `{"input_features": [1, n_mels, T]}`."""

    def __init__(self, config, num_items, seed, silent=False):
        extractor = DistillFeatureExtractor.from_model_config(config)
        audio = synthetic_audio(num_items, 4000, config.sampling_rate, seed=seed)  # 0.25 s -> 32 frames
        if silent:
            audio = torch.zeros_like(audio)
        self.features = extractor(audio, sampling_rate=config.sampling_rate).input_features

    def __len__(self):
        return len(self.features)

    def __getitem__(self, index):
        return {"input_features": self.features[index]}


@pytest.fixture
def datasets(tiny_config):
    return FeatureDataset(tiny_config, 16, seed=0), FeatureDataset(tiny_config, 4, seed=1)


def make_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, learning_rate=1e-2,
        num_train_epochs=1, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True,
    )
    values.update(overrides)
    return TrainingArguments(**values)


def test_trainer_trains_and_evaluates_without_labels(tiny_config, datasets, tmp_path):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config)
    train, val = datasets
    trainer = Trainer(model=model, args=make_args(tmp_path, num_train_epochs=6), train_dataset=train, eval_dataset=val)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
    assert after < before

    trainer.save_model(str(tmp_path / "final"))
    loaded = DistillVQVAEModel.from_pretrained(tmp_path / "final")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu()), key


def test_resume_matches_uninterrupted_run(tiny_config, datasets, tmp_path):
    config = DistillVQVAEConfig(**{**tiny_config.to_diff_dict(), "dropout": 0.2, "threshold_ema_dead_code": 0})
    train, _ = datasets

    class StopAfter(TrainerCallback):
        """Interrupts training after `step` (the schedule still spans the full run, as after a crash)."""

        def __init__(self, step):
            self.step = step

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == self.step:
                control.should_training_stop = True

    def run(output_dir, resume=None, callbacks=None):
        torch.manual_seed(0)
        model = DistillVQVAEModel(config)
        args = make_args(output_dir, max_steps=6, save_strategy="steps", save_steps=2)
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=callbacks)
        trainer.train(resume_from_checkpoint=resume)
        return model.state_dict()

    uninterrupted = run(tmp_path / "a")
    interrupted = run(tmp_path / "b", callbacks=[StopAfter(2)])
    assert (tmp_path / "b" / "checkpoint-2").is_dir()
    assert any(not torch.equal(interrupted[k], uninterrupted[k]) for k in uninterrupted)
    resumed = run(tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint-2"))
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key


def test_bf16_autocast_training(tiny_config, datasets, tmp_path):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config)
    train, _ = datasets
    trainer = Trainer(model=model, args=make_args(tmp_path, bf16=True, num_train_epochs=2), train_dataset=train)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    for layer in model.quantizer.layers:
        assert layer.embed.dtype == torch.float32 and torch.isfinite(layer.embed).all()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_codebook_health_callback_logs_metrics(tiny_config, datasets, tmp_path):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config)
    train, val = datasets
    trainer = Trainer(model=model, args=make_args(tmp_path), train_dataset=train, eval_dataset=val)
    trainer.add_callback(CodebookHealthCallback(trainer))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # varied material uses its codebooks: no collapse warning
        metrics = trainer.evaluate()
    keys = {f"eval_codebook_level_{level}_{name}" for level in range(2) for name in ("utilization", "perplexity", "dead_codes")}
    assert keys <= set(metrics)
    logged = trainer.state.log_history[-1]  # what report_to integrations received
    assert keys <= set(logged)
    expected = codebook_health(model, trainer.get_eval_dataloader())
    for level in range(2):
        for name in ("utilization", "perplexity", "dead_codes"):
            assert logged[f"eval_codebook_level_{level}_{name}"] == expected[f"level_{level}"][name]
    assert expected["level_0"]["utilization"] > 0.3


def test_codebook_health_callback_warns_on_collapse(tiny_config, tmp_path):
    """Silence as the only data: the latents take a handful of values (edge effects), so few of 64 codes are used."""
    config = DistillVQVAEConfig(**{**tiny_config.to_diff_dict(), "codebook_size": 64})
    torch.manual_seed(0)
    model = DistillVQVAEModel(config)
    silent = FeatureDataset(config, 4, seed=0, silent=True)
    trainer = Trainer(model=model, args=make_args(tmp_path), train_dataset=silent, eval_dataset=silent)
    callback = CodebookHealthCallback(trainer)
    trainer.add_callback(callback)
    with pytest.warns(UserWarning, match=r"Codebook level 0 uses only \d+% of its codes") as record:
        metrics = trainer.evaluate()
    utilization = metrics["eval_codebook_level_0_utilization"]
    assert utilization < 0.3
    never_used = round(64 * (1 - utilization))
    assert f"uses only {utilization:.0%} of its codes ({never_used} never used" in str(record[0].message)
    low_levels = sum(metrics[f"eval_codebook_level_{level}_utilization"] < 0.3 for level in range(2))
    assert len([w for w in record if "is collapsing" in str(w.message)]) == low_levels


def test_callback_on_logging_steps(tiny_config, datasets, tmp_path):
    torch.manual_seed(0)
    train, val = datasets
    trainer = Trainer(model=DistillVQVAEModel(tiny_config), args=make_args(tmp_path, logging_steps=2),
                      train_dataset=train, eval_dataset=val)
    trainer.add_callback(CodebookHealthCallback(trainer, on_logging_steps=True, low_utilization=0.0))
    trainer.train()
    step_logs = [entry for entry in trainer.state.log_history if "train_step_codebook_level_1_perplexity" in entry]
    assert len(step_logs) == 2  # 4 steps, logged every 2


def test_adaptive_training_arguments(tmp_path):
    args = adaptive_training_arguments(9, str(tmp_path), report_to="none")
    assert args.per_device_train_batch_size == 11 and args.num_train_epochs == 100
    assert args.learning_rate == 5e-4 and args.weight_decay == 0.01 and args.max_grad_norm == 1.0
    assert args.save_total_limit == 3 and args.lr_scheduler_type == "cosine" and args.optim == "adamw_torch"
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert adaptive_training_arguments(300, str(tmp_path), num_train_epochs=2).num_train_epochs == 2
    with pytest.raises(ValueError, match="file_count"):
        adaptive_training_arguments(0, str(tmp_path))


def test_callback_rejects_bad_arguments(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="trainer"):
        CodebookHealthCallback(None)
    trainer = Trainer(model=DistillVQVAEModel(tiny_config), args=make_args(tmp_path))
    with pytest.raises(ValueError, match="low_utilization"):
        CodebookHealthCallback(trainer, low_utilization=2)
