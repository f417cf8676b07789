"""The Distill autoregressive prior over RVQ codes, as a stock GPT-2 (`GPT2LMHeadModel`).

The original Distill prior is a small decoder-only transformer over the code grid: token, learned position and level
embeddings, pre-norm transformer blocks with a ReLU feed-forward of width `4h`, a final LayerNorm and an untied,
bias-free head. That is exactly a GPT-2 with `activation_function="relu"`, `n_inner=4h`, `layer_norm_epsilon=1e-5`
and `tie_word_embeddings=False`, once the level embedding is folded into the position table
(`wpe[t] = pos_emb[t] + level_emb[t % num_quantizers]`): position `t` always has level `t % num_quantizers`. So a
converted prior loads with plain Transformers (`AutoModelForCausalLM.from_pretrained(folder, subfolder="prior")`)
and samples with `generate()` (KV cache, temperature, top-k, top-p).

Token order (the original's): the code grid `[B, Q, H, W]` is read position by position, positions row-major over
(frequency band `H`, time position `W`), and the `Q` levels of a position consecutively:
`token[(h * W + w) * Q + q] = codes[q, h, w]` (`codes_to_sequence` / `sequence_to_codes`). One prior window is
`seq_len = Q * H * W` tokens, i.e. a fixed number `W` of time positions (6, about one second, for the default model).

* `codes_to_sequence`, `sequence_to_codes` — the flattening and its inverse;
* `convert_original_prior` (+ `convert_prior_state_dict`, `gpt2_prior_config`, `prior_generation_config`) — the
  original's `prior_state_dict`/`prior_config` as a `GPT2LMHeadModel`;
* `load_prior`, `save_prior` — the `prior/` subfolder of a model folder;
* `generate_audio` — sampling codes with `generate()` and decoding them to audio, in several chunks joined with
  overlap-add crossfades when the duration exceeds one window, optionally continuing a prompt.

Training a prior with `Trainer` lives in `distill_hf.prior_training`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList
from transformers.utils import ModelOutput

from .file_utils import atomic_folder, give_normal_permissions

PRIOR_SUBFOLDER = "prior"

# The original's sampling defaults (`generation_config.json` of a converted prior).
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_K = 0  # off
DEFAULT_TOP_P = 0.9


class MissingPriorError(ValueError):
    """A model folder without a `prior/` subfolder; the message says how to train one."""


# ------------------------------------------------------------------------------------------ codes <-> tokens
def codes_to_sequence(audio_codes: torch.Tensor) -> torch.LongTensor:
    """
    Flatten a code grid `[batch, num_quantizers, height, width]` into the prior's token sequence
    `[batch, height * width * num_quantizers]`, in the original's order: grid positions row-major over
    (height, width), the levels of each position consecutive (`token[(h * width + w) * Q + q] = codes[:, q, h, w]`).
    The inverse of `sequence_to_codes`.
    """
    if not torch.is_tensor(audio_codes) or audio_codes.dim() != 4:
        shape = tuple(audio_codes.shape) if torch.is_tensor(audio_codes) else type(audio_codes).__name__
        raise ValueError(f"`audio_codes` must be a tensor [batch, num_quantizers, height, width], got {shape}.")
    return audio_codes.permute(0, 2, 3, 1).reshape(audio_codes.shape[0], -1)


def sequence_to_codes(tokens: torch.Tensor, num_quantizers: int, height: int, width: int) -> torch.LongTensor:
    """
    The code grid `[batch, num_quantizers, height, width]` of prior token sequences `[batch, height * width *
    num_quantizers]` (the inverse of `codes_to_sequence`).
    """
    for name, value in (("num_quantizers", num_quantizers), ("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    length = num_quantizers * height * width
    if not torch.is_tensor(tokens) or tokens.dim() != 2 or tokens.shape[1] != length:
        shape = tuple(tokens.shape) if torch.is_tensor(tokens) else type(tokens).__name__
        raise ValueError(
            f"`tokens` must be a tensor [batch, {length}] ({num_quantizers} levels x {height} x {width}), got {shape}."
        )
    return tokens.reshape(tokens.shape[0], height, width, num_quantizers).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------------ conversion
def gpt2_prior_config(
    *,
    vocab_size: int,
    seq_len: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    dropout: float,
    num_quantizers: int,
    grid_height: int | None = None,
) -> GPT2Config:
    """
    The `GPT2Config` of a Distill prior: ReLU feed-forward of width `4 * hidden_size`, LayerNorm eps 1e-5, untied
    head, `n_positions = seq_len`, every dropout `dropout`, and no BOS/EOS/pad token (codes only). The code layout is
    recorded as extra fields `num_quantizers`, `code_grid_height` and `code_grid_width` (one window is
    `code_grid_width` time positions).
    """
    values = {"vocab_size": vocab_size, "seq_len": seq_len, "hidden_size": hidden_size, "num_layers": num_layers,
              "num_heads": num_heads, "num_quantizers": num_quantizers}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"prior `{name}` must be a positive integer, got {value!r}.")
    if hidden_size % num_heads:
        raise ValueError(f"prior `hidden_size` ({hidden_size}) must be divisible by `num_heads` ({num_heads}).")
    if seq_len % num_quantizers:
        raise ValueError(f"prior `seq_len` ({seq_len}) must be a multiple of `num_quantizers` ({num_quantizers}).")
    if isinstance(dropout, bool) or not isinstance(dropout, Real) or not 0 <= dropout < 1:
        raise ValueError(f"prior `dropout` must lie in [0, 1), got {dropout!r}.")
    layout = {"num_quantizers": int(num_quantizers)}
    if grid_height is not None:
        if seq_len % (num_quantizers * grid_height):
            raise ValueError(
                f"prior `seq_len` ({seq_len}) is not a whole number of grid columns of {num_quantizers} levels x "
                f"{grid_height} bands."
            )
        layout.update(code_grid_height=int(grid_height), code_grid_width=seq_len // (num_quantizers * grid_height))
    return GPT2Config(
        vocab_size=int(vocab_size),
        n_positions=int(seq_len),
        n_embd=int(hidden_size),
        n_layer=int(num_layers),
        n_head=int(num_heads),
        n_inner=4 * int(hidden_size),
        activation_function="relu",
        resid_pdrop=float(dropout),
        embd_pdrop=float(dropout),
        attn_pdrop=float(dropout),
        layer_norm_epsilon=1e-5,
        scale_attn_weights=True,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        **layout,
    )


def prior_generation_config(seq_len: int) -> GenerationConfig:
    """The original's sampling defaults: sampling on, temperature 1.0, top-k off, top-p 0.9, one window long."""
    return GenerationConfig(
        do_sample=True,
        temperature=DEFAULT_TEMPERATURE,
        top_k=DEFAULT_TOP_K,
        top_p=DEFAULT_TOP_P,
        max_length=int(seq_len),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


_LAYER_KEYS = (
    "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
)


def convert_prior_state_dict(prior_state_dict: dict, num_quantizers: int, num_layers: int) -> dict:
    """
    The original prior's tensors as `GPT2LMHeadModel` tensors.

    `token_emb` -> `wte`; `pos_emb + level_emb[t % num_quantizers]` -> `wpe`; per block `norm1`/`norm2` ->
    `ln_1`/`ln_2`, `self_attn.in_proj_*` (`[3h, h]`, rows q, k, v) -> `attn.c_attn` and `self_attn.out_proj` ->
    `attn.c_proj`, `linear1`/`linear2` -> `mlp.c_fc`/`mlp.c_proj` (GPT-2's `Conv1D` stores `[in, out]`, so weights
    are transposed); `ln_f` -> `ln_f`; `head` -> `lm_head`. The `causal_mask` buffer must be the plain causal mask
    (GPT-2's). Unknown or missing keys raise `ValueError`.
    """
    state = dict(prior_state_dict)
    expected = {"token_emb.weight", "pos_emb.weight", "level_emb.weight", "ln_f.weight", "ln_f.bias", "head.weight"}
    expected |= {f"transformer.layers.{i}.{key}" for i in range(num_layers) for key in _LAYER_KEYS}
    optional = {"causal_mask"}
    missing = sorted(expected - set(state))
    unknown = sorted(set(state) - expected - optional)
    if missing or unknown:
        raise ValueError(
            f"prior state dict does not match a {num_layers}-layer prior: missing {missing}, unexpected {unknown}"
        )
    positions = state["pos_emb.weight"]
    levels = state["level_emb.weight"]
    if levels.shape[0] != num_quantizers:
        raise ValueError(f"prior level_emb has {levels.shape[0]} levels, expected num_quantizers={num_quantizers}")
    mask = state.get("causal_mask")
    if mask is not None:
        length = positions.shape[0]
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)
        if tuple(mask.shape) != (length, length) or not torch.equal(mask.bool(), causal):
            raise ValueError("prior causal_mask is not the standard causal mask (True above the diagonal)")
    level_of_position = torch.arange(positions.shape[0]) % num_quantizers
    converted = {
        "transformer.wte.weight": state["token_emb.weight"],
        "transformer.wpe.weight": positions + levels[level_of_position],
        "transformer.ln_f.weight": state["ln_f.weight"],
        "transformer.ln_f.bias": state["ln_f.bias"],
        "lm_head.weight": state["head.weight"],
    }
    for i in range(num_layers):
        old, new = f"transformer.layers.{i}.", f"transformer.h.{i}."
        converted.update({
            new + "ln_1.weight": state[old + "norm1.weight"],
            new + "ln_1.bias": state[old + "norm1.bias"],
            new + "attn.c_attn.weight": state[old + "self_attn.in_proj_weight"].t(),
            new + "attn.c_attn.bias": state[old + "self_attn.in_proj_bias"],
            new + "attn.c_proj.weight": state[old + "self_attn.out_proj.weight"].t(),
            new + "attn.c_proj.bias": state[old + "self_attn.out_proj.bias"],
            new + "ln_2.weight": state[old + "norm2.weight"],
            new + "ln_2.bias": state[old + "norm2.bias"],
            new + "mlp.c_fc.weight": state[old + "linear1.weight"].t(),
            new + "mlp.c_fc.bias": state[old + "linear1.bias"],
            new + "mlp.c_proj.weight": state[old + "linear2.weight"].t(),
            new + "mlp.c_proj.bias": state[old + "linear2.bias"],
        })
    return {key: tensor.detach().clone().contiguous() for key, tensor in converted.items()}


