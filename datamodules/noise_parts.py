"""Background recordings cut in time into training / validation / testing parts.

Speech Commands' ``_background_noise_`` recordings are shared by all splits. To test on noise the
model never heard, each recording is cut in time: its first ``fractions[0]`` for training, the
next ``fractions[1]`` for validation, the rest for testing. Training augmentation, the silence
clips of each split and the stream tests then all draw from their own part.

    parts = read_noise_parts(data_dir / "_background_noise_", "testing")   # {name: int16 array}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kws.audio.wav import read_wav

SPLIT_FRACTIONS = {"training": 0.8, "validation": 0.1, "testing": 0.1}


def noise_part(recording: np.ndarray, split: str, fractions: dict[str, float] = SPLIT_FRACTIONS) -> np.ndarray:
    """The ``split`` part of one recording (training first, then validation, then testing)."""
    if split not in fractions:
        raise ValueError(f"split must be one of {list(fractions)}, got {split!r}")
    total = sum(fractions.values())
    bounds, acc = {}, 0.0
    for name, fraction in fractions.items():
        bounds[name] = (round(len(recording) * acc / total), round(len(recording) * (acc + fraction) / total))
        acc += fraction
    lo, hi = bounds[split]
    return recording[lo:hi]


def read_noise_parts(folder: str | Path, split: str, sample_rate: int = 16000, min_samples: int = 16000) -> dict[str, np.ndarray]:
    """{file stem: int16 samples} of each ``*.wav`` in ``folder``, cut to ``split``'s part; parts
    shorter than ``min_samples`` are an error naming the file."""
    paths = sorted(Path(folder).glob("*.wav"))
    if not paths:
        raise FileNotFoundError(f"no background recordings (*.wav) in {folder}")
    parts = {}
    for path in paths:
        samples, _ = read_wav(path, sample_rate)
        part = noise_part(np.asarray(samples, np.int16), split)
        if len(part) < min_samples:
            raise ValueError(f"{path}: its {split} part is {len(part)} samples, shorter than {min_samples}; use a longer recording")
        parts[path.stem] = part
    return parts
