"""Training data for the Distill VQ-VAE: audio files cut into fixed-length chunks of log-mel features.

Two ways in:

**A folder of audio files** (what the original Distill tool trained on). `build_datasets` finds the files
(recursively; `.wav`, `.flac`, `.ogg`, `.mp3`, read with soundfile), decodes each once (mono mix, resampled to the
feature extractor's rate with torchaudio; unreadable files are skipped with a warning naming each), splits them
into training and validation *by file* (`config.val_fraction`), cuts every file into chunks of
`config.chunk_duration_s` seconds (the last one zero-padded) and, for training, adds `config.augmentation_expansion`
randomly augmented copies of every chunk::

    from transformers import Trainer, TrainingArguments
    from distill_hf import DistillFeatureExtractor, DistillVQVAEConfig, DistillVQVAEModel
    from distill_hf.data import build_datasets

    config = DistillVQVAEConfig()
    feature_extractor = DistillFeatureExtractor(sampling_rate=config.sampling_rate)
    train_dataset, eval_dataset, info = build_datasets("my_sounds/", feature_extractor, config)
    print(info)  # file counts, durations, skipped files
    trainer = Trainer(
        model=DistillVQVAEModel(config),
        args=TrainingArguments("out", **config.training_arguments_kwargs()),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,  # None when val_fraction is 0
    )

Every item is `{"input_features": FloatTensor [1, n_mels, frames]}`, so `transformers.default_data_collator` (the
Trainer's default) stacks a batch into the `[batch, 1, n_mels, frames]` that `DistillVQVAEModel.forward` takes; the
model computes its loss without labels.

**A `datasets.Dataset`** with an audio column (an `Audio` feature, or dicts `{"array": ..., "sampling_rate": ...}`,
or `{"path": ..., "bytes": ...}`): `prepare_hf_dataset` runs a batched `.map` that cuts the same chunks and runs the
feature extractor, and returns a torch-formatted dataset with one `input_features` column::

    from datasets import Audio, load_dataset
    from distill_hf.data import prepare_hf_dataset

    dataset = load_dataset("audiofolder", data_dir="my_sounds/", split="train")  # or any dataset with audio
    dataset = dataset.cast_column("audio", Audio(sampling_rate=48000))             # optional
    splits = prepare_hf_dataset(dataset, feature_extractor, chunk_duration_s=1.0).train_test_split(0.2)
    # Trainer(..., train_dataset=splits["train"], eval_dataset=splits["test"])

`Audio` columns are read with `decode=False` and decoded here with soundfile (mono mix, torchaudio resampling to
the extractor's rate), so the recipe needs neither torchcodec nor network access; the formats are those libsndfile
reads. (Split a `datasets.Dataset` by row *before* `prepare_hf_dataset` to keep every file's chunks on one side.)
The recipe does not augment.

Augmentation (`augment_chunk`) follows the original: a chunk is augmented with probability `AUGMENT_PROBABILITY`
(0.5); an augmented chunk then goes through each transform with its own probability, in this order: pitch shift
by a uniform [-2, 2] semitones (`PITCH_SHIFT_PROBABILITY` 0.5), speed change by a factor drawn uniformly from
`SPEED_FACTORS` (`SPEED_PROBABILITY` 0.5), white noise at a uniform 15-40 dB SNR (`NOISE_PROBABILITY` 0.3) and gain
by a uniform 0.7-1.3 (`GAIN_PROBABILITY` 0.5). The random decisions (`draw_augmentation`) are separate from the
signal processing (`apply_augmentation`), so they can be inspected cheaply. See `pitch_shift` and `change_speed`
for the methods.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from torch.utils.data import Dataset

from .audio_io import load_audio


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # matched case-insensitively

# --- augmentation: the original Distill tool's probabilities and ranges ---
AUGMENT_PROBABILITY = 0.5  # a chunk is augmented at all with this probability ...
PITCH_SHIFT_PROBABILITY = 0.5  # ... and then each transform fires with its own probability
PITCH_SHIFT_SEMITONES = 2.0  # uniform in [-2, 2] semitones
SPEED_PROBABILITY = 0.5
SPEED_FACTORS = (0.9, 0.95, 1.0, 1.0, 1.05, 1.1)  # drawn uniformly (1.0 twice, as in the original)
NOISE_PROBABILITY = 0.3
NOISE_SNR_DB = (15.0, 40.0)  # uniform, relative to the chunk's mean power
GAIN_PROBABILITY = 0.5
GAIN_RANGE = (0.7, 1.3)  # uniform amplitude factor

# Pitch-shift resampling ratios are rounded to fractions with denominators up to this (at most ~4 cents off), so
# torchaudio's polyphase resampler stays small and fast.
_PITCH_RATIO_MAX_DENOMINATOR = 200


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------


def find_audio_files(audio_dir: str | os.PathLike) -> list[Path]:
    """
    All audio files under `audio_dir`, recursively and sorted: names ending in `.wav`, `.flac`, `.ogg` or `.mp3` in
    any letter case. Hidden files and folders (names starting with `.`, e.g. macOS `._x.wav` resource forks) are
    ignored.

    Raises:
        `ValueError` when `audio_dir` is not a folder or holds no audio files (naming the folder and the extensions).
    """
    root = Path(audio_dir)
    if not root.is_dir():
        raise ValueError(f"Audio folder not found (or not a folder): {root}")
    files = [
        path
        for path in root.rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    ]
    if not files:
        raise ValueError(
            f"No audio files found in {root} (searched recursively for {', '.join(AUDIO_EXTENSIONS)}, any case)."
        )
    return sorted(files)


def split_files(files, val_fraction: float, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """
    Splits files (not chunks) into training and validation sets, so no recording is on both sides.

    The files are sorted, shuffled with a `torch.Generator` seeded with `seed`, and the first
    `round(val_fraction * len(files))` go to validation, clamped so that training keeps at least one file and
    validation gets at least one whenever `val_fraction > 0` and there are two files or more.

    Returns:
        `(train_files, val_files)`, each sorted.
    """
    files = sorted(Path(f) for f in files)
    if not files:
        raise ValueError("`files` is empty: there is nothing to split.")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, Real) or not 0 <= val_fraction < 1:
        raise ValueError(f"`val_fraction` must lie in [0, 1), got {val_fraction!r}.")
    _check_seed(seed)
    num_val = 0
    if val_fraction > 0 and len(files) >= 2:
        num_val = min(max(1, math.floor(val_fraction * len(files) + 0.5)), len(files) - 1)
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    val = sorted(files[i] for i in order[:num_val])
    train = sorted(files[i] for i in order[num_val:])
    return train, val


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")


def _cache_key(path: Path, sampling_rate: int) -> tuple[str, int]:
    return str(path.resolve()), int(sampling_rate)


def decode_files(files, sampling_rate: int, cache: dict | None = None) -> tuple[list[Path], list[Path]]:
    """
    Decodes every file into `cache` (mono float32 at `sampling_rate`, via `distill_hf.load_audio`) unless it is
    already there, warning once per unreadable file.

    Returns:
        `(readable_files, skipped_files)`, both in the order given.
    """
    cache = {} if cache is None else cache
    readable, skipped = [], []
    for path in map(Path, files):
        key = _cache_key(path, sampling_rate)
        if key not in cache:
            try:
                cache[key] = load_audio(path, sampling_rate).to(torch.float32).contiguous()
            except ValueError as error:
                warnings.warn(f"Skipping unreadable audio file {path}: {error}", UserWarning, stacklevel=2)
                skipped.append(path)
                continue
        readable.append(path)
    return readable, skipped


def cut_chunks(waveform: torch.Tensor, chunk_samples: int) -> list[torch.Tensor]:
    """
    Cuts a mono waveform `[samples]` into consecutive chunks of `chunk_samples`; the last is zero-padded. A
    waveform shorter than one chunk gives one padded chunk.
    """
    num_chunks = max(1, math.ceil(waveform.shape[-1] / chunk_samples))
    padded = torch.zeros(num_chunks * chunk_samples, dtype=torch.float32)
    padded[: waveform.shape[-1]] = waveform
    return list(padded.view(num_chunks, chunk_samples))


def _fit_length(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Crops the end of `waveform`, or zero-pads it, to exactly `length` samples."""
    if waveform.shape[-1] >= length:
        return waveform[..., :length].contiguous()
    return torch.nn.functional.pad(waveform, (0, length - waveform.shape[-1]))