def convert_original_prior(
    prior_state_dict: dict, prior_config: dict, codebook_size: int, grid_height: int | None = None
) -> GPT2LMHeadModel:
    """
    A `GPT2LMHeadModel` (eval mode, with the original's sampling defaults as its `generation_config`) from a
    `.distill` file's `prior_state_dict` and `prior_config` (`hidden_size`, `num_layers`, `num_heads`, `dropout`,
    `seq_len`, `num_quantizers`; training fields are ignored). `codebook_size` is the VQ-VAE's (the vocabulary);
    `grid_height` (frequency bands of the code grid) is recorded in the config. Mismatches raise `ValueError`.
    """
    if not isinstance(prior_config, dict):
        raise ValueError(f"prior_config must be a dict, got {type(prior_config).__name__}")
    if not isinstance(prior_state_dict, dict) or not prior_state_dict:
        raise ValueError("prior_state_dict is missing or empty")
    fields = ("hidden_size", "num_layers", "num_heads", "seq_len", "num_quantizers")
    absent = [key for key in fields if key not in prior_config]
    if absent:
        raise ValueError(f"prior_config lacks {absent}")
    config = gpt2_prior_config(
        vocab_size=codebook_size,
        seq_len=prior_config["seq_len"],
        hidden_size=prior_config["hidden_size"],
        num_layers=prior_config["num_layers"],
        num_heads=prior_config["num_heads"],
        dropout=prior_config.get("dropout", 0.0),
        num_quantizers=prior_config["num_quantizers"],
        grid_height=grid_height,
    )
    state_dict = convert_prior_state_dict(prior_state_dict, config.num_quantizers, config.n_layer)
    model = GPT2LMHeadModel(config)
    expected = model.state_dict()
    for key, tensor in state_dict.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"prior tensor {key} has shape {tuple(tensor.shape)}, the configured GPT-2 expects "
                f"{tuple(expected[key].shape)} (hidden size, layers, sequence length or codebook size disagree)"
            )
    model.load_state_dict(state_dict, strict=True)
    model.generation_config = prior_generation_config(config.n_positions)
    return model.eval()


