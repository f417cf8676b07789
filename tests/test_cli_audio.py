"""`distill-hf encode/decode/reconstruct/swap/blend` on short real files: round trips produce valid audio, pictures
open, mismatched codes or models and bad files are refused with one clear line."""

import numpy as np
import pytest
import soundfile
import torch

from distill_hf import (
    DistillFeatureExtractor,
    DistillVQVAEConfig,
    DistillVQVAEModel,
    EncodedAudio,
    load_audio,
    swap_codes,
)
from distill_hf.cli import main


SR = 48000


pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest.single_thread


@pytest.fixture(scope="module")
def files(tmp_path_factory, expected_eval):
    """Two short recordings: 2.5 s of speech (wav) and 1.8 s of speech and tones (flac, 44.1 kHz stereo)."""
    folder = tmp_path_factory.mktemp("audio")
    speech = expected_eval["waveform"][:3, 0].reshape(-1)
    first = folder / "speech.wav"
    soundfile.write(first, speech[: int(2.5 * SR)].numpy(), SR)
    t = np.arange(int(1.8 * 44100)) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 330 * t) * (t > 0.9)
    voice = np.interp(np.arange(t.size) * SR / 44100, np.arange(speech.numel()), speech.numpy()) * (t <= 0.9)
    second = folder / "mixed.flac"
    soundfile.write(second, np.stack([voice + tone, voice + 0.5 * tone], axis=1), 44100)
    return first, second


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, converted_dir):
    """A model folder whose codebook has 128 codes instead of 64 (same spectrogram settings)."""
    folder = tmp_path_factory.mktemp("other") / "model"
    reference = DistillVQVAEModel.from_pretrained(converted_dir)
    config = DistillVQVAEConfig(**{**reference.config.to_dict(), "codebook_size": 128})
    torch.manual_seed(0)
    DistillVQVAEModel(config).save_pretrained(folder)
    DistillFeatureExtractor.from_pretrained(converted_dir).save_pretrained(folder)
    return folder


def check_audio(path, frames=None):
    info = soundfile.info(path)
    assert info.samplerate == SR and info.channels == 1
    if frames is not None:
        assert info.frames == frames
    audio, _ = soundfile.read(path)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01
    return audio


def check_png(path):
    """The picture opens, has a sensible size and is not blank."""
    from matplotlib.image import imread

    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 200
    rgb = image[..., :3]
    assert rgb.std() > 0.05
    assert (rgb.min(axis=-1) < 0.9).mean() > 0.02  # more than 2% of the pixels are not white (bars, axes, grids)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_encode_decode_round_trip(files, converted_dir, tmp_path, capsys):
    speech, _ = files
    codes_path, output = tmp_path / "codes.npz", tmp_path / "decoded.wav"
    code, out, err = run(capsys, "encode", speech, "--model", converted_dir, "--output", codes_path, "--plot")
    assert code == 0, err
    assert "2.50 s -> codes 3 x 8 x 15 (codebook size 64)" in out
    encoded = EncodedAudio.load(codes_path)
    assert (encoded.num_samples, encoded.sampling_rate, encoded.codebook_size, encoded.num_quantizers) == (
        int(2.5 * SR), SR, 64, 3)
    # The codes are those of one full pass over the file.
    model = DistillVQVAEModel.from_pretrained(converted_dir).eval()
    extractor = DistillFeatureExtractor.from_pretrained(converted_dir)
    with torch.inference_mode():
        expected = model.encode(extractor(load_audio(speech, SR), sampling_rate=SR).input_features).audio_codes
    assert torch.equal(encoded.audio_codes, expected)
    for name in ("codes_codes.png", "codes_usage.png"):
        check_png(tmp_path / name)

    code, out, err = run(capsys, "decode", codes_path, "--model", converted_dir, "--output", output, "--plot",
                         "--chunk-seconds", "0.7")
    assert code == 0, err
    assert "codes 3 x 8 x 15 -> 2.50 s" in out
    check_audio(output, frames=int(2.5 * SR))
    for name in ("decoded_codes.png", "decoded_usage.png", "decoded_spectrogram.png"):
        check_png(tmp_path / name)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_reconstruct_with_plots_and_chunks(files, converted_dir, tmp_path, capsys):
    _, mixed = files
    output = tmp_path / "out" / "recon.flac"
    code, out, err = run(capsys, "reconstruct", mixed, "--model", converted_dir, "--output", output, "--plot",
                         "--chunk-seconds", "0.5", "--n-iter", "8")
    assert code == 0, err
    assert "1.80 s -> codes 3 x 8 x 11, recon_loss" in out  # 86400 samples at 48 kHz -> 169 frames -> 11 positions
    check_audio(output, frames=int(1.8 * SR))
    for name in ("recon_codes.png", "recon_usage.png", "recon_spectrogram.png"):
        check_png(output.parent / name)


