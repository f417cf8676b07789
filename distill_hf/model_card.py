"""Model cards (`README.md`) for Distill RVQ-VAE folders.

The card is rendered through `huggingface_hub.ModelCard.from_template` from the Jinja template
`model_cards/distill_vqvae_card.md.j2` at the repository root (one source of truth; the package is installed
editable). Its YAML metadata names the library, license, tags, pipeline tag and (when known) the dataset; its
body describes the model, the feature settings, the training data and losses, the codebook health per quantizer
level, a runnable usage snippet and the limitations. Everything that was not recorded says so instead of
failing.

* `build_model_card(config, metadata=..., codebook_health=..., ...)` returns the `ModelCard`;
* `write_model_card(folder, training_summary=None)` renders it for a `save_pretrained` folder (reading
  `config.json` and, when present, `distill_metadata.json` and `loss_curve.png`) and writes `README.md`
  atomically;
* `to_jsonable` and `save_loss_curve` are the helpers the converter uses for `distill_metadata.json` and
  `loss_curve.png`.
"""

from __future__ import annotations

import json
import math
import os
from numbers import Integral, Real
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from .configuration_distill import DistillVQVAEConfig
from .file_utils import write_text_atomic
from .plotting import plot_loss_curves

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "model_cards" / "distill_vqvae_card.md.j2"
METADATA_FILENAME = "distill_metadata.json"
LOSS_CURVE_FILENAME = "loss_curve.png"
CARD_FILENAME = "README.md"

PIPELINE_TAG = "audio-to-audio"
BASE_TAGS = ("audio", "vq-vae", "rvq", "mel-spectrogram", "distill")
DEFAULT_MODEL_ID = "path/to/model"

# `training_summary` keys accepted by `write_model_card` -> `build_model_card` keyword (original names too).
_SUMMARY_KEYS = {
    "metadata": "metadata",
    "codebook_health": "codebook_health",
    "codebook_health_snapshot": "codebook_health",
    "loss_history": "loss_history",
    "loss_curve_history": "loss_history",
    "training_config": "training_config",
    "prior": "prior",
}


