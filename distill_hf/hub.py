"""Publish a Distill model folder to the Hugging Face Hub in one commit.

    from distill_hf.hub import push_model_folder

    url = push_model_folder("outputs/distill-v2-hf", "me/my-distill-model")   # token from HF_TOKEN / `hf auth login`

The endpoint and token follow `huggingface_hub`'s usual settings (`HF_ENDPOINT`, `HF_TOKEN`, the stored login);
`token=` overrides the token.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["REMOTE_CODE_FILES", "folder_files", "push_model_folder", "validate_model_folder"]

# The modules `save_pretrained` copies beside the weights (remote code for `trust_remote_code=True`): the three
# `auto_map` targets and the quantization helper that modeling imports relatively.
REMOTE_CODE_FILES = (
    "configuration_distill.py",
    "modeling_distill.py",
    "quantization_distill.py",
    "feature_extraction_distill.py",
)
_AUTO_MAP = {  # file -> auto classes its auto_map must name
    "config.json": ("AutoConfig", "AutoModel"),
    "preprocessor_config.json": ("AutoFeatureExtractor",),
}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _weight_files(folder: Path) -> list[str]:
    if (folder / "model.safetensors").is_file():
        return ["model.safetensors"]
    index = folder / "model.safetensors.index.json"
    if index.is_file():  # sharded: every shard the index names must be there
        return ["model.safetensors.index.json", *sorted(set(_read_json(index).get("weight_map", {}).values()))]
    return ["model.safetensors"]


def validate_model_folder(folder: str | os.PathLike) -> Path:
    """
    Check that `folder` is a complete, loadable-as-remote-code Distill model folder and return it as a `Path`.

    Raises `ValueError` naming what is missing: the folder itself, `config.json`, the weights (`model.safetensors`
    or a complete sharded index), `preprocessor_config.json`, a remote-code module, or an `auto_map` entry.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"model folder {folder} does not exist")
    required = ["config.json", *_weight_files(folder), "preprocessor_config.json", *REMOTE_CODE_FILES]
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{folder} is not a complete Distill model folder: missing {', '.join(missing)} "
            "(write it with save_pretrained of the model and the feature extractor, or `distill-hf convert`)"
        )
    for name, classes in _AUTO_MAP.items():
        auto_map = _read_json(folder / name).get("auto_map") or {}
        absent = [cls for cls in classes if cls not in auto_map]
        if absent:
            raise ValueError(
                f"{folder / name} has no auto_map entry for {', '.join(absent)} "
                "(import distill_hf before save_pretrained so the folder carries remote code)"
            )
        for cls in classes:
            module = str(auto_map[cls]).split("--")[-1].rsplit(".", 1)[0]  # "repo--module.Class" or "module.Class"
            if not (folder / f"{module}.py").is_file():
                raise ValueError(f"{folder / name}: auto_map {cls} names {module}.py, which is missing")
    return folder


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Every file under `folder` that belongs in the repo, as sorted POSIX paths relative to it: hidden files and
    folders (`.cache`, `.DS_Store`, ...) and Python bytecode are left out."""
    folder = Path(folder)
    files = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            files.append(relative.as_posix())
    return sorted(files)


def push_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload Distill model",
    create_model_card: bool = True,
) -> str:
    """
    Upload a complete model folder to the Hub repo `repo_id` in one commit and return the commit URL.

    Everything in the folder goes (weights, `config.json`, `preprocessor_config.json`, the remote-code modules,
    `README.md`, `distill_metadata.json`, images, a `prior/` subfolder, ...), except hidden files and bytecode.
    The folder is validated first (`ValueError` naming what is missing). With `create_model_card` and no
    `README.md`, a model card is written into the folder before uploading. The repo is created if needed
    (`private` applies only then); `revision` names a branch, created from `main` if it does not exist.
    Files already on the Hub with the same content are not sent again.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = validate_model_folder(folder)
    if create_model_card and not (folder / "README.md").is_file():
        from .model_card import write_model_card

        write_model_card(folder, repo_id=repo_id)

    api = HfApi()
    repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id
    if revision is not None and revision != "main" and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in folder_files(folder)]
    # One `create_commit`, not `upload_folder`: with hf_xet installed, `upload_folder` may split into several commits.
    commit = api.create_commit(
        repo_id, operations=operations, commit_message=commit_message, token=token, revision=revision
    )
    return str(commit.commit_url)
