"""Reading and writing mono WAV files as int16 samples, with errors that name the file and the fix.

torchaudio 2.9 decodes through torchcodec/FFmpeg, which a fresh machine may lack; soundfile
(libsndfile, shipped in its wheel) reads and writes WAV with nothing else installed. Integer
formats (8, 16, 24, 32 bit) are scaled to int16 by libsndfile; float formats are not (their
samples would all read as 0 or +-1), so they are read as floats and scaled here: full scale 1.0
is int16's 32768, clipped.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
DATA_RATE_FIX = "or set data.resample: true to convert such clips while decoding"


class AudioError(ValueError):
    """A clip that cannot be used as it is; the message names the file and what to do."""


def _open(path: Path) -> sf.SoundFile:
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        return sf.SoundFile(str(path))
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(
            f"{path}: not a readable WAV file ({err}); re-export it as 16-bit PCM WAV or delete it"
        ) from err


def _check(path: Path, f: sf.SoundFile, sample_rate: int | None, resample: bool, rate_fix: str) -> None:
    if f.channels != 1:
        raise AudioError(
            f"{path}: has {f.channels} channels, mono is needed; convert it, e.g. `sox {path.name} -c 1 out.wav`"
        )
    if f.frames == 0:
        raise AudioError(f"{path}: holds no samples; delete it")
    if sample_rate is not None and f.samplerate != sample_rate and not resample:
        raise AudioError(wrong_rate_message(path, f.samplerate, sample_rate, rate_fix))


def _to_int16(path: Path, block: np.ndarray, is_float: bool) -> np.ndarray:
    if not is_float:
        return block
    if not np.isfinite(block).all():  # NaN/inf would cast to arbitrary integers (a numpy warning at best)
        raise AudioError(f"{path}: float samples that are NaN or infinite; re-export it as 16-bit PCM WAV")
    return np.clip(np.round(block * 32768.0), -32768, 32767).astype(np.int16)


def read_wav(
    path: str | Path, sample_rate: int | None = None, resample: bool = False, rate_fix: str = DATA_RATE_FIX
) -> tuple[np.ndarray, int]:
    """Read a mono WAV file as int16 samples.

    Args:
        path: the file.
        sample_rate: the rate the caller needs; ``None`` accepts any rate.
        resample: convert a clip at another rate to ``sample_rate`` (with torchaudio's
            band-limited resampler) instead of refusing it.
        rate_fix: how the caller's user can convert instead, for the wrong-rate message.

    Returns:
        ``(samples, rate)``: a 1-D int16 array and its sample rate.

    Raises:
        AudioError: unreadable, truncated, empty, multi-channel or wrong-rate files.
    """
    path = Path(path)
    with _open(path) as f:
        _check(path, f, sample_rate, resample, rate_fix)
        is_float = f.subtype in FLOAT_SUBTYPES
        try:
            data = f.read(dtype="float64" if is_float else "int16", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as err:
            raise AudioError(
                f"{path}: not a readable WAV file ({err}); re-export it as 16-bit PCM WAV or delete it"
            ) from err
        rate = f.samplerate
    _check_length(path, data.shape[0])
    samples = _to_int16(path, data[:, 0], is_float)
    if sample_rate is not None and rate != sample_rate:
        samples, rate = resample_int16(samples, rate, sample_rate), sample_rate
    return samples, rate


def wav_blocks(
    path: str | Path, sample_rate: int, block_samples: int, rate_fix: str = DATA_RATE_FIX
) -> Iterator[np.ndarray]:
    """A long mono recording as consecutive int16 blocks of ``block_samples`` (the last one
    shorter), never more than one block in memory. The rate must be ``sample_rate``."""
    path = Path(path)
    with _open(path) as f:
        _check(path, f, sample_rate, False, rate_fix)
        _check_length(path, f.frames)  # before the first block: a cut recording is named, not half-heard
        is_float = f.subtype in FLOAT_SUBTYPES
        for block in f.blocks(block_samples, dtype="float64" if is_float else "int16", always_2d=True):
            yield _to_int16(path, block[:, 0], is_float)


def wav_info(path: str | Path) -> sf._SoundFileInfo:
    """Rate, channels, frames and format of a WAV file, without reading its samples."""
    path = Path(path)
    with _open(path):
        return sf.info(str(path))


def _check_length(path: Path, frames: int) -> None:
    declared = _declared_frames(path)
    if declared is not None and frames < declared:
        raise AudioError(
            f"{path}: truncated (header says {declared} samples, file holds {frames}); re-download or delete it"
        )


def _declared_frames(path: Path) -> int | None:
    """Frames the WAV header declares. libsndfile silently shortens its count to what the file
    holds, which would hide a truncated download; the standard ``wave`` module reports the header."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (wave.Error, EOFError):
        return None  # not plain PCM WAV (e.g. float or extensible format): trust libsndfile


def wrong_rate_message(path: Path, rate: int, wanted: int, fix: str = DATA_RATE_FIX) -> str:
    return (
        f"{path}: sample rate {rate} Hz, {wanted} Hz is needed; "
        f"resample it (e.g. `sox {path.name} -r {wanted} out.wav`) {fix}"
    )


def resample_int16(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of int16 samples with torchaudio, back to int16."""
    import torch
    import torchaudio.functional as AF

    wave_ = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    out = AF.resample(wave_, orig_rate, new_rate)
    return np.clip(np.round(out.numpy() * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono samples as a 16-bit PCM WAV file."""
    sf.write(str(path), np.asarray(samples, dtype=np.int16), sample_rate, format="WAV", subtype="PCM_16")