# ------------------------------------------------------------------------------------------------ helpers
def to_jsonable(value):
    """
    `value` as plain JSON data: tensors and numpy values become numbers or (nested) lists, tuples and sets become
    lists, dict keys become strings, non-finite floats become `None` (JSON has no NaN), and anything else
    unknown becomes its `str`. Finite numbers keep their exact value.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy arrays and numpy scalars
    if callable(tolist) and hasattr(value, "shape"):
        return to_jsonable(tolist())
    if hasattr(value, "item") and callable(value.item):
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _finite_floats(values) -> list[float]:
    if not isinstance(values, (list, tuple)):
        return []
    return [float(v) for v in values if isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)]


def save_loss_curve(loss_history: dict | None, path: str | os.PathLike) -> Path | None:
    """
    Plot train and validation loss per epoch from `loss_history` (`train_losses`, `val_losses`) into a PNG at
    `path`. Returns the path, or `None` when matplotlib is not installed or there is nothing to plot. Uses
    matplotlib's object-oriented API with the Agg canvas, so no global backend is changed.
    """
    loss_history = to_jsonable(loss_history)
    if not isinstance(loss_history, dict):
        return None
    series = {
        label: loss_history[key]
        for key, label in (("train_losses", "train"), ("val_losses", "validation"))
        if isinstance(loss_history.get(key), list) and _finite_floats(loss_history[key])
    }
    if not series:
        return None
    try:
        return plot_loss_curves(series, path, title="Distill RVQ-VAE training loss")
    except ImportError:  # matplotlib is optional
        return None


def _number(value, digits: int = 4) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return f"{float(value):.{digits}g}" if math.isfinite(value) else str(value)
    return _cell(value)


def _cell(value) -> str:
    """A value as one Markdown table cell."""
    if isinstance(value, (bool, Integral, Real)) and value is not None and not isinstance(value, str):
        return _number(value)
    if value is None:
        return "none"
    text = value if isinstance(value, str) else json.dumps(value)
    return " ".join(text.split()).replace("|", "\\|")


def _duration(seconds) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s ({seconds:.0f} s)"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min ({seconds:.0f} s)"


def _known(mapping: dict, key: str):
    value = mapping.get(key)
    return None if value is None or value == "" else value


def _tags(metadata: dict) -> list[str]:
    tags = list(BASE_TAGS)
    extra = metadata.get("tags")
    if isinstance(extra, str):
        extra = [extra]
    for tag in extra if isinstance(extra, list) else []:
        tag = str(tag).strip() if tag is not None else ""
        if tag and tag not in tags:
            tags.append(tag)
    return tags


# -------------------------------------------------------------------------------------------- sections
def _architecture(config: DistillVQVAEConfig) -> dict:
    factor = config.downsampling_factor
    one_second_frames = config.sampling_rate // config.hop_length + 1
    grid_height, one_second_width = config.code_grid_shape(one_second_frames)
    positions_per_second = config.frames_per_second / factor
    codes_per_second = config.num_quantizers * grid_height * positions_per_second
    bits_per_code = math.log2(config.codebook_size)
    f_max = config.f_max if config.f_max is not None else config.sampling_rate / 2
    return {
        "num_blocks": len(config.encoder_channels),
        "encoder_channels": "→".join(str(c) for c in [1, *config.encoder_channels]),
        "codebook_dim": config.codebook_dim,
        "codebook_size": config.codebook_size,
        "num_quantizers": config.num_quantizers,
        "decay": f"{config.decay:g}",
        "kmeans_init": config.kmeans_init,
        "threshold_ema_dead_code": config.threshold_ema_dead_code,
        "downsampling_factor": factor,
        "grid_height": grid_height,
        "positions_per_second": f"{positions_per_second:.2f}",
        "codes_per_second": f"{codes_per_second:.1f}",
        "bits_per_code": f"{bits_per_code:.3g}",
        "bits_per_second": f"{codes_per_second * bits_per_code:.0f}",
        "one_second_samples": config.sampling_rate,
        "one_second_frames": one_second_frames,
        "one_second_width": one_second_width,
        "sampling_rate": config.sampling_rate,
        "sampling_rate_khz": f"{config.sampling_rate / 1000:g}",
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "frames_per_second": f"{config.frames_per_second:g}",
        "n_mels": config.n_mels,
        "f_min": f"{config.f_min:g}",
        "f_max": f"{f_max:g} Hz" + (" (Nyquist)" if config.f_max is None else ""),
        "power": f"{config.power:g}",
    }


def _training_data(metadata: dict) -> list[tuple[str, str]]:
    rows = []
    fields = (
        ("dataset_name", "dataset", _cell),
        ("dataset_file_count", "audio files", _number),
        ("dataset_total_duration_s", "total duration", _duration),
        ("training_date", "training date", _cell),
        ("save_date", "saved", _cell),
        ("training_epochs", "epochs trained", _number),
        ("model_id", "original model id", lambda v: f"`{_cell(v)}`"),
    )
    for key, label, formatter in fields:
        value = _known(metadata, key)
        if value is not None:
            try:
                rows.append((label, formatter(value)))
            except (TypeError, ValueError):
                rows.append((label, _cell(value)))
    return rows


def _final_losses(metadata: dict, loss_history: dict | None) -> list[str]:
    lines = []
    parts = []
    for key, label in (("final_train_loss", "train"), ("final_val_loss", "validation")):
        value = _known(metadata, key)
        if isinstance(value, Real) and not isinstance(value, bool):
            parts.append(f"{label} loss {_number(value)}")
    if parts:
        epochs = _known(metadata, "training_epochs")
        after = f" after {_number(epochs)} epochs" if isinstance(epochs, Integral) else ""
        lines.append(f"Final {', '.join(parts)}{after} (recorded in the training metadata).")
    if isinstance(loss_history, dict):
        recorded = []
        for key, label in (
            ("train_losses", "train"),
            ("val_losses", "validation"),
            ("recon_losses", "reconstruction"),
            ("commit_losses", "commitment"),
        ):
            values = loss_history.get(key)
            if isinstance(values, list) and values and isinstance(values[-1], Real):
                recorded.append((key, label, values))
        if recorded:
            count = max(len(values) for _, _, values in recorded)
            last = ", ".join(f"{label} {_number(values[-1])}" for _, label, values in recorded)
            line = f"Loss history: {count} epochs recorded; last epoch {last}"
            val = loss_history.get("val_losses")
            finite = [(v, i) for i, v in enumerate(val or []) if isinstance(v, Real) and math.isfinite(v)]
            if finite:
                best, index = min(finite)
                line += f"; best validation loss {_number(best)} at epoch {index + 1}"
            lines.append(line + ".")
    return lines


def _codebook_rows(codebook_health: dict | None, codebook_size: int) -> list[dict]:
    if not isinstance(codebook_health, dict):
        return []

    def order(key: str):
        suffix = key.rsplit("_", 1)[-1]
        return (0, int(suffix), key) if suffix.isdigit() else (1, 0, key)

    rows = []
    for key in sorted(codebook_health, key=order):
        stats = codebook_health[key]
        if not isinstance(stats, dict):
            continue
        utilization, perplexity, dead = (stats.get(k) for k in ("utilization", "perplexity", "dead_codes"))
        is_number = lambda v: isinstance(v, Real) and not isinstance(v, bool)  # noqa: E731
        used = f" ({round(utilization * codebook_size)} of {codebook_size})" if is_number(utilization) else ""
        rows.append(
            {
                "level": key.rsplit("_", 1)[-1] if order(key)[0] == 0 else _cell(key),
                "utilization": f"{utilization * 100:.1f}%{used}" if is_number(utilization) else "not recorded",
                "perplexity": f"{perplexity:.2f}" if is_number(perplexity) else "not recorded",
                "dead_codes": _number(dead) if is_number(dead) else "not recorded",
            }
        )
    return rows


def _prior_window(prior_config: dict, config: DistillVQVAEConfig) -> dict | None:
    """`seq_len`, levels, bands, time positions and seconds of one prior window, when the prior config says."""
    seq_len = prior_config.get("seq_len")
    levels = prior_config.get("num_quantizers") or config.num_quantizers
    height = math.ceil(config.n_mels / config.downsampling_factor)
    if not isinstance(seq_len, Integral) or isinstance(seq_len, bool) or seq_len % (levels * height):
        return None
    width = seq_len // (levels * height)
    seconds = width * config.downsampling_factor * config.hop_length / config.sampling_rate
    return {"seq_len": int(seq_len), "levels": int(levels), "height": height, "width": width, "seconds": seconds}


def _prior_parts(prior: dict | None, config: DistillVQVAEConfig) -> tuple[str | None, list[str], str | None]:
    """The prior section's text, its usage bullets and the limitation line (`None`/empty when not applicable)."""
    if not isinstance(prior, dict):
        return None, [], None
    if not prior.get("has_prior"):
        return "The original checkpoint bundles no prior.", [], None
    prior_config = prior.get("prior_config") if isinstance(prior.get("prior_config"), dict) else {}
    prior_metadata = prior.get("prior_metadata") if isinstance(prior.get("prior_metadata"), dict) else {}
    settings = [
        f"{label} {_number(prior_config[key])}"
        for key, label in (
            ("hidden_size", "hidden size"),
            ("num_layers", "layers"),
            ("num_heads", "attention heads"),
            ("seq_len", "sequence length"),
        )
        if prior_config.get(key) is not None
    ]
    history = [
        f"{label} {_number(prior_metadata[key])}"
        for key, label in (
            ("epochs_trained", "epochs trained"),
            ("final_perplexity", "final perplexity"),
            ("best_perplexity", "best perplexity"),
        )
        if prior_metadata.get(key) is not None
    ]
    details = "; ".join(part for part in (", ".join(settings), ", ".join(history)) if part)
    details = f" ({details})" if details else ""
    trained_with = prior_metadata.get("trained_with")
    if trained_with:
        text = (
            f"An autoregressive transformer prior over the codes{details} was trained for this model with "
            f"`{_cell(trained_with)}`. It is stored in `prior/`"
        )
    else:
        text = (
            f"The original checkpoint also bundles an autoregressive transformer prior over the codes{details}. "
            "It is converted into `prior/`"
        )
    text += (
        " as a stock GPT-2 language model (`GPT2LMHeadModel`: pre-norm blocks, ReLU feed-forward, untied head, the "
        "level embedding folded into the position table), so it loads and samples with plain Transformers."
    )
    window = _prior_window(prior_config, config)
    if window is not None:
        text += (
            f" One window is {window['seq_len']} codes, {window['levels']} levels x {window['height']} bands x "
            f"{window['width']} time positions (about {window['seconds']:.2f} s of audio), read band by band, time "
            "position by time position, with the levels of each position in turn; the first code is drawn uniformly."
        )
    text += f" Its configuration and training metadata are also recorded in `{METADATA_FILENAME}`."
    reshape = (
        f"`tokens.reshape(-1, {window['height']}, {window['width']}, {window['levels']}).permute(0, 3, 1, 2)`"
        if window is not None
        else "`distill_hf.sequence_to_codes(tokens, num_quantizers, height, width)`"
    )
    usage = [
        '`prior = AutoModelForCausalLM.from_pretrained(model_id, subfolder="prior")` loads it; '
        f"`tokens = prior.generate(torch.randint({config.codebook_size}, (1, 1)))` samples one window from a uniformly "
        "drawn first code with the original's defaults from `generation_config.json` (sampling, temperature 1.0, "
        f"top-k off, top-p 0.9), and {reshape} turns the tokens into codes `[batch, levels, bands, positions]` for "
        "`model.decode`.",
        "With the `distill-hf` package, `distill_hf.generate_audio(model, prior, feature_extractor, duration_s=5.0, "
        "seed=0)` or `distill-hf generate --model MODEL_DIR --output-dir OUT` make audio of any length (several "
        "windows joined with crossfades), optionally continuing a prompt (`--prompt clip.wav`); "
        "`distill-hf train-prior --model MODEL_DIR --audio-dir AUDIO_DIR` trains a new prior.",
    ]
    span = f" ({window['width']} time positions, about {window['seconds']:.2f} s)" if window is not None else ""
    limitation = (
        f"The prior models one window{span} at a time: longer generated audio is several windows, each continuing "
        "the end of the previous one, joined with crossfades, so it has no structure longer than a window; like the "
        "VQ-VAE, it only knows this collection."
    )
    return text, usage, limitation


