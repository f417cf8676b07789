"""Publishing to the Hub and loading back from it, against the local fake Hub of `hub_server.py` (never the real one).

The upload side runs in this process with huggingface_hub/Transformers pointed at the fake Hub (fixture `hub`);
every download runs in a fresh Python process with its own empty HF_HOME and `distill_hf` made unimportable, so
what loads is exactly what the repo holds: weights, configs and the remote code.
"""

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import synthetic_audio
from distill_hf import DistillFeatureExtractor, DistillVQVAEModel
from distill_hf.cli import main
from distill_hf.hub import REMOTE_CODE_FILES, folder_files, push_model_folder
from hub_server import HubServer

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "distill_hf"
TOKEN = "test-token"

# Runs in a fresh interpreter: download `repo_id` with stock Transformers and remote code, run it on the saved
# inputs, save the outputs.
DOWNLOAD_SCRIPT = """
import sys
sys.modules["distill_hf"] = None  # the package is not importable: only the repo's remote code can load
import os
import torch
from transformers import AutoFeatureExtractor, AutoModel

repo_id, inputs_path, outputs_path = sys.argv[1:]
assert not os.path.exists(os.environ["HF_HOME"]), "the cache must start empty"
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained(repo_id, trust_remote_code=True)
inputs = torch.load(inputs_path)
outputs = {"model_module": type(model).__module__, "extractor_module": type(extractor).__module__}
with torch.inference_mode():
    if "waveform" in inputs:
        features = extractor(inputs["waveform"], sampling_rate=extractor.sampling_rate, return_tensors="pt")
        outputs["input_features"] = features.input_features
    output = model(inputs["input_features"])
outputs["reconstruction"], outputs["audio_codes"] = output.reconstruction, output.audio_codes
torch.save(outputs, outputs_path)
"""


