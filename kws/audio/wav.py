"""Reading and writing 16-bit PCM WAV clips, with errors that name the file and the fix.

torchaudio 2.9 decodes through torchcodec/FFmpeg, which a fresh machine may lack; soundfile
(libsndfile, shipped in its wheel) reads and writes WAV with nothing else installed.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """A clip that cannot be used as it is; the message names the file and what to do."""


def read_wav(path: str | Path, sample_rate: int | None = None, resample: bool = False) -> tuple[np.ndarray, int]:
    """Read a mono WAV file as int16 samples.

    Args:
        path: the file.
        sample_rate: the rate the caller needs; ``None`` accepts any rate.
        resample: convert a clip at another rate to ``sample_rate`` (with torchaudio's
            band-limited resampler) instead of refusing it.

    Returns:
        ``(samples, rate)``: a 1-D int16 array and its sample rate.

    Raises:
        AudioError: unreadable, truncated, empty, multi-channel or wrong-rate files.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise AudioError(f"{path}: not a readable WAV file ({err}); re-export it as 16-bit PCM WAV or delete it") from err
    declared = _declared_frames(path)
    if declared is not None and data.shape[0] < declared:
        raise AudioError(f"{path}: truncated (header says {declared} samples, file holds {data.shape[0]}); re-download or delete it")
    if data.shape[0] == 0:
        raise AudioError(f"{path}: holds no samples; delete it")
    if data.shape[1] != 1:
        raise AudioError(f"{path}: has {data.shape[1]} channels, mono is needed; convert it, e.g. `sox {path.name} -c 1 out.wav`")
    samples = data[:, 0]
    if sample_rate is not None and rate != sample_rate:
        if not resample:
            raise AudioError(wrong_rate_message(path, rate, sample_rate))
        samples = resample_int16(samples, rate, sample_rate)
        rate = sample_rate
    return samples, rate


def _declared_frames(path: Path) -> int | None:
    """Frames the WAV header declares. libsndfile silently shortens its count to what the file
    holds, which would hide a truncated download; the standard ``wave`` module reports the header."""
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes()
    except (wave.Error, EOFError):
        return None  # not plain PCM WAV (e.g. float or extensible format): trust libsndfile


def wrong_rate_message(path: Path, rate: int, wanted: int) -> str:
    return (
        f"{path}: sample rate {rate} Hz, {wanted} Hz is needed; resample it "
        f"(e.g. `sox {path.name} -r {wanted} out.wav`) or set resample: true in the data config"
    )


def resample_int16(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of int16 samples with torchaudio, back to int16."""
    import torch
    import torchaudio.functional as AF

    wave = torch.from_numpy(samples.astype(np.float32) / 32768.0)
    out = AF.resample(wave, orig_rate, new_rate)
    return np.clip(np.round(out.numpy() * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write int16 mono samples as a 16-bit PCM WAV file."""
    sf.write(str(path), np.asarray(samples, dtype=np.int16), sample_rate, subtype="PCM_16")
