"""The synthetic speakers of the offline corpus: who speaks, and which split hears them.

A speaker is an espeak-ng English dialect (:data:`DIALECTS`) with one of its ~100 voice variants
(timbres: m1..m8, f1..f5, klatt..klatt6, whisper, ...), an accent (:func:`datamodules.delivery.draw_accent`),
a vocal-tract length (``formant_scale``: the rendered speech's formants scaled by 0.85-1.15
while pitch and tempo stay, see :mod:`datamodules.render`) and fixed habits: pitch, pitch range,
speaking rate, loudness and microphone band. Each voice variant belongs to one split, so test
voices are never heard in training; its family (``m3`` -> ``m``, ``klatt2`` -> ``klatt``) and
its synthesis (espeak's formant ``wavegen`` or a ``klatt<N>`` source) are recorded for reports.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from datamodules.delivery import draw_accent
from datamodules.espeak import variant_synthesis
from datamodules.layout import SPLITS, which_set

VALIDATION_PERCENTAGE = 10
TESTING_PERCENTAGE = 10

# espeak-ng's English dialects, all it has (its lang/gmw folder; en-Shaw is the Shavian
# alphabet, read as en). Each speaker speaks one.
DIALECTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
FORMANT_SCALE = (0.85, 1.15)
# The formant scale is m / 441 for an integer m: the renderer then resamples from 50 * m Hz, and
# 50 * m shares a factor of 50 with 16 kHz, which keeps the resampling kernel as small as today's.
FORMANT_STEPS = 441


def family_of(variant: str) -> str:
    """A voice variant's family: its name lowercased without trailing digits (m3 -> m, klatt2 -> klatt)."""
    family = re.sub(r"\d+$", "", variant).lower()
    return {"whisperf": "whisper"}.get(family, family)


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice and the habits it keeps from clip to clip."""

    id: str
    dialect: str  # espeak-ng English dialect (DIALECTS)
    variant: str  # espeak-ng voice variant (a file of its voices/!v folder)
    synthesis: str  # "wavegen" (espeak's formant synthesis) or "klatt<N>" (a Klatt voice source)
    accent: tuple[tuple[str, str], ...]  # (group, option) of datamodules.delivery.ACCENTS
    formant_scale: float  # vocal-tract length: formants x this, pitch and tempo kept
    pitch: int  # espeak-ng pitch 0-100 (50 = the voice's normal pitch)
    pitch_range: int  # espeak-ng intonation range 0-100
    rate: int  # words per minute (espeak-ng allows 80-450)
    peak_db: float  # loudness: the word's peak level, dBFS
    highpass_hz: float  # microphone / room response: band edges of the channel
    lowpass_hz: float

    @property
    def voice(self) -> str:
        """espeak-ng voice name."""
        return f"{self.dialect}+{self.variant}"

    @property
    def family(self) -> str:
        return family_of(self.variant)

    @property
    def split(self) -> str:
        return which_set(f"{self.id}_nohash_0.wav")

    def record(self) -> dict:
        """The marker's entry for this speaker (JSON)."""
        out = asdict(self)
        out["accent"] = dict(self.accent)
        return {**out, "voice": self.voice, "family": self.family, "split": self.split}


def split_sizes(total: int) -> dict[str, int]:
    """80/10/10 % of ``total``, at least one in each split."""
    sizes = {
        "validation": max(1, round(total * VALIDATION_PERCENTAGE / 100)),
        "testing": max(1, round(total * TESTING_PERCENTAGE / 100)),
    }
    return {"training": total - sum(sizes.values()), **sizes}


def make_speakers(num_speakers: int, seed: int, variants: Sequence[str]) -> list[Speaker]:
    """Draw speakers until each split has its share (80/10/10 %) and no variant spans two splits."""
    synthesis = {variant: variant_synthesis(variant) for variant in variants}
    rng = np.random.default_rng([seed, 1])
    # Each voice variant (timbre) belongs to one split, so test voices are never heard in training.
    variant_split: dict[str, str] = {}
    shuffled = [variants[i] for i in rng.permutation(len(variants))]
    for split, size in split_sizes(len(variants)).items():
        variant_split.update(dict.fromkeys(shuffled[:size], split))
        shuffled = shuffled[size:]
    quota = split_sizes(num_speakers)
    speakers: dict[str, Speaker] = {}
    counts = dict.fromkeys(SPLITS, 0)
    while len(speakers) < num_speakers:
        dialect, variant = DIALECTS[rng.integers(len(DIALECTS))], variants[rng.integers(len(variants))]
        steps = rng.integers(round(FORMANT_SCALE[0] * FORMANT_STEPS), round(FORMANT_SCALE[1] * FORMANT_STEPS) + 1)
        habits = dict(
            dialect=dialect,
            variant=variant,
            synthesis=synthesis[variant],
            accent=draw_accent(rng),
            formant_scale=round(int(steps) / FORMANT_STEPS, 6),
            pitch=int(rng.integers(25, 76)),
            pitch_range=int(rng.integers(25, 86)),
            rate=int(rng.integers(90, 191)),
            peak_db=round(float(rng.uniform(-24.0, -3.0)), 2),
            highpass_hz=round(float(rng.uniform(40.0, 300.0)), 1),
            lowpass_hz=round(float(rng.uniform(3500.0, 7800.0)), 1),
        )
        speaker_id = hashlib.sha1(json.dumps([seed, habits], sort_keys=True).encode()).hexdigest()[:8]
        speaker = Speaker(id=speaker_id, **habits)
        split = speaker.split
        # which_set decides the split from the id, as in Speech Commands; keep the speakers that fit.
        if speaker_id in speakers or counts[split] >= quota[split] or variant_split[variant] != split:
            continue
        speakers[speaker_id] = speaker
        counts[split] += 1
    return list(speakers.values())


def speaker_order(speakers: Sequence[Speaker], rng: np.random.Generator) -> list[int]:
    """A random order of speaker indices in which any prefix holds each split in proportion."""
    keyed = []
    for split in SPLITS:
        members = [i for i, s in enumerate(speakers) if s.split == split]
        offset = rng.random()
        # Spread each split's members evenly over [0, 1); merging by key interleaves the splits.
        keyed += [((rank + offset) / len(members), i) for rank, i in enumerate(rng.permutation(members))]
    return [int(i) for _, i in sorted(keyed)]
