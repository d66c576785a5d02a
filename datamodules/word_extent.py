"""Where the word is in a one-second clip: its first and last loud 10 ms frame.

Speech Commands clips (and the generated stand-in) hold one word somewhere in the second, with
quieter audio around it. A frame's level is its peak absolute sample; a frame is part of the word
when its level is within ``relative_db`` of the clip's loudest frame and ``floor_db`` above the
clip's floor (the level of its 10th-quietest frame, so a noisy real clip does not count its
noise as speech). The extent runs from the first to the last such frame. One definition, in
numpy (:func:`word_extents`, for building test streams) and torch (:func:`word_extents_torch`,
batch-wise on the training device; the two agree exactly, ``tests/datamodules/test_placement.py``).

    start, end = word_extent(clip)          # sample indices, end exclusive
    extents = word_extents(cache_array)     # [n, 2] for a whole [n, samples] array
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

FRAME_MS = 10
FLOOR_RANK = 10  # the floor is the 10th-quietest frame's level


def word_extents(
    audio: np.ndarray, sample_rate: int = 16000, relative_db: float = 40.0, floor_db: float = 12.0, batch: int = 4096
) -> np.ndarray:
    """[n, 2] int64 (start, end) sample indices of the word in each row of int16 ``audio [n, samples]``;
    a row with no frame above its floor gets (0, samples)."""
    audio = np.asarray(audio)
    if audio.ndim != 2:
        raise ValueError(f"word_extents takes [clips, samples], got shape {audio.shape}")
    frame = sample_rate * FRAME_MS // 1000
    n, samples = audio.shape
    frames = samples // frame
    out = np.zeros((n, 2), np.int64)
    for lo in range(0, n, batch):
        level = (
            np.abs(np.asarray(audio[lo : lo + batch, : frames * frame], np.int32).reshape(-1, frames, frame))
            .max(-1)
            .astype(np.float64)
        )
        peak = level.max(-1, keepdims=True)
        floor = np.sort(level, -1)[:, min(FLOOR_RANK, frames) - 1 : min(FLOOR_RANK, frames)]
        threshold = np.maximum(np.maximum(peak * 10 ** (-relative_db / 20), floor * 10 ** (floor_db / 20)), 1.0)
        loud = level >= threshold
        has = loud.any(-1) & (peak[:, 0] > 0)
        first = np.where(has, loud.argmax(-1), 0)
        last = np.where(has, frames - 1 - loud[:, ::-1].argmax(-1), frames - 1)
        out[lo : lo + batch, 0] = first * frame
        out[lo : lo + batch, 1] = np.where(has, (last + 1) * frame, samples)
    return out


def word_extent(clip: np.ndarray, sample_rate: int = 16000, **kwargs) -> tuple[int, int]:
    """(start, end) of the word in one int16 clip; see :func:`word_extents`."""
    start, end = word_extents(np.asarray(clip)[None], sample_rate, **kwargs)[0]
    return int(start), int(end)


def word_extents_torch(
    audio: "torch.Tensor", sample_rate: int = 16000, relative_db: float = 40.0, floor_db: float = 12.0
) -> "torch.Tensor":
    """:func:`word_extents` on an int16 batch tensor [B, samples] (any device): [B, 2] int64."""
    import torch

    frame = sample_rate * FRAME_MS // 1000
    batch, samples = audio.shape
    frames = samples // frame
    level = audio[:, : frames * frame].reshape(batch, frames, frame).to(torch.int32).abs().amax(-1).to(torch.float64)
    peak = level.amax(-1, keepdim=True)
    floor = torch.kthvalue(level, min(FLOOR_RANK, frames), dim=-1, keepdim=True).values
    threshold = torch.clamp(torch.maximum(peak * 10 ** (-relative_db / 20), floor * 10 ** (floor_db / 20)), min=1.0)
    loud = level >= threshold
    has = loud.any(-1) & (peak[:, 0] > 0)
    index = torch.arange(frames, device=audio.device)
    first = torch.where(loud, index, frames).amin(-1)
    last = torch.where(loud, index, -1).amax(-1)
    start = torch.where(has, first * frame, 0)
    end = torch.where(has, (last + 1) * frame, samples)
    return torch.stack([start, end], -1)
