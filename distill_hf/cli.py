"""`distill-hf` command line: train, convert original checkpoints, reconstruct audio, push to the Hub.

    distill-hf train [--audio-dir DIR] [--output-dir DIR] [--epochs N] ...
    distill-hf convert --checkpoint model.distill --output-dir MODEL_DIR
    distill-hf reconstruct AUDIO --model MODEL_DIR --output out.wav [--save-input in.wav] [--plot]
    distill-hf encode AUDIO --model MODEL_DIR --output codes.npz [--plot]
    distill-hf decode codes.npz --model MODEL_DIR --output out.wav [--plot]
    distill-hf swap TARGET SOURCE --model MODEL_DIR --output out.wav|out.npz --start S --end E [--levels 0,1]
    distill-hf blend FIRST SECOND --model MODEL_DIR --output out.wav [--alpha 0.5]
    distill-hf push MODEL_DIR USER/REPO [--token T] [--private] [--revision R] [--commit-message M] [--no-model-card]
    distill-hf generate --model MODEL_DIR --output-dir OUT [--num-samples N] [--duration-s S] [--temperature T]
        [--top-k K] [--top-p P] [--seed S] [--prompt FILE]
    distill-hf train-prior --model MODEL_DIR --audio-dir DIR [--epochs N] ...

`train`, `convert`, `reconstruct`, `encode`, `decode`, `swap`, `blend`, `generate` and `train-prior` work on local
folders and never reach for the Hub: they run with HF_HUB_OFFLINE=1 unless it is set otherwise. `push` uploads to the
Hub that HF_ENDPOINT names (default huggingface.co).
"""

from __future__ import annotations

import argparse
import os
import sys


def _stay_offline() -> None:
    """Default HF_HUB_OFFLINE=1 for the local-folder commands (models are folders; never reach for the Hub)."""
    if "HF_HUB_OFFLINE" in os.environ:
        return
    os.environ["HF_HUB_OFFLINE"] = "1"
    # `import distill_hf` already imported huggingface_hub, which read the environment then.
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True


def _convert(args) -> None:
    from conversion.convert_distill_checkpoint import convert_checkpoint

    output_dir = convert_checkpoint(args.checkpoint, args.output_dir, overwrite=args.overwrite)
    print(f"converted {args.checkpoint} -> {output_dir}")


def _load_extractor(folder):
    """The feature extractor of a model folder (read first: input files are checked before the model loads)."""
    from pathlib import Path

    from . import DistillFeatureExtractor

    if not Path(folder).is_dir():
        raise ValueError(f"model folder not found: {folder}")
    return DistillFeatureExtractor.from_pretrained(folder)


def _load_model(folder):
    """The model of a model folder, in eval mode."""
    from . import DistillVQVAEModel

    return DistillVQVAEModel.from_pretrained(folder).eval()


def _check_audio_output(path) -> None:
    """Refuse an output name save_audio cannot write before any work is done."""
    import soundfile

    name = str(path)
    if name.endswith(".npz"):
        raise ValueError(f"--output must be an audio file (.wav, .flac, .ogg) here, got {name}")
    if name.rpartition(".")[2].upper() not in soundfile.available_formats():
        raise ValueError(f"unsupported audio format for {name}: use .wav, .flac or .ogg")


def _show_progress(args, num_samples: int, sampling_rate: int) -> bool:
    """Progress bars for files longer than one chunk, on a terminal, unless --no-progress."""
    return not args.no_progress and sys.stderr.isatty() and num_samples > args.chunk_seconds * sampling_rate


def _write_plots(output, codes, codebook_size: int, spectrograms=None, title: str | None = None) -> None:
    """--plot: OUTPUT_codes.png, OUTPUT_usage.png and (given a pair of spectrograms) OUTPUT_spectrogram.png."""
    from pathlib import Path

    try:
        from .plotting import plot_code_grid, plot_codebook_usage, plot_spectrograms
    except ImportError as error:  # pragma: no cover - matplotlib missing
        raise ValueError(str(error)) from None
    stem = Path(output).with_suffix("")
    paths = []
    try:
        paths.append(plot_code_grid(codes[0], f"{stem}_codes.png", codebook_size=codebook_size, title=title))
        paths.append(plot_codebook_usage(codes, codebook_size, f"{stem}_usage.png", title=title))
        if spectrograms is not None:
            paths.append(plot_spectrograms(*spectrograms, f"{stem}_spectrogram.png", title=title))
    except ImportError as error:
        raise ValueError(str(error)) from None
    print("plots: " + ", ".join(str(path) for path in paths))