def _dataset_limitation(metadata: dict) -> str:
    facts = []
    keys = ("dataset_file_count", "dataset_total_duration_s", "dataset_name")
    count, duration, name = (_known(metadata, key) for key in keys)
    if isinstance(count, Integral):
        facts.append(f"{int(count)} files")
    if isinstance(duration, Real) and not isinstance(duration, bool):
        facts.append(f"{_duration(duration)} of audio")
    if name is not None:
        facts.append(f"“{_cell(name)}”")
    if facts:
        return f"Trained on a small personal dataset ({', '.join(facts)})."
    return (
        "Trained on a small personal dataset (Distill is made for collections of 5 to 500 files); this model's "
        "training data is not recorded."
    )


# ------------------------------------------------------------------------------------------------- API
def _template_path() -> Path:
    if not TEMPLATE_PATH.is_file():
        raise FileNotFoundError(
            f"Model card template not found at {TEMPLATE_PATH}. It lives in the repository's `model_cards/` folder; "
            "install distill-hf from a source checkout (`pip install -e .`)."
        )
    return TEMPLATE_PATH


def build_model_card(
    config: DistillVQVAEConfig,
    *,
    metadata: dict | None = None,
    codebook_health: dict | None = None,
    loss_history: dict | None = None,
    training_config: dict | None = None,
    prior: dict | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    loss_curve_image: str | None = None,
    source: dict | None = None,
) -> ModelCard:
    """
    Render the model card of a Distill RVQ-VAE.

    Args:
        config (`DistillVQVAEConfig`): the model's configuration (architecture, code grid, feature settings).
        metadata (`dict`, *optional*): the original's `metadata` keys (`name`, `description`, `dataset_name`,
            `dataset_file_count`, `dataset_total_duration_s`, `training_date`, `save_date`, `training_epochs`,
            `final_train_loss`, `final_val_loss`, `tags`, ...). Missing keys are left out.
        codebook_health (`dict`, *optional*): `{"level_0": {"utilization", "perplexity", "dead_codes"}, ...}`, the
            layout of `DistillVQVAEModel.codebook_usage` and of the original's `codebook_health_snapshot`.
        loss_history (`dict`, *optional*): lists per epoch (`train_losses`, `val_losses`, `recon_losses`,
            `commit_losses`).
        training_config (`dict`, *optional*): the training configuration as recorded (shown field by field).
        prior (`dict`, *optional*): `{"has_prior": bool, "prior_config": dict, "prior_metadata": dict}` of the
            original checkpoint (or of a prior trained with `distill-hf train-prior`, whose `prior_metadata` has
            `trained_with`); with `has_prior` the card describes the GPT-2 prior in `prior/` and how to load it and
            generate with it. `None` leaves the prior out of the card.
        repo_id (`str`, *optional*): Hub repository id or local folder used by the usage snippet's
            `from_pretrained` (default: the placeholder `"path/to/model"`).
        license (`str`, *optional*, defaults to `"apache-2.0"`): a Hub license identifier.
        loss_curve_image (`str`, *optional*): relative path of a loss-curve image beside the card to show.
        source (`dict`, *optional*): `{"file", "format", "version"}` of the converted original checkpoint.

    Sections whose input is `None` (or empty) say "not recorded". Tensors and numpy values are accepted anywhere.

    Returns:
        `huggingface_hub.ModelCard`: save it with `card.save(path)` or print `str(card)`.
    """
    metadata = to_jsonable(metadata) if isinstance(metadata, dict) else {}
    codebook_health = to_jsonable(codebook_health) if isinstance(codebook_health, dict) else None
    loss_history = to_jsonable(loss_history) if isinstance(loss_history, dict) else None
    training_config = to_jsonable(training_config) if isinstance(training_config, dict) else None
    prior = to_jsonable(prior) if isinstance(prior, dict) else None
    source = to_jsonable(source) if isinstance(source, dict) else {}

    prior_text, prior_usage, prior_limitation = _prior_parts(prior, config)
    dataset_name = _known(metadata, "dataset_name")
    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        tags=_tags(metadata),
        pipeline_tag=PIPELINE_TAG,
        datasets=[str(dataset_name)] if dataset_name is not None else None,
    )
    name = _known(metadata, "name")
    description = _known(metadata, "description")
    values = {
        **_architecture(config),
        "title": _cell(name) if name is not None else "Distill RVQ-VAE",
        "description": " ".join(str(description).split()) if description is not None else "",
        "source_file": source.get("file"),
        "source_format": source.get("format"),
        "source_version": source.get("version"),
        "training_data": _training_data(metadata),
        "training_settings": [(f"`{key}`", _cell(value)) for key, value in (training_config or {}).items()],
        "final_losses": _final_losses(metadata, loss_history),
        "loss_curve_image": loss_curve_image,
        "codebook_health": _codebook_rows(codebook_health, config.codebook_size),
        "prior_text": prior_text,
        "prior_usage": prior_usage,
        "prior_limitation": prior_limitation,
        "has_prior": bool(prior and prior.get("has_prior")),
        "model_id_literal": json.dumps(repo_id if repo_id is not None else DEFAULT_MODEL_ID),
        "dataset_limitation": _dataset_limitation(metadata),
    }
    return ModelCard.from_template(card_data, template_path=str(_template_path()), **values)


