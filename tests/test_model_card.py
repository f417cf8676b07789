"""Model cards: content from the original checkpoint, offline metadata validation, the runnable usage snippet,
cards for plain and freshly trained folders.

Metadata validation. `ModelCard.validate()` posts the card to the Hub (`/api/validate-yaml`), which tests cannot
reach. Offline, the card is checked with huggingface_hub's own machinery: `ModelCard(text)` (the Hub client's
parser: its YAML-block regex, `yaml.safe_load`, and `ModelCardData` built with `ignore_metadata_errors=False`,
which raises on malformed metadata) and `huggingface_hub.metadata_load` on the written file must both succeed and
agree; the YAML must survive `ModelCardData.to_yaml()` unchanged; the field types must be what the Hub's
model-card spec asks for (strings, lists of strings); and `pipeline_tag` must be a task that huggingface_hub's
`InferenceClient` implements (it has one method per Hub task, `audio_to_audio` for "audio-to-audio").
"""

import json
import math
import os
import re
import subprocess
import sys

import pytest
import soundfile
import torch
import yaml
from huggingface_hub import InferenceClient, ModelCard, ModelCardData, metadata_load

from distill_hf import DistillVQVAEConfig, DistillVQVAEModel
from distill_hf import model_card as model_card_module
from distill_hf.model_card import (
    BASE_TAGS,
    build_model_card,
    card_inputs_from_metadata_file,
    save_loss_curve,
    to_jsonable,
    write_model_card,
)
from tests.conftest import CHECKPOINT


@pytest.fixture(scope="module")
def original() -> dict:
    return torch.load(CHECKPOINT, weights_only=True)


def assert_valid_card_metadata(readme_path, expect_datasets=None):
    """The offline validation described in the module docstring; returns the metadata dict."""
    text = readme_path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    card = ModelCard(text)  # raises ValueError on metadata the client cannot parse
    data = card.data.to_dict()
    assert metadata_load(readme_path) == data
    assert yaml.safe_load(card.data.to_yaml()) == data
    assert ModelCardData(**data).to_dict() == data

    assert data["library_name"] == "transformers"
    assert data["license"] == "apache-2.0"
    assert data["pipeline_tag"] == "audio-to-audio"
    assert callable(getattr(InferenceClient, data["pipeline_tag"].replace("-", "_"), None))
    assert isinstance(data["tags"], list) and all(isinstance(tag, str) and tag for tag in data["tags"])
    assert data["tags"][: len(BASE_TAGS)] == list(BASE_TAGS)
    assert len(set(data["tags"])) == len(data["tags"])
    if expect_datasets is None:
        assert "datasets" not in data
    else:
        assert data["datasets"] == expect_datasets
    assert set(data) <= {"library_name", "license", "tags", "pipeline_tag", "datasets"}
    return data