def test_swap_and_blend(files, converted_dir, tmp_path, capsys):
    speech, mixed = files
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    for source, target in ((speech, a), (mixed, b)):
        assert run(capsys, "encode", source, "--model", converted_dir, "--output", target)[0] == 0
    codes_a, codes_b = EncodedAudio.load(a), EncodedAudio.load(b)

    swapped = tmp_path / "swapped.npz"
    code, out, err = run(capsys, "swap", a, b, "--model", converted_dir, "--output", swapped, "--start", "0.5",
                         "--end", "1.0", "--source-start", "0.2", "--levels", "0,1")
    assert code == 0, err
    assert "swapped positions 2-6 (0.34-1.02 s), levels 0,1," in out
    expected = swap_codes(codes_a.audio_codes, codes_b.audio_codes, 2, 6, levels=[0, 1], source_start=1)
    assert torch.equal(EncodedAudio.load(swapped).audio_codes, expected)
    assert run(capsys, "decode", swapped, "--model", converted_dir, "--output", tmp_path / "swapped.wav")[0] == 0
    check_audio(tmp_path / "swapped.wav", frames=int(2.5 * SR))

    # Audio files in, audio out, with pictures.
    code, out, err = run(capsys, "swap", speech, mixed, "--model", converted_dir, "--output", tmp_path / "s.wav",
                         "--start", "1", "--end", "1.5", "--plot")
    assert code == 0, err
    check_audio(tmp_path / "s.wav", frames=int(2.5 * SR))
    check_png(tmp_path / "s_codes.png")

    code, out, err = run(capsys, "blend", a, mixed, "--model", converted_dir, "--output", tmp_path / "blend.wav",
                         "--alpha", "0.3", "--plot")
    assert code == 0, err
    assert "alpha 0.3" in out and "11 positions, 1.80 s" in out  # over the shorter recording
    check_audio(tmp_path / "blend.wav", frames=int(1.8 * SR))
    for name in ("blend_codes.png", "blend_usage.png", "blend_spectrogram.png"):
        check_png(tmp_path / name)


def test_mismatched_codes_and_models_are_refused(files, converted_dir, other_model_dir, tmp_path, capsys):
    speech, mixed = files
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    assert run(capsys, "encode", speech, "--model", converted_dir, "--output", ours)[0] == 0
    assert run(capsys, "encode", mixed, "--model", other_model_dir, "--output", theirs)[0] == 0

    code, out, err = run(capsys, "decode", ours, "--model", other_model_dir, "--output", tmp_path / "x.wav")
    assert code == 1
    assert f"error: {ours} were made by a model with codebook size 64, but this model has codebook size 128" in err
    assert "Traceback" not in err and not (tmp_path / "x.wav").exists()

    code, _, err = run(capsys, "swap", ours, theirs, "--model", converted_dir, "--output", tmp_path / "x.npz",
                       "--start", "0", "--end", "1")
    assert code == 1 and "codebook size 128, but this model has codebook size 64" in err
    code, _, err = run(capsys, "blend", theirs, speech, "--model", converted_dir, "--output", tmp_path / "x.wav")
    assert code == 1 and "made by a model with codebook size 128" in err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.wav").exists()