# ------------------------------------------------------------------------------------------- folder I/O
def prior_folder(model_dir: str | os.PathLike) -> Path:
    return Path(model_dir) / PRIOR_SUBFOLDER


def has_prior(model_dir: str | os.PathLike) -> bool:
    """Whether the model folder holds a prior (`prior/config.json`)."""
    return (prior_folder(model_dir) / "config.json").is_file()


def _missing_prior_message(model_dir) -> str:
    return (
        f"the model {model_dir} has no prior (no {PRIOR_SUBFOLDER}/ subfolder), so it cannot generate audio; train "
        f"one with: distill-hf train-prior --model {model_dir} --audio-dir YOUR_AUDIO_DIR"
    )


def load_prior(model_dir: str | os.PathLike, **kwargs) -> GPT2LMHeadModel:
    """
    The prior of a model folder (or Hub repository): `AutoModelForCausalLM.from_pretrained(model_dir,
    subfolder="prior")`, in eval mode. Raises `MissingPriorError` (a `ValueError`) when there is none, telling the
    user to run `distill-hf train-prior`.
    """
    from transformers import AutoModelForCausalLM

    path = Path(model_dir)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"model folder not found (not a folder): {path}")
        if not has_prior(path):
            raise MissingPriorError(_missing_prior_message(model_dir))
        return AutoModelForCausalLM.from_pretrained(path, subfolder=PRIOR_SUBFOLDER, **kwargs).eval()
    try:  # a Hub repository id
        return AutoModelForCausalLM.from_pretrained(str(model_dir), subfolder=PRIOR_SUBFOLDER, **kwargs).eval()
    except OSError:
        raise MissingPriorError(_missing_prior_message(model_dir)) from None