def client_env(hub: HubServer, home: Path, token: str | None = None) -> dict:
    """Environment for a client process: online, endpoint = the fake Hub, a private HF_HOME, no inherited HF_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(home), HF_HUB_DISABLE_PROGRESS_BARS="1")
    if token is not None:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh fake Hub, with this process's client pointed at it: online, cache and token file under tmp_path.

    huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE/HF_HOME into `constants` at import (and conftest made this
    process offline), so the constants are patched; Transformers' shared `HfApi` captured the endpoint when it was
    created, so it is dropped and rebuilt. monkeypatch restores everything afterwards.
    """
    import transformers.utils.hub as transformers_hub
    from huggingface_hub import constants

    home = tmp_path / "hf_home_uploader"
    with HubServer(token=TOKEN) as server:
        patches = {
            "ENDPOINT": server.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": server.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_TOKEN_PATH": str(home / "token"),  # no stored login: only the token a test passes
            "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        }
        for name, value in patches.items():
            monkeypatch.setattr(constants, name, value)
        monkeypatch.setattr(transformers_hub, "_hf_api", None)
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        yield server
    assert server.unknown_requests == [], f"the client called endpoints the fake Hub lacks: {server.unknown_requests}"


def download_and_run(hub: HubServer, repo_id: str, inputs: dict, tmp_path: Path) -> dict:
    """Load `repo_id` from the fake Hub in a fresh process (empty cache, no distill_hf) and run it on `inputs`."""
    inputs_path, outputs_path = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(inputs, inputs_path)
    home = tmp_path / "hf_home_downloader"
    result = subprocess.run(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, repo_id, str(inputs_path), str(outputs_path)],
        env=client_env(hub, home), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (home / "hub").is_dir()  # it did download, into its own cache
    outputs = torch.load(outputs_path)
    for key in ("model_module", "extractor_module"):  # loaded from the repo's remote code
        assert outputs[key].startswith("transformers_modules.user."), outputs[key]
    return outputs


def assert_remote_code_matches_package(files: dict[str, bytes]) -> None:
    for name in REMOTE_CODE_FILES:
        assert files[name] == (PACKAGE_DIR / name).read_bytes(), f"{name} differs from distill_hf/{name}"


@pytest.fixture
def model_folder(converted_dir, tmp_path) -> Path:
    """A copy of the converted fixture model with the extras a trained model folder has, plus junk to leave out."""
    folder = tmp_path / "distill-v2"
    shutil.copytree(converted_dir, folder)
    if not (folder / "distill_metadata.json").exists():
        (folder / "distill_metadata.json").write_text(json.dumps({"format": "distill", "version": 2}))
    (folder / "codebook_usage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    if not (folder / "prior").exists():
        (folder / "prior").mkdir()
        (folder / "prior" / "config.json").write_text('{"kind": "prior"}')
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "modeling_distill.cpython-311.pyc").write_bytes(b"junk")
    if importlib.util.find_spec("distill_hf.model_card") is None:  # model cards not written yet: bring one
        (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# Distill\n")
    return folder


def folder_contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in folder_files(folder)}


def test_push_to_hub_then_from_pretrained_with_remote_code(hub, tiny_config, tmp_path):
    torch.manual_seed(0)
    model = DistillVQVAEModel(tiny_config).eval()
    extractor = DistillFeatureExtractor.from_model_config(tiny_config)
    waveform = synthetic_audio(2, 4000, tiny_config.sampling_rate)
    features = extractor(waveform, sampling_rate=tiny_config.sampling_rate, return_tensors="pt").input_features
    with torch.no_grad():
        model(features)  # k-means initialises the codebooks
        expected = model(features)
    assert all(codebook.initted for codebook in model.quantizer.layers)

    model_commit = model.push_to_hub("user/tiny", token=TOKEN)
    extractor_commit = extractor.push_to_hub("user/tiny", token=TOKEN)

    commits = hub.commits("user/tiny")
    assert [c.oid for c in commits] == [model_commit.oid, extractor_commit.oid]
    assert hub.tokens_seen == {TOKEN}
    files = hub.files("user/tiny")
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= set(files)
    assert_remote_code_matches_package(files)

    outputs = download_and_run(hub, "user/tiny", {"waveform": waveform, "input_features": features}, tmp_path)
    assert torch.equal(outputs["input_features"], features)
    assert torch.equal(outputs["reconstruction"], expected.reconstruction)
    assert torch.equal(outputs["audio_codes"], expected.audio_codes)
    assert hub.unknown_requests == []


def test_push_model_folder_one_commit_and_exact_roundtrip(hub, model_folder, converted_dir, expected_eval, tmp_path):
    url = push_model_folder(model_folder, "user/distill-v2", token=TOKEN)

    (commit,) = hub.commits("user/distill-v2")
    assert url == f"{hub.url}/user/distill-v2/commit/{commit.oid}"
    assert commit.message == "Upload Distill model"
    local = folder_contents(model_folder)  # README.md included: written by the model card branch if missing
    assert commit.files == local  # every file, byte-identical, nothing else
    assert {"README.md", "distill_metadata.json", "codebook_usage.png", "prior/config.json"} <= set(local)
    assert not any(name.startswith(".") or "__pycache__" in name for name in commit.files)
    assert_remote_code_matches_package(commit.files)

    # Pushing the unchanged folder again sends nothing and makes no commit.
    assert push_model_folder(model_folder, "user/distill-v2", token=TOKEN) == url
    assert len(hub.commits("user/distill-v2")) == 1

    features = expected_eval["input_features"]
    model = DistillVQVAEModel.from_pretrained(converted_dir).eval()
    with torch.inference_mode():
        expected = model(features)
    outputs = download_and_run(hub, "user/distill-v2", {"input_features": features}, tmp_path)
    assert torch.equal(outputs["reconstruction"], expected.reconstruction)
    assert torch.equal(outputs["audio_codes"], expected.audio_codes)
    assert hub.unknown_requests == []


def test_push_model_folder_token_from_env_private_and_branch(hub, model_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    push_model_folder(model_folder, "user/private", private=True, revision="dev", commit_message="to dev")
    repo = hub.repos["user/private"]
    assert repo.private and repo.branches["main"] is None  # main untouched, the commit is on the new branch
    assert [c.message for c in hub.commits("user/private")] == ["to dev"]
    assert hub.files("user/private", "dev") == folder_contents(model_folder)


def test_push_model_folder_writes_a_model_card_only_when_asked(hub, model_folder):
    # Guards the model card branch, which needs distill_hf/model_card.py (written by another change).
    pytest.importorskip("distill_hf.model_card")
    (model_folder / "README.md").unlink(missing_ok=True)
    push_model_folder(model_folder, "user/no-card", token=TOKEN, create_model_card=False)
    assert "README.md" not in hub.files("user/no-card") and not (model_folder / "README.md").exists()

    push_model_folder(model_folder, "user/card", token=TOKEN)
    card = hub.files("user/card")["README.md"]
    assert card == (model_folder / "README.md").read_bytes() and card.startswith(b"---\n")


@pytest.mark.parametrize(
    "break_folder, message",
    [
        (lambda f: shutil.rmtree(f), "does not exist"),
        (lambda f: (f / "config.json").unlink(), "missing config.json"),
        (lambda f: (f / "model.safetensors").unlink(), "missing model.safetensors"),
        (lambda f: (f / "preprocessor_config.json").unlink(), "missing preprocessor_config.json"),
        (lambda f: (f / "quantization_distill.py").unlink(), "missing quantization_distill.py"),
        (lambda f: _drop_auto_map(f / "config.json"), "config.json has no auto_map entry for AutoConfig, AutoModel"),
        (lambda f: _drop_auto_map(f / "preprocessor_config.json"), "no auto_map entry for AutoFeatureExtractor"),
    ],
    ids=["no-folder", "config", "weights", "preprocessor", "remote-code", "config-auto-map", "preprocessor-auto-map"],
)
def test_push_model_folder_refuses_incomplete_folders(model_folder, break_folder, message):
    break_folder(model_folder)
    with pytest.raises(ValueError, match=message):  # before any network call: this process is offline here
        push_model_folder(model_folder, "user/broken", token=TOKEN)


def _drop_auto_map(path: Path) -> None:
    data = json.loads(path.read_text())
    del data["auto_map"]
    path.write_text(json.dumps(data))


def test_push_command(hub, model_folder, tmp_path):
    env = client_env(hub, tmp_path / "hf_home_cli", token=TOKEN)
    cli = [sys.executable, "-m", "distill_hf.cli", "push"]
    # A failing run as a real process, alongside the successful one: exit 1, one line on stderr.
    failing = subprocess.Popen([*cli, str(tmp_path / "nowhere"), "user/cli"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    result = subprocess.run(
        [*cli, str(model_folder), "user/cli", "--private", "--revision", "dev", "--commit-message", "from the CLI",
         "--no-model-card"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    failing_out, failing_err = failing.communicate(timeout=120)
    assert failing.returncode == 1 and failing_out == ""
    assert failing_err == f"error: model folder {tmp_path / 'nowhere'} does not exist\n"

    assert result.returncode == 0, result.stderr[-3000:]
    (commit,) = hub.commits("user/cli")
    assert result.stdout.strip() == f"pushed {model_folder} -> {hub.url}/user/cli/commit/{commit.oid}"
    assert commit.message == "from the CLI" and hub.repos["user/cli"].private
    assert hub.files("user/cli", "dev") == folder_contents(model_folder)
    assert hub.tokens_seen == {TOKEN}  # from HF_TOKEN


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_push_command_errors(hub, model_folder, tmp_path, capsys, monkeypatch):
    assert main(["push", str(tmp_path / "nowhere"), "user/cli"]) == 1
    assert "does not exist" in one_line_error(capsys)
    incomplete = shutil.copytree(model_folder, tmp_path / "incomplete")
    (incomplete / "model.safetensors").unlink()
    assert main(["push", str(incomplete), "user/cli"]) == 1
    assert "missing model.safetensors" in one_line_error(capsys)
    assert hub.requests == []  # folder problems are reported before any network call

    with monkeypatch.context() as offline:
        offline.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        assert main(["push", str(model_folder), "user/cli"]) == 1
        assert "offline mode is set" in one_line_error(capsys)
    assert hub.requests == []

    assert main(["push", str(model_folder), "user/cli", "--token", "wrong-token"]) == 1
    error = one_line_error(capsys)
    assert "401" in error and "Invalid credentials" in error and "cannot reach" not in error
    assert hub.repos == {}

    with socket.socket() as free:  # a port nothing listens on
        free.bind(("127.0.0.1", 0))
        closed_port = free.getsockname()[1]
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert main(["push", str(model_folder), "user/cli", "--token", TOKEN]) == 1
    assert f"cannot reach the Hub at http://127.0.0.1:{closed_port}" in one_line_error(capsys)


def test_push_command_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["push", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("folder", "repo_id", "--token", "--private", "--revision", "--commit-message",
                   "--no-model-card", "HF_ENDPOINT", "HF_TOKEN"):
        assert option in text, option