def _reconstruct(args) -> None:
    from .audio_io import load_audio, save_audio
    from .long_audio import compute_features, decode_features, encode_features, vocode_features
    from .modeling_distill import multi_scale_mel_loss

    _check_audio_output(args.output)
    extractor = _load_extractor(args.model)
    waveform = load_audio(args.audio, extractor.sampling_rate)
    model = _load_model(args.model)
    if args.save_input:
        save_audio(args.save_input, waveform, extractor.sampling_rate)
    num_samples = waveform.shape[-1]
    progress = _show_progress(args, num_samples, extractor.sampling_rate)
    # Chunked all the way (features, encoder, decoder, vocoder): memory stays bounded for any length, and the codes
    # are those of one full pass. The input is let go once its features exist.
    features = compute_features(extractor, waveform, args.chunk_seconds, progress=progress)
    del waveform
    codes = encode_features(model, features, args.chunk_seconds, progress=progress)
    reconstruction = decode_features(model, codes, features.shape[-1], args.chunk_seconds, progress=progress)
    audio = vocode_features(extractor, reconstruction, num_samples, args.chunk_seconds, n_iter=args.n_iter,
                            progress=progress)
    save_audio(args.output, audio, extractor.sampling_rate)
    height, width = codes.shape[-2:]
    recon_loss = multi_scale_mel_loss(reconstruction, features).item()
    print(
        f"{args.audio}: {num_samples / extractor.sampling_rate:.2f} s -> codes "
        f"{model.config.num_quantizers} x {height} x {width}, recon_loss {recon_loss:.4f} -> {args.output}"
    )
    if args.plot:
        _write_plots(args.output, codes, model.config.codebook_size, (features, reconstruction),
                     title=f"{args.audio}: input vs reconstruction")


def _encode(args) -> None:
    from .audio_io import load_audio
    from .editing import EncodedAudio
    from .long_audio import encode_audio

    if not str(args.output).endswith(".npz"):
        raise ValueError(f"--output must be a .npz file, got {args.output}")
    extractor = _load_extractor(args.model)
    waveform = load_audio(args.audio, extractor.sampling_rate)
    model = _load_model(args.model)
    progress = _show_progress(args, waveform.shape[-1], extractor.sampling_rate)
    codes = encode_audio(model, extractor, waveform, args.chunk_seconds, progress=progress)
    encoded = EncodedAudio.from_model(model, codes, waveform.shape[-1])
    encoded.save(args.output)
    levels, height, width = codes.shape[1:]
    print(
        f"{args.audio}: {encoded.seconds:.2f} s -> codes {levels} x {height} x {width} (codebook size "
        f"{encoded.codebook_size}) -> {args.output}"
    )
    if args.plot:
        _write_plots(args.output, codes, encoded.codebook_size, title=f"codes of {args.audio}")


def _read_inputs(paths, extractor):
    """Each path: a .npz codes file -> `EncodedAudio`, anything else -> its waveform (read before the model loads)."""
    from .audio_io import load_audio
    from .editing import EncodedAudio

    return [EncodedAudio.load(p) if str(p).endswith(".npz") else load_audio(p, extractor.sampling_rate) for p in paths]


def _as_encoding(item, path, model, extractor, args):
    """`EncodedAudio` (checked against the model) or a waveform (encoded now) -> `EncodedAudio`."""
    from .editing import EncodedAudio
    from .long_audio import encode_audio

    if isinstance(item, EncodedAudio):
        item.check_model(model, name=str(path))
        return item
    progress = _show_progress(args, item.shape[-1], extractor.sampling_rate)
    codes = encode_audio(model, extractor, item, args.chunk_seconds, progress=progress)
    return EncodedAudio.from_model(model, codes, item.shape[-1])