def write_prior(prior: GPT2LMHeadModel, folder: str | os.PathLike) -> Path:
    """`save_pretrained` the prior into `folder` (created) with normal file permissions; returns the folder."""
    folder = Path(folder)
    prior.save_pretrained(folder)
    for path in (folder, *folder.iterdir()):
        give_normal_permissions(path)
    return folder


def save_prior(prior: GPT2LMHeadModel, model_dir: str | os.PathLike) -> Path:
    """
    Write `prior` as `prior/` of a model folder (`config.json`, `model.safetensors`, `generation_config.json`),
    replacing any prior there atomically: it is written beside the old one and renamed into place.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model folder not found: {model_dir}")
    target = prior_folder(model_dir)
    with atomic_folder(target) as staging:
        write_prior(prior, staging)
    return target


# -------------------------------------------------------------------------------------------- generation
@dataclass(frozen=True)
class PriorWindow:
    """The code grid one prior window covers: `num_quantizers` x `height` x `width` (tokens: the product)."""

    num_quantizers: int
    height: int
    width: int

    @property
    def length(self) -> int:
        return self.num_quantizers * self.height * self.width


def prior_window(model, prior) -> PriorWindow:
    """The window of `prior` over `model`'s code grid; `ValueError` when the two do not fit together."""
    config, prior_config = model.config, prior.config
    height = math.ceil(config.n_mels / config.downsampling_factor)
    levels = config.num_quantizers
    if prior_config.vocab_size != config.codebook_size:
        raise ValueError(
            f"the prior's vocabulary ({prior_config.vocab_size}) differs from the model's codebook_size "
            f"({config.codebook_size}): it was not trained on this model's codes"
        )
    for name, value in (("num_quantizers", levels), ("code_grid_height", height)):
        recorded = getattr(prior_config, name, None)
        if recorded is not None and recorded != value:
            raise ValueError(f"the prior was made for {name}={recorded}, the model has {value}")
    seq_len = prior_config.n_positions
    width = getattr(prior_config, "code_grid_width", None) or seq_len // (levels * height)
    if width < 1 or levels * height * width > seq_len:
        raise ValueError(
            f"the prior's {seq_len} positions do not hold one column of {levels} levels x {height} bands"
        )
    return PriorWindow(levels, height, int(width))