def _read_metadata_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def card_inputs_from_metadata_file(data: dict) -> dict:
    """The `build_model_card` keyword arguments stored in a `distill_metadata.json` dict."""
    inputs = {
        "metadata": data.get("metadata"),
        "codebook_health": data.get("codebook_health_snapshot"),
        "loss_history": data.get("loss_curve_history"),
        "training_config": data.get("training_config"),
        "source": data.get("source"),
    }
    if any(key in data for key in ("has_prior", "prior_config", "prior_metadata")):
        inputs["prior"] = {key: data.get(key) for key in ("has_prior", "prior_config", "prior_metadata")}
    return inputs


def write_model_card(
    folder: str | os.PathLike,
    training_summary: dict | None = None,
    repo_id: str | None = None,
    *,
    license: str = "apache-2.0",
) -> Path:
    """
    Write `README.md` (the model card) into a `save_pretrained` folder and return its path.

    Reads `config.json` (through `DistillVQVAEConfig.from_pretrained`) and, when present, `distill_metadata.json`
    (written by the converter); a `loss_curve.png` beside them is shown in the card. `training_summary` overrides
    those per key: `metadata`, `codebook_health` (or `codebook_health_snapshot`), `loss_history` (or
    `loss_curve_history`), `training_config` and `prior`, with `build_model_card`'s meaning; unknown keys raise
    `ValueError`. The card is written to a temporary file in `folder` and renamed over `README.md`, so a reader
    never sees a half-written card.
    """
    folder = Path(folder)
    config = DistillVQVAEConfig.from_pretrained(folder)
    metadata_path = folder / METADATA_FILENAME
    inputs = card_inputs_from_metadata_file(_read_metadata_file(metadata_path)) if metadata_path.is_file() else {}
    if training_summary is not None:
        if not isinstance(training_summary, dict):
            raise ValueError(f"`training_summary` must be a dict, got {type(training_summary).__name__}.")
        unknown = sorted(set(training_summary) - set(_SUMMARY_KEYS))
        if unknown:
            raise ValueError(f"unknown `training_summary` keys {unknown}; expected some of {sorted(_SUMMARY_KEYS)}.")
        for key, value in training_summary.items():
            inputs[_SUMMARY_KEYS[key]] = value
    if (folder / LOSS_CURVE_FILENAME).is_file():
        inputs["loss_curve_image"] = LOSS_CURVE_FILENAME
    card = build_model_card(config, repo_id=repo_id, license=license, **inputs)

    path = write_text_atomic(folder / CARD_FILENAME, str(card))
    return path


__all__ = [
    "BASE_TAGS",
    "METADATA_FILENAME",
    "LOSS_CURVE_FILENAME",
    "PIPELINE_TAG",
    "TEMPLATE_PATH",
    "build_model_card",
    "card_inputs_from_metadata_file",
    "save_loss_curve",
    "to_jsonable",
    "write_model_card",
]
