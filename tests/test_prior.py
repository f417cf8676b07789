"""The autoregressive prior: conversion to GPT-2 (parity with the original), token order, generation, training, CLI."""

import json
import math
import shutil
import warnings

import numpy as np
import pytest
import soundfile
import torch
from transformers import AutoModelForCausalLM, DynamicCache, GPT2Config, GPT2LMHeadModel

from conversion.convert_distill_checkpoint import ConversionError, convert_checkpoint
from distill_hf import (
    DistillFeatureExtractor,
    DistillVQVAEModel,
    codes_to_sequence,
    generate_audio,
    save_audio,
    sequence_to_codes,
)
from distill_hf.cli import main
from distill_hf.prior import MissingPriorError, load_prior, sample_window
from distill_hf.prior_training import (
    PRIOR_TIERS,
    adaptive_prior_settings,
    extract_code_sequences,
    get_adaptive_prior_config,
    train_prior,
)
from tests.conftest import CHECKPOINT, synthetic_audio

Q, H, W = 3, 8, 6  # the fixture's code grid for one second; the prior window is Q * H * W = 144 tokens


pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.single_thread


@pytest.fixture(scope="module")
def original():
    return torch.load(CHECKPOINT, weights_only=True)


@pytest.fixture(scope="module")
def prior(converted_dir):
    return AutoModelForCausalLM.from_pretrained(converted_dir, subfolder="prior").eval()


@pytest.fixture(scope="module")
def vqvae(converted_dir):
    return DistillVQVAEModel.from_pretrained(converted_dir).eval()


@pytest.fixture(scope="module")
def extractor(converted_dir):
    return DistillFeatureExtractor.from_pretrained(converted_dir)


@pytest.fixture(scope="module")
def code_sequences(vqvae, extractor):
    """Token sequences of 30 one-second synthetic clips through the converted (frozen) VQ-VAE."""
    audio = synthetic_audio(30, 48000, 48000, seed=1)
    features = extractor(list(audio.numpy()), sampling_rate=48000, return_tensors="pt").input_features
    return features, extract_code_sequences(vqvae, features, batch_size=8)


# ------------------------------------------------------------------------------------------------ conversion
def test_converted_prior_folder(converted_dir, prior):
    folder = converted_dir / "prior"
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "generation_config.json"}
    assert type(prior) is GPT2LMHeadModel
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and "auto_map" not in config  # plain Transformers, no remote code
    assert config["activation_function"] == "relu" and config["n_inner"] == 4 * config["n_embd"] == 256
    assert config["layer_norm_epsilon"] == 1e-5 and config["tie_word_embeddings"] is False
    assert (config["n_positions"], config["vocab_size"], config["n_layer"], config["n_head"]) == (144, 64, 2, 4)
    assert config["scale_attn_weights"] is True and config["scale_attn_by_inverse_layer_idx"] is False
    assert config["bos_token_id"] is None and config["eos_token_id"] is None
    assert (config["num_quantizers"], config["code_grid_height"], config["code_grid_width"]) == (Q, H, W)
    generation = json.loads((folder / "generation_config.json").read_text())
    assert {k: v for k, v in generation.items() if k != "transformers_version"} == {
        "do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 0.9, "max_length": 144
    }


def test_prior_logits_match_the_original(prior, expected_eval):
    with torch.no_grad():
        logits = prior(input_ids=expected_eval["prior_input_ids"]).logits
    difference = (logits - expected_eval["prior_logits"]).abs().max().item()
    print(f"prior logits: max abs difference {difference:.2e}")
    assert logits.shape == (4, 144, 64) and difference < 1e-4


def test_position_table_folds_the_level_embedding(prior, original):
    state = original["prior_state_dict"]
    levels = state["level_emb.weight"][torch.arange(144) % Q]
    assert torch.equal(prior.transformer.wpe.weight, state["pos_emb.weight"] + levels)
    in_proj = state["transformer.layers.1.self_attn.in_proj_weight"]
    assert torch.equal(prior.transformer.h[1].attn.c_attn.weight, in_proj.t())
    assert torch.equal(prior.lm_head.weight, state["head.weight"])