class ForcedTokensLogitsProcessor(LogitsProcessor):
    """
    Forces known tokens: at step `t` (the token at sequence index `t` is being chosen), rows where `mask[:, t]` is
    True get score 0 for `tokens[:, t]` and `-inf` for every other token, so greedy search and sampling (after any
    temperature, top-k or top-p) pick it. Used to keep prompt codes and the codes shared with the previous chunk.
    """

    def __init__(self, tokens: torch.LongTensor, mask: torch.BoolTensor):
        if tokens.shape != mask.shape or tokens.dim() != 2:
            raise ValueError("`tokens` and `mask` must both be [batch, length]")
        self.tokens = tokens.clamp_min(0)
        self.mask = mask

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1]
        if step >= self.mask.shape[1]:
            return scores
        forced = self.mask[:, step].to(scores.device)
        if not bool(forced.any()):
            return scores
        target = self.tokens[:, step].to(scores.device)
        keep = torch.nn.functional.one_hot(target, scores.shape[-1]).bool()
        forced_scores = torch.where(keep, torch.zeros_like(scores), torch.full_like(scores, -math.inf))
        return torch.where(forced[:, None], forced_scores, scores)


@dataclass
class DistillGenerationOutput(ModelOutput):
    """
    Output of [`generate_audio`].

    Args:
        waveforms (`torch.FloatTensor` of shape `(num_samples, samples)`): the audio at `sampling_rate`.
        audio_codes (`torch.LongTensor` of shape `(num_samples, num_quantizers, height, width)`): the codes the
            audio was decoded from (prompt codes first when a prompt was given); `width` covers the audio.
        prompt_positions (`int`): how many leading time positions of `audio_codes` come from the prompt.
        sampling_rate (`int`): of `waveforms`.
    """

    waveforms: torch.FloatTensor | None = None
    audio_codes: torch.LongTensor | None = None
    prompt_positions: int | None = None
    sampling_rate: int | None = None