# ----------------------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AugmentationParams:
    """
    The random decisions of one `augment_chunk` call. `applied` is the chunk-level gate; each transform's field is
    `None` when it did not fire (always `None` when `applied` is False).
    """

    applied: bool = False
    pitch_semitones: float | None = None
    speed_factor: float | None = None
    noise_snr_db: float | None = None
    gain: float | None = None

    @property
    def transforms(self) -> tuple[str, ...]:
        """Names of the transforms that fired, in the order they are applied."""
        names = ("pitch_semitones", "speed_factor", "noise_snr_db", "gain")
        return tuple(name for name in names if getattr(self, name) is not None)


def draw_augmentation(generator: torch.Generator | None = None) -> AugmentationParams:
    """
    Draws the augmentation decisions and values (no signal processing). Every call takes the same 10 numbers from
    `generator` whatever fires, so the gate and the transforms are independent draws.
    """
    fires = torch.rand(5, generator=generator, dtype=torch.float64).tolist()
    values = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    speed_index = int(torch.randint(len(SPEED_FACTORS), (1,), generator=generator))
    if not fires[0] < AUGMENT_PROBABILITY:
        return AugmentationParams()
    low_snr, high_snr = NOISE_SNR_DB
    low_gain, high_gain = GAIN_RANGE
    return AugmentationParams(
        applied=True,
        pitch_semitones=PITCH_SHIFT_SEMITONES * (2 * values[0] - 1) if fires[1] < PITCH_SHIFT_PROBABILITY else None,
        speed_factor=SPEED_FACTORS[speed_index] if fires[2] < SPEED_PROBABILITY else None,
        noise_snr_db=low_snr + (high_snr - low_snr) * values[2] if fires[3] < NOISE_PROBABILITY else None,
        gain=low_gain + (high_gain - low_gain) * values[3] if fires[4] < GAIN_PROBABILITY else None,
    )


