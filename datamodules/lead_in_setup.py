"""Set-up step 3 (with ``data.lead_in.enabled``): the lead-ins' material. Words of each split
for lead-ins to hold, the evaluation clips' fixed lead-ins, and the training split's bank of
front-end states, built once and cached beside the audio (:mod:`datamodules.lead_in`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from torch import nn

from datamodules.augment import BackgroundNoise
from datamodules.classes import ClassShares
from datamodules.layout import SPLITS
from datamodules.lead_in import LeadInBank, LeadInConfig, cached_bank, lead_in_rows
from datamodules.training_features import Augmentation
from kws.audio.settings import FeatureSettings


def lead_in_words(assignment: Sequence[str], split: str, seed: int, limit: int = 2000) -> np.ndarray:
    """Sorted cache rows (a seeded subset) of ``split`` whose words lead-ins may hold."""
    rows = np.flatnonzero(np.array(assignment) == split)
    return np.sort(np.random.default_rng([seed, 9]).permutation(rows)[:limit])


def evaluation_lead_ins(
    clips: np.ndarray,
    rows: np.ndarray,
    split: str,
    audio: np.ndarray,
    extents: np.ndarray,
    assignment: Sequence[str],
    noise: BackgroundNoise,
    config: LeadInConfig,
    seed: int,
) -> np.ndarray:
    """An evaluation split's ``clips`` (cache ``rows``, -1: silence), each after a fixed, seeded
    ``config.eval_s`` lead-in of the split's noise and words."""
    words = lead_in_words(assignment, split, seed)
    # Its own seed: lead_in on or off, the split holds the same clips.
    return lead_in_rows(
        clips,
        noise,
        audio[words],
        extents[words],
        rows < 0,
        seed=seed * 10 + SPLITS.index(split),
        seconds=config.eval_s,
        config=config,
    )


def training_bank(
    frontend: nn.Module,
    noise: BackgroundNoise,
    audio: np.ndarray,
    extents: np.ndarray,
    files: Sequence[str],
    assignment: Sequence[str],
    config: LeadInConfig,
    augment: Augmentation,
    shares: ClassShares,
    features: FeatureSettings,
    seed: int,
    noise_split: bool,
    cache_dir: Path,
) -> LeadInBank:
    """The training split's bank of ``config.entries`` front-end states, silence and speech
    pools in the proportion of the classes, cached under a key of everything it depends on."""
    words = lead_in_words(assignment, "training", seed)
    silence = shares.silence_percentage
    n_silence = round(config.entries * silence / (100 + silence)) if silence else 0
    pools = {"speech": config.entries - n_silence, "silence": n_silence}
    speech_noise = (augment.background_frequency, augment.background_volume)
    # What the bank's entries are made of (not whether or how they are used).
    composition = {
        k: v for k, v in vars(config).items() if k not in ("enabled", "entries", "eval_s", "fresh_probability")
    }
    key = [
        3,
        pools,
        composition,
        speech_noise,
        repr(features),
        seed,
        noise_split,
        [files[i] for i in words],
        noise.bank.shape[0],
        int(noise.bank[::997].long().sum()),
    ]

    def build() -> LeadInBank:
        return LeadInBank.build(
            frontend,
            noise,
            audio[words],
            extents[words],
            pools,
            seed=seed,
            config=config,
            stride=features.stride_samples,
            clip_samples=features.clip_samples,
            speech_noise=speech_noise,
        )

    return cached_bank(cache_dir, key, build)