def _decode_to_file(args, model, extractor, num_samples, audio_codes=None, quantized_representation=None):
    """Decode (chunked) and write args.output; returns the decoded spectrogram for plots."""
    from .audio_io import save_audio
    from .long_audio import decode_features, vocode_features

    _check_audio_output(args.output)
    progress = _show_progress(args, num_samples, extractor.sampling_rate)
    spectrogram = decode_features(
        model, audio_codes, num_samples // extractor.hop_length + 1, args.chunk_seconds,
        quantized_representation=quantized_representation, progress=progress,
    )
    audio = vocode_features(extractor, spectrogram, num_samples, args.chunk_seconds, n_iter=args.n_iter,
                            progress=progress)
    save_audio(args.output, audio, extractor.sampling_rate)
    return spectrogram, audio


def _decode(args) -> None:
    from .editing import EncodedAudio
    from .long_audio import compute_features

    _check_audio_output(args.output)
    encoded = EncodedAudio.load(args.codes)  # a bad file is reported before the model is loaded
    extractor = _load_extractor(args.model)
    model = _load_model(args.model)
    encoded.check_model(model, name=str(args.codes))
    spectrogram, audio = _decode_to_file(args, model, extractor, encoded.num_samples, audio_codes=encoded.audio_codes)
    levels, height, width = encoded.audio_codes.shape[1:]
    print(f"{args.codes}: codes {levels} x {height} x {width} -> {encoded.seconds:.2f} s -> {args.output}")
    if args.plot:
        heard = compute_features(extractor, audio, args.chunk_seconds)
        _write_plots(args.output, encoded.audio_codes, encoded.codebook_size, (spectrogram, heard),
                     title=f"{args.codes}: decoded spectrogram vs spectrogram of {args.output}")


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels must be comma-separated integers such as 0,1, got {text}") from None
    if not levels:
        raise argparse.ArgumentTypeError(f"no levels in {text!r}")
    return levels


def _swap(args) -> None:
    import math

    from .editing import EncodedAudio, positions_per_second, seconds_to_positions, swap_codes

    if not str(args.output).endswith(".npz"):
        _check_audio_output(args.output)
    extractor = _load_extractor(args.model)
    inputs = _read_inputs((args.target, args.source), extractor)
    model = _load_model(args.model)
    target, source = (_as_encoding(i, p, model, extractor, args) for i, p in zip(inputs, (args.target, args.source)))
    target.check_compatible(source, names=(str(args.target), str(args.source)))
    start, end = seconds_to_positions(args.start, args.end, model.config)
    source_start = None
    if args.source_start is not None:
        if not math.isfinite(args.source_start) or args.source_start < 0:
            raise ValueError(f"--source-start must be a number of seconds >= 0, got {args.source_start}")
        source_start = math.floor(args.source_start * positions_per_second(model.config) + 1e-9)
    codes = swap_codes(target.audio_codes, source.audio_codes, start, end, levels=args.levels,
                       source_start=source_start, codebook_size=model.config.codebook_size)
    edited = EncodedAudio.from_model(model, codes, target.num_samples)
    if str(args.output).endswith(".npz"):
        edited.save(args.output)
    else:
        _decode_to_file(args, model, extractor, edited.num_samples, audio_codes=codes)
    rate = positions_per_second(model.config)
    levels = "all levels" if args.levels is None else "levels " + ",".join(map(str, sorted(set(args.levels))))
    print(
        f"swapped positions {start}-{end} ({start / rate:.2f}-{end / rate:.2f} s), {levels}, of {args.target} with "
        f"{args.source} -> {args.output}"
    )
    if args.plot:
        _write_plots(args.output, codes, model.config.codebook_size,
                     title=f"{args.target} with {args.source} swapped in")


