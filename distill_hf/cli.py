"""`distill-hf` command line: convert original checkpoints and reconstruct audio through a model.

    distill-hf convert --checkpoint model.distill --output-dir MODEL_DIR
    distill-hf reconstruct AUDIO --model MODEL_DIR --output out.wav [--save-input in.wav]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are local folders; never reach for the Hub implicitly


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distill-hf", description="Distill RVQ-VAE audio model tools")
    commands = parser.add_subparsers(dest="command", required=True)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (ValueError, OSError) as error:  # expected failures: one line, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