def usage_snippet(card_text: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", card_text, flags=re.S)
    assert len(blocks) == 1, "the card should hold exactly one Python block: the usage snippet"
    return blocks[0]


# ------------------------------------------------------------------------------------------ conversion
def test_converted_card_carries_the_checkpoint_facts(converted_dir, original):
    text = (converted_dir / "README.md").read_text(encoding="utf-8")
    metadata = original["metadata"]
    assert text.split("```python")[0].count("\n# ") == 1 and f"\n# {metadata['name']}\n" in text
    assert metadata["description"] in text
    for row in (
        "| dataset | alsa-sounds |",
        "| audio files | 9 |",
        "| total duration | 12.8 s |",
        "| training date | 2026-12-04T19:00:00+00:00 |",
        "| saved | 2026-12-04T19:30:00+00:00 |",
        "| epochs trained | 150 |",
        # codebook health: utilization as %, perplexity, dead codes (checkpoint: 0.703125, 13.8446, 19 ...)
        "| 0 | 70.3% (45 of 64) | 13.84 | 19 |",
        "| 1 | 42.2% (27 of 64) | 6.58 | 37 |",
        "| 2 | 31.2% (20 of 64) | 3.89 | 44 |",
        # training configuration as recorded
        "| `learning_rate` | 0.0005 |",
        "| `batch_size` | 11 |",
        "| `augmentation_expansion` | 15 |",
        # feature settings
        "| sampling rate | 48000 Hz |",
        "| hop length | 512 samples (93.75 frames per second) |",
        "| mel bands | 128 |",
    ):
        assert row in text, row
    health = original["codebook_health_snapshot"]
    assert f"{health['level_0']['utilization'] * 100:.1f}%" == "70.3%"
    assert f"{health['level_0']['perplexity']:.2f}" == "13.84"
    # final losses from the metadata and the loss history
    assert "Final train loss 0.5109, validation loss 0.5619 after 150 epochs" in text
    assert "Loss history: 15 epochs recorded" in text and "best validation loss 0.4603 at epoch 15" in text
    # architecture and code grid per second of audio: 3 levels x 128/16 bands x 93.75/16 positions
    assert "| Code grid | 3 levels x 8 frequency bands x 5.86 time positions per second of audio |" in text
    assert "| Codes per second | 140.6 (844 bits/s at 6 bits per code) |" in text
    assert "codes `[3, 8, 6]`" in text
    assert "channels 1→32→64→128→256" in text and "64 codes of dimension 128" in text
    # the prior is converted into prior/; limitations
    assert "hidden size 64, layers 2, attention heads 4, sequence length 144" in text
    assert "epochs trained 120, final perplexity 5.175" in text
    assert "Trained on a small personal dataset (9 files, 12.8 s of audio" in text
    assert "Griffin-Lim" in text.split("## Limitations")[1]
    assert "not recorded" not in text


def test_converted_card_metadata_is_valid(converted_dir):
    data = assert_valid_card_metadata(converted_dir / "README.md", expect_datasets=["alsa-sounds"])
    assert data["tags"] == ["audio", "vq-vae", "rvq", "mel-spectrogram", "distill", "speech", "test"]


def test_distill_metadata_json_holds_the_checkpoint_values(converted_dir, original):
    record = json.loads((converted_dir / "distill_metadata.json").read_text(encoding="utf-8"))
    assert record["source"] == {"file": "model.distill", "format": "distill_model", "version": 2, "model_type": "vqvae"}
    for key in ("metadata", "codebook_health_snapshot", "loss_curve_history", "training_config",
                "spectrogram_config", "prior_config", "prior_metadata"):
        assert record[key] == original[key], key  # exact: floats survive JSON unchanged
    assert record["has_prior"] is True
    assert "prior_state_dict" not in record and "model_state_dict" not in record


def test_loss_curve_png_is_written_and_shown(converted_dir):
    text = (converted_dir / "README.md").read_text(encoding="utf-8")
    pytest.importorskip("matplotlib")
    png = converted_dir / "loss_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "![Training and validation loss per epoch](loss_curve.png)" in text


def test_usage_snippet_runs_with_remote_code_only(converted_dir, tmp_path):
    record = json.loads((converted_dir / "distill_metadata.json").read_text(encoding="utf-8"))
    config = DistillVQVAEConfig.from_pretrained(converted_dir)
    card = build_model_card(config, repo_id=str(converted_dir), **card_inputs_from_metadata_file(record))
    snippet = usage_snippet(str(card))
    assert f"model_id = {json.dumps(str(converted_dir))}" in snippet
    assert "trust_remote_code=True" in snippet
    # `import distill_hf` fails in the script, so the model and feature extractor must come from the folder's code.
    script = (
        "import sys\nsys.modules['distill_hf'] = None\n"
        + snippet
        + "\nassert type(model).__module__.startswith('transformers_modules'), type(model).__module__\n"
        + "assert type(feature_extractor).__module__.startswith('transformers_modules')\n"
        + "assert 'distill_hf' not in [name.split('.')[0] for name, m in sys.modules.items() if m is not None]\n"
    )
    (tmp_path / "snippet.py").write_text(script, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "torch.Size([1, 3, 8, 6])" in result.stdout and "torch.Size([1, 48000])" in result.stdout
    audio, rate = soundfile.read(tmp_path / "reconstruction.wav", dtype="float32")
    assert rate == 48000 and audio.shape == (48000,)
    assert all(math.isfinite(float(x)) for x in audio) and float(abs(audio).max()) > 0


def test_placeholder_model_id_by_default():
    card = build_model_card(DistillVQVAEConfig())
    assert 'model_id = "path/to/model"' in usage_snippet(str(card))
    card = build_model_card(DistillVQVAEConfig(), repo_id='someone/distill "quoted"')
    assert 'model_id = "someone/distill \\"quoted\\""' in usage_snippet(str(card))


# ----------------------------------------------------------------------------------- trained / plain folders
def test_write_model_card_for_a_plain_folder(tmp_path, tiny_config):
    folder = tmp_path / "plain"
    DistillVQVAEModel(tiny_config).save_pretrained(folder)
    path = write_model_card(folder)
    assert path == folder / "README.md"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    text = path.read_text(encoding="utf-8")
    assert_valid_card_metadata(path, expect_datasets=None)
    for line in ("Training data: not recorded.", "Training configuration: not recorded.",
                 "Final losses: not recorded.", "Codebook health: not recorded."):
        assert line in text, line
    assert "loss_curve.png" not in text and "### Bundled prior" not in text
    assert "\n# Distill RVQ-VAE\n" in text
    # the tiny config: 2 blocks (4x), 32 mel bands -> 8 bands; 16000 / 128 = 125 frames/s -> 31.25 positions/s
    assert "| Code grid | 2 levels x 8 frequency bands x 31.25 time positions per second of audio |" in text
    assert "Distill is made for collections of 5 to 500 files" in text


def test_write_model_card_from_a_training_summary(tmp_path, tiny_config):
    folder = tmp_path / "trained"
    model = DistillVQVAEModel(tiny_config).eval()
    model.save_pretrained(folder)
    extractor_features = torch.log1p(torch.rand(2, 1, tiny_config.n_mels, 40) * 4)
    with torch.no_grad():
        codes = model.encode(extractor_features).audio_codes
    usage = model.codebook_usage(codes)
    summary = {
        "metadata": {"name": "My field recordings", "dataset_name": "field-recordings", "dataset_file_count": 42,
                     "dataset_total_duration_s": 3725.0, "training_epochs": 3, "tags": ["ambience", "audio"]},
        "codebook_health": usage,
        "loss_history": {"train_losses": [torch.tensor(2.0), 1.5, 1.25], "val_losses": [2.5, float("nan"), 1.75]},
        "training_config": {"learning_rate": 1e-3, "batch_size": 8},
    }
    path = write_model_card(folder, training_summary=summary, repo_id="someone/field-distill")
    text = path.read_text(encoding="utf-8")
    data = assert_valid_card_metadata(path, expect_datasets=["field-recordings"])
    assert data["tags"][-1] == "ambience" and data["tags"].count("audio") == 1
    assert "\n# My field recordings\n" in text
    assert "| audio files | 42 |" in text and "| total duration | 1 h 02 min (3725 s) |" in text
    level_0 = usage["level_0"]
    row = (f"| 0 | {level_0['utilization'] * 100:.1f}% ({round(level_0['utilization'] * 16)} of 16) | "
           f"{level_0['perplexity']:.2f} | {level_0['dead_codes']} |")
    assert row in text and "| 1 |" in text
    assert "Loss history: 3 epochs recorded; last epoch train 1.25, validation 1.75" in text
    assert "best validation loss 1.75 at epoch 3" in text
    assert "| `learning_rate` | 0.001 |" in text
    assert "Final losses: not recorded." not in text and "not recorded" not in text.split("## Usage")[0]
    assert 'model_id = "someone/field-distill"' in text

    with pytest.raises(ValueError, match="unknown `training_summary` keys"):
        write_model_card(folder, training_summary={"codebook": {}})


def test_training_summary_overrides_the_converted_record(tmp_path, converted_dir):
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("config.json", "distill_metadata.json"):
        (folder / name).write_bytes((converted_dir / name).read_bytes())
    health = {"level_0": {"utilization": 1.0, "perplexity": 60.0, "dead_codes": 0}}
    text = write_model_card(folder, training_summary={"codebook_health_snapshot": health}).read_text()
    assert "| 0 | 100.0% (64 of 64) | 60.00 | 0 |" in text and "70.3%" not in text
    assert "| dataset | alsa-sounds |" in text  # the rest still comes from distill_metadata.json
    assert "loss_curve.png" not in text  # no image in this folder


def test_build_model_card_with_nothing_recorded():
    text = str(build_model_card(DistillVQVAEConfig(), metadata=None, codebook_health=None, loss_history=None,
                                training_config=None, prior={"has_prior": False}))
    assert text.count("not recorded") >= 4
    assert "The original checkpoint bundles no prior." in text
    assert "not part of this model yet" not in text
    assert "\n\n\n" not in text


def test_converted_card_layout(converted_dir):
    text = (converted_dir / "README.md").read_text(encoding="utf-8")
    assert "\n\n\n" not in text
    headings = re.findall(r"^(#{1,3} .+)$", text.split("```python")[0], flags=re.M)
    assert headings == [
        "# ALSA speech test corpus", "## Model", "## Feature settings", "## Training data", "## Training",
        "### Final losses", "### Codebook health", "### Bundled prior", "## Usage",
    ]
    assert text.rstrip().endswith("like the VQ-VAE, it only knows this collection.")


def test_to_jsonable_and_empty_loss_curve(tmp_path):
    import numpy as np

    value = {1: torch.tensor([1.5, float("inf")]), "s": torch.tensor(3), "n": np.float32(0.25), "t": (True, None)}
    assert to_jsonable(value) == {"1": [1.5, None], "s": 3, "n": 0.25, "t": [True, None]}
    json.dumps(to_jsonable(value), allow_nan=False)
    assert save_loss_curve(None, tmp_path / "a.png") is None
    assert save_loss_curve({"train_losses": [], "val_losses": None}, tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())


def test_missing_template_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(model_card_module, "TEMPLATE_PATH", tmp_path / "nope.md.j2")
    with pytest.raises(FileNotFoundError, match="Model card template not found"):
        build_model_card(DistillVQVAEConfig())


def test_snippet_shapes_follow_the_config(tiny_config):
    snippet = usage_snippet(str(build_model_card(tiny_config)))
    # one second: 16000 samples -> 16000 // 128 + 1 = 126 frames -> grid [2 levels, 32 / 4 = 8, ceil(126 / 4) = 32]
    assert "[1, 2, 8, 32]" in snippet and "[1, 1, 32, 126]" in snippet and "[1, 16000]" in snippet