def test_bad_files_and_requests_are_refused(files, converted_dir, tmp_path, capsys):
    speech, _ = files
    model = ["--model", converted_dir]
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not audio")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), SR)
    text_codes = tmp_path / "codes.npz"
    text_codes.write_text("not codes")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    codes = tmp_path / "good.npz"
    assert run(capsys, "encode", speech, *model, "--output", codes)[0] == 0

    cases = [
        (["encode", not_audio, *model, "--output", tmp_path / "o.npz"], f"cannot read audio file {not_audio}"),
        (["encode", tmp_path / "absent.wav", *model, "--output", tmp_path / "o.npz"], "audio file not found"),
        (["encode", empty, *model, "--output", tmp_path / "o.npz"], "contains no samples"),
        (["encode", speech, *model, "--output", tmp_path / "o.wav"], "--output must be a .npz file"),
        (["encode", speech, "--model", tmp_path / "nothing", "--output", tmp_path / "o.npz"], "model folder not found"),
        (["decode", text_codes, *model, "--output", tmp_path / "o.wav"], f"cannot read codes file {text_codes}"),
        (["decode", foreign, *model, "--output", tmp_path / "o.wav"], "is not a distill-hf codes file"),
        (["decode", tmp_path / "absent.npz", *model, "--output", tmp_path / "o.wav"], "codes file not found"),
        (["decode", codes, *model, "--output", tmp_path / "o.npz"], "--output must be an audio file"),
        (["decode", codes, *model, "--output", tmp_path / "o.xyz"], "unsupported audio format"),
        (["swap", codes, not_audio, *model, "--output", tmp_path / "o.npz", "--start", "0", "--end", "1"],
         "cannot read audio file"),
        (["swap", codes, codes, *model, "--output", tmp_path / "o.npz", "--start", "2", "--end", "9"],
         r"Invalid region [11, 53): need 0 <= start < end <= 15"),
        (["swap", codes, codes, *model, "--output", tmp_path / "o.npz", "--start", "1", "--end", "0.5"],
         "must end after it starts"),
        (["swap", codes, codes, *model, "--output", tmp_path / "o.npz", "--start", "0", "--end", "1", "--levels", "3"],
         "`levels` must be indices in [0, 3)"),
        (["blend", codes, codes, *model, "--output", tmp_path / "o.wav", "--alpha", "2"], "`alpha` must lie in [0, 1]"),
        (["blend", codes, codes, *model, "--output", tmp_path / "o.npz"], "blend writes audio"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        last = err.strip().splitlines()[-1]  # (after transformers' weight-loading bar, where the model was loaded)
        assert last.startswith("error: ") and message in last, (argv, err)
        assert err.count("error") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npz", "empty.wav", "foreign.npz", "good.npz", "notes.wav"]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("encode", "decode", "reconstruct", "swap", "blend"):
        assert command in out


def test_every_input_format(files, converted_dir, tmp_path, capsys):
    """wav, flac, ogg and mp3 inputs (any rate, mixed to mono); an ogg output; an unsupported file named in the error."""
    speech, _ = files
    audio, _ = soundfile.read(speech)
    for name, rate in (("clip.ogg", 48000), ("clip.mp3", 44100), ("clip.flac", 22050)):
        source = tmp_path / name
        resampled = np.interp(np.arange(int(len(audio) * rate / SR)) * SR / rate, np.arange(len(audio)), audio)
        soundfile.write(source, np.stack([resampled, resampled], axis=1), rate)  # stereo
        code, out, err = run(capsys, "encode", source, "--model", converted_dir, "--output", tmp_path / f"{name}.npz")
        assert code == 0, err
        encoded = EncodedAudio.load(tmp_path / f"{name}.npz")
        assert abs(encoded.seconds - 2.5) < 0.06 and encoded.audio_codes.shape[:3] == (1, 3, 8)
    output = tmp_path / "recon.ogg"
    assert run(capsys, "reconstruct", tmp_path / "clip.ogg", "--model", converted_dir, "--output", output)[0] == 0
    info = soundfile.info(output)
    assert info.samplerate == SR and info.channels == 1 and abs(info.frames - int(2.5 * SR)) < 2000
    midi = tmp_path / "song.mid"
    midi.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x60")
    code, _, err = run(capsys, "reconstruct", midi, "--model", converted_dir, "--output", tmp_path / "x.wav")
    assert code == 1 and f"cannot read audio file {midi}" in err