def test_kv_cache_logits_equal_full_sequence_logits(prior, expected_eval):
    ids = expected_eval["prior_input_ids"]
    with torch.no_grad():
        full = prior(input_ids=ids).logits
        cache = DynamicCache(config=prior.config)
        steps = [prior(input_ids=ids[:, t : t + 1], cache=cache, use_cache=True).logits for t in range(ids.shape[1])]
    difference = (torch.cat(steps, dim=1) - full).abs().max().item()
    print(f"KV cache vs full sequence: max abs difference {difference:.2e}")
    assert cache.get_seq_length() == 144 and difference < 1e-5


def test_checkpoint_without_prior_has_no_prior_folder(tmp_path, original):
    variant = {k: v for k, v in original.items() if k not in ("prior_state_dict", "prior_config", "prior_metadata")}
    torch.save({**variant, "has_prior": False}, tmp_path / "plain.distill")
    output = convert_checkpoint(tmp_path / "plain.distill", tmp_path / "plain")
    assert not (output / "prior").exists()
    with pytest.raises(MissingPriorError, match="distill-hf train-prior --model"):
        load_prior(output)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"prior_state_dict": {}}, "prior_state_dict is missing or empty"),
        ({"prior_state_dict": "drop head.weight"}, "missing \\['head.weight'\\]"),
        ({"prior_config": "seq_len 120"}, "shape"),
        ({"prior_config": "num_quantizers 4"}, "num_quantizers"),
    ],
)
def test_broken_prior_is_refused_and_nothing_is_written(tmp_path, original, change, message):
    checkpoint = dict(original)
    if change.get("prior_state_dict") == "drop head.weight":
        checkpoint["prior_state_dict"] = {k: v for k, v in original["prior_state_dict"].items() if k != "head.weight"}
    elif "prior_config" in change:
        key, value = change["prior_config"].split()
        checkpoint["prior_config"] = {**original["prior_config"], key: int(value)}
    else:
        checkpoint.update(change)
    torch.save(checkpoint, tmp_path / "broken.distill")
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(tmp_path / "broken.distill", tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "broken.distill"]


# ------------------------------------------------------------------------------------------- token order
def test_codes_to_sequence_matches_the_fixture_flattening(expected_eval, vqvae):
    grid = expected_eval["audio_codes"].reshape(4, H, W, Q).permute(0, 3, 1, 2)  # [B, H*W, Q] -> [B, Q, H, W]
    assert torch.equal(codes_to_sequence(grid), expected_eval["prior_input_ids"])
    assert torch.equal(sequence_to_codes(expected_eval["prior_input_ids"], Q, H, W), grid)
    with torch.no_grad():
        codes = vqvae.encode(expected_eval["input_features"]).audio_codes
    assert torch.equal(codes_to_sequence(codes), expected_eval["prior_input_ids"])


def test_codes_sequence_round_trip():
    codes = torch.randint(0, 50, (2, 4, 3, 5))
    tokens = codes_to_sequence(codes)
    assert tokens.shape == (2, 60) and tokens[0, (1 * 5 + 2) * 4 + 3] == codes[0, 3, 1, 2]
    assert torch.equal(sequence_to_codes(tokens, 4, 3, 5), codes)
    assert torch.equal(codes_to_sequence(sequence_to_codes(tokens, 4, 3, 5)), tokens)
    with pytest.raises(ValueError, match="60"):
        sequence_to_codes(tokens[:, :-1], 4, 3, 5)
    with pytest.raises(ValueError):
        codes_to_sequence(codes[0])


