"""How a training batch becomes what the model learns from: augmentation, then the front end as a
stream computes it. Batch-wise tensor ops, each random draw from the step's own generator.

In order (each optional):

1. voice and channel augmentation of the speech clips (:mod:`datamodules.voice_augment`);
2. where the word sits: a random position anywhere the stream's windows will see it, keywords
   cut below ``keep_fraction`` relabelled unknown (:mod:`datamodules.placement`); or the
   recipe's plain time shift;
3. a neighbouring word of running speech before or after it;
4. background noise, and the front end after a lead-in of the split's audio
   (:mod:`datamodules.lead_in`): features as the board computes them in a stream; or noise
   mixed as the recipe does and the front end from a fresh state;
5. SpecAugment masks on the features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from datamodules.augment import BackgroundNoise, noise_volumes, time_shift
from datamodules.config_checks import check_at_least, check_range, check_within, pairs_as_tuples
from datamodules.lead_in import LeadInBank
from datamodules.placement import add_neighbours, place_words
from datamodules.voice_augment import VoiceAugment
from datamodules.word_extent import word_extents_torch


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation: the data module's ``augment`` options (``data.augment.*``).

    Args:
        background_frequency: fraction of training clips mixed with background noise.
        background_volume: maximum noise volume for those clips (silence clips: up to 1).
        time_shift_ms: maximum random shift of training clips, either way (without word_placement).
        word_placement: each word moved anywhere at least ``1 - max_cut`` of it stays in the window
            (in place of the time shift); keywords left with less than ``keep_fraction`` inside
            become unknown (:mod:`datamodules.placement`).
        neighbour_probability, neighbour_gap_s: a neighbouring word of the batch this far before
            or after the word.
        speed_probability, speed_range, eq_probability, reverb_probability: speed / microphone /
            room perturbation (:mod:`datamodules.voice_augment`).
        spec_masks: SpecAugment time and frequency masks per clip.
    """

    background_frequency: float = 0.8
    background_volume: float = 0.1
    time_shift_ms: float = 100.0
    word_placement: bool = False
    max_cut: float = 0.0
    keep_fraction: float = 0.0
    neighbour_probability: float = 0.0
    neighbour_gap_s: tuple[float, float] = (0.5, 1.5)
    speed_probability: float = 0.0
    speed_range: tuple[float, float] = (0.85, 1.15)
    eq_probability: float = 0.0
    reverb_probability: float = 0.0
    spec_masks: int = 0

    def __post_init__(self) -> None:
        pairs_as_tuples(self)
        key = "data.augment."
        for name in (
            "background_frequency",
            "keep_fraction",
            "neighbour_probability",
            "speed_probability",
            "eq_probability",
            "reverb_probability",
        ):
            check_within(key + name, getattr(self, name), 0, 1)
        check_within(key + "max_cut", self.max_cut, 0, 1, high_open=True)
        for name in ("background_volume", "time_shift_ms", "spec_masks"):
            check_at_least(key + name, getattr(self, name), 0)
        check_range(key + "neighbour_gap_s", self.neighbour_gap_s, positive=False)
        check_range(key + "speed_range", self.speed_range)

    def voices(self) -> VoiceAugment:
        return VoiceAugment(
            self.speed_probability, tuple(self.speed_range), self.eq_probability, self.reverb_probability
        )


def spec_mask(
    features: Tensor, masks: int, generator: torch.Generator | None = None, max_frames: int = 5, max_channels: int = 4
) -> Tensor:
    """SpecAugment: ``masks`` random time stripes (up to ``max_frames``) and as many frequency
    stripes (up to ``max_channels``) of each clip's features [B, frames, channels] set to 0."""
    batch, frames, channels = features.shape
    device = features.device
    keep = torch.ones_like(features, dtype=torch.bool)
    t, c = torch.arange(frames, device=device), torch.arange(channels, device=device)
    for _ in range(masks):
        width = torch.randint(0, max_frames + 1, (batch, 1), device=device, generator=generator)
        start = (torch.rand(batch, 1, device=device, generator=generator) * (frames - width + 1)).long()
        keep &= ~((t >= start) & (t < start + width))[:, :, None]
        width = torch.randint(0, max_channels + 1, (batch, 1), device=device, generator=generator)
        start = (torch.rand(batch, 1, device=device, generator=generator) * (channels - width + 1)).long()
        keep &= ~((c >= start) & (c < start + width))[:, None, :]
    return features * keep


def training_features(
    audio: Tensor,
    labels: Tensor,
    options: Augmentation,
    frontend: nn.Module,
    noise: BackgroundNoise,
    bank: LeadInBank | None,
    silence: int,
    unknown: int,
    sample_rate: int,
    generator: torch.Generator | None = None,
    fresh_probability: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """(features [B, frames, channels], labels after relabelling) of int16 training clips ``audio``
    [B, samples]; label indices ``silence`` and ``unknown``, keywords above them. With a lead-in
    ``bank``, ``fresh_probability`` of the clips are featurized from a fresh state instead."""
    is_silence = labels == silence
    voices = options.voices()
    if voices.active:
        audio = voices(audio, generator, skip=is_silence)
    extents = None
    if options.word_placement:
        audio, inside, extents = place_words(audio, word_extents_torch(audio, sample_rate), options.max_cut, generator)
        keyword = (labels != silence) & (labels != unknown)
        labels = torch.where(keyword & (inside < options.keep_fraction), unknown, labels)
    else:
        audio = time_shift(audio, int(options.time_shift_ms * sample_rate / 1000), generator)
    if options.neighbour_probability:
        extents = word_extents_torch(audio, sample_rate) if extents is None else extents
        use = (
            torch.rand(len(audio), device=audio.device, generator=generator) < options.neighbour_probability
        ) & ~is_silence
        # The donors are the batch's other clips (shuffled already), as placed. A keyword donor is
        # added only where it stays too cut to count as that keyword (keep_fraction), so that no
        # whole keyword sits in a window labelled otherwise.
        donor_labels = labels.roll(1, 0)
        donor_is_keyword = (donor_labels != silence) & (donor_labels != unknown)
        below = torch.where(donor_is_keyword, options.keep_fraction if options.word_placement else 0.0, 2.0)
        audio = add_neighbours(
            audio,
            extents,
            audio.roll(1, 0),
            extents.roll(1, 0),
            use,
            options.neighbour_gap_s,
            sample_rate,
            generator=generator,
            below=below,
        )
    if bank is not None:
        features = bank.featurize(frontend, audio, is_silence, noise, generator, fresh_probability)
    else:
        volume = noise_volumes(is_silence, options.background_frequency, options.background_volume, generator)
        features = frontend(noise.mix(audio, volume, generator))
    if options.spec_masks:
        features = spec_mask(features, options.spec_masks, generator)
    return features, labels
