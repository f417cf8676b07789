"""`distill-hf` command line: train, convert original checkpoints, reconstruct audio, push to the Hub.

    distill-hf train [--audio-dir DIR] [--output-dir DIR] [--epochs N] ...
    distill-hf convert --checkpoint model.distill --output-dir MODEL_DIR
    distill-hf reconstruct AUDIO --model MODEL_DIR --output out.wav [--save-input in.wav]
    distill-hf push MODEL_DIR USER/REPO [--token T] [--private] [--revision R] [--commit-message M] [--no-model-card]

`train`, `convert` and `reconstruct` work on local folders and never reach for the Hub: they run with HF_HUB_OFFLINE=1
unless it is set otherwise. `push` uploads to the Hub that HF_ENDPOINT names (default huggingface.co).
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


def _reconstruct(args) -> None:
    import torch

    from . import DistillFeatureExtractor, DistillVQVAEModel
    from .audio_io import load_audio, save_audio

    model = DistillVQVAEModel.from_pretrained(args.model).eval()
    extractor = DistillFeatureExtractor.from_pretrained(args.model)
    waveform = load_audio(args.audio, extractor.sampling_rate)
    features = extractor(waveform, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
    with torch.inference_mode():
        output = model(features)
    audio = extractor.features_to_waveform(output.reconstruction, length=waveform.shape[-1])[0]
    save_audio(args.output, audio, extractor.sampling_rate)
    if args.save_input:
        save_audio(args.save_input, waveform, extractor.sampling_rate)
    height, width = output.audio_codes.shape[-2:]
    print(
        f"{args.audio}: {waveform.shape[-1] / extractor.sampling_rate:.2f} s -> codes "
        f"{model.config.num_quantizers} x {height} x {width}, recon_loss {output.recon_loss.item():.4f} -> {args.output}"
    )


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

    reconstruct = commands.add_parser("reconstruct", help="encode and decode an audio file")
    reconstruct.add_argument("audio", help="input audio file (wav, flac, ogg, mp3)")
    reconstruct.add_argument("--model", required=True, help="model folder (save_pretrained or converted)")
    reconstruct.add_argument("--output", required=True, help="reconstructed audio file to write (.wav, .flac)")
    reconstruct.add_argument("--save-input", help="also write the input as the model hears it (mono, model rate)")
    reconstruct.set_defaults(handler=_reconstruct)

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