def _check_sampling(num_samples, temperature, top_k, top_p, overlap_positions) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, Integral) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive integer, got {num_samples!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0 <= temperature < math.inf:
        raise ValueError(f"`temperature` must be a finite number >= 0 (0 = greedy), got {temperature!r}.")
    if isinstance(top_k, bool) or not isinstance(top_k, Integral) or top_k < 0:
        raise ValueError(f"`top_k` must be an integer >= 0 (0 = off), got {top_k!r}.")
    if isinstance(top_p, bool) or not isinstance(top_p, Real) or not 0 < top_p <= 1:
        raise ValueError(f"`top_p` must lie in (0, 1] (1 = off), got {top_p!r}.")
    if isinstance(overlap_positions, bool) or not isinstance(overlap_positions, Integral) or overlap_positions < 0:
        raise ValueError(f"`overlap_positions` must be an integer >= 0, got {overlap_positions!r}.")


def _check_threads(sampling_threads) -> None:
    if sampling_threads is not None and (
        isinstance(sampling_threads, bool) or not isinstance(sampling_threads, Integral) or sampling_threads < 1
    ):
        raise ValueError(f"`sampling_threads` must be a positive integer or None, got {sampling_threads!r}.")


def sample_window(
    prior: GPT2LMHeadModel,
    tokens: torch.LongTensor,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = DEFAULT_TOP_K,
    top_p: float = DEFAULT_TOP_P,
) -> torch.LongTensor:
    """
    Complete one window of tokens `[batch, length]` with `prior.generate()`; entries `>= 0` are known and kept,
    `-1` are sampled. The known prefix is the prompt of `generate()`; known tokens further on are forced with
    [`ForcedTokensLogitsProcessor`]. Without a known first token, the first token is drawn uniformly (as the
    original did). `temperature=0` is greedy decoding. Uses the global torch RNG.
    """
    batch, length = tokens.shape
    known = tokens >= 0
    unknown_columns = (~known).any(0).nonzero()
    if unknown_columns.numel() == 0:
        return tokens.clone()
    prefix = int(unknown_columns[0])
    if prefix == 0:  # rows without a known first token draw it uniformly
        drawn = torch.randint(prior.config.vocab_size, (batch, 1), device=tokens.device)
        input_ids = torch.where(known[:, :1], tokens[:, :1], drawn)
    else:
        input_ids = tokens[:, :prefix]
    new_tokens = length - input_ids.shape[1]
    if new_tokens == 0:
        return input_ids
    processors = LogitsProcessorList()
    if bool(known[:, input_ids.shape[1]:].any()):
        processors.append(ForcedTokensLogitsProcessor(tokens, known))
    sampling = temperature > 0
    warpers = {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p)} if sampling else {}
    config = GenerationConfig(
        do_sample=sampling,
        **warpers,
        max_length=length,
        min_length=length,
        num_beams=1,
        repetition_penalty=1.0,
        use_cache=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,  # never used: every row has the same length and no row stops early
    )
    output = prior.generate(
        input_ids=input_ids.to(prior.device),
        attention_mask=torch.ones_like(input_ids, device=prior.device),
        generation_config=config,
        logits_processor=processors,
    )
    return output.to(tokens.device)