def _blend(args) -> None:
    from .editing import blend_encodings

    if str(args.output).endswith(".npz"):
        raise ValueError(
            f"blend writes audio (a blend is not made of codes): --output must be .wav/.flac/.ogg, got {args.output}"
        )
    _check_audio_output(args.output)
    extractor = _load_extractor(args.model)
    inputs = _read_inputs((args.first, args.second), extractor)
    model = _load_model(args.model)
    first, second = (_as_encoding(i, p, model, extractor, args) for i, p in zip(inputs, (args.first, args.second)))
    first.check_compatible(second, names=(str(args.first), str(args.second)))
    quantized = blend_encodings(model, first.audio_codes, second.audio_codes, alpha=args.alpha, truncate=True)
    width = quantized.shape[-1]
    num_samples = min(first.num_samples, second.num_samples)
    spectrogram, _ = _decode_to_file(args, model, extractor, num_samples, quantized_representation=quantized)
    print(
        f"blended {args.first} and {args.second} (alpha {args.alpha}: weight of the second), {width} positions, "
        f"{num_samples / extractor.sampling_rate:.2f} s -> {args.output}"
    )
    if args.plot:
        from .long_audio import decode_features

        reference = decode_features(model, first.audio_codes[..., :width], spectrogram.shape[-1], args.chunk_seconds)
        codes = first.audio_codes[..., :width]
        _write_plots(args.output, codes, model.config.codebook_size, (reference, spectrogram),
                     title=f"{args.first} decoded vs the blend (alpha {args.alpha}); codes of {args.first}")


