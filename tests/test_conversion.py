"""The .distill -> save_pretrained converter: mapping, validation, safety, atomic output."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conversion.convert_distill_checkpoint import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    main,
)
from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel
from tests.conftest import CHECKPOINT

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def original() -> dict:
    return torch.load(CHECKPOINT, weights_only=True)


def write_variant(tmp_path, original, name="variant.distill", **changes):
    checkpoint = {**original, **changes}
    for key in [k for k, v in changes.items() if v is _DELETE]:
        del checkpoint[key]
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


_DELETE = object()


def test_full_mapping_matches_model(original):
    converted = convert_state_dict(original["model_state_dict"])
    model = DistillVQVAEModel(DistillVQVAEConfig(codebook_size=64))
    expected = model.state_dict()
    assert converted.keys() == expected.keys()
    for key, tensor in converted.items():
        assert tensor.shape == expected[key].shape, key
    assert converted["quantizer.layers.1.embed"].shape == (64, 128)  # heads axis dropped
    assert torch.equal(converted["quantizer.layers.1.embed"], original["model_state_dict"]["quantizer.rvq.layers.1._codebook.embed"][0])
    assert torch.equal(converted["decoder.output_conv.weight"], original["model_state_dict"]["decoder.deconvs.12.weight"])
    assert torch.equal(converted["encoder.blocks.2.norm.running_var"], original["model_state_dict"]["encoder.convs.9.running_var"])


def test_partial_mapping_is_key_by_key():
    gradient = torch.randn(64, 32, 3, 3)
    assert convert_state_dict({"decoder.deconvs.8.weight": gradient}) == {"decoder.blocks.2.conv.weight": gradient}
    mapped = convert_state_dict({"quantizer.rvq.layers.2._codebook.cluster_size": torch.ones(1, 64)})
    assert list(mapped) == ["quantizer.layers.2.cluster_size"] and mapped["quantizer.layers.2.cluster_size"].shape == (64,)
    assert list(convert_state_dict({"encoder.proj.bias": torch.zeros(3)})) == ["encoder.projection.bias"]
    assert convert_state_dict({}) == {}


@pytest.mark.parametrize(
    "key",
    ["encoder.convs.2.weight", "decoder.deconvs.13.weight", "decoder.deconvs.16.weight", "encoder.convs.16.weight",
     "prior.token_emb.weight", "quantizer.rvq.layers.0._codebook.batch_mean"],
)
def test_unknown_keys_are_refused(key):
    with pytest.raises(ConversionError, match="unexpected key"):
        convert_state_dict({key: torch.zeros(1)})


def test_converted_folder_is_complete(converted_dir, original):
    assert {p.name for p in converted_dir.iterdir()} >= {
        "config.json", "model.safetensors", "preprocessor_config.json", "README.md", "distill_metadata.json"
    }
    config = json.loads((converted_dir / "config.json").read_text())
    for key, value in original["vqvae_config"].items():
        if key not in ("device", "num_workers"):
            assert config[key] == value, key
    extractor = DistillFeatureExtractor.from_pretrained(converted_dir)
    spectrogram = original["spectrogram_config"]
    assert extractor.sampling_rate == spectrogram["sample_rate"] and extractor.n_mels == spectrogram["n_mels"]
    assert extractor.n_fft == spectrogram["n_fft"] and extractor.hop_length == spectrogram["hop_length"]
    model = DistillVQVAEModel.from_pretrained(converted_dir)
    for key, tensor in convert_state_dict(original["model_state_dict"]).items():
        assert torch.equal(model.state_dict()[key], tensor), key
    assert not model.training


def test_checkpoint_without_prior_or_snapshots_converts(tmp_path, original):
    path = write_variant(
        tmp_path, original, has_prior=False, prior_state_dict=_DELETE, prior_config=_DELETE,
        prior_metadata=_DELETE, codebook_health_snapshot=None, loss_curve_history=None,
    )
    output = convert_checkpoint(path, tmp_path / "out")
    assert (output / "model.safetensors").exists()
    record = json.loads((output / "distill_metadata.json").read_text())
    assert record["has_prior"] is False and record["prior_config"] is None and record["prior_metadata"] is None
    assert record["codebook_health_snapshot"] is None and record["loss_curve_history"] is None
    assert record["metadata"] == original["metadata"] and record["source"]["file"] == "variant.distill"
    assert not (output / "loss_curve.png").exists()  # nothing to plot
    card = (output / "README.md").read_text()
    assert "Codebook health: not recorded." in card
    assert "Final train loss 0.5109, validation loss 0.5619" in card and "Loss history" not in card
    assert "The original checkpoint bundles no prior." in card and "loss_curve.png" not in card
    assert "| dataset | alsa-sounds |" in card


def test_old_checkpoint_without_any_records_converts(tmp_path, original):
    """Older files: no has_prior flag or prior keys, no metadata, training config or history at all."""
    path = write_variant(
        tmp_path, original, has_prior=_DELETE, prior_state_dict=_DELETE, prior_config=_DELETE,
        prior_metadata=_DELETE, codebook_health_snapshot=_DELETE, loss_curve_history=_DELETE,
        metadata=_DELETE, training_config=_DELETE,
    )
    output = convert_checkpoint(path, tmp_path / "out", repo_id="someone/old-distill")
    record = json.loads((output / "distill_metadata.json").read_text())
    assert record["has_prior"] is False
    assert all(record[key] is None for key in ("metadata", "codebook_health_snapshot", "loss_curve_history",
                                               "training_config", "prior_config", "prior_metadata"))
    card = (output / "README.md").read_text()
    for line in ("Training data: not recorded.", "Training configuration: not recorded.",
                 "Final losses: not recorded.", "Codebook health: not recorded."):
        assert line in card, line
    assert 'model_id = "someone/old-distill"' in card
    assert "datasets:" not in card.split("\n---\n")[0]


def test_prior_weights_without_flag_count_as_bundled(tmp_path, original):
    output = convert_checkpoint(write_variant(tmp_path, original, has_prior=_DELETE), tmp_path / "out")
    record = json.loads((output / "distill_metadata.json").read_text())
    assert record["has_prior"] is True and record["prior_config"] == original["prior_config"]


def test_failure_while_writing_the_card_leaves_nothing(tmp_path, monkeypatch):
    import conversion.convert_distill_checkpoint as converter

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(converter, "write_model_card", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        convert_checkpoint(CHECKPOINT, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # neither the output nor the staging folder

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("user data")
    with pytest.raises(RuntimeError, match="disk full"):
        convert_checkpoint(CHECKPOINT, existing, overwrite=True)
    assert (existing / "keep.txt").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]


def test_converted_files_have_normal_permissions(converted_dir):
    umask = os.umask(0)
    os.umask(umask)
    for path in converted_dir.rglob("*"):
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert path.stat().st_mode & 0o777 == expected, path


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "keep.txt").write_text("user data")
    with pytest.raises(ConversionError, match="already exists"):
        convert_checkpoint(CHECKPOINT, output)
    assert (output / "keep.txt").read_text() == "user data"
    convert_checkpoint(CHECKPOINT, output, overwrite=True)
    assert not (output / "keep.txt").exists() and (output / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or backup folders left


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"format": "something_else"}, "expected format 'distill_model'"),
        ({"version": 3}, "unsupported version 3"),
        ({"model_type": "prior"}, "expected model_type 'vqvae'"),
        ({"model_state_dict": _DELETE}, "missing or malformed 'model_state_dict'"),
    ],
)
def test_bad_headers(tmp_path, original, changes, message):
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(write_variant(tmp_path, original, **changes), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_extra_and_misshapen_weights(tmp_path, original):
    state = dict(original["model_state_dict"])
    del state["encoder.convs.4.weight"]
    with pytest.raises(ConversionError, match=r"missing \['encoder.blocks.1.conv.weight'\]"):
        convert_checkpoint(write_variant(tmp_path, original, model_state_dict=state), tmp_path / "a")

    state = {**original["model_state_dict"], "encoder.convs.20.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match="unexpected key.*encoder.convs.20.weight"):
        convert_checkpoint(write_variant(tmp_path, original, model_state_dict=state), tmp_path / "b")

    state = {**original["model_state_dict"], "encoder.proj.weight": torch.zeros(64, 256, 1, 1)}
    with pytest.raises(ConversionError, match=r"shape mismatch for encoder.projection.weight"):
        convert_checkpoint(write_variant(tmp_path, original, model_state_dict=state), tmp_path / "c")

    bad_config = {**original["vqvae_config"], "decay": 1.5}
    with pytest.raises(ConversionError, match="decay"):
        convert_checkpoint(write_variant(tmp_path, original, vqvae_config=bad_config), tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_truncated_and_garbage_files(tmp_path):
    truncated = tmp_path / "truncated.distill"
    truncated.write_bytes(CHECKPOINT.read_bytes()[:100_000])
    with pytest.raises(ConversionError, match="not a loadable .distill checkpoint"):
        convert_checkpoint(truncated, tmp_path / "out")
    garbage = tmp_path / "garbage.distill"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(ConversionError, match="not a loadable .distill checkpoint"):
        convert_checkpoint(garbage, tmp_path / "out")
    with pytest.raises(ConversionError, match="checkpoint not found"):
        convert_checkpoint(tmp_path / "absent.distill", tmp_path / "out")
    assert not (tmp_path / "out").exists()


class _Payload:
    """Unpickling this object would run `os.system(touch marker)`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_executing_pickle_is_refused_and_never_runs(tmp_path, original):
    marker = tmp_path / "pwned"
    malicious = tmp_path / "malicious.distill"
    torch.save({**original, "metadata": _Payload(marker)}, malicious)
    with pytest.raises(ConversionError, match="not a loadable .distill checkpoint"):
        convert_checkpoint(malicious, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # The payload is real: an unrestricted unpickler runs it (harmlessly: it only touches the marker file).
    torch.load(malicious, weights_only=False)
    assert marker.exists()


def test_cli_success_and_one_line_errors(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    output = tmp_path / "cli-out"
    command = [sys.executable, "-m", "conversion.convert_distill_checkpoint", "--checkpoint", str(CHECKPOINT),
               "--output-dir", str(output)]
    ok = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert ok.returncode == 0, ok.stderr
    assert (output / "model.safetensors").exists()

    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: output folder") and "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_main_with_repo_id(tmp_path, capsys):
    assert main(["--checkpoint", str(CHECKPOINT), "--output-dir", str(tmp_path / "o"), "--repo-id", "me/distill"]) == 0
    assert 'model_id = "me/distill"' in (tmp_path / "o" / "README.md").read_text()


def test_main_function_reports_errors(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.distill"), "--output-dir", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