def _segments(prompt_positions: int, total_positions: int, window: int, overlap: int) -> list[tuple[int, int, bool]]:
    """
    The chunks of the output grid: `(start, end, generate)` column ranges in order. With a prompt, the prompt
    columns come first (decoded, not generated), and the first generated chunk keeps up to `window // 2` prompt
    columns as context; after that each chunk of `window` columns overlaps the previous one by `overlap` columns
    (shared codes, crossfaded audio). With `overlap <= window // 2` only neighbouring chunks overlap.
    """
    segments = []
    end = 0
    if prompt_positions:
        segments.append((0, prompt_positions, False))
        end = prompt_positions
        start = prompt_positions - min(prompt_positions, window // 2)
    else:
        start = 0
    while end < total_positions:
        segments.append((start, start + window, True))
        end = start + window
        start = end - overlap
    return segments


def _fades(length: int, fade_in: int, fade_out: int, device) -> torch.Tensor:
    """Linear fade-in over the first `fade_in` and fade-out over the last `fade_out` samples (sum to 1 in overlaps)."""
    gain = torch.ones(length, device=device)
    if fade_in:
        gain[:fade_in] = (torch.arange(fade_in, device=device) + 0.5) / fade_in
    if fade_out:
        gain[length - fade_out:] *= 1 - (torch.arange(fade_out, device=device) + 0.5) / fade_out
    return gain


def _prompt_waveform(prompt, sampling_rate: int) -> torch.Tensor:
    if isinstance(prompt, (str, os.PathLike)):
        from .audio_io import load_audio

        return load_audio(prompt, sampling_rate)
    waveform = torch.as_tensor(prompt, dtype=torch.float32)
    if waveform.dim() == 2 and waveform.shape[0] == 1:
        waveform = waveform[0]
    if waveform.dim() != 1 or waveform.numel() == 0:
        raise ValueError(
            f"`prompt` must be an audio file path or a mono waveform [samples] at {sampling_rate} Hz, "
            f"got shape {tuple(waveform.shape)}."
        )
    return waveform


@torch.no_grad()
def generate_audio(
    model,
    prior: GPT2LMHeadModel,
    feature_extractor,
    num_samples: int = 1,
    duration_s: float | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    top_k: int = DEFAULT_TOP_K,
    top_p: float = DEFAULT_TOP_P,
    seed: int | None = None,
    prompt=None,
    *,
    overlap_positions: int = 1,
    griffin_lim_iters: int = 20,
    sampling_threads: int | None = None,
) -> DistillGenerationOutput:
    """
    Generate audio: sample code grids from `prior` with `generate()`, decode them with `model` and invert the
    spectrograms with `feature_extractor` (Griffin-Lim).

    One prior window covers `W` time positions (`seq_len / (num_quantizers * height)`; 6 positions, about 1 s, for
    the default model). Longer audio is made of several windows: each new chunk keeps the last `overlap_positions`
    columns of the previous one as known codes (forced during sampling, so the chunk continues it), every chunk is
    decoded on its own, and the chunks are joined by overlap-add with linear crossfades over the shared columns.

    Args:
        model (`DistillVQVAEModel`): the VQ-VAE (eval mode recommended).
        prior (`GPT2LMHeadModel`): its prior (`load_prior(folder)`).
        feature_extractor (`DistillFeatureExtractor`): the model's feature extractor.
        num_samples (`int`, *optional*, defaults to 1): clips to generate (one batch).
        duration_s (`float`, *optional*): length of each clip in seconds, prompt included. Default: one prior window
            (plus the prompt, when given).
        temperature (`float`, *optional*, defaults to 1.0): sampling temperature; 0 = greedy (argmax).
        top_k (`int`, *optional*, defaults to 0): keep the `top_k` most likely tokens (0 = off).
        top_p (`float`, *optional*, defaults to 0.9): nucleus sampling mass (1 = off).
        seed (`int`, *optional*): makes the result reproducible (the global RNG state is left untouched).
        prompt (`str`, path or waveform, *optional*): audio to continue (a file, or a mono waveform at the extractor's
            rate). Its whole code positions are kept as the start of the output's codes and condition the rest (the
            original had no prompts). Without a prompt the first token is drawn uniformly, as the original did.
        overlap_positions (`int`, *optional*, defaults to 1): code columns shared by consecutive chunks.
        griffin_lim_iters (`int`, *optional*, defaults to 20, the vocoder default): Griffin-Lim iterations per chunk.
        sampling_threads (`int`, *optional*): torch CPU threads while sampling tokens (restored afterwards; the
            setting is process-wide). Token-by-token sampling of a small prior is many tiny matrix products that
            more threads only slow down, 1 is best on CPU; `None` leaves the thread count alone.

    Returns:
        [`DistillGenerationOutput`] with `waveforms` `[num_samples, samples]` and `audio_codes`
        `[num_samples, num_quantizers, height, width]`.

    Both models run in eval mode (their modes are restored afterwards): no dropout, no codebook updates.
    """
    modes = (model.training, prior.training)
    model.eval()
    prior.eval()
    try:
        return _generate_audio(
            model, prior, feature_extractor, num_samples, duration_s, temperature, top_k, top_p, seed, prompt,
            overlap_positions, griffin_lim_iters, sampling_threads,
        )
    finally:
        model.train(modes[0])
        prior.train(modes[1])


def _generate_audio(
    model, prior, feature_extractor, num_samples, duration_s, temperature, top_k, top_p, seed, prompt,
    overlap_positions, griffin_lim_iters, sampling_threads,
) -> DistillGenerationOutput:
    _check_sampling(num_samples, temperature, top_k, top_p, overlap_positions)
    _check_threads(sampling_threads)
    window = prior_window(model, prior)
    if overlap_positions > window.width // 2:
        raise ValueError(
            f"`overlap_positions` must be at most half the prior window ({window.width} positions), "
            f"got {overlap_positions}."
        )
    sampling_rate = int(feature_extractor.sampling_rate)
    factor = model.config.downsampling_factor
    column_samples = factor * feature_extractor.hop_length
    device = model.device

    prompt_codes, prompt_positions = None, 0
    if prompt is not None:
        waveform = _prompt_waveform(prompt, sampling_rate)
        prompt_positions = waveform.shape[-1] // column_samples
        if prompt_positions == 0:
            raise ValueError(
                "the prompt is too short: it needs at least one code position "
                f"({column_samples / sampling_rate:.3f} s)."
            )
        features = feature_extractor(waveform, sampling_rate=sampling_rate, return_tensors="pt").input_features
        codes = model.encode(features.to(device)).audio_codes
        prompt_codes = codes[..., :prompt_positions]

    if duration_s is None:
        samples = (prompt_positions + window.width) * column_samples
    else:
        if isinstance(duration_s, bool) or not isinstance(duration_s, Real) or not math.isfinite(duration_s):
            raise ValueError(f"`duration_s` must be a positive number of seconds, got {duration_s!r}.")
        samples = round(duration_s * sampling_rate)
        if samples <= prompt_positions * column_samples or samples < 1:
            raise ValueError(
                f"`duration_s` ({duration_s}) must be positive and longer than the prompt's "
                f"{prompt_positions * column_samples / sampling_rate:.3f} s."
            )
    total_positions = math.ceil(samples / column_samples)
    segments = _segments(prompt_positions, total_positions, window.width, overlap_positions)
    grid_width = segments[-1][1]

    grid = torch.full(
        (num_samples, window.num_quantizers, window.height, grid_width), -1, dtype=torch.long, device=device
    )
    if prompt_codes is not None:
        grid[..., :prompt_positions] = prompt_codes.to(device)
    devices = sorted({d for d in (prior.device, model.device) if d.type == "cuda"}, key=str)
    threads = torch.get_num_threads()
    if sampling_threads is not None and prior.device.type == "cpu":
        torch.set_num_threads(sampling_threads)
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            for start, end, generate in segments:
                if generate:
                    tokens = codes_to_sequence(grid[..., start:end])
                    tokens = sample_window(prior, tokens, temperature=temperature, top_k=top_k, top_p=top_p)
                    grid[..., start:end] = sequence_to_codes(tokens.to(device), *grid.shape[1:3], end - start)
    finally:
        torch.set_num_threads(threads)

    waveforms = torch.zeros(num_samples, grid_width * column_samples, device=device)
    for index, (start, end, _) in enumerate(segments):
        spectrogram = model.decode(grid[..., start:end], target_length=(end - start) * factor).reconstruction
        # One more (repeated) frame, so Griffin-Lim can return exactly `frames * hop_length` samples: chunks then
        # tile the timeline with frame `f` of a chunk starting at column `c` at global frame `c * factor + f`.
        spectrogram = torch.cat([spectrogram, spectrogram[..., -1:]], dim=-1)
        audio = feature_extractor.features_to_waveform(
            spectrogram, n_iter=griffin_lim_iters, length=(end - start) * column_samples
        ).to(device)
        fade_in = segments[index - 1][1] - start if index > 0 else 0
        fade_out = end - segments[index + 1][0] if index + 1 < len(segments) else 0
        gain = _fades(audio.shape[-1], fade_in * column_samples, fade_out * column_samples, device)
        waveforms[:, start * column_samples : end * column_samples] += audio * gain
    return DistillGenerationOutput(
        waveforms=waveforms[:, :samples],
        audio_codes=grid[..., :total_positions],
        prompt_positions=prompt_positions,
        sampling_rate=sampling_rate,
    )


__all__ = [
    "PRIOR_SUBFOLDER",
    "DistillGenerationOutput",
    "ForcedTokensLogitsProcessor",
    "MissingPriorError",
    "PriorWindow",
    "codes_to_sequence",
    "convert_original_prior",
    "convert_prior_state_dict",
    "generate_audio",
    "gpt2_prior_config",
    "has_prior",
    "load_prior",
    "prior_generation_config",
    "prior_window",
    "sample_window",
    "save_prior",
    "sequence_to_codes",
    "write_prior",
]