def _train(args) -> None:
    from .train_job import run_training

    result = run_training(
        args.audio_dir,
        args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        codebook_size=args.codebook_size,
        augmentation_expansion=args.augmentation_expansion,
        val_fraction=args.val_fraction,
        augment=not args.no_augment,
        seed=args.seed,
        report_to=args.report_to,
        resume=args.resume,
        name=args.name,
        progress=not args.no_progress,
    )
    if result.final_train_loss is None:  # not the main process of a distributed run
        return
    health = result.codebook_health or {}
    used = " / ".join(f"{stats['utilization']:.0%}" for stats in health.values())
    eval_loss = "n/a" if result.final_eval_loss is None else f"{result.final_eval_loss:.4f}"
    print(
        f"trained on {result.num_files} files for {result.epochs} epochs: train loss {result.final_train_loss:.4f}, "
        f"validation loss {eval_loss}, codes used per level {used}\n"
        f"model: {result.model_dir}\noutputs: " + ", ".join(p.name for p in result.files[1:])
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add_audio_options(parser: argparse.ArgumentParser, decoding: bool) -> None:
    """Options shared by encode, decode, reconstruct, swap and blend."""
    parser.add_argument("--chunk-seconds", type=_positive_float, default=10.0,
                        help="audio per chunk: bounds the memory for long files (default: %(default)s)")
    if decoding:
        parser.add_argument("--n-iter", type=int, default=20,
                            help="Griffin-Lim iterations of the vocoder (default: %(default)s)")
    parser.add_argument("--plot", action="store_true",
                        help="also write pictures beside the output: OUTPUT_codes.png, OUTPUT_usage.png and, where "
                        "there are spectrograms to show, OUTPUT_spectrogram.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (shown for long files)")


def _transport_errors() -> tuple[type[Exception], ...]:
    """Base errors of the HTTP client huggingface_hub uses (httpx2, or httpx before huggingface_hub 2):
    connection refused, timeouts, ..."""
    import importlib

    classes = []
    for name in ("httpx2", "httpx"):
        try:
            classes.append(importlib.import_module(name).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(classes)


def _push(args) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    from .hub import push_model_folder, validate_model_folder

    validate_model_folder(args.folder)  # folder problems first: they need no network to report
    if constants.is_offline_mode():
        raise ValueError("push needs the Hub, but offline mode is set (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE): unset it")
    try:
        url = push_model_folder(
            args.folder,
            args.repo_id,
            token=args.token,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.commit_message,
            create_model_card=not args.no_model_card,
        )
    except HfHubHTTPError:  # the Hub answered with an error status (an OSError: reported by main)
        raise
    except _transport_errors() as error:  # no answer at all
        raise ConnectionError(f"cannot reach the Hub at {constants.ENDPOINT}: {error}") from None
    print(f"pushed {args.folder} -> {url}")


def _generate(args) -> None:
    from pathlib import Path

    import numpy as np

    from . import DistillFeatureExtractor, DistillVQVAEModel
    from .audio_io import save_audio
    from .prior import generate_audio, load_prior

    if not Path(args.model).is_dir():
        raise ValueError(f"model folder not found: {args.model}")
    prior = load_prior(args.model)  # a folder without prior/ fails here, telling the user to run train-prior
    model = DistillVQVAEModel.from_pretrained(args.model).eval()
    extractor = DistillFeatureExtractor.from_pretrained(args.model)
    output = generate_audio(
        model, prior, extractor, num_samples=args.num_samples, duration_s=args.duration_s,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed, prompt=args.prompt,
        sampling_threads=1,  # token-by-token sampling of a small prior: more threads only add overhead
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for index in range(args.num_samples):
        save_audio(output_dir / f"sample_{index:03d}.wav", output.waveforms[index], output.sampling_rate)
        np.save(output_dir / f"sample_{index:03d}_codes.npy", output.audio_codes[index].cpu().numpy())
    seconds = output.waveforms.shape[-1] / output.sampling_rate
    levels, height, width = output.audio_codes.shape[1:]
    prompt = f", continuing {args.prompt} ({output.prompt_positions} positions)" if args.prompt else ""
    print(
        f"generated {args.num_samples} x {seconds:.2f} s (codes {levels} x {height} x {width}{prompt}) -> "
        f"{output_dir}/sample_*.wav, sample_*_codes.npy"
    )


def _train_prior(args) -> None:
    from pathlib import Path

    from . import DistillFeatureExtractor, DistillVQVAEModel
    from .prior_training import train_prior

    if not Path(args.model).is_dir():
        raise ValueError(f"model folder not found: {args.model}")
    model = DistillVQVAEModel.from_pretrained(args.model).eval()
    extractor = DistillFeatureExtractor.from_pretrained(args.model)
    result = train_prior(
        model, extractor, args.audio_dir, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, val_fraction=args.val_fraction, seed=args.seed,
        hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads, dropout=args.dropout,
        augmentation_expansion=args.augmentation_expansion, save_to=args.model, progress=not args.no_progress,
    )
    config = result.prior.config
    validation = "n/a" if result.eval_perplexity is None else f"{result.eval_perplexity:.2f}"
    print(
        f"prior (size tier {result.tier}: hidden {config.n_embd}, {config.n_layer} layers, {config.n_head} heads) "
        f"trained on {result.num_train_sequences} sequences ({result.num_eval_sequences} for validation) for "
        f"{result.epochs} epochs: train perplexity {result.train_perplexity:.2f}, validation perplexity "
        f"{validation} -> {result.prior_dir}"
    )
    if result.memorisation_warned:
        print("warning: validation perplexity ran away from training perplexity (memorisation): see above")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill-hf", description="Distill RVQ-VAE audio model tools")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train",
        help="train a model on a folder of audio (or the embedded demo corpus)",
        description="Train a Distill RVQ-VAE with transformers.Trainer. Settings not given follow the original's "
        "size-adaptive tiers for the number of files. Writes OUTPUT_DIR/model (Hub-ready: weights, feature "
        "extractor, remote code, model card), original.wav and reconstruction.wav of a held-out clip, pictures "
        "(loss curves, input vs reconstructed mel, code grid, codebook usage) and OUTPUT_DIR/checkpoints.",
    )
    train.add_argument("--audio-dir", help="folder of audio files, searched recursively (wav, flac, ogg, mp3); "
                       "default: the embedded demo corpus (30 s of generated musical material)")
    train.add_argument("--output-dir", default="outputs/distill-train", help="where to write (default: %(default)s)")
    train.add_argument("--epochs", type=_positive_int, help="training epochs (default: adaptive; 15 for the demo corpus)")
    train.add_argument("--batch-size", type=_positive_int, help="per-device batch size (default: adaptive)")
    train.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default: adaptive)")
    train.add_argument("--codebook-size", type=_positive_int, help="codes per quantizer level (default: adaptive)")
    train.add_argument("--augmentation-expansion", type=int,
                       help="augmented copies of every training chunk (default: adaptive; 2 for the demo corpus)")
    train.add_argument("--val-fraction", type=float, help="share of files held out for validation (default: adaptive)")
    train.add_argument("--no-augment", action="store_true", help="train without augmentation")
    train.add_argument("--seed", type=int, default=0, help="seed of initialisation, split and augmentation (default: 0)")
    train.add_argument("--report-to", default="none", help="Trainer logging integrations, e.g. tensorboard (default: none)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUTPUT_DIR/checkpoints")
    train.add_argument("--name", help="model name for the card (default: the audio folder's name)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)

    convert = commands.add_parser("convert", help="convert an original .distill checkpoint")
    convert.add_argument("--checkpoint", required=True, help="original .distill file")
    convert.add_argument("--output-dir", required=True, help="folder to write")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    convert.set_defaults(handler=_convert)

    reconstruct = commands.add_parser(
        "reconstruct",
        help="encode and decode an audio file",
        description="Encode and decode an audio file of any length (in chunks: memory stays bounded, the codes are "
        "those of one full pass) and write the reconstruction.",
    )
    reconstruct.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    reconstruct.add_argument("--model", required=True, help="model folder (save_pretrained or converted)")
    reconstruct.add_argument("--output", required=True, help="reconstructed audio file to write (.wav, .flac)")
    reconstruct.add_argument("--save-input", help="also write the input as the model hears it (mono, model rate)")
    _add_audio_options(reconstruct, decoding=True)
    reconstruct.set_defaults(handler=_reconstruct)

    encode = commands.add_parser(
        "encode",
        help="encode an audio file to a codes file (.npz)",
        description="Encode an audio file of any length to codes [1, levels, bands, positions] and write them with "
        "the recording's length and sampling rate and the model's codebook size and levels (so that decode refuses a "
        "mismatched model).",
    )
    encode.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    encode.add_argument("--model", required=True, help="model folder")
    encode.add_argument("--output", required=True, help="codes file to write (.npz)")
    _add_audio_options(encode, decoding=False)
    encode.set_defaults(handler=_encode)

    decode = commands.add_parser("decode", help="decode a codes file (.npz) to audio")
    decode.add_argument("codes", help="codes file written by `distill-hf encode` (or swap)")
    decode.add_argument("--model", required=True, help="the model folder that encoded them")
    decode.add_argument("--output", required=True, help="audio file to write (.wav, .flac, .ogg)")
    _add_audio_options(decode, decoding=True)
    decode.set_defaults(handler=_decode)

    swap = commands.add_parser(
        "swap",
        help="replace a time region (and chosen levels) of one recording's codes with another's",
        description="Replace the codes of TARGET between --start and --end (seconds) with those of SOURCE (from "
        "--source-start, default the same time), in all levels or --levels. TARGET and SOURCE are codes files (.npz) "
        "or audio files (encoded first). Writes codes (.npz) or, decoded, audio.",
    )
    swap.add_argument("target", help="codes file or audio file to edit")
    swap.add_argument("source", help="codes file or audio file the new codes come from")
    swap.add_argument("--model", required=True, help="model folder")
    swap.add_argument("--output", required=True, help=".npz for codes, or an audio file (.wav, .flac, .ogg)")
    swap.add_argument("--start", type=float, required=True, help="start of the region in TARGET (seconds)")
    swap.add_argument("--end", type=float, required=True, help="end of the region in TARGET (seconds)")
    swap.add_argument("--source-start", type=float, help="start of the region in SOURCE (seconds; default: --start)")
    swap.add_argument("--levels", type=_levels, help="levels to replace, e.g. 0 or 1,2 (default: all)")
    _add_audio_options(swap, decoding=True)
    swap.set_defaults(handler=_swap)

    blend = commands.add_parser(
        "blend",
        help="blend two recordings in the model's latent space and decode",
        description="Interpolate the quantized representations of FIRST and SECOND, (1 - alpha) * first + alpha * "
        "second, and decode the blend to audio (over the shorter of the two).",
    )
    blend.add_argument("first", help="codes file or audio file")
    blend.add_argument("second", help="codes file or audio file")
    blend.add_argument("--model", required=True, help="model folder")
    blend.add_argument("--output", required=True, help="audio file to write (.wav, .flac, .ogg)")
    blend.add_argument("--alpha", type=float, default=0.5, help="weight of SECOND, in [0, 1] (default: %(default)s)")
    _add_audio_options(blend, decoding=True)
    blend.set_defaults(handler=_blend)

    push = commands.add_parser(
        "push",
        help="upload a model folder to the Hugging Face Hub in one commit",
        description="Upload a complete model folder (weights, configs, remote code, model card, everything else in "
        "it) to a Hub model repo in one commit; the repo is created if needed. The Hub and the token come from "
        "HF_ENDPOINT and HF_TOKEN (or `hf auth login`), as for huggingface_hub.",
    )
    push.add_argument("folder", help="model folder (save_pretrained or `distill-hf convert` output)")
    push.add_argument("repo_id", help="Hub repo to push to, e.g. USER/NAME")
    push.add_argument("--token", help="Hub access token (default: HF_TOKEN or the stored login)")
    push.add_argument("--private", action="store_true", help="create the repo private (ignored if it exists)")
    push.add_argument("--revision", help="branch to commit to (created from main if missing; default: main)")
    push.add_argument("--commit-message", default="Upload Distill model", help="commit message (default: %(default)s)")
    push.add_argument(
        "--no-model-card", action="store_true", help="do not write a README.md model card when the folder has none"
    )
    push.set_defaults(handler=_push)
    generate = commands.add_parser(
        "generate",
        help="generate audio with a model folder's prior",
        description="Sample codes from the model's autoregressive prior (prior/, a GPT-2) with generate() and decode "
        "them to audio. Clips longer than one prior window are several windows joined with crossfades; --prompt "
        "continues an audio file. Writes OUTPUT_DIR/sample_000.wav, ... and the codes as sample_000_codes.npy "
        "([levels, bands, positions], int64).",
    )
    generate.add_argument("--model", required=True, help="model folder with a prior/ subfolder")
    generate.add_argument("--num-samples", type=_positive_int, default=1, help="clips to generate (default: 1)")
    generate.add_argument("--duration-s", type=float, help="seconds per clip, prompt included (default: one prior "
                          "window, about 1 s, after the prompt)")
    generate.add_argument("--temperature", type=float, default=1.0,
                          help="sampling temperature, 0 = greedy (default: 1.0)")
    generate.add_argument("--top-k", type=int, default=0, help="keep the K most likely codes, 0 = off (default: 0)")
    generate.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass, 1 = off (default: 0.9)")
    generate.add_argument("--seed", type=int, help="random seed (same seed, same audio)")
    generate.add_argument("--prompt", help="audio file to continue (its codes start every clip)")
    generate.add_argument("--output-dir", required=True, help="folder to write the clips and codes to")
    generate.set_defaults(handler=_generate)

    train_prior = commands.add_parser(
        "train-prior",
        help="train (or replace) the prior of a model folder",
        description="Encode a folder of audio with the model's frozen VQ-VAE and train a GPT-2 prior over the code "
        "sequences with transformers.Trainer, sized from the number of sequences (tiny/small/middle/large tiers). "
        "Reports training and validation perplexity every epoch and warns when the prior memorises. Writes "
        "MODEL_DIR/prior/ (replacing any) and records it in distill_metadata.json and the model card.",
    )
    train_prior.add_argument("--model", required=True, help="model folder (save_pretrained or converted)")
    train_prior.add_argument("--audio-dir", required=True, help="folder of audio files, searched recursively")
    train_prior.add_argument("--epochs", type=_positive_int, help="training epochs (default: 100, the original's)")
    train_prior.add_argument("--batch-size", type=_positive_int, help="batch size (default: 32)")
    train_prior.add_argument("--learning-rate", type=float, help="peak AdamW learning rate (default: 1e-3)")
    train_prior.add_argument("--val-fraction", type=float, help="share of files held out for validation (default: 0.2)")
    train_prior.add_argument("--hidden-size", type=_positive_int, help="prior width (default: by dataset size)")
    train_prior.add_argument("--num-layers", type=_positive_int, help="transformer blocks (default: by dataset size)")
    train_prior.add_argument("--num-heads", type=_positive_int, help="attention heads (default: by dataset size)")
    train_prior.add_argument("--dropout", type=float, help="dropout (default: by dataset size)")
    train_prior.add_argument("--augmentation-expansion", type=int, default=0,
                             help="augmented copies of every training chunk (default: 0)")
    train_prior.add_argument("--seed", type=int, default=0, help="seed of initialisation and split (default: 0)")
    train_prior.add_argument("--no-progress", action="store_true", help="no progress bar")
    train_prior.set_defaults(handler=_train_prior)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "push":
        _stay_offline()
    try:
        args.handler(args)
    except (ValueError, OSError) as error:  # expected failures: one line, no traceback
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