def pitch_shift(waveform: torch.Tensor, sampling_rate: int, semitones: float) -> torch.Tensor:
    """
    Shifts the pitch of a mono waveform `[samples]` by `semitones`, keeping its length and tempo.

    Method: a phase-vocoder time stretch (`torchaudio.functional.phase_vocoder`, Hann STFT of about 40 ms with 75 %
    overlap) lengthens the signal by `ratio = 2 ** (semitones / 12)`, then `torchaudio.functional.resample` from
    `p` to `q` Hz, with `p / q` the closest fraction to `ratio` with `q <= 200` (at most ~4 cents off), brings it
    back to the original length, raising every frequency by `ratio`. About 20-30 ms for one second at 48 kHz on one
    CPU thread. (`torchaudio.functional.pitch_shift` does the same but resamples between `sampling_rate / ratio`
    and `sampling_rate` Hz, whose polyphase filter takes tens of seconds per call for such rates.)
    """
    length = waveform.shape[-1]
    ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(_PITCH_RATIO_MAX_DENOMINATOR)
    if ratio == 1 or length < 4:
        return waveform.clone()
    n_fft = 2 ** max(2, round(math.log2(0.04 * sampling_rate)))  # ~40 ms: 2048 at 48 kHz, 512 at 16 kHz
    while n_fft // 2 >= length:  # the centred STFT needs more than n_fft // 2 samples
        n_fft //= 2
    hop_length = n_fft // 4
    window = torch.hann_window(n_fft, dtype=waveform.dtype)
    spectrogram = torch.stft(waveform, n_fft, hop_length, window=window, return_complex=True)
    phase_advance = torch.linspace(0, math.pi * hop_length, n_fft // 2 + 1, dtype=waveform.dtype)[:, None]
    stretched = torchaudio.functional.phase_vocoder(spectrogram, 1.0 / float(ratio), phase_advance)
    stretched = torch.istft(stretched, n_fft, hop_length, window=window, length=round(length * float(ratio)))
    shifted = torchaudio.functional.resample(stretched, ratio.numerator, ratio.denominator)
    return _fit_length(shifted, length)


def change_speed(waveform: torch.Tensor, speed_factor: float) -> torch.Tensor:
    """
    Plays a mono waveform `[samples]` `speed_factor` times faster (tempo and pitch together, like a tape) by
    resampling it to `len / speed_factor` samples with `torchaudio.functional.resample`, then re-cuts it to the
    original length: a slowed-down chunk loses its end, a sped-up one is zero-padded at the end.
    """
    if speed_factor == 1:
        return waveform.clone()
    ratio = Fraction(str(speed_factor)).limit_denominator(1000)  # 1.05 -> 21/20
    return _fit_length(torchaudio.functional.resample(waveform, ratio.numerator, ratio.denominator), waveform.shape[-1])


def add_noise(waveform: torch.Tensor, snr_db: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """
    Adds white Gaussian noise scaled so that the signal-to-noise ratio (mean powers over the whole chunk) is exactly
    `snr_db`. A silent chunk stays silent.
    """
    noise = torch.randn(waveform.shape, generator=generator, dtype=waveform.dtype)
    signal_power = waveform.pow(2).mean()
    noise_power = noise.pow(2).mean().clamp_min(torch.finfo(waveform.dtype).tiny)
    scale = torch.sqrt(signal_power / (10.0 ** (snr_db / 10.0)) / noise_power)
    return waveform + scale * noise


def apply_augmentation(
    waveform: torch.Tensor,
    sampling_rate: int,
    params: AugmentationParams,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Applies the transforms that fired in `params` to a mono waveform `[samples]`; the length is kept."""
    if not params.applied:
        return waveform.clone()
    if params.pitch_semitones is not None:
        waveform = pitch_shift(waveform, sampling_rate, params.pitch_semitones)
    if params.speed_factor is not None:
        waveform = change_speed(waveform, params.speed_factor)
    if params.noise_snr_db is not None:
        waveform = add_noise(waveform, params.noise_snr_db, generator)
    if params.gain is not None:
        waveform = waveform * params.gain
    return waveform


def augment_chunk(waveform: torch.Tensor, sampling_rate: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """
    The original's random augmentation of one chunk: `draw_augmentation` then `apply_augmentation` (see the module
    docstring for the probabilities). Returns a new waveform of the same length.
    """
    waveform = torch.as_tensor(waveform, dtype=torch.float32)
    params = draw_augmentation(generator)
    return apply_augmentation(waveform, sampling_rate, params, generator)


def _item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """An independent, reproducible generator for one (seed, epoch, item) triple."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


# ----------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------


def _chunk_samples(chunk_duration_s, feature_extractor) -> int:
    if isinstance(chunk_duration_s, bool) or not isinstance(chunk_duration_s, Real) or not chunk_duration_s > 0:
        raise ValueError(f"`chunk_duration_s` must be a positive number of seconds, got {chunk_duration_s!r}.")
    samples = round(chunk_duration_s * feature_extractor.sampling_rate)
    if samples <= feature_extractor.n_fft // 2:
        raise ValueError(
            f"`chunk_duration_s` = {chunk_duration_s} s is {samples} samples at {feature_extractor.sampling_rate} Hz; "
            f"the feature extractor needs more than n_fft // 2 = {feature_extractor.n_fft // 2}."
        )
    return samples


class DistillAudioDataset(Dataset):
    """
    Fixed-length chunks of audio files as `{"input_features": FloatTensor [1, n_mels, frames]}` items.

    Every file is decoded once, when the dataset is built (mono mix, resampled to `feature_extractor.sampling_rate`;
    unreadable files are skipped with a warning naming each) and kept in memory in `cache`, a dict keyed by
    `(resolved path, sampling rate)`. Pass the same dict to several datasets to share decoded files (as
    `build_datasets` does); by default each dataset has its own. Each file is cut into chunks of
    `round(chunk_duration_s * sampling_rate)` samples, the last one zero-padded (a file shorter than a chunk gives one
    padded chunk).

    Items: indices `0 .. num_chunks - 1` are the chunks as they are. With `augment=True`, they are followed by
    `augmentation_expansion` augmented copies of every chunk (so each file contributes `1 + augmentation_expansion`
    times its chunk count): index `num_chunks * (1 + k) + c` is copy `k` of chunk `c`, passed through
    `augment_chunk` with a generator seeded from `(seed, epoch, index)`. An index therefore gives the same audio
    within an epoch and different audio after `set_epoch` (the Trainer calls it each epoch through Accelerate's
    data loader; with `persistent_workers` the workers keep the epoch they were started with). With
    `augment=False`, `augmentation_expansion` is ignored; with `augment=True` and `augmentation_expansion=0` nothing
    is augmented (like the original).

    Args:
        files (iterable of paths): the audio files.
        feature_extractor (`DistillFeatureExtractor`): computes the features, and sets the sampling rate.
        chunk_duration_s (`float`, *optional*, defaults to 1.0): seconds per chunk.
        augment (`bool`, *optional*, defaults to `False`): add augmented copies.
        augmentation_expansion (`int`, *optional*, defaults to 0): augmented copies of every chunk.
        seed (`int`, *optional*, defaults to 0): seed of the augmentation.
        cache (`dict`, *optional*): decoded waveforms to reuse and fill.

    Raises:
        `ValueError` when no file is readable, or on invalid arguments.
    """

    def __init__(
        self,
        files,
        feature_extractor,
        chunk_duration_s: float = 1.0,
        augment: bool = False,
        augmentation_expansion: int = 0,
        seed: int = 0,
        cache: dict | None = None,
    ):
        if isinstance(augmentation_expansion, bool) or not isinstance(augmentation_expansion, Integral):
            raise ValueError(f"`augmentation_expansion` must be an integer >= 0, got {augmentation_expansion!r}.")
        if augmentation_expansion < 0:
            raise ValueError(f"`augmentation_expansion` must be an integer >= 0, got {augmentation_expansion}.")
        _check_seed(seed)
        self.feature_extractor = feature_extractor
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.chunk_duration_s = float(chunk_duration_s)
        self.chunk_samples = _chunk_samples(chunk_duration_s, feature_extractor)
        self.augment = bool(augment)
        self.augmentation_expansion = int(augmentation_expansion) if self.augment else 0
        self.seed = int(seed)
        self.epoch = 0
        self.cache = {} if cache is None else cache

        files = [Path(f) for f in files]
        if not files:
            raise ValueError("No audio files given.")
        self.files, self.skipped_files = decode_files(files, self.sampling_rate, self.cache)
        if not self.files:
            raise ValueError(
                f"None of the {len(files)} audio files could be read: " + ", ".join(str(f) for f in files)
            )
        self._waveforms = [self.cache[_cache_key(path, self.sampling_rate)] for path in self.files]
        # (file index, start sample) of every chunk
        self._chunks = [
            (file_index, chunk * self.chunk_samples)
            for file_index, waveform in enumerate(self._waveforms)
            for chunk in range(max(1, math.ceil(waveform.shape[-1] / self.chunk_samples)))
        ]

    def __getstate__(self) -> dict:
        # DataLoader workers need only this dataset's waveforms, not a cache shared with other datasets.
        state = self.__dict__.copy()
        state["cache"] = {_cache_key(path, self.sampling_rate): w for path, w in zip(self.files, self._waveforms)}
        return state

    @property
    def num_chunks(self) -> int:
        """Number of un-augmented chunks (items without augmentation)."""
        return len(self._chunks)

    @property
    def duration_s(self) -> float:
        """Total duration of the readable files, in seconds at the model rate."""
        return sum(waveform.shape[-1] for waveform in self._waveforms) / self.sampling_rate

    def set_epoch(self, epoch: int) -> None:
        """Selects the augmentation of `epoch` (called by the Trainer's data loader at the start of each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_chunks * (1 + self.augmentation_expansion)

    def _locate(self, index: int) -> tuple[int, int, int | None]:
        """`(file index, start sample, augmented copy or None)` of item `index`."""
        if isinstance(index, bool) or not isinstance(index, Integral):
            raise TypeError(f"Dataset indices must be integers, got {index!r}.")
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"Index {index} out of range for a dataset of {len(self)} items.")
        copy, chunk = divmod(int(index), self.num_chunks)
        file_index, start = self._chunks[chunk]
        return file_index, start, (copy - 1 if copy > 0 else None)

    def item_source(self, index: int) -> dict:
        """Where item `index` comes from: `{"file", "start_s", "augmented_copy"}` (copy `None` for originals)."""
        file_index, start, copy = self._locate(index)
        return {"file": self.files[file_index], "start_s": start / self.sampling_rate, "augmented_copy": copy}

    def chunk_waveform(self, index: int) -> torch.Tensor:
        """The waveform `[chunk_samples]` of item `index` before feature extraction (augmented for copies)."""
        file_index, start, copy = self._locate(index)
        waveform = self._waveforms[file_index][start : start + self.chunk_samples]
        if waveform.shape[-1] < self.chunk_samples:
            waveform = torch.nn.functional.pad(waveform, (0, self.chunk_samples - waveform.shape[-1]))
        else:
            waveform = waveform.clone()
        if copy is not None:
            generator = _item_generator(self.seed, self.epoch, index % len(self))
            waveform = augment_chunk(waveform, self.sampling_rate, generator)
        return waveform

    def __getitem__(self, index: int) -> dict:
        waveform = self.chunk_waveform(index)
        features = self.feature_extractor(
            waveform, sampling_rate=self.sampling_rate, return_tensors="pt", return_attention_mask=False
        )["input_features"]
        return {"input_features": features[0]}


@dataclass
class AudioDataInfo:
    """What `build_datasets` found: file counts, durations (seconds at the model rate) and skipped files."""

    num_files: int  # audio files found, readable or not
    num_train_files: int
    num_val_files: int
    train_duration_s: float
    val_duration_s: float
    num_train_items: int
    num_val_items: int
    skipped_files: list[Path] = field(default_factory=list)

    @property
    def total_duration_s(self) -> float:
        return self.train_duration_s + self.val_duration_s


def build_datasets(
    audio_dir: str | os.PathLike,
    feature_extractor,
    config,
    augment: bool = True,
    seed: int = 0,
) -> tuple[DistillAudioDataset, DistillAudioDataset | None, AudioDataInfo]:
    """
    The training and validation datasets of an audio folder, as the original Distill tool built them.

    Finds the files (`find_audio_files`), decodes each once (unreadable ones are skipped with a warning), splits the
    readable ones by file with `config.val_fraction` (`split_files` with `seed`), and builds a
    `DistillAudioDataset` per split with `config.chunk_duration_s`. Only the training split is augmented (with
    `config.augmentation_expansion` copies per chunk, when `augment` is True).

    Args:
        audio_dir: the folder.
        feature_extractor (`DistillFeatureExtractor`): must match `config`'s sampling rate and mel bands.
        config (`DistillVQVAEConfig`): supplies `chunk_duration_s`, `val_fraction`, `augmentation_expansion`.
        augment (`bool`, *optional*, defaults to `True`): augment the training split.
        seed (`int`, *optional*, defaults to 0): seed of the split and of the augmentation.

    Returns:
        `(train_dataset, eval_dataset, info)`; `eval_dataset` is `None` when no file is held out.

    Raises:
        `ValueError` for a missing folder, a folder without audio files or without readable ones, or a feature
        extractor that does not match `config`.
    """
    for name in ("sampling_rate", "n_mels"):
        if getattr(config, name, None) is not None and getattr(feature_extractor, name) != getattr(config, name):
            raise ValueError(
                f"The feature extractor's {name} ({getattr(feature_extractor, name)}) differs from the config's "
                f"({getattr(config, name)})."
            )
    files = find_audio_files(audio_dir)
    cache: dict = {}
    readable, skipped = decode_files(files, feature_extractor.sampling_rate, cache)
    if not readable:
        raise ValueError(
            f"None of the {len(files)} audio files in {audio_dir} could be read: " + ", ".join(map(str, files))
        )
    train_files, val_files = split_files(readable, config.val_fraction, seed=seed)
    train = DistillAudioDataset(
        train_files,
        feature_extractor,
        chunk_duration_s=config.chunk_duration_s,
        augment=augment,
        augmentation_expansion=config.augmentation_expansion,
        seed=seed,
        cache=cache,
    )
    val = None
    if val_files:
        val = DistillAudioDataset(val_files, feature_extractor, chunk_duration_s=config.chunk_duration_s, cache=cache)
    info = AudioDataInfo(
        num_files=len(files),
        num_train_files=len(train.files),
        num_val_files=len(val.files) if val is not None else 0,
        train_duration_s=train.duration_s,
        val_duration_s=val.duration_s if val is not None else 0.0,
        num_train_items=len(train),
        num_val_items=len(val) if val is not None else 0,
        skipped_files=skipped,
    )
    return train, val, info


# ----------------------------------------------------------------------------------------------------------------
# `datasets` recipe
# ----------------------------------------------------------------------------------------------------------------


def _to_mono_float(data, name: str) -> torch.Tensor:
    """Samples `[samples]` or channels-first `[channels, samples]` (ints as PCM) as a mono float32 tensor."""
    array = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.dtype.kind in "iu":
        info = np.iinfo(array.dtype)
        array = (array.astype(np.float64) - (info.min + info.max + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif array.dtype.kind != "f":
        raise ValueError(f"{name} must hold audio samples, got an array of dtype {array.dtype}.")
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty array [samples] or [channels, samples], got {array.shape}.")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def decode_audio_item(item, sampling_rate: int) -> torch.Tensor:
    """
    One value of a `datasets` audio column as a mono float32 waveform at `sampling_rate`. Accepts a dict with
    `array` (`[samples]` or `[channels, samples]`) and `sampling_rate` (a decoded `Audio` value), a dict with `bytes`
    and/or `path` (an `Audio(decode=False)` value; read with soundfile), or a torchcodec `AudioDecoder` (what
    `Audio` decodes to in `datasets` >= 4).

    Raises:
        `ValueError` for anything else, or for unreadable audio.
    """
    if isinstance(item, dict) and item.get("array") is not None:
        if item.get("sampling_rate") is None:
            raise ValueError("An audio value with an `array` also needs its `sampling_rate`.")
        waveform, rate = _to_mono_float(item["array"], "`array`"), int(item["sampling_rate"])
    elif isinstance(item, dict) and (item.get("bytes") is not None or item.get("path") is not None):
        source = io.BytesIO(item["bytes"]) if item.get("bytes") is not None else item["path"]
        name = item.get("path") or "<bytes>"
        try:
            data, rate = soundfile.read(source, dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises LibsndfileError/RuntimeError/TypeError for bad audio
            raise ValueError(f"cannot read audio {name}: {error}") from None
        if data.shape[0] == 0:
            raise ValueError(f"audio {name} contains no samples")
        waveform = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    elif hasattr(item, "get_all_samples"):
        samples = item.get_all_samples()
        waveform, rate = _to_mono_float(samples.data, "the decoded audio"), int(samples.sample_rate)
    else:
        raise ValueError(
            "An audio value must be a dict with `array` and `sampling_rate`, a dict with `bytes`/`path`, or an "
            f"AudioDecoder; got {type(item).__name__}."
        )
    if rate != sampling_rate:
        waveform = torchaudio.functional.resample(waveform, rate, sampling_rate)
    return waveform


def prepare_hf_dataset(
    dataset,
    feature_extractor,
    audio_column: str = "audio",
    chunk_duration_s: float = 1.0,
    batch_size: int = 16,
    num_proc: int | None = None,
):
    """
    Turns a `datasets.Dataset` with an audio column into chunks of features for the Trainer (see the module
    docstring for the recipe).

    A batched `dataset.map` decodes every row (`decode_audio_item`; an `Audio` column is cast to
    `Audio(decode=False)` first and read with soundfile, so torchcodec is not needed), cuts it into chunks of
    `round(chunk_duration_s * sampling_rate)` samples (the last zero-padded), runs `feature_extractor` on the chunks
    and removes all the original columns. Rows whose audio cannot be read are skipped with a warning.

    Returns:
        A `datasets.Dataset` with one `input_features` column (`Array3D` `[1, n_mels, frames]`, float32), one row per
        chunk, formatted as torch tensors.

    Raises:
        `ValueError` when `audio_column` is missing or no row could be read.
    """
    import datasets

    if audio_column not in dataset.column_names:
        raise ValueError(f"Column {audio_column!r} not found; the dataset has {dataset.column_names}.")
    chunk_samples = _chunk_samples(chunk_duration_s, feature_extractor)
    sampling_rate = int(feature_extractor.sampling_rate)
    feature = dataset.features[audio_column]
    if isinstance(feature, datasets.Audio) and feature.decode:
        dataset = dataset.cast_column(audio_column, datasets.Audio(decode=False))
    num_frames = chunk_samples // feature_extractor.hop_length + 1
    shape = (1, feature_extractor.n_mels, num_frames)

    def chunk_and_extract(batch: dict) -> dict:
        chunks = []
        for item in batch[audio_column]:
            try:
                waveform = decode_audio_item(item, sampling_rate)
            except ValueError as error:
                warnings.warn(f"Skipping unreadable audio row: {error}", UserWarning, stacklevel=2)
                continue
            chunks.extend(cut_chunks(waveform, chunk_samples))
        if not chunks:
            return {"input_features": np.zeros((0, *shape), dtype=np.float32)}
        features = feature_extractor(
            torch.stack(chunks), sampling_rate=sampling_rate, return_tensors="np", return_attention_mask=False
        )["input_features"]
        return {"input_features": features.astype(np.float32)}

    prepared = dataset.map(
        chunk_and_extract,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        features=datasets.Features({"input_features": datasets.Array3D(shape=shape, dtype="float32")}),
        desc="Cutting audio into feature chunks",
    )
    if len(prepared) == 0:
        raise ValueError(f"No audio in column {audio_column!r} could be read.")
    return prepared.with_format("torch")


__all__ = [
    "AUDIO_EXTENSIONS",
    "AUGMENT_PROBABILITY",
    "GAIN_PROBABILITY",
    "GAIN_RANGE",
    "NOISE_PROBABILITY",
    "NOISE_SNR_DB",
    "PITCH_SHIFT_PROBABILITY",
    "PITCH_SHIFT_SEMITONES",
    "SPEED_FACTORS",
    "SPEED_PROBABILITY",
    "AudioDataInfo",
    "AugmentationParams",
    "DistillAudioDataset",
    "add_noise",
    "apply_augmentation",
    "augment_chunk",
    "build_datasets",
    "change_speed",
    "cut_chunks",
    "decode_audio_item",
    "decode_files",
    "draw_augmentation",
    "find_audio_files",
    "pitch_shift",
    "prepare_hf_dataset",
    "split_files",
]
