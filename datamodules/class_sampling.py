"""Set-up step 2: the clips of each split. Every keyword clip, a seeded share of the other
words' clips as ``unknown`` and of ``silence`` rows (:func:`datamodules.classes.class_rows`,
sized by ``data.classes``); evaluation clips materialised once, silence as seeded noise, and,
with a lead-in, each after its own fixed lead-in (:mod:`datamodules.lead_in_setup`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from datamodules.augment import BackgroundNoise
from datamodules.batches import ClipBatches
from datamodules.classes import ClassShares, class_rows, evaluation_clips
from datamodules.layout import SPLITS


@dataclass
class SplitClips:
    """``splits``: what the loaders serve (training: rows of the cache; evaluation: its clips,
    after their lead-in where one applies); ``fresh``: evaluation clips without a lead-in;
    ``counts``: clips per class per split."""

    splits: dict[str, ClipBatches] = field(default_factory=dict)
    fresh: dict[str, ClipBatches] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def sample_classes(
    audio: np.ndarray,
    files: Sequence[str],
    assignment: Sequence[str],
    labels: Sequence[str],
    shares: ClassShares,
    seed: int,
    noise: Callable[[str], BackgroundNoise],
    on_empty: Callable[[str], None],
    lead_in: Callable[[str, np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> SplitClips:
    """The clips of every split. ``noise(split)``: the split's background noise (silence rows);
    ``lead_in(split, clips, rows)``: evaluation clips after their lead-in, or None for none."""
    out = SplitClips()
    rng = np.random.default_rng(seed)  # one stream through the splits, in order: the same clips as ever
    for split in SPLITS:
        rows, classes = class_rows(
            files, assignment, split, labels, shares.silence_percentage, shares.unknown(split), rng, on_empty
        )
        if split == "training":
            out.splits[split] = ClipBatches(audio, rows, classes)
        else:
            clips = evaluation_clips(audio, rows, noise(split), rng)
            index = np.arange(len(rows))
            out.fresh[split] = ClipBatches(clips, index, classes)
            out.splits[split] = ClipBatches(lead_in(split, clips, rows) if lead_in else clips, index, classes)
        out.counts[split] = {label: int((classes == i).sum()) for i, label in enumerate(labels)}
    return out
