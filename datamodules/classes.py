"""The classes of one split, as Speech Commands' recipe makes them: every keyword clip, a share
of the other words' clips as ``unknown``, and a share of ``silence`` rows (noise made later)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.augment import BackgroundNoise
from datamodules.config_checks import check_at_least, check_within
from datamodules.layout import SILENCE_LABEL, UNKNOWN_LABEL

# How evaluation clips may be featurized: after a lead-in, as a stream computes them, and from a
# fresh front-end state, as clip tools do (the data module's eval_views, one loader each).
EVAL_VIEWS = ("lead_in", "fresh")


@dataclass(frozen=True)
class ClassShares:
    """Sizes of the silence and unknown classes (``data.classes.*``), as a percentage of the
    keyword clips of each split (25 / 25 as micro_speech's training recipe).

    Args:
        silence_percentage: the silence class, in every split.
        unknown_percentage: the unknown class of validation and test (and of training, unless
            ``training_unknown_percentage`` is set): their clip accuracy stays comparable with the recipe's.
        training_unknown_percentage: the training split's unknown class alone, above 100 for more
            other words than keywords: a stream holds far more other speech than keywords.
    """

    silence_percentage: float = 25.0
    unknown_percentage: float = 25.0
    training_unknown_percentage: float | None = None

    def __post_init__(self) -> None:
        check_within("data.classes.silence_percentage", self.silence_percentage, 0, 100)
        check_within("data.classes.unknown_percentage", self.unknown_percentage, 0, 100)
        if self.training_unknown_percentage is not None:
            check_at_least(
                "data.classes.training_unknown_percentage (or null: unknown_percentage)",
                self.training_unknown_percentage,
                0,
            )

    def unknown(self, split: str) -> float:
        """The unknown class's percentage in ``split``."""
        if split == "training" and self.training_unknown_percentage is not None:
            return self.training_unknown_percentage
        return self.unknown_percentage


def class_rows(
    files: Sequence[str],
    assignment: Sequence[str],
    split: str,
    labels: Sequence[str],
    silence_percentage: float,
    unknown_percentage: float,
    rng: np.random.Generator,
    on_empty: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray]:
    """(cache rows, label indices) of ``split``: keyword clips, then ``unknown_percentage`` % of
    their count drawn from the other words' clips (``rng``), then ``silence_percentage`` % silence
    rows (-1). ``labels``: the class names (silence, unknown, keywords...); ``on_empty(split)`` is
    called when the split holds no keyword clip."""
    label_of = {w: i for i, w in enumerate(labels)}
    word = [f.split("/")[0] for f in files]
    wanted = [(i, label_of[w]) for i, w in enumerate(word) if assignment[i] == split and w in label_of]
    unknown = [i for i, w in enumerate(word) if assignment[i] == split and w not in label_of]
    n_silence = math.ceil(len(wanted) * silence_percentage / 100)
    asked = math.ceil(len(wanted) * unknown_percentage / 100)
    n_unknown = min(len(unknown), asked)
    if n_unknown < asked:
        rank_zero_warn(f"{split}: only {len(unknown)} clips of other words for the unknown class, fewer than asked for")
    picked = rng.permutation(unknown)[:n_unknown]
    if not wanted:
        on_empty(split)
    rows = np.array([i for i, _ in wanted] + list(picked) + [-1] * n_silence, np.int64)
    classes = np.array(
        [c for _, c in wanted] + [label_of[UNKNOWN_LABEL]] * n_unknown + [label_of[SILENCE_LABEL]] * n_silence, np.int64
    )
    return rows, classes


def evaluation_clips(
    audio: np.ndarray, rows: np.ndarray, noise: BackgroundNoise, rng: np.random.Generator
) -> np.ndarray:
    """Evaluation clips materialised once: speech (``rows`` >= 0 of ``audio``) as recorded, silence
    (-1) as seeded crops of the split's ``noise`` at seeded volumes (the training distribution),
    so every evaluation sees the same audio."""
    out = np.zeros((len(rows), audio.shape[1]), np.int16)
    speech = rows >= 0
    out[speech] = audio[rows[speech]]
    n_silence = int((~speech).sum())
    if n_silence:
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        volume = torch.rand(n_silence, generator=generator)
        out[~speech] = noise.mix(torch.zeros(n_silence, audio.shape[1], dtype=torch.int16), volume, generator).numpy()
    return out


def counts_table(counts: dict[str, dict[str, int]], labels: Sequence[str]) -> str:
    """Clips per class (columns) per split (rows), as printed at set-up."""
    width = max(8, *(len(label) for label in labels))
    lines = [f"{'split':<10} " + " ".join(f"{label:>{width}}" for label in labels) + f" {'total':>{width}}"]
    for split, c in counts.items():
        lines.append(
            f"{split:<10} " + " ".join(f"{c[label]:>{width}}" for label in labels) + f" {sum(c.values()):>{width}}"
        )
    return "\n".join(lines)
