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

from datamodules.layout import BACKGROUND_NOISE_DIR, DataError
from kws.audio.wav import AudioError, read_wav

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


def read_noise_parts(
    folder: str | Path, split: str | None, sample_rate: int = 16000, min_samples: int = 16000, resample: bool = False
) -> dict[str, np.ndarray]:
    """{file stem: int16 samples} of each ``*.wav`` in ``folder``, cut to ``split``'s part (None:
    whole). No recording, or one (or its part) shorter than ``min_samples``, is an error naming
    the file and the fix."""
    paths = sorted(Path(folder).glob("*.wav")) if Path(folder).is_dir() else []
    if not paths:
        raise DataError(
            f"no background noise recordings in {folder}: they make the silence class and the training noise; "
            f"restore the dataset's {BACKGROUND_NOISE_DIR} folder"
        )
    parts = {}
    for path in paths:
        samples, _ = read_wav(path, sample_rate, resample=resample)
        if len(samples) < min_samples:
            raise AudioError(f"{path}: background recording shorter than one clip; remove it")
        part = np.asarray(samples, np.int16) if split is None else noise_part(np.asarray(samples, np.int16), split)
        if len(part) < min_samples:
            raise AudioError(
                f"{path}: its {split} part is {len(part)} samples, shorter than one clip ({min_samples}); "
                "use longer background recordings or data.noise_split: false"
            )
        parts[path.stem] = part
    return parts