# ---------------------------------------------------------------------------------------------- sampling
def test_greedy_generate_equals_stepwise_argmax(prior):
    first = torch.tensor([[5], [40]])
    expected = first
    with torch.no_grad():
        for _ in range(143):
            expected = torch.cat([expected, prior(input_ids=expected).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    direct = prior.generate(first, do_sample=False, max_length=144)
    assert torch.equal(direct, expected)
    tokens = torch.cat([first, torch.full((2, 143), -1)], dim=1)
    assert torch.equal(sample_window(prior, tokens, temperature=0), expected)


def test_sampling_is_reproducible_per_seed(prior):
    def sample(seed):
        torch.manual_seed(seed)
        return prior.generate(torch.zeros(2, 1, dtype=torch.long))  # the folder's defaults: sampling, top-p 0.9

    first, again, other = sample(0), sample(0), sample(1)
    assert first.shape == (2, 144) and torch.equal(first, again) and not torch.equal(first, other)


def _crafted_prior(probabilities: torch.Tensor) -> GPT2LMHeadModel:
    """A GPT-2 whose next-token distribution is `probabilities` at every step, whatever the input."""
    vocab = probabilities.numel()
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=vocab, n_layer=1, n_head=1, activation_function="relu",
                        tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(probabilities.log())
        model.lm_head.weight.copy_(torch.eye(vocab))
    return model


@pytest.mark.parametrize(
    "settings, allowed",
    [
        ({"top_k": 3, "top_p": 1.0}, {0, 1, 2}),
        ({"top_k": 0, "top_p": 0.75}, {0, 1}),  # 0.5 < 0.75 <= 0.5 + 0.3
        ({"top_k": 0, "top_p": 0.75, "temperature": 3.0}, None),  # flatter: more tokens reach the nucleus
        ({"top_k": 2, "top_p": 0.95, "temperature": 0.5}, {0, 1}),
    ],
)
def test_top_k_and_top_p_never_leave_the_allowed_set(settings, allowed):
    tail = 0.5 ** torch.arange(1.0, 14.0)  # distinct probabilities: no ties at the nucleus edge
    probabilities = torch.cat([torch.tensor([0.5, 0.3, 0.1]), 0.1 * tail / tail.sum()])
    model = _crafted_prior(probabilities)
    temperature = settings.get("temperature", 1.0)
    if allowed is None:  # work the nucleus out for the tempered distribution
        tempered = torch.softmax(probabilities.log() / temperature, dim=0)
        order = tempered.argsort(descending=True)
        keep = int((tempered[order].cumsum(0) < settings["top_p"]).sum()) + 1
        allowed = set(order[:keep].tolist())
        assert 2 < len(allowed) < 16
    torch.manual_seed(0)
    tokens = torch.full((64, 40), -1)
    tokens[:, 0] = torch.arange(64) % 16  # any first token
    out = sample_window(model, tokens, temperature=temperature, top_k=settings["top_k"], top_p=settings["top_p"])
    seen = set(out[:, 1:].unique().tolist())
    assert seen == allowed  # never outside, and every allowed token does occur


# --------------------------------------------------------------------------------------- generate_audio
def test_generate_audio_is_finite_deterministic_and_multi_chunk(vqvae, prior, extractor):
    rng_state = torch.get_rng_state()
    output = generate_audio(vqvae, prior, extractor, num_samples=2, duration_s=2.5, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the seed does not touch the global generator
    # 2.5 s needs ceil(120000 / 8192) = 15 positions: windows [0, 6), [5, 11), [10, 16) sharing one column each
    assert output.waveforms.shape == (2, 120000) and output.audio_codes.shape == (2, Q, H, 15)
    assert torch.isfinite(output.waveforms).all() and output.waveforms.abs().max() > 1e-3
    assert output.sampling_rate == 48000 and output.prompt_positions == 0
    again = generate_audio(vqvae, prior, extractor, num_samples=2, duration_s=2.5, seed=7)
    assert torch.equal(again.waveforms, output.waveforms) and torch.equal(again.audio_codes, output.audio_codes)
    other = generate_audio(vqvae, prior, extractor, num_samples=2, duration_s=2.5, seed=8)
    assert not torch.equal(other.audio_codes, output.audio_codes)
    # default duration: exactly one prior window
    single = generate_audio(vqvae, prior, extractor, seed=0, top_k=8, top_p=1.0)
    assert single.waveforms.shape == (1, 6 * 16 * 512) and single.audio_codes.shape == (1, Q, H, W)


def test_prompt_continuation_keeps_the_prompt_codes(vqvae, prior, extractor, expected_eval):
    prompt = expected_eval["waveform"][0, 0]  # 1 s of speech: 5 whole code positions of 8192 samples
    output = generate_audio(vqvae, prior, extractor, duration_s=2.0, seed=1, prompt=prompt)
    with torch.no_grad():
        prompt_codes = vqvae.encode(expected_eval["input_features"][:1]).audio_codes
    assert output.prompt_positions == 5
    assert output.waveforms.shape == (1, 96000) and torch.isfinite(output.waveforms).all()
    assert output.audio_codes.shape == (1, Q, H, 12)
    assert torch.equal(output.audio_codes[..., :5], prompt_codes[..., :5])
    greedy = generate_audio(vqvae, prior, extractor, duration_s=2.0, temperature=0, prompt=prompt)
    assert torch.equal(greedy.audio_codes[..., :5], prompt_codes[..., :5])


def test_generate_audio_validates_its_arguments(vqvae, prior, extractor):
    for kwargs, message in (
        ({"top_p": 0.0}, "top_p"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": -2}, "top_k"),
        ({"num_samples": 0}, "num_samples"),
        ({"overlap_positions": 4}, "at most half"),
        ({"prompt": torch.zeros(4000)}, "too short"),
        ({"prompt": torch.zeros(48000), "duration_s": 0.5}, "longer than the prompt"),
    ):
        with pytest.raises(ValueError, match=message):
            generate_audio(vqvae, prior, extractor, **kwargs)
    other = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_positions=144, n_embd=8, n_layer=1, n_head=1))
    with pytest.raises(ValueError, match="vocabulary"):
        generate_audio(vqvae, other, extractor)


# ----------------------------------------------------------------------------------------------- training
def test_adaptive_prior_tiers():
    assert [tier[1] for tier in PRIOR_TIERS] == ["tiny", "small", "middle", "large"]
    assert adaptive_prior_settings(9) == {"tier": "tiny", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                                          "dropout": 0.2}
    assert adaptive_prior_settings(200)["tier"] == "small"
    assert adaptive_prior_settings(1000) == {"tier": "middle", "hidden_size": 256, "num_layers": 4, "num_heads": 4,
                                             "dropout": 0.1}
    assert adaptive_prior_settings(10**5)["tier"] == "large"
    config = get_adaptive_prior_config(1000, vocab_size=256, seq_len=144, num_quantizers=3, grid_height=8)
    assert (config.n_embd, config.n_layer, config.n_head, config.n_inner) == (256, 4, 4, 1024)
    assert config.activation_function == "relu" and not config.tie_word_embeddings and config.code_grid_width == 6
    with pytest.raises(ValueError):
        adaptive_prior_settings(0)


def test_code_extraction_is_batched_and_leaves_the_vqvae_untouched(vqvae, code_sequences):
    features, sequences = code_sequences
    assert sequences.shape == (30, 144) and sequences.dtype == torch.long
    with torch.no_grad():
        expected = codes_to_sequence(vqvae.encode(features[:5]).audio_codes)
    assert torch.equal(sequences[:5], expected)
    assert not vqvae.training


def test_prior_training_lowers_validation_perplexity(vqvae, code_sequences):
    _, sequences = code_sequences
    before = {k: v.clone() for k, v in vqvae.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no memorisation warning on a reasonable split
        warnings.filterwarnings("ignore", message=".*pin_memory.*")
        result = train_prior(
            vqvae, train_sequences=sequences[:24], eval_sequences=sequences[24:], hidden_size=32, num_layers=1,
            num_heads=2, dropout=0.0, epochs=4, batch_size=8, learning_rate=3e-3,
        )
    history = result.history
    assert [entry["epoch"] for entry in history] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert history[0]["eval_perplexity"] > 50  # untrained: about uniform over 64 codes
    assert result.eval_perplexity < 0.7 * history[0]["eval_perplexity"]
    assert history[-1]["eval_perplexity"] < history[1]["eval_perplexity"]  # still improving after epoch 1
    assert not result.memorisation_warned and result.num_train_sequences == 24 and result.num_eval_sequences == 6
    assert result.tier == "tiny (adjusted)" and result.prior.config.n_embd == 32 and not result.prior.training
    assert result.prior.generation_config.top_p == 0.9
    assert all(torch.equal(before[k], v) for k, v in vqvae.state_dict().items())  # frozen


def test_memorisation_warning_fires_on_a_tiny_dataset(vqvae, code_sequences):
    _, sequences = code_sequences
    with pytest.warns(UserWarning, match="memorising"):
        result = train_prior(
            vqvae, train_sequences=sequences[:1], eval_sequences=sequences[1:3], hidden_size=64, num_layers=2,
            num_heads=4, dropout=0.0, epochs=20, batch_size=1, learning_rate=1e-2,
        )  # one training sequence: learnt by heart within 20 steps
    assert result.memorisation_warned
    first, last = result.history[1], result.history[-1]
    assert first["perplexity_ratio"] < 1.5 < 2 < last["perplexity_ratio"]  # the gap opens during training
    assert last["train_perplexity"] < 5 and last["eval_perplexity"] > 2 * last["train_perplexity"]


# ---------------------------------------------------------------------------------------------------- CLI
def test_cli_train_prior_then_generate_and_the_no_prior_error(converted_dir, tmp_path, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(converted_dir, model_dir)
    audio_dir = tmp_path / "audio"
    for index, clip in enumerate(synthetic_audio(5, 57600, 48000, seed=4)):  # 1.2 s each
        save_audio(audio_dir / f"clip_{index}.wav", clip, 48000)

    # train-prior replaces the converted prior
    assert main(["train-prior", "--model", str(model_dir), "--audio-dir", str(audio_dir), "--epochs", "2",
                 "--hidden-size", "32", "--num-layers", "1", "--num-heads", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "size tier tiny" in out and "validation perplexity" in out and str(model_dir / "prior") in out
    assert json.loads((model_dir / "prior" / "config.json").read_text())["n_embd"] == 32
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no staging folder left
    record = json.loads((model_dir / "distill_metadata.json").read_text())
    assert record["has_prior"] and record["prior_metadata"]["trained_with"] == "distill-hf train-prior"
    assert record["prior_config"]["hidden_size"] == 32 and record["prior_config"]["seq_len"] == 144
    card = (model_dir / "README.md").read_text()
    assert "trained for this model with `distill-hf train-prior`" in card and "It is stored in `prior/`" in card

    # generate, continuing one of the clips
    output_dir = tmp_path / "generated"
    prompt = audio_dir / "clip_0.wav"
    assert main(["generate", "--model", str(model_dir), "--output-dir", str(output_dir), "--num-samples", "2",
                 "--duration-s", "1.5", "--seed", "3", "--top-k", "20", "--prompt", str(prompt)]) == 0
    assert "generated 2 x 1.50 s" in capsys.readouterr().out
    assert sorted(p.name for p in output_dir.iterdir()) == [
        "sample_000.wav", "sample_000_codes.npy", "sample_001.wav", "sample_001_codes.npy"
    ]
    audio, rate = soundfile.read(output_dir / "sample_001.wav")
    codes = np.load(output_dir / "sample_001_codes.npy")
    assert rate == 48000 and audio.shape == (72000,) and np.isfinite(audio).all()
    assert codes.shape == (Q, H, math.ceil(72000 / 8192)) and codes.dtype == np.int64
    assert (codes[..., :7] == np.load(output_dir / "sample_000_codes.npy")[..., :7]).all()  # the prompt's 7 positions

    # without prior/: a clear one-line error
    shutil.rmtree(model_dir / "prior")
    assert main(["generate", "--model", str(model_dir), "--output-dir", str(tmp_path / "none")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has no prior" in error
    assert f"distill-hf train-prior --model {model_dir} --audio-dir" in error
    assert not (tmp_path / "none").exists()
