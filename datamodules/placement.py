"""Where the word sits in the training window: anywhere the stream's windows will see it.

On the board a 1 s window moves over a word in 100 ms steps: the word is whole in a few windows
and cut at one edge in the others, and the neighbouring words of running speech reach into the
window. A clip with its word near the middle, shifted by at most 100 ms, teaches none of this.
Batch-wise, on the training device:

- :func:`place_words`: each clip's word (its extent, :mod:`datamodules.word_extent`) is moved to
  a uniformly random position where at least ``1 - max_cut`` of it stays in the window; returns
  the fraction of the word left inside, from which the caller relabels (a keyword cut below its
  ``keep_fraction`` is no longer that keyword).
- :func:`add_neighbours`: another clip's word is added before or after the
  word, ``gap_s`` apart, as running speech would put it; whatever of it falls in the window stays.

    extents = word_extents_torch(audio)
    audio, inside = place_words(audio, extents, max_cut=0.5, generator=g)
    labels = torch.where(is_keyword & (inside < 0.6), unknown, labels)
"""

from __future__ import annotations

import torch
from torch import Tensor

from datamodules.augment import shift_by


def _uniform_int(lo: Tensor, hi: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(lo.shape, device=lo.device, generator=generator, dtype=torch.float64)
    return (lo + (u * (hi - lo + 1).to(torch.float64)).floor().long()).clamp(max=hi)


def place_words(
    audio: Tensor, extents: Tensor, max_cut: float = 0.0, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Move each clip's word to a random position; returns (audio [B, S], fraction of the word
    inside the window [B], new extents [B, 2] clipped to the window).

    The word's start lands uniformly in [-max_cut * n, S - n + max_cut * n] (n: its length): at
    ``max_cut`` 0 always whole, at 0.5 up to half of it outside either edge."""
    if not 0.0 <= max_cut < 1.0:
        raise ValueError(f"max_cut must be within [0, 1), got {max_cut}")
    length = audio.shape[1]
    start, end = extents[:, 0], extents[:, 1]
    n = (end - start).clamp(min=1)
    cut = (max_cut * n.to(torch.float64)).floor().long()
    lo, hi = -cut, length - n + cut
    hi = torch.maximum(hi, lo)
    new_start = _uniform_int(lo, hi, generator)
    shifted = shift_by(audio, new_start - start)
    inside = ((new_start + n).clamp(max=length) - new_start.clamp(min=0)).clamp(min=0).to(torch.float32) / n.to(
        torch.float32
    )
    new = torch.stack([new_start.clamp(0, length), (new_start + n).clamp(0, length)], -1)
    return shifted, inside, new


def add_neighbours(
    audio: Tensor,
    extents: Tensor,
    donors: Tensor,
    donor_extents: Tensor,
    use: Tensor,
    gap_s: tuple[float, float] = (0.5, 1.5),
    sample_rate: int = 16000,
    pad_ms: float = 20.0,
    generator: torch.Generator | None = None,
    below: Tensor | None = None,
) -> Tensor:
    """Add to each clip where ``use`` [B] the word of the same row of ``donors`` [B, S], cut to its
    extent (+ ``pad_ms``), ending ``gap`` before the clip's word or starting ``gap`` after it (side
    at random); ``extents``: the clip words' [B, 2] positions in the window. int16 in/out.
    ``below`` [B]: a donor is only added where less than this fraction of its segment falls in the
    window (a keyword donor must stay too cut to count as that keyword: the label is the clip's)."""
    batch, length = audio.shape
    device = audio.device
    before = torch.rand(batch, device=device, generator=generator) < 0.5
    gap = (
        gap_s[0] + torch.rand(batch, device=device, generator=generator, dtype=torch.float64) * (gap_s[1] - gap_s[0])
    ) * sample_rate
    gap = gap.long()
    pad = int(pad_ms * sample_rate / 1000)
    d_start = (donor_extents[:, 0] - pad).clamp(min=0)
    d_end = (donor_extents[:, 1] + pad).clamp(max=length)
    # Where the donor's segment starts in the window.
    target = torch.where(before, extents[:, 0] - gap - (d_end - d_start), extents[:, 1] + gap)
    moved = shift_by(donors, target - d_start)
    t = torch.arange(length, device=device)
    keep = (t >= target[:, None]) & (t < (target + d_end - d_start)[:, None]) & use[:, None]
    if below is not None:
        inside = keep.sum(1).to(torch.float64) / (d_end - d_start).clamp(min=1).to(torch.float64)
        keep &= (inside < below.to(torch.float64))[:, None]
    mixed = audio.to(torch.int32) + torch.where(keep, moved.to(torch.int32), 0)
    return mixed.clamp(-32768, 32767).to(torch.int16)
